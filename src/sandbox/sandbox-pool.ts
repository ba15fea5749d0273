import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { type SandboxCommand, sandboxCommand } from './bwrap-command.ts';
import { fontCacheDir } from './font-cache.ts';
import { SandboxError } from './sandbox-error.ts';
import { SandboxProcess } from './sandbox-process.ts';
import { CodeSession, type SandboxSession } from './sandbox-session.ts';
import type { SandboxSettings } from './settings.ts';
import { SandboxSpawner } from './spawner.ts';

/**
 * The code_interpreter's sessions, one per key (a thread id): each a Python process in its own bubblewrap sandbox
 * (bwrap-command.ts) running driver.py, with numpy, pandas and matplotlib preloaded. At most `maxSessions` live at
 * once; a session ends after `idleMs` unused or `lifetimeMs` in all (one held then: once let go), when evicted for a
 * new one, when its key is closed (closeSession: the thread was deleted), or on close(). Only a session no one is
 * using is evicted: one held by a caller (from session() to its release(), which covers its start and the file placing
 * before a cell) or running an operation; when every session is in use, a new key waits for one (session()) rather
 * than a caller's session being closed under it.
 *
 * One spare process, started ahead and not counted in `maxSessions`, is what a new session gets: importing numpy,
 * pandas and matplotlib costs ~1.3 s of CPU on a slow core, which the first cell of a thread would otherwise wait
 * for. The probe's process is the first spare; each one taken starts the next (~64 MiB idle while it waits), a
 * moment later (SPARE_DELAY_MS): the spare's imports take a core, which the session just handed out would otherwise
 * pay for in its first cell.
 */

export type SandboxStatus =
  | {
      available: true;
      detail: string;
      /** The Python libraries a cell can import, by import name. */
      libraries: string[];
    }
  | { available: false; reason: string };

/** A session handed out: the pool does not evict it until `release()`, which the caller calls once done with it. */
export interface SessionLease {
  session: SandboxSession;
  /** New to this caller's key: the variables and files of earlier use are gone (or there were none). */
  fresh: boolean;
  /** Lets the session be evicted again; later calls do nothing. */
  release(): void;
}

const DRIVER_FILE = new URL('./driver.py', import.meta.url);

/** How long after a spare is taken the next one is started. */
const SPARE_DELAY_MS = 250;

/** Libraries models often reach for besides the three the sandbox needs; the probe says which are installed. */
const OPTIONAL_LIBRARIES = ['scipy', 'openpyxl', 'seaborn', 'sklearn', 'statsmodels', 'PIL'];

/** The cell the startup probe runs: the real sandbox, the real libraries (then which optional ones it finds). */
const PROBE_CELL = [
  'import numpy, pandas, matplotlib.pyplot, importlib.util',
  'print(int(numpy.arange(4).sum()))',
  `print(",".join(m for m in ${JSON.stringify(OPTIONAL_LIBRARIES)} if importlib.util.find_spec(m)))`,
].join('\n');

interface Entry {
  session: CodeSession;
  /** The session's generation when it was last handed out: a change means its state was lost meanwhile. */
  handed: number;
  /** Callers holding the session (session() to release()). */
  holders: number;
  /** Its lifetime ended while it was held: it is closed once no one holds it. */
  lifetimeEnded?: boolean;
}

