import { hostname } from 'node:os';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import { unixSeconds } from '../domain/clock.ts';
import { newId } from '../domain/ids.ts';
import { asCommitted } from '../domain/run-events.ts';
import { LoopFailures } from '../loop-failures.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { endRun } from '../runs/run-ending.ts';
import type { RunEventBus } from '../runs/run-event-bus.ts';
import type { RunExecutor, StopReason } from '../runs/run-executor.ts';
import type { AdoptedRun, LocalExecution } from '../runs/run-service.ts';
import type { ClaimedRun, Store } from '../storage/store.ts';
import { every } from './periodic.ts';
import { Wakeup } from './wakeup.ts';

export interface RunWorkerOptions {
  store: Store;
  bus: RunEventBus;
  executor: RunExecutor;
  logger: Logger;
  /** Runs executed at once. */
  concurrency: number;
  leaseMs: number;
  /** How often to look for work when nothing announced any (runs whose lease lapsed, other processes' runs). */
  pollMs?: number;
  /**
   * How often to expire runs past their deadline. `expires_at` has a resolution of one second, and every sweep is a
   * query even when nothing is due, so once a second.
   */
  sweepMs?: number;
  /** Told of lease renewals and lost leases; reads how many runs execute here. */
  metrics?: Metrics | undefined;
}

/** How long lease renewals may hold the event loop before letting it go round. */
const RENEW_SLICE_MS = 4;

/**
 * How long past its deadline a run being executed is left to its execution to expire, with what its current model
 * turn has written; after that (the execution is stuck, or the signal was lost) the sweeper expires it itself.
 */
const EXPIRY_HANDOVER_S = 5;

interface Execution {
  controller: AbortController;
  done: Promise<void>;
}

/**
 * Claims runs from the database and executes them, up to `concurrency` at once. A run is held under a lease
 * renewed every third of its length; the renewal also notices a cancel made through another process. The bus only
 * wakes the loop early: claiming is decided by the database, so a missed wake-up costs at most `pollMs`.
 *
 * The sweeper expires runs past `expires_at`: in every status but a terminal one, whoever executes them. A run
 * an execution holds is told to stop and expires there, keeping the message its turn was writing (the only place it
 * is); one not held, or not ended within EXPIRY_HANDOVER_S, is expired by the sweeper with what is stored.
 */
export class RunWorker implements LocalExecution {
  readonly id = `worker_${hostname()}_${process.pid}_${newId('run').slice(-8)}`;
  private readonly options: Required<Omit<RunWorkerOptions, 'metrics'>>;
  private readonly metrics: Metrics | undefined;
  private readonly failures: LoopFailures;
  get leaseMs(): number {
    return this.options.leaseMs;
  }
  get workerId(): string {
    return this.id;
  }
  private readonly executions = new Map<string, Execution>();
  private readonly unsubscribe: Array<() => void> = [];
  private timers: NodeJS.Timeout[] = [];
  private readonly wakeup = new Wakeup();
  private loopDone: Promise<void> | undefined;
  private stopping = false;

  constructor(options: RunWorkerOptions) {
    this.options = { pollMs: 1000, sweepMs: 1000, ...options };
    this.metrics = options.metrics;
    this.failures = new LoopFailures(options.logger);
    this.metrics?.watchActiveRuns(() => this.executions.size);
  }

  start(): void {
    const { bus, leaseMs, sweepMs } = this.options;
    this.unsubscribe.push(
      bus.onWorkAvailable(() => this.requestWake()),
      bus.onStopRequested((runId, reason) => this.stop(runId, reason)),
    );
    this.timers = [
      every(Math.max(100, Math.floor(leaseMs / 3)), () => this.renewLeases()),
      every(sweepMs, () => this.sweep()),
    ];
    // Concurrency 0 (an API-only process): no claiming, but streamed runs are still adopted and executed here.
    this.loopDone = this.options.concurrency > 0 ? this.loop() : Promise.resolve();
  }

  get hasCapacity(): boolean {
    return !this.stopping && this.executions.size < this.options.concurrency;
  }

  /** Executes a run this process has already leased to this worker (as it was created), beside the claimed ones. */
  adopt(claim: AdoptedRun): Promise<void> {
    if (this.stopping) return Promise.resolve(); // its lease lapses and another worker takes it
    return new Promise((asked) => this.launch(claim, asked));
  }

  /** Stops claiming, stops every execution (their runs are handed back for a later attempt) and waits for them. */
  async close(): Promise<void> {
    this.stopping = true;
    for (const timer of this.timers) clearInterval(timer);
    for (const off of this.unsubscribe) off();
    this.requestWake();
    await this.loopDone;
    for (const runId of this.executions.keys()) this.stop(runId, 'shutdown');
    await Promise.all([...this.executions.values()].map((e) => e.done));
  }

