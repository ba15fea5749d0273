import type { Run } from '../domain/runs.ts';

/** The most runs one statement reads. */
const BATCH = 500;

/**
 * The runs that streams in this process follow, re-read together. Across processes (PostgreSQL) the word of a change
 * made elsewhere can be lost (a LISTEN connection that reconnected, a process that died before its NOTIFY), so each
 * stream is also told what its run is now, every `intervalMs`, and ends with the end it finds. One read of every
 * followed run per interval rather than one per stream: 1,000 streams cost one statement every two seconds, not 500
 * a second. And none while no other process listens on the database: a process alone hears of every change.
 */
export class FollowedRuns {
  private readonly followers = new Map<string, Set<(run: Run | undefined) => void>>();
  private timer: NodeJS.Timeout | undefined;
  private reading = false;

  /**
   * `read` finds runs by id alone (Store.findRuns): a follower found its run in its own scope before following it,
   * and run ids are unique across projects.
   */
  constructor(
    private readonly read: (runIds: readonly string[]) => Promise<Run[]>,
    private readonly othersNow: () => boolean,
    private readonly intervalMs: number,
  ) {}

  /** Calls `listener` with the run as read (undefined: gone with its thread) until the returned function is called. */
  follow(runId: string, listener: (run: Run | undefined) => void): () => void {
    const own = this.followers.get(runId) ?? new Set();
    this.followers.set(runId, own);
    own.add(listener);
    this.timer ??= setInterval(() => void this.recheck(), this.intervalMs).unref();
    return () => {
      own.delete(listener);
      if (own.size === 0 && this.followers.get(runId) === own) this.followers.delete(runId);
      if (this.followers.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  private async recheck(): Promise<void> {
    if (this.reading || !this.othersNow()) return;
    this.reading = true;
    try {
      const ids = [...this.followers.keys()];
      for (let at = 0; at < ids.length; at += BATCH) {
        const batch = ids.slice(at, at + BATCH);
        const found = new Map((await this.read(batch)).map((run) => [run.id, run]));
        for (const id of batch) for (const listener of this.followers.get(id) ?? []) listener(found.get(id));
      }
    } catch {
      // A database away: the next read, or the signal, will do.
    } finally {
      this.reading = false;
    }
  }
}
