import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { unixSeconds } from '../domain/clock.ts';
import type { StoredFile } from '../domain/files.ts';
import { newId } from '../domain/ids.ts';
import { LoopFailures } from '../loop-failures.ts';
import type { Embedder } from '../providers/embedder.ts';
import {
  type ChunkVectors,
  type ClaimedIngestion,
  DatabaseUnavailable,
  type Scope,
  type VectorStoreRecords,
  whileUnavailable,
} from '../storage/store.ts';
import type { Indexer } from '../vector-stores/indexer.ts';
import { every } from './periodic.ts';
import { Wakeup } from './wakeup.ts';

/** Tries of a file's commit before the file fails, the waits between them growing by this much. */
const COMMIT_ATTEMPTS = 3;
const COMMIT_RETRY_MS = 500;

export interface IngestionWorkerOptions {
  records: VectorStoreRecords;
  /** The bytes of a file of the Files API, or undefined once it was deleted. */
  readFile(scope: Scope, fileId: string): Promise<{ file: StoredFile; bytes: Buffer } | undefined>;
  indexer: Indexer;
  /** Computes the chunks' vectors when set (an embedding model is configured). */
  embedder?: Embedder | undefined;
  logger: Logger;
  /** Files indexed at once. */
  concurrency: number;
  leaseMs: number;
  /** How often to look for work nobody announced (another process's files, lapsed leases), and to expire stores. */
  pollMs?: number;
}

/** An ingestion this worker runs: its claim, and the lease holder its writes are fenced on (one per claim). */
interface Ingestion extends ClaimedIngestion {
  holder: string;
  /** Its lease was found lost (the file cancelled, removed, added again, or taken over): its work is wasted. */
  lost: boolean;
}

/**
 * Indexes vector-store files: claims those in progress under a lease (renewed while it works), reads the file,
 * extracts and chunks it on the indexer's threads, embeds the chunks (with an embedding model, unless the store
 * holds another model's vectors), and writes the chunks and their vectors with the file's completion in one fenced
 * commit. A file whose worker died is claimed again once the lease lapses and indexed from scratch; a file
 * cancelled or removed meanwhile makes the commit a no-op. It also expires vector stores past `expires_at`.
 */
export class IngestionWorker {
  readonly id = `ingest_${hostname()}_${process.pid}_${newId('file').slice(-8)}`;
  private readonly options: Required<Omit<IngestionWorkerOptions, 'embedder'>> & { embedder: Embedder | undefined };
  /** Aborted by close(): stops the embeddings in flight. */
  private readonly closing = new AbortController();
  private readonly failures: LoopFailures;
  /**
   * The ingestions running. A file added again while it is being indexed is claimed again, here too: its earlier
   * ingestion runs on until it finds its lease lost, which its own holder (not this worker's id) makes sure of.
   */
  private readonly active = new Map<Ingestion, Promise<void>>();
  private claims = 0;
  private loopDone: Promise<void> | undefined;
  private stopping = false;
  private readonly wakeup = new Wakeup();
  private timers: NodeJS.Timeout[] = [];
  /** The pass of lease renewals under way, if any: close() waits for it before it hands the files back. */
  private renewing: Promise<void> | undefined;

  constructor(options: IngestionWorkerOptions) {
    this.options = { pollMs: 1000, ...options, embedder: options.embedder };
    this.failures = new LoopFailures(options.logger);
  }

  start(): void {
    const { leaseMs, pollMs } = this.options;
    this.timers = [
      every(Math.max(100, Math.floor(leaseMs / 3)), () => {
        this.renewing = this.renewLeases();
        return this.renewing;
      }),
      every(pollMs, () => this.expireStores()),
    ];
    this.loopDone = this.options.concurrency > 0 ? this.loop() : Promise.resolve();
  }

  /** Files were added here: claim them now rather than at the next poll. */
  wake(): void {
    this.wakeup.wake();
  }

  /**
   * Stops claiming, stops the ingestions running (a commit under way ends first) and hands their files back: their
   * leases end now, so that the next worker, or this server started again, indexes them at once.
   */
  async close(): Promise<void> {
    this.stopping = true;
    this.closing.abort(new Error('the worker is closing'));
    for (const timer of this.timers) clearInterval(timer);
    this.wake();
    await this.loopDone;
    const running = [...this.active];
    await this.options.indexer.close();
    await Promise.all(running.map(([, done]) => done));
    // A renewal answered after the hand-back would lease the file again, for a worker that is gone.
    await this.renewing;
    await Promise.all(running.map(([claim]) => this.handBack(claim)));
  }

  /** Ends a claim's lease (a no-op once its file is completed, failed, or claimed by another holder). */
  private async handBack({ scope, vectorStoreId, fileId, holder }: Ingestion): Promise<void> {
    try {
      await this.options.records.renewIngestion(scope, vectorStoreId, fileId, holder, 0);
    } catch (error) {
      // Its lease lapses instead.
      this.options.logger.warn({ err: error, fileId }, 'could not hand back a file being indexed');
    }
  }

  private async loop(): Promise<void> {
    const { records, concurrency, leaseMs, pollMs } = this.options;
    while (!this.stopping) {
      const free = concurrency - this.active.size;
      let claimed: ClaimedIngestion[] = [];
      if (free > 0) {
        const holder = `${this.id}.${++this.claims}`;
        try {
          const now = Date.now();
          claimed = await records.claimIngestions(holder, now, now + leaseMs, free);
          this.failures.succeeded('claiming files to index');
        } catch (error) {
          this.failures.failed('claiming files to index', error);
        }
        for (const claim of claimed) this.launch({ ...claim, holder, lost: false });
      }
      if (free > 0 && claimed.length === free) continue;
      await this.wakeup.sleep(pollMs);
    }
    // The ingestions running are stopped by close(); those of a process that dies are redone once their leases lapse.
  }

