import type { Worker } from 'node:worker_threads';
import type { Chunk, StaticChunking, VectorStoreFileError } from '../domain/vector-stores.ts';
import { startModuleThread } from '../worker-thread.ts';

/** A file's bytes in, its chunks out (or why it cannot be indexed). */
export type IndexResult =
  | { ok: true; chunks: Chunk[]; usageBytes: number }
  | { ok: false; code: VectorStoreFileError['code']; message: string };

export interface Indexer {
  index(input: {
    bytes: Buffer;
    filename: string;
    mimeType: string | null;
    chunking: StaticChunking;
  }): Promise<IndexResult>;
  close(): Promise<void>;
}

export interface IndexRequest {
  id: number;
  bytes: Uint8Array;
  filename: string;
  mimeType: string | null;
  chunking: StaticChunking;
}

export type IndexResponse = { id: number } & IndexResult;

/** A thread running the indexing entry (index-thread.ts). */
function startThread(): Worker {
  return startModuleThread(import.meta.url, './index-thread');
}

/**
 * How long a file's indexing may take: 5 minutes, and a second more per MB. A parser caught in an endless loop
 * would otherwise hold its file in progress forever (a live worker keeps renewing the lease) and its thread with it.
 */
export function indexingTimeBudgetMs(bytes: number): number {
  return 300_000 + Math.ceil(bytes / 1_000_000) * 1_000;
}

/** How much the process may grow while a file is read, unless told (ASSISTD_INDEXING_MEMORY_MB). */
const DEFAULT_INDEXING_MEMORY_BYTES = 2048 * 1024 * 1024;
/** How often the process's memory is looked at while a file is read. */
const MEMORY_CHECK_MS = 100;

export interface ThreadIndexerOptions {
  timeBudgetMs?: (bytes: number) => number;
  /** How much the process's resident memory may grow while one file is read (from its start); 0: no bound. */
  memoryBudgetBytes?: number;
  /** The process's resident memory in bytes (for tests). */
  rss?: () => number;
  memoryCheckMs?: number;
}

/** A file being read on a thread. */
interface Job {
  filename: string;
  /** The process's resident memory when the file started. */
  baseline: number;
  /** Whether another file was read at the same time: then the memory the process took is not this one's alone. */
  shared: boolean;
  /** Stops the file's thread, the file answered with `result`. */
  stop(result: IndexResult): void;
}

/** What a file that went over the memory budget while others were read at the same time is answered (internally). */
const OVER_SHARED: unique symbol = Symbol('over the memory budget, not alone');

/**
 * Extraction and chunking on worker threads (index-thread.ts), so that no file, however large or odd, blocks the
 * event loop. Threads start on first use; a thread that dies, or takes longer than its file's time budget, fails
 * the file it held with `server_error` and is replaced.
 *
 * A file is also bounded in the memory it takes. A few kilobytes can unpack to gigabytes (a PDF's content stream of
 * deflated spaces, an office document's part): PDF.js holds a whole unpacked stream in one buffer, outside the
 * JavaScript heap that a thread's own limits bound, and such a file would take the server down with it when the
 * kernel runs out of memory. So while files are read, the process's resident memory is looked at every
 * MEMORY_CHECK_MS: a file during which it grew by more than the budget is stopped with its thread and fails with
 * `invalid_file`. Memory is the process's, not a thread's, so a file that went over while others were read at the
 * same time is read again alone (nothing else starts meanwhile) before it is blamed.
 */
export class ThreadIndexer implements Indexer {
  private readonly size: number;
  private readonly timeBudgetMs: (bytes: number) => number;
  private readonly memoryBudget: number;
  private readonly rss: () => number;
  private readonly memoryCheckMs: number;
  private readonly idle: Worker[] = [];
  private readonly all = new Set<Worker>();
  /** Callers waiting for a thread; told `undefined` once the indexer is closed. */
  private readonly waiting: Array<(worker: Worker | undefined) => void> = [];
  private readonly jobs = new Set<Job>();
  /**
   * Threads handed out and not yet given back: what "nothing else is being read" counts. A thread is busy before its
   * file joins `jobs` and after it leaves them.
   */
  private busy = 0;
  /** Files to be read again alone, waiting for the others to end. */
  private readonly alone: Array<() => void> = [];
  /** A file is being read alone: no other starts. */
  private solo = false;
  private watch: NodeJS.Timeout | undefined;
  private nextId = 1;
  private closed = false;

  constructor(threads: number, options: ThreadIndexerOptions = {}) {
    this.size = Math.max(1, threads);
    this.timeBudgetMs = options.timeBudgetMs ?? indexingTimeBudgetMs;
    this.memoryBudget = options.memoryBudgetBytes ?? DEFAULT_INDEXING_MEMORY_BYTES;
    this.rss = options.rss ?? (() => process.memoryUsage.rss());
    this.memoryCheckMs = options.memoryCheckMs ?? MEMORY_CHECK_MS;
  }

  async index(input: {
    bytes: Buffer;
    filename: string;
    mimeType: string | null;
    chunking: StaticChunking;
  }): Promise<IndexResult> {
    const first = await this.read(input, false);
    if (first !== OVER_SHARED) return first;
    const again = await this.read(input, true);
    return again === OVER_SHARED ? this.tooMuchMemory() : again;
  }

