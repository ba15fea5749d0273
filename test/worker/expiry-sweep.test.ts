import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import type { Run } from '../../src/domain/runs.ts';
import { RunEventBus } from '../../src/runs/run-event-bus.ts';
import type { RunExecutor } from '../../src/runs/run-executor.ts';
import { openPostgresStore } from '../../src/storage/postgres/open-postgres-store.ts';
import { openSqliteStore } from '../../src/storage/sqlite/open-sqlite-store.ts';
import { DEFAULT_SCOPE, type Store } from '../../src/storage/store.ts';
import { RunWorker } from '../../src/worker/run-worker.ts';
import { aRun, aStep, aThread } from '../support/builders.ts';
import { eventually } from '../support/eventually.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { tempDir } from '../support/server.ts';

const scope = DEFAULT_SCOPE;

function sweepOf(name: string, open: () => Promise<{ store: Store; cleanup(): Promise<void> }>): void {
  test(`${name}: the sweep expiring a run its stuck execution still holds ends the step that execution committed while the sweep looked`, async () => {
    const { store, cleanup } = await open();
    const worker = new RunWorker({
      store: racing(store),
      bus: new RunEventBus(),
      executor: {} as RunExecutor, // executes nothing: concurrency 0
      logger: pino({ level: 'silent' }),
      concurrency: 0,
      leaseMs: 60_000,
      sweepMs: 50,
    });
    // Long past its deadline, and so past the time left to its execution to expire it; the lease still renewed.
    const thread = aThread();
    await store.createThread(scope, thread, []);
    const run = aRun(thread.id, { expires_at: Math.floor(Date.now() / 1000) - 60 });
    await store.createRun(scope, run, []);
    const started: Run = { ...run, status: 'in_progress', started_at: run.created_at + 1 };
    const held = { status: 'in_progress' as const, lockedBy: 'worker_stuck' };
    await store.commitRun(scope, {
      run: started,
      expect: { status: 'queued' },
      lock: { lockedBy: 'worker_stuck', lockedUntil: Date.now() + 60_000 },
    });
    // Its model turn opened a tool_calls step; the calls in it are committed as the sweep reads the run's steps.
    const opened = aStep(run, {
      step_details: { type: 'tool_calls', tool_calls: [] },
      model_calls: [],
      turn_usage: null,
    });
    await store.commitRun(scope, { run: started, expect: held, steps: [opened] });
    const calls = aStep(run, { id: opened.id });

    /** The store the worker uses: its first read of the run's steps is followed by the stuck execution's commit. */
    function racing(target: Store): Store {
      let raced = false;
      return new Proxy(target, {
        get(store, key) {
          if (key === 'runSteps')
            return async (...args: Parameters<Store['runSteps']>) => {
              const read = await store.runSteps(...args);
              if (!raced) {
                raced = true;
                assert.ok(await store.commitRun(scope, { run: started, expect: held, steps: [calls] }));
              }
              return read;
            };
          const value = Reflect.get(store, key);
          return typeof value === 'function' ? value.bind(store) : value;
        },
      });
    }

    worker.start();
    try {
      await eventually('the run expired', 10_000, async () =>
        (await store.getRun(scope, thread.id, run.id))?.status === 'expired' ? true : undefined,
      );
      const [step, ...more] = await store.runSteps(scope, run.id);
      assert.deepEqual(more, []);
      assert.equal(step?.id, calls.id);
      assert.equal(step?.status, 'expired');
      assert.deepEqual(step?.step_details, calls.step_details);
    } finally {
      await worker.close();
      await cleanup();
    }
  });
}

sweepOf('SQLite', async () => {
  const dir = tempDir();
  const store = await openSqliteStore(dir);
  return {
    store,
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

const postgresUrl = postgresUrlOrSkip();
describe('PostgreSQL', { skip: postgresUrl === undefined && POSTGRES_SKIP_REASON }, () => {
  sweepOf('PostgreSQL', async () => {
    const database = await createTestDatabase(postgresUrl!);
    const store = await openPostgresStore(database.url, 4);
    return {
      store,
      cleanup: async () => {
        await store.close();
        await database.drop();
      },
    };
  });
});