export class SandboxPool {
  private statusValue: SandboxStatus | undefined;
  private starting: Promise<SandboxStatus> | undefined;
  private command: SandboxCommand | undefined;
  private spare: SandboxProcess | undefined;
  private readonly spawner = new SandboxSpawner();
  private readonly sessions = new Map<string, Entry>();
  private readonly closing = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly settings: SandboxSettings,
    private readonly logger: Logger,
  ) {}

  /** Probes once (runs the real sandbox command); later calls return the same status. */
  start(): Promise<SandboxStatus> {
    this.starting ??= this.probe().then((status) => {
      this.statusValue = status;
      if (status.available)
        this.logger.info({ detail: status.detail }, `code_interpreter sandbox ready: ${status.detail}`);
      else this.logger.warn({ reason: status.reason }, `code_interpreter is unavailable here: ${status.reason}`);
      return status;
    });
    return this.starting;
  }

  get status(): SandboxStatus | undefined {
    return this.statusValue;
  }

  /**
   * The live session for this key (a thread id), or a new one (`fresh: true`) — also fresh after expiry, eviction
   * or a hard kill, when its variables and files are gone. The caller holds it, starting included, until it
   * releases it. When every session is in use, a new key waits for one to be free (first come, first served), at
   * most `waitMs` (by default, as long as it takes) or until `signal` aborts (rejecting with its reason). Throws
   * SandboxError when unavailable, or when no session was free in time.
   */
  async session(
    key: string,
    { signal, waitMs }: { signal?: AbortSignal; waitMs?: number } = {},
  ): Promise<SessionLease> {
    const status = await this.start();
    if (!status.available) throw new SandboxError(`The code interpreter is unavailable: ${status.reason}`);
    const deadline = performance.now() + (waitMs ?? Number.POSITIVE_INFINITY);
    let entry: Entry | undefined;
    for (;;) {
      signal?.throwIfAborted();
      if (this.closed) throw new SandboxError('The code interpreter is shutting down.');
      entry = this.sessions.get(key);
      if (entry !== undefined && !entry.session.closed) break;
      if (this.makeRoom()) {
        entry = { session: new CodeSession(key, this.settings, this.hooks, this.logger), handed: 0, holders: 0 };
        this.sessions.set(key, entry);
        break;
      }
      const left = deadline - performance.now();
      if (left <= 0)
        throw new SandboxError(
          `All ${this.settings.maxSessions} code interpreter sessions are busy running code; try again shortly.`,
        );
      await this.roomChange(left, signal);
    }
    const held = entry;
    const { session } = held;
    held.holders++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      held.holders--;
      if (held.holders === 0 && held.lifetimeEnded) this.expire(held.session, 'lifetime');
      else if (held.holders === 0) held.session.idleFromNow();
      this.roomChanged();
    };
    session.lastUsedMs = performance.now();
    try {
      await session.live();
    } catch (error) {
      release();
      if (this.sessions.get(key)?.session === session) this.forget(key, 'did not start', true);
      throw error;
    }
    const fresh = held.handed !== session.generation;
    held.handed = session.generation;
    return { session, fresh, release };
  }

  /**
   * Closes this key's session at once, if there is one, held or not (a running cell ends 'killed'): its thread was
   * deleted, and its variables and /mnt/data files would otherwise hold memory and a place in the pool until it
   * idled out. Resolves when its process is gone.
   */
  closeSession(key: string, reason: string): Promise<void> {
    if (this.sessions.has(key)) this.logger.info({ key, reason }, 'code interpreter session closed');
    return this.forget(key, reason, true);
  }

  /** Kills every session; no sandbox process is left. */
  async close(): Promise<void> {
    this.closed = true;
    this.roomChanged();
    for (const key of [...this.sessions.keys()]) this.forget(key, 'server closing', true);
    const spare = this.spare;
    this.spare = undefined;
    await Promise.all([...this.closing, spare?.kill('server closing')]);
    await this.spawner.close();
  }

  // ── internals ──────────────────────────────────────────────────────────────

  private readonly hooks = {
    startProcess: () => {
      const spare = this.spare;
      this.spare = undefined;
      setTimeout(() => this.startSpare(), SPARE_DELAY_MS).unref();
      return spare !== undefined && !spare.ended ? spare : this.newProcess();
    },
    idle: () => this.roomChanged(),
    expired: (session: CodeSession, why: 'idle' | 'lifetime') => this.expire(session, why),
  };

  private expire(session: CodeSession, why: 'idle' | 'lifetime'): void {
    const entry = this.sessions.get(session.key);
    if (entry?.session !== session) return;
    // A held session is not closed under its holder: one placing files before a cell would have its next writes and
    // its cell refused (failing its run), a run between its calls (a long model turn) would lose its variables
    // midway. At the end of its lifetime it is closed when let go; its idle time counts from then.
    if (entry.holders > 0) {
      if (why === 'lifetime') entry.lifetimeEnded = true;
      return;
    }
    this.logger.info({ key: session.key, why }, 'code interpreter session expired');
    // A lifetime reached during a cell lets the cell finish; an idle session has none.
    this.forget(session.key, why === 'idle' ? 'idle too long' : 'lifetime reached', false);
  }

  private newProcess(): SandboxProcess {
    if (this.command === undefined) throw new SandboxError('The code interpreter was not started.');
    return new SandboxProcess(this.command, this.spawner, this.logger);
  }

  private startSpare(): void {
    if (this.closed || this.spare !== undefined) return;
    this.adoptSpare(this.newProcess());
  }

  private adoptSpare(spare: SandboxProcess): void {
    this.spare = spare;
    // One that dies waiting is dropped, not replaced in a loop: the next session starts its own and a new spare.
    void spare.exited.then(() => {
      if (this.spare === spare) this.spare = undefined;
    });
  }

  /**
   * Evicts the least recently used session no one is using while the pool is full; false when every session is in
   * use (held, or running an operation).
   */
  private makeRoom(): boolean {
    while (this.sessions.size >= this.settings.maxSessions) {
      let oldest: CodeSession | undefined;
      for (const { session, holders } of this.sessions.values())
        if (holders === 0 && !session.busy && (oldest === undefined || session.lastUsedMs < oldest.lastUsedMs))
          oldest = session;
      if (oldest === undefined) return false;
      this.logger.info({ key: oldest.key }, 'code interpreter session evicted');
      this.forget(oldest.key, 'evicted for another session', true);
    }
    return true;
  }

  /** Callers waiting for room (session()), woken in the order they came whenever a session may have become free. */
  private readonly roomWaiters: Array<() => void> = [];

  private roomChanged(): void {
    for (const wake of this.roomWaiters.splice(0)) wake();
  }

  /** Resolves at the next change of the pool's room, or after `ms`; rejects when `signal` aborts. */
  private roomChange(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const finish = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const at = this.roomWaiters.indexOf(wake);
        if (at !== -1) this.roomWaiters.splice(at, 1);
      };
      const wake = () => {
        finish();
        resolve();
      };
      const onAbort = () => {
        finish();
        reject(signal!.reason);
      };
      const timer = Number.isFinite(ms) ? setTimeout(wake, ms) : undefined;
      this.roomWaiters.push(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private forget(key: string, reason: string, now: boolean): Promise<void> {
    const entry = this.sessions.get(key);
    if (entry === undefined) return Promise.resolve();
    this.sessions.delete(key);
    this.roomChanged();
    const closing = entry.session.close(reason, now).catch(() => {});
    this.closing.add(closing);
    void closing.finally(() => this.closing.delete(closing));
    return closing;
  }

  private async probe(): Promise<SandboxStatus> {
    if (!this.settings.enabled) return { available: false, reason: 'disabled by ASSISTD_CODE_INTERPRETER=off' };
    try {
      const python = this.settings.python;
      if (!path.isAbsolute(python)) return unavailable(`the sandbox Python must be an absolute path, not '${python}'`);
      await access(python, constants.X_OK).catch(() => {
        throw new Error(`no Python at ${python}`);
      });
      const bwrap = await onPath(this.settings.bwrap);
      const driver = await readFile(DRIVER_FILE, 'utf8');
      const fontCache = await fontCacheDir(python).catch((error: unknown) => {
        throw new Error(`${python} cannot build matplotlib's font cache: ${firstLine(error)}`);
      });
      this.command = sandboxCommand({ ...this.settings, bwrap }, driver, fontCache);
      const started = performance.now();
      const probe = new SandboxProcess(this.command, this.spawner, this.logger);
      let keep = false;
      try {
        const detail = await probe.ready.catch((error: unknown) => {
          throw new Error(`the sandbox does not start (${bwrap}): ${firstLine(error)}`);
        });
        const readyMs = performance.now() - started;
        let result: unknown;
        await probe.request({ op: 'run', code: PROBE_CELL }, (message) => {
          result = message;
          return message.type === 'result';
        });
        const { outcome, logs } = result as { outcome?: unknown; logs?: unknown };
        const [sum, optional = ''] = typeof logs === 'string' ? logs.split('\n') : [];
        if (outcome !== 'ok' || sum !== '6') throw new Error(`the probe cell failed: ${String(logs).slice(-500)}`);
        const libraries = ['numpy', 'pandas', 'matplotlib', ...optional.split(',').filter((name) => name !== '')];
        // It ran only the probe cell, whose names are now deleted: it becomes the first spare.
        const reset = 'del numpy, pandas, matplotlib, importlib';
        await probe.request({ op: 'run', code: reset }, (message) => message.type === 'result');
        keep = !this.closed;
        if (keep) this.adoptSpare(probe);
        return {
          available: true,
          detail: `bubblewrap sandbox, ${detail}; also ${libraries.slice(3).join(', ') || 'no optional library'}; ready in ${Math.round(readyMs)} ms`,
          libraries,
        };
      } finally {
        if (!keep) await probe.kill('probe done');
      }
    } catch (error) {
      return unavailable(firstLine(error));
    }
  }
}

function unavailable(reason: string): SandboxStatus {
  return { available: false, reason };
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.length > 1000 ? `${message.slice(0, 1000)}…` : message;
}

/** An absolute path for `command`: as given when it has a '/', else found on the server's PATH. */
async function onPath(command: string): Promise<string> {
  if (command.includes('/')) {
    await access(command, constants.X_OK).catch(() => {
      throw new Error(`no bubblewrap at ${command}`);
    });
    return command;
  }
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (dir === '') continue;
    const candidate = path.join(dir, command);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  throw new Error(`${command} (bubblewrap) is not on PATH`);
}
