import type { Logger } from 'pino';
import { truncationNote } from './output-note.ts';
import { SandboxError } from './sandbox-error.ts';
import { type DriverMessage, SandboxExited, type SandboxProcess } from './sandbox-process.ts';
import type { SandboxSettings } from './settings.ts';

/** What a cell did. */
export interface CellResult {
  /**
   * stdout and stderr as the cell wrote them, interleaved in order (its processes' too); plus, like a notebook, the
   * repr of the cell's last expression if it is not None; the traceback when it raised. At most about
   * `outputChars`: its first and last halves, with "…[output truncated: N more characters]" between.
   */
  logs: string;
  /**
   * PNG bytes of the images the cell showed, in order: the figures and images it passed to display() or left as its
   * last expression, then each matplotlib figure open at its end that it did not display (figures are then closed);
   * at most 16.
   */
  images: Uint8Array[];
  /**
   * 'ok'; 'error' (the cell raised: traceback in logs); 'timeout' (soft: KeyboardInterrupt delivered, the session and
   * its variables kept); 'killed' (it did not stop after the interrupt, or its Python died: the session was
   * restarted, its variables and files lost); 'aborted' (the caller's signal: interrupted like a timeout, session
   * kept; or it never ran, when the signal aborted while it was queued).
   */
  outcome: 'ok' | 'error' | 'timeout' | 'killed' | 'aborted';
  /**
   * With 'killed', why (its logs say it too): 'interrupt', the cell did not stop within the grace period after its
   * interrupt (a timeout or an abort), so it was killed; 'ended', its Python process ended under it (the code exited
   * with os._exit, crashed, reached the CPU time limit, or broke the protocol); 'closed', the session was closed.
   */
  killed?: 'interrupt' | 'ended' | 'closed';
}

/** A regular file under /mnt/data. */
export interface DataFile {
  /** Relative to /mnt/data: `report.csv`, or `out/b.csv` in a subdirectory. */
  name: string;
  size: number;
  mtimeMs: number;
}

export interface CellOptions {
  /** The soft timeout; at most the settings' `cellTimeoutMs`, which is also the default. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * A stateful Python session (a thread's): cells and file operations run one at a time, in the order asked. A
 * session outlives a hard kill: the next operation runs in a new process (empty namespace, empty /mnt/data).
 */
export interface SandboxSession {
  readonly key: string;
  runCell(code: string, options?: CellOptions): Promise<CellResult>;
  /**
   * Writes /mnt/data/<name>, replacing a regular file of that name, whole or not at all: a write refused midway (the
   * file size or /mnt/data's limit) or stopped by `signal` (checked between chunks) removes what it wrote.
   * SandboxError for an invalid name.
   */
  writeFile(name: string, bytes: Uint8Array, options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Reads /mnt/data/<name> (a relative path without `.` or `..`), following no symlink at any component; regular
   * files only. SandboxError when it is missing, not a regular file, or over `maxBytes`.
   */
  readFile(name: string, maxBytes: number): Promise<Uint8Array>;
  /** Removes /mnt/data/<name> (done also when there was no such file). SandboxError for an invalid name. */
  removeFile(name: string): Promise<void>;
  /**
   * Makes /mnt/data/<name> a symbolic link to `target`, a file beside it, replacing a symbolic link of that name.
   * SandboxError for an invalid name, or when something else has the name.
   */
  linkFile(name: string, target: string): Promise<void>;
  /**
   * The regular files under /mnt/data, subdirectories included (8 levels deep), by name: the 1,000 most recently
   * modified (of the first 100,000 entries found), so a file a cell just wrote is listed however many there are.
   * Symlinks and other special files are left out.
   */
  listFiles(): Promise<DataFile[]>;
}

const MAX_IMAGES = 16;
const MAX_IMAGE_BYTES = 8 * 1024 * 1024;
/** writeFile's chunk: a line of the protocol each. */
const WRITE_CHUNK_BYTES = 1024 * 1024;
const MAX_LISTED = 1000;

/** What a session needs from its pool. */
export interface SessionHooks {
  /** Starts a sandbox process (not yet ready). */
  startProcess(): SandboxProcess;
  /**
   * The session reached its idle time or lifetime: the pool forgets it and closes it (one held at its lifetime, once
   * let go).
   */
  expired(session: CodeSession, why: 'idle' | 'lifetime'): void;
  /** The session has no operation running or queued any more: it may be evicted now. */
  idle(): void;
}

/** The SandboxSession of a pool: a queue of operations over a process it restarts when that dies. */
export class CodeSession implements SandboxSession {
  /** Counts the processes started: a caller is told the session is fresh when it changed since it last looked. */
  generation = 0;
  /**
   * When it was last handed out or finished an operation (performance.now(), ms): the pool evicts the least recent.
   * Finer than Date.now(), whose milliseconds two quick cells of two sessions can share, making the order a tie.
   */
  lastUsedMs = performance.now();