  private launch(ingestion: Ingestion): void {
    const done = this.ingest(ingestion)
      .catch((error: unknown) => {
        const { logger } = this.options;
        // The file stays in progress: its lease lapses, and a worker indexes it again once the database is back.
        if (error instanceof DatabaseUnavailable)
          logger.warn({ err: error.message, fileId: ingestion.fileId }, 'indexing is left for another attempt');
        else logger.error({ err: error, fileId: ingestion.fileId }, 'indexing failed');
      })
      .finally(() => {
        this.active.delete(ingestion);
        this.wake();
      });
    this.active.set(ingestion, done);
  }

  private async ingest(claim: Ingestion): Promise<void> {
    const { records, readFile, indexer, logger } = this.options;
    const { scope, vectorStoreId, fileId, holder } = claim;
    const fail = (code: 'server_error' | 'unsupported_file' | 'invalid_file', message: string) =>
      records.failIngestion(scope, vectorStoreId, fileId, holder, { code, message });
    const over = () => this.stopping || claim.lost;
    let found: Awaited<ReturnType<typeof readFile>>;
    try {
      found = await readFile(scope, fileId);
    } catch (error) {
      if (error instanceof DatabaseUnavailable) throw error;
      logger.error({ err: error, fileId }, 'reading a file to index failed');
      await fail('server_error', 'The file could not be read from storage.');
      return;
    }
    if (!found) {
      await fail('invalid_file', `No file found with id '${fileId}'.`);
      return;
    }
    if (over()) return;
    const result = await indexer.index({
      bytes: found.bytes,
      filename: found.file.filename,
      mimeType: found.file.mime_type,
      chunking: claim.chunking,
    });
    if (over()) return;
    if (!result.ok) {
      if (result.code === 'server_error') logger.error({ fileId, reason: result.message }, 'indexing a file failed');
      await fail(result.code, result.message);
      return;
    }
    let vectors: ChunkVectors | undefined;
    try {
      vectors = await this.embed(
        claim,
        result.chunks.map((chunk) => chunk.text),
      );
    } catch (error) {
      if (over()) return;
      if (error instanceof DatabaseUnavailable) throw error;
      const reason = error instanceof Error ? error.message : String(error);
      logger.error({ fileId, vectorStoreId, reason }, "embedding a file's chunks failed");
      await fail('server_error', `Computing the embeddings of the file's chunks failed: ${reason}`);
      return;
    }
    if (over()) return;
    let committed = false;
    for (let attempt = 1; ; attempt++) {
      try {
        // A database that went away is waited for as long as the lease lasts: the file's chunks and vectors are
        // kept rather than made again. Trying again is safe: the commit is fenced on the lease.
        committed = await whileUnavailable(
          () =>
            records.completeIngestion(scope, vectorStoreId, fileId, holder, result.chunks, result.usageBytes, vectors),
          Date.now() + this.options.leaseMs,
          this.closing.signal,
        );
        break;
      } catch (error) {
        if (error instanceof DatabaseUnavailable) throw error;
        // A commit the database refuses every time (text it cannot store) would otherwise be redone from scratch at
        // every lapse of the lease, the file in progress forever: after a few tries, the file fails.
        logger.error({ err: error, fileId, vectorStoreId, attempt }, "storing an indexed file's chunks failed");
        if (attempt === COMMIT_ATTEMPTS) {
          await fail('server_error', "The file's chunks could not be stored.");
          return;
        }
        await sleep(COMMIT_RETRY_MS * attempt);
        if (over()) return;
      }
    }
    if (!committed) logger.info({ fileId, vectorStoreId }, 'an indexed file was cancelled, removed or taken over');
  }

  /**
   * The chunks' vectors, or undefined: without an embedding model, for a file without chunks, or for a store that
   * holds another model's vectors (its files stay keyword-only; completeIngestion checks again, in its commit).
   */
  private async embed(claim: ClaimedIngestion, texts: string[]): Promise<ChunkVectors | undefined> {
    const { embedder, records } = this.options;
    if (!embedder || texts.length === 0) return undefined;
    const held = await records.storeEmbedding(claim.scope, claim.vectorStoreId);
    if (held && held.model !== embedder.model) return undefined;
    const vectors = await embedder.embed(texts, this.closing.signal);
    return { model: embedder.model, dimensions: vectors[0]!.length, vectors };
  }

  private async renewLeases(): Promise<void> {
    const { records, leaseMs } = this.options;
    for (const claim of [...this.active.keys()]) {
      if (this.stopping) return; // close() hands the files back
      try {
        const { scope, vectorStoreId, fileId, holder } = claim;
        if (!(await records.renewIngestion(scope, vectorStoreId, fileId, holder, Date.now() + leaseMs)))
          claim.lost = true;
        this.failures.succeeded('renewing indexing leases');
      } catch (error) {
        this.failures.failed('renewing indexing leases', error, { fileId: claim.fileId });
      }
    }
  }

  private async expireStores(): Promise<void> {
    try {
      const expired = await this.options.records.expireVectorStores(unixSeconds(), 500);
      if (expired.length > 0) this.options.logger.info({ vectorStores: expired }, 'vector stores expired');
      this.failures.succeeded('expiring vector stores');
    } catch (error) {
      this.failures.failed('expiring vector stores', error);
    }
  }
}
