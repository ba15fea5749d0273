import { type ChildProcess, fork } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { SandboxCommand } from './bwrap-command.ts';
import type { SpawnerReply, SpawnerRequest } from './spawner-main.ts';

/** How long a spawner let go has to end its sandboxes and exit before it is killed. */
const CLOSE_GRACE_MS = 5_000;

/**
 * Starts the sandboxes from a small process of its own (spawner-main.ts), so that the server never forks. A fork
 * copies the forking process's page tables while its event loop waits, about 50 ms for a process of 1.1 GB here
 * (`npm run bench:code`), every stream of the server stalled meanwhile, at each new sandbox. The spawner's heap
 * stays small, and its forks stall only itself. It hands the server each sandbox's stdin, stdout and stderr as file
 * descriptors over the IPC channel: the server reads and writes them as its own, with nothing copied on the way.
 *
 * The spawner is started at the first sandbox and again after it died (the sandboxes it had started die with it:
 * bwrap's `--die-with-parent`). It ends when the server closes it or exits, killed or not: its channel closes, and
 * it kills its sandboxes.
 */
export class SandboxSpawner {
  private process: ChildProcess | undefined;
  private nextId = 1;
  private readonly live = new Map<number, SpawnedSandbox>();
  private closed = false;
  /** Resolves once the spawner last started is gone. */
  private gone: Promise<void> = Promise.resolve();

  /** Starts `command`: its stdio arrive with `spawn`, or `error` says why not; `close` ends it either way. */
  spawn(command: SandboxCommand): SpawnedSandbox {
    if (this.closed) {
      const refused = new SpawnedSandbox(undefined, () => {});
      process.nextTick(() => refused.spawnerGone('the sandbox spawner is closed'));
      return refused;
    }
    const id = this.nextId++;
    const spawner = this.started();
    const sandbox = new SpawnedSandbox(spawner, () => this.send(spawner, { type: 'kill', id }));
    this.live.set(id, sandbox);
    spawner.channel?.ref();
    sandbox.once('close', () => {
      this.live.delete(id);
      if (![...this.live.values()].some((other) => other.spawner === spawner)) spawner.channel?.unref();
    });
    this.send(spawner, {
      type: 'spawn',
      id,
      command: command.command,
      args: command.args,
      seccomp: command.seccomp.toString('base64'),
      ...command.spawn,
    });
    return sandbox;
  }

  /** The spawner process's pid, once started. */
  get pid(): number | undefined {
    return this.process?.pid;
  }

  /**
   * Lets the spawner go, and starts none again; resolves once it is gone (it kills what it still runs first, or is
   * killed after CLOSE_GRACE_MS, its sandboxes with it).
   */
  close(): Promise<void> {
    this.closed = true;
    const spawner = this.process;
    if (spawner?.connected) {
      spawner.ref(); // until it is gone: a caller waits for that
      spawner.disconnect();
      const deadline = setTimeout(() => spawner.kill('SIGKILL'), CLOSE_GRACE_MS);
      void this.gone.then(() => clearTimeout(deadline));
    }
    this.process = undefined;
    return this.gone;
  }

  private started(): ChildProcess {
    if (this.process?.connected) return this.process;
    const fromSource = import.meta.url.endsWith('.ts');
    const entry = new URL(`./spawner-main${fromSource ? '.ts' : '.js'}`, import.meta.url);
    // Its own process group, out of reach of a terminal's ^C (the server closes the sandboxes, then the channel);
    // only PATH of the server's environment, which holds its secrets.
    const spawner = fork(entry, [], {
      // From source (the tests, `assistd` through tsx), tsx loads the TypeScript, found from here, not from the cwd.
      execArgv: fromSource ? ['--import', import.meta.resolve('tsx')] : [],
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'json',
      detached: true,
    });
    // Its channel keeps the server's event loop alive while a sandbox lives (spawn); the spawner alone does not.
    spawner.unref();
    spawner.channel?.unref();
    spawner.on('message', (reply: SpawnerReply, handle?: Socket) => this.receive(reply, handle));
    this.gone = new Promise((resolve) => {
      const gone = (why: string) => {
        if (this.process === spawner) this.process = undefined;
        for (const sandbox of this.live.values()) if (sandbox.spawner === spawner) sandbox.spawnerGone(why);
        resolve();
      };
      spawner.once('exit', (code, signal) =>
        gone(`the sandbox spawner exited (${signal ? `signal ${signal}` : `code ${code}`})`),
      );
      // A fork that failed (no such file, no more processes) has no exit; a failed send is followed by one.
      spawner.on('error', (error) => {
        if (spawner.pid === undefined) gone(`the sandbox spawner did not start: ${error.message}`);
      });
    });
    this.process = spawner;
    return spawner;
  }