  private process: SandboxProcess | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private closedReason: string | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly lifetimeTimer: NodeJS.Timeout;

  constructor(
    readonly key: string,
    private readonly settings: SandboxSettings,
    private readonly hooks: SessionHooks,
    private readonly logger: Logger,
  ) {
    this.lifetimeTimer = setTimeout(() => this.hooks.expired(this, 'lifetime'), settings.lifetimeMs).unref();
  }

  /** An operation is running or queued. */
  get busy(): boolean {
    return this.queued > 0;
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** The running process, started first if there is none (after a kill). */
  async live(): Promise<SandboxProcess> {
    if (this.closedReason !== undefined) throw new SandboxError(`This session is closed (${this.closedReason}).`);
    if (this.process === undefined || this.process.ended) {
      this.process = this.hooks.startProcess();
      this.generation++;
    }
    const process = this.process;
    clearTimeout(this.idleTimer); // idle time counts from the end of the start
    try {
      await process.ready;
    } catch (error) {
      if (this.process === process) this.process = undefined;
      throw new SandboxError(`The code sandbox did not start: ${error instanceof Error ? error.message : error}`);
    } finally {
      if (this.queued === 0 && this.closedReason === undefined) this.armIdleTimer();
    }
    return process;
  }

  runCell(code: string, options: CellOptions = {}): Promise<CellResult> {
    const { signal } = options;
    const timeoutMs = Math.max(1, Math.min(options.timeoutMs ?? Infinity, this.settings.cellTimeoutMs));
    let started = false;
    const job = this.enqueue(async () => {
      started = true;
      if (signal?.aborted) return notRun();
      return this.execute(code, timeoutMs, signal);
    });
    if (!signal) return job;
    // Aborted while queued: answered at once; the cell will not run.
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        if (!started) resolve(notRun());
      };
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) onAbort();
      job.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  async writeFile(name: string, bytes: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    validateFileName(name);
    return this.enqueue(async () => {
      let offset = 0;
      try {
        do {
          options.signal?.throwIfAborted();
          const chunk = bytes.subarray(offset, offset + WRITE_CHUNK_BYTES);
          const data = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('base64');
          await this.call(`writing ${name}`, { op: 'write', name, data, append: offset > 0 });
          offset += chunk.byteLength;
        } while (offset < bytes.byteLength);
      } catch (error) {
        // A session that ended has no file left to remove.
        if (this.process && !this.process.ended)
          await this.call(`removing ${name}`, { op: 'remove', name }).catch(() => {});
        throw error;
      }
    });
  }

  async readFile(name: string, maxBytes: number): Promise<Uint8Array> {
    validateFilePath(name);
    return this.enqueue(async () => {
      const chunks: Buffer[] = [];
      let total = 0;
      await this.call(`reading ${name}`, { op: 'read', name, max: maxBytes }, (message) => {
        if (typeof message.data !== 'string') throw new Error('a chunk without data');
        const chunk = Buffer.from(message.data, 'base64');
        total += chunk.length;
        if (total > maxBytes) throw new Error(`more than the ${maxBytes} bytes asked for`);
        chunks.push(chunk);
      });
      return new Uint8Array(Buffer.concat(chunks, total));
    });
  }

