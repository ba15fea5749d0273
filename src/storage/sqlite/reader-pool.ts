import type { Worker } from 'node:worker_threads';
import type { CompiledQuery, QueryResult } from 'kysely';
import { startModuleThread } from '../../worker-thread.ts';
import type { SearchReader } from '../sql/capabilities.ts';
import { unavailableIfFullOrBusy } from './dialect.ts';

export interface ReaderThreadData {
  /** The database file. */
  file: string;
  /** Whether to load sqlite-vec, as the store's connection did (its vec0 tables need it). */
  sqliteVec: boolean;
}

export interface ReaderRequest {
  sql: string;
  parameters: readonly unknown[];
}

export type ReaderResponse = { rows: unknown[] } | { error: { message: string; code: string | undefined } };

interface Job extends ReaderRequest {
  resolve(result: QueryResult<unknown>): void;
  reject(error: Error): void;
}

/** A thread running reader-thread.ts. */
function startThread(workerData: ReaderThreadData): Worker {
  return startModuleThread(import.meta.url, './reader-thread', { workerData });
}

/**
 * The SQLite store's reader threads: the searches' heavy read-only statements (SqlCapabilities.searchReader) run
 * here, each thread with its own read-only connection to the database file (reader-thread.ts), so that the event
 * loop goes on while they run. better-sqlite3 runs a statement synchronously on the thread that calls it. On the
 * store's connection (test/storage/sqlite-reader-pool.test.ts, 20,000 chunks, a loaded 2-core machine), 8 keyword
 * searches at once of a word in every chunk held the event loop 210–440 ms, 16 sqlite-vec KNN searches 90–280 ms,
 * a load of the vector cache 130–180 ms; here 3–14, 5–8 and 15–40 ms. At bench:search's 100,000 chunks one keyword
 * search of a common word took ~350 ms.
 *
 * A statement sees what was committed before it began (WAL: readers do not wait for the writer, nor it for them),
 * as it would on the store's connection once that connection's transaction in flight — if any — had committed.
 * The searches never run inside a transaction of the store, and see no more than the store's committed state.
 * A round trip costs ~0.1 ms; starting a thread ~0.1 s built (~0.3 s from source, tsx compiling in the thread).
 *
 * Threads start on first use, up to `threads`, each running one statement at a time; statements wait in order for
 * a free thread. A thread that dies fails its statement with an error saying so, and the next statement starts a
 * new one. close() fails what waits and ends the threads, their connections closing with them; a thread cannot be
 * stopped inside a statement, so its end waits for the statement in flight (a search's length).
 */
export class SqliteReaderPool implements SearchReader {
  private readonly data: ReaderThreadData;
  private readonly size: number;
  private readonly queue: Job[] = [];
  private readonly idle: Worker[] = [];
  /** Every live thread, with the statement it runs (undefined while idle). */
  private readonly running = new Map<Worker, Job | undefined>();
  private closed = false;

  constructor(data: ReaderThreadData, threads: number) {
    this.data = data;
    this.size = Math.max(1, threads);
  }

  executeQuery<R>(query: CompiledQuery<R>): Promise<QueryResult<R>> {
    if (this.closed) return Promise.reject(new Error('The store is closed.'));
    return new Promise<QueryResult<R>>((resolve, reject) => {
      const job: Job = { sql: query.sql, parameters: query.parameters, resolve: resolve as Job['resolve'], reject };
      this.queue.push(job);
      this.dispatch();
    });
  }

  /** The threads alive (exposed for tests, which end one to see its statement fail and the pool go on). */
  get threads(): Worker[] {
    return [...this.running.keys()];
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new Error('The store is closed.'));
    await Promise.all([...this.running.keys()].map((worker) => worker.terminate()));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const worker = this.idle.pop() ?? (this.running.size < this.size ? this.start() : undefined);
      if (!worker) return;
      const job = this.queue.shift()!;
      const request: ReaderRequest = { sql: job.sql, parameters: job.parameters };
      try {
        worker.postMessage(request);
      } catch (error) {
        this.idle.push(worker); // parameters that cannot be sent (structured clone): the thread never saw them
        job.reject(error as Error);
        continue;
      }
      this.running.set(worker, job);
      worker.ref(); // a statement in flight keeps the process alive, as one on the store's connection would
    }
  }

  private start(): Worker {
    const worker = startThread(this.data);
    worker.unref(); // an idle reader does not keep the process alive; close() ends it
    this.running.set(worker, undefined);
    worker.on('message', (response: ReaderResponse) => {
      const job = this.running.get(worker);
      this.running.set(worker, undefined);
      this.idle.push(worker);
      worker.unref();
      if (job) settle(job, response);
      this.dispatch();
    });
    worker.on('error', (error) => this.lost(worker, `failed: ${error.message}`));
    worker.on('exit', (code) => this.lost(worker, `stopped (exit code ${code})`));
    return worker;
  }

  /** A thread died (an 'error' is followed by its 'exit': the first counts). */
  private lost(worker: Worker, why: string): void {
    if (!this.running.has(worker)) return;
    const job = this.running.get(worker);
    this.running.delete(worker);
    const at = this.idle.indexOf(worker);
    if (at >= 0) this.idle.splice(at, 1);
    job?.reject(new Error(this.closed ? 'The store is closed.' : `A SQLite reader thread ${why}.`));
    if (!this.closed) this.dispatch();
  }
}

function settle(job: Job, response: ReaderResponse): void {
  if ('error' in response) {
    const { message, code } = response.error;
    // A lock another process held past the thread's busy timeout is a 503, as on the store's connection.
    job.reject(unavailableIfFullOrBusy(Object.assign(new Error(message), code === undefined ? {} : { code })) as Error);
    return;
  }
  // Structured clone turns the Buffers better-sqlite3 gives for blobs into Uint8Arrays: back to Buffers (no copy),
  // so that rows read the same as on the store's connection.
  for (const row of response.rows as Array<Record<string, unknown>>)
    for (const key in row) {
      const value = row[key];
      if (value instanceof Uint8Array) row[key] = Buffer.from(value.buffer, value.byteOffset, value.length);
    }
  job.resolve({ rows: response.rows });
}
