import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { SandboxCommand } from './bwrap-command.ts';
import type { SandboxSpawner, SpawnedSandbox } from './spawner.ts';

/**
 * One sandboxed Python process running driver.py, and the host's side of its JSON-lines protocol: requests on its
 * stdin, replies on its stdout, matched by `id`.
 *
 * Everything the driver sends is untrusted (the user's code runs in the same process and can write to the
 * protocol's fd), so the host parses incrementally with a cap on a line, accepts only replies to the request in
 * flight, and treats anything else as a protocol violation: the process is killed. Garbage can thus only end its
 * own session, never make the server hold or parse an unbounded amount.
 */

/** A message from the driver: its `type`, the `id` of the request it answers, and fields of its own. */
export interface DriverMessage {
  id?: number;
  type: string;
  [field: string]: unknown;
}

/** The longest line accepted: an image (8 MiB of PNG in base64) or a read chunk, with room to spare. */
const MAX_LINE_BYTES = 12 * 1024 * 1024;
/** How much of bwrap's and Python's stderr is kept, to explain a failed start. */
const STDERR_TAIL_CHARS = 4000;
const NEWLINE = 0x0a;

/** The process ended (killed, crashed, or a protocol violation) while a request was in flight. */
export class SandboxExited extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SandboxExited';
  }
}

/** Handles the messages of a request in flight; returns true once the request is complete. */
type ReplyHandler = (message: DriverMessage) => boolean;

interface Pending {
  onMessage: ReplyHandler;
  resolve(): void;
  reject(error: Error): void;
}

export class SandboxProcess {
  /** The detail line of the driver's `ready` (the versions preloaded); rejects when the process did not start. */
  readonly ready: Promise<string>;
  /** Resolves once the process and its pipes are closed, with what ended it. */
  readonly exited: Promise<string>;

  private readonly child: SpawnedSandbox;
  private stdin: Writable | undefined;
  /** What was written before the sandbox's stdin arrived from the spawner. */
  private readonly unsent: string[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private parts: Buffer[] = [];
  private partBytes = 0;
  private stderrTail = '';
  private endReason: string | undefined;
  private markReady: ((detail: string) => void) | undefined;

  constructor(
    command: SandboxCommand,
    spawner: SandboxSpawner,
    private readonly logger: Logger,
    startTimeoutMs = 30_000,
  ) {
    let failStart: (error: Error) => void = () => {};
    this.ready = new Promise((resolve, reject) => {
      this.markReady = resolve;
      failStart = reject;
    });
    this.ready.catch(() => {}); // observed through `exited` too
    this.child = spawner.spawn(command);
    const startTimer = setTimeout(() => this.fail(`did not start within ${startTimeoutMs} ms`), startTimeoutMs);
    this.exited = new Promise((resolve) => {
      let spawnError: string | undefined;
      this.child.once('error', (error) => {
        spawnError = `cannot run ${command.command}: ${error.message}`;
      });
      this.child.once('close', (code, signal) => {
        clearTimeout(startTimer);
        const stderr = this.stderrTail.trim();
        const reason =
          this.endReason ??
          spawnError ??
          `exited with ${signal ? `signal ${signal}` : `code ${code}`}${stderr ? `: ${stderr}` : ''}`;
        this.endReason = reason;
        failStart(new SandboxExited(reason));
        for (const pending of this.pending.values()) pending.reject(new SandboxExited(reason));
        this.pending.clear();
        resolve(reason);
      });
    });
    // 'close' waits for the pipes too: should anything in the sandbox outlive bwrap and hold them, they are cut.
    this.child.once('exit', () => {
      setTimeout(() => {
        if (this.child.destroyStdio())
          this.logger.warn({ pid: this.child.pid }, 'code interpreter sandbox pipes still open after its exit');
      }, 5_000).unref();
    });
    this.ready.then(
      () => clearTimeout(startTimer),
      () => {},
    );
    this.child.once('spawn', ({ stdin, stdout, stderr }) => {
      stdin.on('error', () => {}); // EPIPE once it has died: `close` reports that
      stdout.on('data', (chunk: Buffer) => this.receive(chunk));
      stderr.setEncoding('utf8');
      stderr.on('data', (text: string) => {
        this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL_CHARS);
      });
      this.stdin = stdin;
      for (const line of this.unsent.splice(0)) stdin.write(line);
    });
  }

  /** The host pid of bwrap (its outermost process). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** True once the process has ended or is being killed. */
  get ended(): boolean {
    return this.endReason !== undefined;
  }

  /**
   * Sends a request (an `id` is added) and feeds every reply to `onMessage` until it returns true. Rejects with
   * SandboxExited when the process ends first.
   */
  request(body: Record<string, unknown>, onMessage: ReplyHandler): Promise<void> {
    if (this.endReason !== undefined) return Promise.reject(new SandboxExited(this.endReason));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { onMessage, resolve, reject });
      this.write({ ...body, id });
    });
  }

  /** Sends a message that has no reply (an interrupt). */
  notify(body: Record<string, unknown>): void {
    if (this.endReason === undefined) this.write(body);
  }

  /** Kills the whole sandbox (SandboxSpawner) and waits until it is gone. */
  kill(reason: string): Promise<string> {
    this.endReason ??= reason;
    this.child.kill();
    return this.exited;
  }

  private fail(reason: string): void {
    this.logger.warn({ reason }, 'code interpreter sandbox killed');
    void this.kill(reason);
  }

  private write(body: Record<string, unknown>): void {
    const line = `${JSON.stringify(body)}\n`;
    if (this.stdin) this.stdin.write(line);
    else this.unsent.push(line);
  }

  private receive(chunk: Buffer): void {
    let start = 0;
    for (let end = chunk.indexOf(NEWLINE); end !== -1; end = chunk.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, end);
      const line = this.partBytes === 0 ? piece : Buffer.concat([...this.parts, piece]);
      this.parts = [];
      this.partBytes = 0;
      start = end + 1;
      if (line.length > MAX_LINE_BYTES) {
        this.fail(`protocol violation: a line of ${line.length} bytes`);
        return;
      }
      if (!this.dispatch(line)) return;
    }
    if (start < chunk.length) {
      this.parts.push(chunk.subarray(start));
      this.partBytes += chunk.length - start;
      if (this.partBytes > MAX_LINE_BYTES) this.fail(`protocol violation: a line over ${MAX_LINE_BYTES} bytes`);
    }
  }

  /** Handles one line; false when it was a violation (the process is being killed). */
  private dispatch(line: Buffer): boolean {
    if (this.endReason !== undefined) return false;
    let message: DriverMessage;
    try {
      const parsed: unknown = JSON.parse(line.toString('utf8'));
      if (typeof parsed !== 'object' || parsed === null || typeof (parsed as DriverMessage).type !== 'string')
        throw new Error('not a message');
      message = parsed as DriverMessage;
    } catch {
      this.fail('protocol violation: a line that is not a message');
      return false;
    }
    if (message.type === 'ready' && this.markReady) {
      this.markReady(typeof message.detail === 'string' ? message.detail : '');
      this.markReady = undefined;
      return true;
    }
    const pending = typeof message.id === 'number' ? this.pending.get(message.id) : undefined;
    if (!pending) {
      this.fail(`protocol violation: an unexpected '${message.type}' message`);
      return false;
    }
    let done: boolean;
    try {
      done = pending.onMessage(message);
    } catch (error) {
      this.fail(`protocol violation: ${error instanceof Error ? error.message : String(error)}`);
      return false;
    }
    if (done) {
      this.pending.delete(message.id as number);
      pending.resolve();
    }
    return true;
  }
}