  async removeFile(name: string): Promise<void> {
    validateFileName(name);
    return this.enqueue(async () => {
      await this.call(`removing ${name}`, { op: 'remove', name });
    });
  }

  async linkFile(name: string, target: string): Promise<void> {
    validateFileName(name);
    validateFileName(target);
    return this.enqueue(async () => {
      await this.call(`linking ${name}`, { op: 'link', name, target });
    });
  }

  listFiles(): Promise<DataFile[]> {
    return this.enqueue(async () => {
      const reply = await this.call('listing files', { op: 'list' });
      if (!Array.isArray(reply.files) || reply.files.length > MAX_LISTED) throw new SandboxError('Bad file list.');
      return reply.files.map((file: unknown): DataFile => {
        const { name, size, mtimeMs } = (file ?? {}) as Record<string, unknown>;
        if (typeof name !== 'string' || typeof size !== 'number' || typeof mtimeMs !== 'number')
          throw new SandboxError('Bad file list.');
        return { name, size, mtimeMs };
      });
    });
  }

  /**
   * Closes the session: at once (`now`: a running cell ends as 'killed'), or once the operations queued are done.
   * Resolves when its process is gone.
   */
  async close(reason: string, now: boolean): Promise<void> {
    this.closedReason ??= reason;
    clearTimeout(this.idleTimer);
    clearTimeout(this.lifetimeTimer);
    if (!now) await this.tail;
    const process = this.process;
    if (!process) return;
    await process.kill(`session closed: ${reason}`);
    // Once it is gone, its child process, pipes and timers are let go of: a closed session may still be referred to
    // (the thread's files, for links in a later answer) long after.
    if (this.process === process) this.process = undefined;
  }

  // ── internals ──────────────────────────────────────────────────────────────

  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    if (this.closedReason !== undefined)
      return Promise.reject(new SandboxError(`This session is closed (${this.closedReason}).`));
    this.queued++;
    clearTimeout(this.idleTimer);
    const run = this.tail.then(task);
    this.tail = run
      .catch(() => {})
      .finally(() => {
        this.queued--;
        this.lastUsedMs = performance.now();
        if (this.queued === 0 && this.closedReason === undefined) {
          this.armIdleTimer();
          this.hooks.idle();
        }
      });
    return run;
  }