  private send(spawner: ChildProcess, request: SpawnerRequest): void {
    if (spawner.connected) spawner.send(request);
  }

  private receive(reply: SpawnerReply, handle: Socket | undefined): void {
    const sandbox = this.live.get(reply.id);
    if (sandbox === undefined) {
      handle?.destroy();
      return;
    }
    sandbox.receive(reply, handle);
  }
}

/** The stdio of a started sandbox, in the server. */
export interface SandboxStdio {
  stdin: Socket;
  stdout: Socket;
  stderr: Socket;
}

/**
 * One sandbox the spawner started, as ChildProcess would show it: `spawn` with its stdio once they arrived, or
 * `error` if it could not start; `exit`; `close` once it exited and its stdout and stderr are closed.
 */
export class SpawnedSandbox extends EventEmitter<{
  spawn: [SandboxStdio];
  error: [Error];
  exit: [number | null, NodeJS.Signals | null];
  close: [number | null, NodeJS.Signals | null];
}> {
  pid: number | undefined;
  private readonly stdio: Partial<Record<0 | 1 | 2, Socket>> = {};
  /** Of stdout and stderr, those that arrived and are not closed yet. */
  private open = 0;
  /** Its exit's code and signal, once it exited. */
  private ended: [number | null, NodeJS.Signals | null] | undefined;
  private closed = false;

  constructor(
    /** The spawner process that started it; none when it was refused. */
    readonly spawner: ChildProcess | undefined,
    private readonly requestKill: () => void,
  ) {
    super();
  }

  /** Kills the whole sandbox (bwrap, its group, the driver): `exit` follows. */
  kill(): void {
    if (this.ended) return;
    if (this.spawner?.connected) this.requestKill();
    else this.spawnerGone('the sandbox spawner is gone'); // and its sandboxes with it (`--die-with-parent`)
  }

  receive(reply: SpawnerReply, handle: Socket | undefined): void {
    if (reply.type === 'spawned') this.pid = reply.pid;
    else if (reply.type === 'stdio' && handle !== undefined) {
      this.stdio[reply.fd] = handle;
      if (reply.fd !== 0) {
        this.open += 1;
        handle.once('close', () => {
          this.open -= 1;
          this.maybeClose();
        });
      }
      const { 0: stdin, 1: stdout, 2: stderr } = this.stdio;
      if (stdin && stdout && stderr) this.emit('spawn', { stdin, stdout, stderr });
    } else if (reply.type === 'error') {
      this.emit('error', new Error(reply.message));
      this.finish(null, null);
    } else if (reply.type === 'exit') this.finish(reply.code, reply.signal);
  }

  /** The spawner died: the sandbox died with it (`--die-with-parent`), its exit unsaid. */
  spawnerGone(why: string): void {
    if (this.ended) return;
    if (this.pid === undefined) this.emit('error', new Error(why));
    this.finish(null, 'SIGKILL');
  }

  /** Cuts the stdio still open after the exit (something in the sandbox outlived bwrap and holds them). */
  destroyStdio(): boolean {
    const open = [this.stdio[1], this.stdio[2]].filter((s) => s !== undefined && !s.destroyed);
    for (const stream of [this.stdio[0], ...open]) stream?.destroy();
    return open.length > 0;
  }

  private finish(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.ended) return;
    this.ended = [code, signal];
    this.stdio[0]?.destroy(); // as ChildProcess does: nothing reads it any more
    this.emit('exit', code, signal);
    this.maybeClose();
  }

  private maybeClose(): void {
    if (this.ended && this.open === 0 && !this.closed) {
      this.closed = true;
      this.emit('close', ...this.ended);
    }
  }
}
