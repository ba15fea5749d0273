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

/**
 * Extraction and chunking on worker threads (index-thread.ts), so that no file, however large or odd, blocks the
 * event loop. Threads start on first use; a thread that dies, or takes longer than its file's time budget, fails
 * the file it held with `server_error` and is replaced.
 */
export class ThreadIndexer implements Indexer {
  private readonly size: number;
  private readonly timeBudgetMs: (bytes: number) => number;
  private readonly idle: Worker[] = [];
  private readonly all = new Set<Worker>();
  /** Callers waiting for a thread; told `undefined` once the indexer is closed. */
  private readonly waiting: Array<(worker: Worker | undefined) => void> = [];
  private nextId = 1;
  private closed = false;

  constructor(threads: number, options: { timeBudgetMs?: (bytes: number) => number } = {}) {
    this.size = Math.max(1, threads);
    this.timeBudgetMs = options.timeBudgetMs ?? indexingTimeBudgetMs;
  }

  async index(input: {
    bytes: Buffer;
    filename: string;
    mimeType: string | null;
    chunking: StaticChunking;
  }): Promise<IndexResult> {
    const worker = await this.acquire();
    if (!worker) return { ok: false, code: 'server_error', message: 'The indexer is closed.' };
    const id = this.nextId++;
    try {
      return await new Promise<IndexResult>((resolve) => {
        const onMessage = (response: IndexResponse) => {
          if (response.id !== id) return;
          cleanup();
          const { id: _id, ...result } = response;
          resolve(result);
        };
        /** The thread is done for: it leaves the pool (a waiter gets a new one), and the file fails. */
        const fail = (message: string) => {
          cleanup();
          this.all.delete(worker);
          void worker.terminate();
          resolve({ ok: false, code: 'server_error', message });
        };
        const onExit = (code: number) => fail(`The indexing thread stopped (exit code ${code}).`);
        const onError = (error: Error) => fail(`The indexing thread failed: ${error.message}`);
        const budgetMs = this.timeBudgetMs(input.bytes.length);
        const timer = setTimeout(
          () => fail(`Indexing the file took longer than ${Math.ceil(budgetMs / 1000)} s: it was stopped.`),
          budgetMs,
        );
        const cleanup = () => {
          clearTimeout(timer);
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
      this.release(worker);
    }
  }

  /** Stops the threads: the files they hold fail (their thread stopped), as do those waiting and any sent later. */
  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiting.splice(0)) waiter(undefined);
    const workers = [...this.all];
    this.all.clear();
    this.idle.length = 0;
    await Promise.all(workers.map((worker) => worker.terminate()));
  }

  private acquire(): Promise<Worker | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const idle = this.idle.pop();
    if (idle) return Promise.resolve(idle);
    if (this.all.size < this.size) {
      const worker = startThread();
      worker.unref();
      this.all.add(worker);
      return Promise.resolve(worker);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(worker: Worker): void {
    if (!this.all.has(worker)) {
      // It died: a waiter gets a new thread instead.
      const next = this.waiting.shift();
      if (next) void this.acquire().then(next);
      return;
    }
    const next = this.waiting.shift();
    if (next) next(worker);
    else this.idle.push(worker);
  }
}
