import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { Run } from '../../src/domain/runs.ts';
import { RunEventBus } from '../../src/runs/run-event-bus.ts';
import type { RunExecutor } from '../../src/runs/run-executor.ts';
import { DEFAULT_SCOPE, type Store } from '../../src/storage/store.ts';
import { RunWorker, type RunWorkerOptions } from '../../src/worker/run-worker.ts';
import { countTurns, type TurnCounter } from '../support/event-loop.ts';
import { busy } from '../support/processes.ts';

/** A worker on a fake store and executor, with no expiry sweep to speak of and no log. */
function testWorker(
  store: Store,
  executor: RunExecutor,
  options: Pick<RunWorkerOptions, 'concurrency' | 'leaseMs' | 'pollMs'>,
): RunWorker {
  return new RunWorker({
    store,
    bus: new RunEventBus(),
    executor,
    logger: pino({ level: 'silent' }),
    sweepMs: 60_000,
    ...options,
  });
}

test('renewing the leases of 2,000 runs lets the event loop go round (streams keep flowing meanwhile)', async () => {
  const RUNS = 2000;
  // Which turn of the event loop each renewal ran in (counted from when the renewals begin).
  let turn: TurnCounter | undefined;
  const renewedInTurn: number[] = [];
  let renewalDone: () => void;
  const renewed = new Promise<void>((resolve) => {
    renewalDone = resolve;
  });
  const store = {
    // As SQLite: a synchronous statement of ~20 µs, behind a promise.
    renewLease: async () => {
      busy(0.02);
      renewedInTurn.push(turn?.count ?? 0);
      if (renewedInTurn.length === RUNS) renewalDone();
      return 'in_progress';
    },
    runsDueForExpiry: async () => [],
  } as unknown as Store;
  // Executions that last until they are stopped.
  const executor = {
    execute: (_claim: unknown, _worker: string, signal: AbortSignal) =>
      new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve())),
  } as unknown as RunExecutor;
  const worker = testWorker(store, executor, { concurrency: 0, leaseMs: 300 }); // renewed every 100 ms
  worker.start();
  for (let i = 0; i < RUNS; i++)
    worker.adopt({
      scope: DEFAULT_SCOPE,
      run: { id: `run_${i}`, thread_id: `thread_${i}`, status: 'in_progress' } as Run,
      lock: { lockedBy: worker.id, lockedUntil: Date.now() + 300 },
    });
  turn = countTurns();
  await renewed;
  turn.stop();
  await worker.close();
  // ~40 ms of statements: without a break they all run in one turn, and every stream waits for them.
  const turns = new Set(renewedInTurn).size;
  assert.ok(turns >= 5, `the renewals of ${RUNS} runs ran in ${turns} turn(s) of the event loop`);
});

test('a run executing here whose lease lapsed, claimed back by its own worker, is not executed a second time', async () => {
  // As after a database outage: the execution is still waiting to commit when the worker's next claim finds the run's
  // lease lapsed, and claims it (for this worker again).
  const run = { id: 'run_lapsed', thread_id: 'thread_lapsed', status: 'in_progress' } as Run;
  let claims = 0;
  const store = {
    claimRuns: async (workerId: string) => {
      claims += 1;
      return [{ scope: DEFAULT_SCOPE, run, lock: { lockedBy: workerId, lockedUntil: Date.now() + 1000 } }];
    },
    renewLease: async () => 'in_progress',
    runsDueForExpiry: async () => [],
  } as unknown as Store;
  let executions = 0;
  const executor = {
    execute: (_claim: unknown, _worker: string, signal: AbortSignal) => {
      executions += 1;
      return new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
    },
  } as unknown as RunExecutor;
  const worker = testWorker(store, executor, { concurrency: 4, leaseMs: 1000, pollMs: 10 });
  worker.start();
  while (claims < 5) await new Promise((resolve) => setTimeout(resolve, 10));
  await worker.close();
  assert.equal(executions, 1);
});