  /** Stops the threads: the files they hold fail (their thread stopped), as do those waiting and any sent later. */
  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiting.splice(0)) waiter(undefined);
    for (const waiter of this.alone.splice(0)) waiter();
    const workers = [...this.all];
    this.all.clear();
    this.idle.length = 0;
    await Promise.all(workers.map((worker) => worker.terminate()));
  }

  /** One reading of the file on a thread (alone: once every other has ended, and none starting meanwhile). */
  private async read(
    input: { bytes: Buffer; filename: string; mimeType: string | null; chunking: StaticChunking },
    alone: boolean,
  ): Promise<IndexResult | typeof OVER_SHARED> {
    if (alone) await this.aloneTurn();
    const worker = this.closed ? undefined : await this.acquire(alone);
    if (!worker) {
      if (alone) this.endSolo();
      return { ok: false, code: 'server_error', message: 'The indexer is closed.' };
    }
    const id = this.nextId++;
    try {
      return await new Promise<IndexResult | typeof OVER_SHARED>((resolve) => {
        const onMessage = (response: IndexResponse) => {
          if (response.id !== id) return;
          cleanup();
          const { id: _id, ...result } = response;
          resolve(result);
        };
        /** The thread is done for: it leaves the pool (a waiter gets a new one), and the file gets `result`. */
        const stop = (result: IndexResult | typeof OVER_SHARED) => {
          cleanup();
          this.all.delete(worker);
          void worker.terminate();
          resolve(result);
        };
        const fail = (message: string) => stop({ ok: false, code: 'server_error', message });
        const onExit = (code: number) => fail(`The indexing thread stopped (exit code ${code}).`);
        const onError = (error: Error) => fail(`The indexing thread failed: ${error.message}`);
        const budgetMs = this.timeBudgetMs(input.bytes.length);
        const timer = setTimeout(
          () => fail(`Indexing the file took longer than ${Math.ceil(budgetMs / 1000)} s: it was stopped.`),
          budgetMs,
        );
        const job: Job = {
          filename: input.filename,
          baseline: this.rss(),
          shared: this.jobs.size > 0,
          stop: (result) => stop(job.shared ? OVER_SHARED : result),
        };
        for (const other of this.jobs) other.shared = true;
        this.jobs.add(job);
        this.watchMemory();
        const cleanup = () => {
          clearTimeout(timer);
          this.jobs.delete(job);
          worker.off('message', onMessage);
          worker.off('exit', onExit);
          worker.off('error', onError);
        };
        worker.on('message', onMessage);
        worker.on('exit', onExit);
        worker.on('error', onError);
        // A copy the thread owns: the caller's buffer may be a slice of a larger one.
        const bytes = new Uint8Array(input.bytes);
        const request: IndexRequest = {
          id,
          bytes,
          filename: input.filename,
          mimeType: input.mimeType,
          chunking: input.chunking,
        };
        worker.postMessage(request, [bytes.buffer]);
      });
    } finally {
      if (alone) this.endSolo();
      this.release(worker);
    }
  }

  /** Looks at the process's memory while files are read; stops each file during which it grew past the budget. */
  private watchMemory(): void {
    if (this.memoryBudget <= 0 || this.watch) return;
    this.watch = setInterval(() => {
      if (this.jobs.size === 0) {
        clearInterval(this.watch);
        this.watch = undefined;
        return;
      }
      const rss = this.rss();
      for (const job of [...this.jobs]) if (rss - job.baseline > this.memoryBudget) job.stop(this.tooMuchMemory());
    }, this.memoryCheckMs);
    this.watch.unref();
  }

  private tooMuchMemory(): IndexResult {
    const mib = Math.round(this.memoryBudget / (1024 * 1024));
    return {
      ok: false,
      code: 'invalid_file',
      message: `Reading the file took more than ${mib} MiB of memory (ASSISTD_INDEXING_MEMORY_MB): it was stopped. Files that unpack to far more than their size (compressed streams of a PDF or of an office document) cannot be indexed.`,
    };
  }

  /** Waits until this file may be read alone: no other being read, and none starting until endSolo. */
  private async aloneTurn(): Promise<void> {
    if (!this.solo && this.busy === 0 && this.alone.length === 0) {
      this.solo = true;
      return;
    }
    await new Promise<void>((resolve) => this.alone.push(resolve));
  }

  private endSolo(): void {
    this.solo = false;
    this.startWaiting();
  }

  /** Hands out what may start now: the next file read alone once nothing runs, else threads to waiting callers. */
  private startWaiting(): void {
    if (this.solo) return;
    if (this.alone.length > 0) {
      if (this.busy > 0) return;
      this.solo = true;
      this.alone.shift()!();
      return;
    }
    while (this.waiting.length > 0 && (this.idle.length > 0 || this.all.size < this.size)) {
      const next = this.waiting.shift()!;
      void this.acquire(false).then(next);
    }
  }

  private acquire(alone: boolean): Promise<Worker | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    // While a file waits to be read alone, or is, the others wait.
    if (!alone && (this.solo || this.alone.length > 0)) return new Promise((resolve) => this.waiting.push(resolve));
    const idle = this.idle.pop();
    if (idle) {
      this.busy++;
      return Promise.resolve(idle);
    }
    if (this.all.size < this.size) {
      const worker = startThread();
      worker.unref();
      this.all.add(worker);
      this.busy++;
      return Promise.resolve(worker);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(worker: Worker): void {
    this.busy--;
    // A thread that died is not kept: the next caller gets a new one.
    if (this.all.has(worker)) this.idle.push(worker);
    this.startWaiting();
  }
}
