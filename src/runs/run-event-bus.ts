import { EventEmitter } from 'node:events';
import type { Message } from '../domain/objects.ts';
import { isRunEvent, type RunStreamEvent, runDeletedEvent } from '../domain/run-events.ts';
import { type Run, type RunStep, TERMINAL_STEP_STATUSES } from '../domain/runs.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { ClaimedRun, SignalChannel, StopRequest } from '../storage/store.ts';

export type RunEventListener = (runId: string | undefined, event: RunStreamEvent) => void;

/**
 * What a run's current model turn (or server-side call) shows so far: for a stream that attaches mid-turn. Its step
 * and message go on changing as the turn goes on, by fields replaced, never changed deeper in place: a shallow copy
 * of each is what they are at that moment (RunEventBus.liveTurn).
 */
export interface LiveTurn {
  step: RunStep | undefined;
  message: Message | undefined;
}

export interface RunEventBusOptions {
  /** Signals to and from other processes on the same database (absent: this process is alone). */
  signals?: SignalChannel | undefined;
  /** Reads a run named by another process's signal. */
  findRun?: ((runId: string) => Promise<ClaimedRun | undefined>) | undefined;
  /** Told of every run event published here: each status change is published once, by the process committing it. */
  metrics?: Metrics | undefined;
}

/**
 * Notifications about runs. Run events (run-events.ts) are published per thread — a thread has at most one active
 * run, and a stream subscribes to its thread before the run it starts has an id. The bus only informs: the database
 * stays the truth, so a missed wake-up only delays work.
 *
 * Across processes (PostgreSQL) only small signals travel (storage's SignalChannel): work is available, stop this
 * run, this run changed. A run change from elsewhere is read back from the database and published here as
 * `thread.run.<status>`, which is what held polls and re-attached streams need; the fine-grained events of a turn
 * (steps, messages, deltas) stay on the process executing it — which is why a streamed run executes on the process
 * holding its stream.
 */
export class RunEventBus {
  private readonly emitter = new EventEmitter();
  private readonly live = new Map<string, LiveTurn>();
  private readonly writes = new Map<string, Promise<void>>();
  private readonly signals: SignalChannel | undefined;
  private readonly metrics: Metrics | undefined;

  constructor({ signals, findRun, metrics }: RunEventBusOptions = {}) {
    // Every stream, long poll and execution listens; there is no leak to warn about.
    this.emitter.setMaxListeners(0);
    this.signals = signals;
    this.metrics = metrics;
    signals?.listen((signal) => {
      if (signal.kind === 'work') this.emitter.emit('work');
      else if (signal.kind === 'stop') this.emitter.emit('stop', signal.runId, signal.reason);
      else if (signal.kind === 'thread-deleted') this.emitter.emit('thread-deleted', signal.threadId);
      // Read the run back only if someone here follows it (a held poll, a stream, /events).
      else if (this.followed(signal.threadId, signal.runId))
        void findRun?.(signal.runId)
          .then((found) => {
            if (found)
              this.emitLocally(found.run.thread_id, found.run.id, {
                event: `thread.run.${found.run.status}`,
                data: found.run,
              });
            // Followed here and gone: its thread was deleted (runsDeleted, on the process that deleted it).
            else this.emitLocally(signal.threadId, signal.runId, runDeletedEvent(signal.threadId, signal.runId));
          })
          .catch(() => {}); // a missed change is found by the next re-read
    });
  }

  /**
   * Whether other processes may share the database (PostgreSQL): their changes come as signals, which can be lost.
   * `othersNow` says whether any listens at present (a process alone on its database hears of every change here).
   */
  get acrossProcesses(): boolean {
    return this.signals !== undefined;
  }

  get othersNow(): boolean {
    return this.signals?.othersListening ?? false;
  }

  publish(threadId: string, runId: string | undefined, event: RunStreamEvent): void {
    this.publishAll(threadId, runId, [event]);
  }

  /**
   * Publishes the events of one commit, in order. Other processes get one signal for the lot, if any of them
   * changed the run's status: they read the run back, which shows the last change.
   */
  publishAll(threadId: string, runId: string | undefined, events: readonly RunStreamEvent[]): void {
    for (const event of events) {
      // A live turn shows a step in progress: once that step has ended, nothing is live until the next turn (or
      // server-side call) shows its own. Here, so that it holds for every way a step ends, and from the moment it does.
      if (runId !== undefined && endsStep(event) && this.live.get(runId)?.step?.id === event.data.id)
        this.live.delete(runId);
      this.emitLocally(threadId, runId, event);
      if (this.metrics && isRunEvent(event)) this.metrics.runEvent(event.event, event.data);
    }
    if (runId !== undefined && events.some(isRunEvent)) this.signals?.send({ kind: 'run', runId, threadId });
  }

  private followed(threadId: string, runId: string): boolean {
    return this.emitter.listenerCount(`thread:${threadId}`) + this.emitter.listenerCount(`run:${runId}`) > 0;
  }

