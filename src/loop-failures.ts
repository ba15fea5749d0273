import type { Logger } from 'pino';
import { DatabaseUnavailable, StorageFull } from './storage/store.ts';

/**
 * How a background loop (a worker's claims, lease renewals and sweeps; the file sweeper) says that a turn failed. A
 * database that is away or full fails every turn of every loop, several times a second, until it is back: that is
 * said once per loop, with its reason (again if the reason changes), and once more when the loop's turn succeeds
 * again. Any other failure is an error with its stack, every time.
 */
export class LoopFailures {
  private readonly logger: Logger;
  /** The loops whose last turn failed for want of the database, and why: it was away, or full. */
  private readonly waiting = new Map<string, 'away' | 'full'>();

  constructor(logger: Logger) {
    this.logger = logger;
  }

  /** `loop` (e.g. `claiming runs`) failed with `error`; `fields` go on its log line. */
  failed(loop: string, error: unknown, fields: Record<string, unknown> = {}): void {
    if (!(error instanceof DatabaseUnavailable)) {
      this.logger.error({ ...fields, err: error }, `${loop} failed`);
      return;
    }
    const why = error instanceof StorageFull ? 'full' : 'away';
    if (this.waiting.get(loop) === why) return;
    this.waiting.set(loop, why);
    // A full disk needs its operator; a database away mostly comes back by itself.
    const level = why === 'full' ? 'error' : 'warn';
    this.logger[level](
      { ...fields, reason: error.message },
      `${loop} failed; it goes on trying, said again once it works`,
    );
  }

  /** A turn of `loop` succeeded. */
  succeeded(loop: string): void {
    if (this.waiting.delete(loop)) this.logger.info(`${loop} works again`);
  }
}