  /** Idle time counts from now (its holder let it go), or from the end of the operations queued, if any. */
  idleFromNow(): void {
    if (this.queued === 0 && this.closedReason === undefined) this.armIdleTimer();
  }

  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.hooks.expired(this, 'idle'), this.settings.idleMs).unref();
  }

  private async execute(code: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<CellResult> {
    const process = await this.live();
    const images: Uint8Array[] = [];
    let result: DriverMessage | undefined;
    let interruptedBy: 'timeout' | 'aborted' | undefined;
    let hardKilled = false;
    let graceTimer: NodeJS.Timeout | undefined;
    // The soft interrupt: SIGINT in the cell (driver.py). A cell that ignores it, or is stuck in C code that never
    // returns to the interpreter, is killed with its whole sandbox after the grace period.
    const interrupt = (why: 'timeout' | 'aborted') => {
      if (interruptedBy) return;
      interruptedBy = why;
      process.notify({ op: 'interrupt' });
      graceTimer = setTimeout(() => {
        hardKilled = true;
        void process.kill(`the cell did not stop within ${this.settings.killGraceMs} ms of its interrupt`);
      }, this.settings.killGraceMs);
    };
    const softTimer = setTimeout(() => interrupt('timeout'), timeoutMs);
    const onAbort = () => interrupt('aborted');
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await process.request({ op: 'run', code }, (message) => {
        if (message.type === 'image') {
          if (images.length === MAX_IMAGES) throw new Error('too many images');
          images.push(decodeImage(message.png));
          return false;
        }
        if (message.type !== 'result') throw new Error(`a '${message.type}' reply to a cell`);
        result = message;
        return true;
      });
    } catch (error) {
      if (!(error instanceof SandboxExited)) throw error;
      return this.died(error, hardKilled ? interruptedBy : undefined);
    } finally {
      clearTimeout(softTimer);
      clearTimeout(graceTimer);
      signal?.removeEventListener('abort', onAbort);
    }
    const logs = typeof result?.logs === 'string' ? this.capped(result.logs) : '';
    const reported = result?.outcome === 'ok' ? 'ok' : 'error';
    return { logs, images, outcome: interruptedBy ?? reported };
  }

  /** The result of a cell whose process ended under it; a new process is started for what comes next. */
  private died(error: SandboxExited, interruptedBy: 'timeout' | 'aborted' | undefined): CellResult {
    if (this.closedReason !== undefined)
      return {
        logs: `[The session was closed (${this.closedReason}).]`,
        images: [],
        outcome: 'killed',
        killed: 'closed',
      };
    const why =
      interruptedBy === undefined
        ? `The Python process ended (${error.message})`
        : `The cell did not stop within ${this.settings.killGraceMs / 1000} s of its interrupt ` +
          `(${interruptedBy === 'timeout' ? 'time limit reached' : 'aborted'}), so it was killed`;
    this.logger.info({ key: this.key, reason: error.message }, 'code interpreter session killed; restarting');
    void this.live().catch(() => {}); // warm the next one now; the next operation reports a failure to start
    return {
      logs: `[${why}: the session was restarted. Its variables and the files in /mnt/data are lost.]`,
      images: [],
      outcome: 'killed',
      killed: interruptedBy === undefined ? 'ended' : 'interrupt',
    };
  }

  /** The driver caps the logs; a driver the cell tampered with may not, so they are capped here again. */
  private capped(logs: string): string {
    const limit = this.settings.outputChars + 200;
    if (logs.length <= limit) return logs;
    const half = Math.floor(this.settings.outputChars / 2);
    const dropped = logs.length - 2 * half;
    return `${logs.slice(0, half)}${truncationNote(dropped)}${logs.slice(-half)}`;
  }

  /**
   * A file operation: its reply, `chunk` messages given to `onChunk`; SandboxError for the driver's refusal
   * (missing, not a regular file, too large…) or the process ending.
   */
  private async call(
    what: string,
    body: Record<string, unknown>,
    onChunk?: (message: DriverMessage) => void,
  ): Promise<DriverMessage> {
    const process = await this.live();
    let reply: DriverMessage | undefined;
    try {
      await process.request(body, (message) => {
        if (message.type === 'chunk' && onChunk) {
          onChunk(message);
          return false;
        }
        if (message.type !== 'ok' && message.type !== 'error') throw new Error(`a '${message.type}' reply`);
        reply = message;
        return true;
      });
    } catch (error) {
      if (error instanceof SandboxExited)
        throw new SandboxError(`The session ended while ${what} (${error.message}); it will be restarted.`);
      throw error;
    }
    if (reply?.type === 'error') throw new SandboxError(String(reply.message));
    return reply as DriverMessage;
  }
}

function notRun(): CellResult {
  return { logs: '[Aborted before the cell ran.]', images: [], outcome: 'aborted' };
}

function decodeImage(png: unknown): Uint8Array {
  if (typeof png !== 'string' || png.length > (MAX_IMAGE_BYTES / 3) * 4 + 4) throw new Error('a bad image');
  return new Uint8Array(Buffer.from(png, 'base64'));
}

/** A file name directly in /mnt/data. */
export function validateFileName(name: string): void {
  if (name.includes('/')) throw new SandboxError(`Invalid file name '${name}': it may not contain '/'.`);
  validateFilePath(name);
}

/** A path relative to /mnt/data: no empty, `.` or `..` component, no NUL. */
export function validateFilePath(name: string): void {
  const parts = name.split('/');
  if (
    name === '' ||
    name.length > 4096 ||
    name.includes('\0') ||
    parts.some((part) => part === '' || part === '.' || part === '..' || Buffer.byteLength(part) > 255)
  )
    throw new SandboxError(`Invalid file name '${name}'.`);
}