  private async loop(): Promise<void> {
    const { store, concurrency, leaseMs, pollMs } = this.options;
    while (!this.stopping) {
      const free = concurrency - this.executions.size;
      let claimed: ClaimedRun[] = [];
      if (free > 0) {
        try {
          const now = Date.now();
          claimed = await store.claimRuns(this.id, now, now + leaseMs, free);
          this.failures.succeeded('claiming runs');
        } catch (error) {
          this.failures.failed('claiming runs', error);
        }
        // A run executing here whose lease lapsed (its commit waiting for a database that was away) is claimed back
        // by its own worker: the claim renewed its lease, and its execution goes on; a second one would ask again.
        for (const claim of claimed) if (!this.executions.has(claim.run.id)) this.launch(claim);
      }
      // Every free slot filled: there may be more waiting. Otherwise all there was is claimed: wait for news.
      this.backlog = free <= 0 || claimed.length === free;
      if (free > 0 && claimed.length === free) continue;
      await this.wakeup.sleep(pollMs);
    }
  }

  /**
   * Whether the last claim may have left runs waiting (it filled every free slot, or there was none): only then
   * does a finished execution wake the loop to claim again. Otherwise a claim after every run would find nothing,
   * and it is the dearest statement of a run; new work is announced, and lapsed leases are found by polling.
   */
  private backlog = false;

  private requestWake(): void {
    this.wakeup.wake();
  }

  private launch(claim: AdoptedRun, asked?: () => void): void {
    const controller = new AbortController();
    const done = this.options.executor.execute(claim, this.id, controller.signal, asked).finally(() => {
      this.executions.delete(claim.run.id);
      if (this.backlog) this.requestWake(); // a slot is free for a run that may be waiting
    });
    this.executions.set(claim.run.id, { controller, done });
  }

  private stop(runId: string, reason: StopReason): void {
    const execution = this.executions.get(runId);
    if (execution && !execution.controller.signal.aborted) execution.controller.abort(reason);
  }

  /**
   * One statement per run executing here. With SQLite each is synchronous, so a thousand runs would hold the event
   * loop for a tenth of a second, every live stream with it: the loop is let go every RENEW_SLICE_MS.
   */
  private async renewLeases(): Promise<void> {
    const { store, leaseMs } = this.options;
    let since = performance.now();
    for (const runId of [...this.executions.keys()]) {
      if (performance.now() - since >= RENEW_SLICE_MS) {
        await nextTurn();
        since = performance.now();
      }
      try {
        const status = await store.renewLease(runId, this.id, Date.now() + leaseMs);
        this.failures.succeeded('renewing leases');
        if (status === undefined) {
          this.metrics?.leaseLost();
          this.stop(runId, 'lease_lost');
        } else {
          this.metrics?.leaseRenewed();
          if (status === 'cancelling') this.stop(runId, 'cancel');
        }
      } catch (error) {
        this.failures.failed('renewing leases', error, { runId });
      }
    }
  }

  /** Expires every active run past its deadline; an execution of it here is stopped. */
  private async sweep(): Promise<void> {
    const { store, bus } = this.options;
    try {
      for (const { scope, run, lock } of await store.runsDueForExpiry(unixSeconds(), 100)) {
        const held = run.status === 'in_progress' && lock.lockedBy !== null && (lock.lockedUntil ?? 0) > Date.now();
        if (held && unixSeconds() - (run.expires_at ?? 0) < EXPIRY_HANDOVER_S) {
          bus.stopRequested(run.id, 'expire');
          continue;
        }
        // A stuck execution still holds the run: the ending is refused should it commit a step meanwhile.
        const steps = await store.runSteps(scope, run.id);
        const ended = endRun(run, steps, { type: 'expire' }, unixSeconds());
        const committed = await store.commitRun(scope, {
          run: ended.run,
          expect: { status: run.status, lockedBy: lock.lockedBy, steps },
          lock: { lockedBy: null, lockedUntil: null },
          steps: ended.steps,
          messages: ended.messages,
          discardBegun: true,
        });
        if (!committed) continue; // it changed meanwhile; the next sweep sees it again if still due
        bus.publishAll(run.thread_id, run.id, asCommitted(ended.events, committed));
        bus.stopRequested(run.id, 'expire');
      }
      this.failures.succeeded('expiring runs');
    } catch (error) {
      this.failures.failed('expiring runs', error);
    }
  }
}
