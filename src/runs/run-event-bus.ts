import { EventEmitter } from 'node:events';
import type { Run } from '../domain/runs.ts';

/**
 * In-process notifications about runs, published after each committed change: they only nudge (wake a worker,
 * end a long poll, abort an execution); the database stays the truth, so a missed notification only delays.
 * A multi-process deployment adds a transport (e.g. PostgreSQL LISTEN/NOTIFY) behind the same methods.
 */
export class RunEventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Every long poll and every executing run listens; there is no leak to warn about.
    this.emitter.setMaxListeners(0);
  }

  /** A run changed status (or was created): wakes long polls on it. */
  runChanged(run: Run): void {
    this.emitter.emit(`run:${run.id}`, run);
  }

  /** There is work for a worker (a run was queued or tool outputs were submitted). */
  workAvailable(): void {
    this.emitter.emit('work');
  }

  /** A cancel or an expiry wants the execution of this run to stop now. */
  stopRequested(runId: string, reason: 'cancel' | 'expire'): void {
    this.emitter.emit('stop', runId, reason);
  }

  onWorkAvailable(listener: () => void): () => void {
    this.emitter.on('work', listener);
    return () => this.emitter.off('work', listener);
  }

  onStopRequested(listener: (runId: string, reason: 'cancel' | 'expire') => void): () => void {
    this.emitter.on('stop', listener);
    return () => this.emitter.off('stop', listener);
  }

  /** Resolves with the run's next change, or undefined after `timeoutMs`. */
  nextChange(runId: string, timeoutMs: number, signal?: AbortSignal): Promise<Run | undefined> {
    return new Promise((resolve) => {
      const event = `run:${runId}`;
      const done = (run: Run | undefined) => {
        clearTimeout(timer);
        this.emitter.off(event, done);
        signal?.removeEventListener('abort', onAbort);
        resolve(run);
      };
      const onAbort = () => done(undefined);
      const timer = setTimeout(() => done(undefined), timeoutMs);
      this.emitter.on(event, done);
      signal?.addEventListener('abort', onAbort);
    });
  }
}
