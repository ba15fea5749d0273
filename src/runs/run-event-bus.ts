import { EventEmitter } from 'node:events';
import type { Message } from '../domain/objects.ts';
import type { RunStreamEvent } from '../domain/run-events.ts';
import type { Run, RunStep } from '../domain/runs.ts';

export type RunEventListener = (runId: string | undefined, event: RunStreamEvent) => void;

/** What a run's current model turn has produced so far: for a stream that attaches mid-turn. */
export interface LiveTurn {
  step: RunStep | undefined;
  message: Message | undefined;
}

/**
 * In-process notifications about runs. Run events (run-events.ts) are published per thread — a thread has at most
 * one active run, and a stream subscribes to its thread before the run it starts has an id. The bus only informs:
 * the database stays the truth, so a missed wake-up only delays work. A multi-process deployment adds a transport
 * (e.g. PostgreSQL LISTEN/NOTIFY) behind the same methods.
 */
export class RunEventBus {
  private readonly emitter = new EventEmitter();
  private readonly live = new Map<string, LiveTurn>();

  constructor() {
    // Every stream, long poll and execution listens; there is no leak to warn about.
    this.emitter.setMaxListeners(0);
  }

  publish(threadId: string, runId: string | undefined, event: RunStreamEvent): void {
    this.emitter.emit(`thread:${threadId}`, runId, event);
    if (runId !== undefined && event.event.startsWith('thread.run.') && !event.event.startsWith('thread.run.step.'))
      this.emitter.emit(`run:${runId}`, event.data as Run);
  }

  /** Publishes `thread.run.<status>` for a run whose status was just committed. */
  runChanged(run: Run): void {
    this.publish(run.thread_id, run.id, { event: `thread.run.${run.status}`, data: run });
  }

  subscribeThread(threadId: string, listener: RunEventListener): () => void {
    this.emitter.on(`thread:${threadId}`, listener);
    return () => this.emitter.off(`thread:${threadId}`, listener);
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

  /** Resolves with the run's next status change, or undefined after `timeoutMs` or on `signal`. */
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

  /** The executing turn of a run, kept by the executor while it streams (in this process). */
  setLiveTurn(runId: string, turn: LiveTurn | undefined): void {
    if (turn) this.live.set(runId, turn);
    else this.live.delete(runId);
  }

  liveTurn(runId: string): LiveTurn | undefined {
    return this.live.get(runId);
  }
}