  private emitLocally(threadId: string, runId: string | undefined, event: RunStreamEvent): void {
    this.emitter.emit(`thread:${threadId}`, runId, event);
    if (runId !== undefined && isRunEvent(event)) this.emitter.emit(`run:${runId}`, event.data);
  }

  subscribeThread(threadId: string, listener: RunEventListener): () => void {
    this.emitter.on(`thread:${threadId}`, listener);
    return () => this.emitter.off(`thread:${threadId}`, listener);
  }

  /** There is work for a worker (a run was queued or tool outputs were submitted). */
  workAvailable(): void {
    this.emitter.emit('work');
    this.signals?.send({ kind: 'work' });
  }

  /**
   * The thread was deleted, and these runs with it: their executions stop, wherever they are, and whoever follows
   * them (a stream, /events) gets an `error` event and its end, here and (through their signal) in other processes.
   * Then what this process keeps for the thread goes (onThreadDeleted).
   */
  runsDeleted(threadId: string, runIds: readonly string[]): void {
    for (const runId of runIds) {
      this.stopRequested(runId, 'delete');
      this.emitLocally(threadId, runId, runDeletedEvent(threadId, runId));
      this.signals?.send({ kind: 'run', runId, threadId });
    }
    this.emitter.emit('thread-deleted', threadId);
    this.signals?.send({ kind: 'thread-deleted', threadId });
  }

  /** A cancel, an expiry or a deletion wants the execution of this run to stop now. */
  stopRequested(runId: string, reason: StopRequest): void {
    this.emitter.emit('stop', runId, reason);
    this.signals?.send({ kind: 'stop', runId, reason });
  }

  onWorkAvailable(listener: () => void): () => void {
    this.emitter.on('work', listener);
    return () => this.emitter.off('work', listener);
  }

  onStopRequested(listener: (runId: string, reason: StopRequest) => void): () => void {
    this.emitter.on('stop', listener);
    return () => this.emitter.off('stop', listener);
  }

  /** A thread was deleted, through this process or another on the same database. */
  onThreadDeleted(listener: (threadId: string) => void): () => void {
    this.emitter.on('thread-deleted', listener);
    return () => this.emitter.off('thread-deleted', listener);
  }

  /**
   * Resolves with the run's next status change, or undefined after `timeoutMs` or on any of `signals`. Each signal is
   * listened to and let go of here, rather than combined with AbortSignal.any: a long-lived one (the server's
   * shutdown signal) would keep every combination made with it for as long as it lives (nodejs/node#55351).
   */
  nextChange(runId: string, timeoutMs: number, signals: readonly AbortSignal[] = []): Promise<Run | undefined> {
    return new Promise((resolve) => {
      const event = `run:${runId}`;
      const done = (run: Run | undefined) => {
        clearTimeout(timer);
        this.emitter.off(event, done);
        for (const signal of signals) signal.removeEventListener('abort', onAbort);
        resolve(run);
      };
      const onAbort = () => done(undefined);
      const timer = setTimeout(() => done(undefined), timeoutMs);
      this.emitter.on(event, done);
      for (const signal of signals) signal.addEventListener('abort', onAbort);
      if (signals.some((signal) => signal.aborted)) done(undefined);
    });
  }

  /**
   * A write of what a run's turn has begun (its message, its step), announced before it lands (RunExecutor.
   * storeBegun): a read of the thread's messages or steps in this process waits for it (`written`), so that what an
   * event announced is there to read. Other processes may read before it lands, for the time of the write.
   */
  writing(threadId: string, write: Promise<void>): void {
    this.writes.set(threadId, write);
    const done = () => {
      if (this.writes.get(threadId) === write) this.writes.delete(threadId);
    };
    write.then(done, done);
  }

  /** The thread's write in flight (`writing`), if any. */
  written(threadId: string): Promise<void> | undefined {
    return this.writes.get(threadId);
  }

  /** The executing turn of a run, kept by the executor while it streams (in this process). */
  setLiveTurn(runId: string, turn: LiveTurn | undefined): void {
    if (turn) this.live.set(runId, turn);
    else this.live.delete(runId);
  }

  /**
   * The run's executing turn as it is now: copies, which the events published from now on extend (the turn's own
   * objects go on changing, and read later would already hold some of them).
   */
  liveTurn(runId: string): LiveTurn | undefined {
    const live = this.live.get(runId);
    if (!live) return undefined;
    const { step, message } = live;
    return { step: step && { ...step }, message: message && { ...message } };
  }
}

const STEP_ENDS: ReadonlySet<string> = new Set(
  [...TERMINAL_STEP_STATUSES].map((status) => `thread.run.step.${status}`),
);

function endsStep(event: RunStreamEvent): event is RunStreamEvent & { data: RunStep } {
  return STEP_ENDS.has(event.event);
}
