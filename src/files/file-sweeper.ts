import type { Logger } from 'pino';
import { unixSeconds } from '../domain/clock.ts';
import { LoopFailures } from '../loop-failures.ts';
import type { BlobStore } from '../storage/blobs/blob-store.ts';
import type { FileRecords } from '../storage/store.ts';

/** How many rows one pass deletes at most; a pass that hits it is followed by another at once. */
const BATCH = 500;

/**
 * Removes what no request will: files past their `expires_at`, uploads whose process died (their lease lapsed),
 * and bytes left without a row by a crash. Runs at startup and then every `intervalMs` in every process; each
 * pass is decided by the database, so processes sweeping at once only repeat each other's deletes.
 */
export class FileSweeper {
  private readonly records: FileRecords;
  private readonly blobs: BlobStore;
  private readonly logger: Logger;
  /** A database away for a while fails every pass: said once, not at each (LoopFailures). */
  private readonly failures: LoopFailures;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(options: {
    records: FileRecords;
    blobs: BlobStore;
    logger: Logger;
    intervalMs: number;
    /** The clock (ms since the epoch); tests move it past an expiry. */
    now?: () => number;
  }) {
    this.records = options.records;
    this.blobs = options.blobs;
    this.logger = options.logger;
    this.failures = new LoopFailures(options.logger);
    this.intervalMs = options.intervalMs;
    this.now = options.now ?? Date.now;
  }

  start(): void {
    void this.run(true);
    this.timer = setInterval(() => void this.run(false), this.intervalMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass; `orphans` also scans the blob store for bytes without a row (at startup, or after a lapsed upload). */
  private run(orphans: boolean): Promise<void> {
    this.running ??= this.sweep(orphans)
      .then(
        () => this.failures.succeeded('sweeping files'),
        (error: unknown) => this.failures.failed('sweeping files', error),
      )
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  async sweep(orphans: boolean): Promise<void> {
    let removedRows = 0;
    for (;;) {
      const now = this.now();
      const ids = await this.records.deleteLapsedAndExpired(now, unixSeconds(now), BATCH);
      for (const id of ids) await this.blobs.delete(id);
      removedRows += ids.length;
      if (ids.length < BATCH) break;
    }
    let removedBlobs = 0;
    if (orphans || removedRows > 0) removedBlobs = await this.blobs.sweepOrphans((ids) => this.records.rowStates(ids));
    if (removedRows + removedBlobs > 0)
      this.logger.info({ files: removedRows, orphans: removedBlobs }, 'swept expired files and crashed uploads');
  }
}
