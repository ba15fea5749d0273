import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import pg from 'pg';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream, type RecordedRequest, type Reply } from '../support/fake-upstream.ts';
import { type PgBouncer, startPgBouncer } from '../support/pgbouncer.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip, type TestDatabase } from '../support/postgres.ts';
import { ApiClient, type ServerProcess, spawnServer, spawnWorker, type WorkerProcess } from '../support/server.ts';
import { ANSWERED, eventNames, postSse, readSse } from '../support/sse.ts';

/**
 * Several assistd processes on one PostgreSQL database, as README "Several processes" describes them: API processes
 * (`serve --no-workers`) and worker processes (`worker`), each its own OS process, signalling each other over
 * LISTEN/NOTIFY. The fake upstream runs in this process and records every model call; which process executes a run
 * is read from the run's lease (`runs.locked_by`, the worker id each worker process logs at start).
 */

type Body = Record<string, unknown>;

const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'expired', 'incomplete']);
const STARTUP_TIMEOUT_MS = 30_000;

/** The default reply, streamed in 4 chunks, ~50 ms. */
const PLAIN = ['Hello', ' from', ' a', ' worker'];
/** The reply to a `quick …` message: ~100 ms (three pauses of 33 ms). */
const QUICK = ['Quick', ' answer'];

/**
 * The fake's reply follows the first word of the thread's last user message: `slow` ~3 s, `crash` ~2 s, `quick`
 * ~100 ms, anything else ~50 ms. Every message text also carries a UUID, to find its run's model calls.
 */
function replyFor(request: RecordedRequest): Reply {
  const text = lastUserText(request);
  if (text.startsWith('slow ')) return { text: Array.from({ length: 20 }, () => 'slow '), chunkDelayMs: 150 };
  if (text.startsWith('long ')) return { text: Array.from({ length: 100 }, () => 'long '), chunkDelayMs: 150 };
  if (text.startsWith('crash ')) return { text: Array.from({ length: 10 }, () => 'steady '), chunkDelayMs: 200 };
  if (text.startsWith('quick ')) return { text: QUICK, chunkDelayMs: 33 };
  return { text: PLAIN, chunkDelayMs: 10 };
}

function lastUserText(request: RecordedRequest): string {
  const user = request.body.messages.filter((m) => m.role === 'user').at(-1);
  return typeof user?.content === 'string' ? user.content : '';
}

/** An API process's held polls so far, by what answered them (`assistd_held_polls_total` on its /metrics). */
async function heldPolls(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const counts: Record<string, number> = { notified: 0, rechecked: 0, deadline: 0 };
  for (const [, by, value] of text.matchAll(/^assistd_held_polls_total\{answered_by="(\w+)"\} (\d+)$/gm))
    counts[by!] = Number(value);
  return counts;
}

/** The model calls whose messages contain `text` (a unique marker of one thread). */
function callsFor(upstream: FakeUpstream, text: string, from = 0): RecordedRequest[] {
  return upstream.requests.slice(from).filter((r) => JSON.stringify(r.body.messages).includes(text));
}

/** Polls a run with plain GETs (no held polls) until `done` holds; returns it. */
function waitForRun(api: ApiClient, threadId: string, runId: string, done: (run: Body) => boolean, timeoutMs: number) {
  return eventually(`run ${runId}`, timeoutMs, async () => {
    const { body } = await api.get(`/v1/threads/${threadId}/runs/${runId}`);
    return done(body) ? body : undefined;
  });
}

/** Runs `task` for every item, at most `limit` at a time. */
async function pool<T, R>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<R>) {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await task(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not start within ${STARTUP_TIMEOUT_MS} ms`)),
      STARTUP_TIMEOUT_MS,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The processes of one deployment on one throwaway database, and a connection to look at its runs. */
class Deployment {
  apis: ServerProcess[] = [];
  workers: WorkerProcess[] = [];
  /** What its processes were started with. */
  env: Record<string, string> = {};
  private readonly spawned: Array<Promise<{ stop(signal?: NodeJS.Signals): Promise<number | null> }>> = [];
  private observer: pg.Client | undefined;

  private constructor(readonly database: TestDatabase) {}

  /** With `pooler`, the processes reach the database through it, and PostgreSQL itself for their LISTEN. */
  static async start(
    serverUrl: string,
    upstream: FakeUpstream,
    {
      apis,
      workers,
      env = {},
      pooler,
    }: { apis: number; workers: number; env?: Record<string, string>; pooler?: PgBouncer },
  ): Promise<Deployment> {
    const deployment = new Deployment(await createTestDatabase(serverUrl));
    try {
      const { url } = deployment.database;
      const common = {
        ASSISTD_DATABASE_URL: pooler ? pooler.through(url) : url,
        ...(pooler ? { ASSISTD_DATABASE_DIRECT_URL: url } : {}),
        ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
        ...env,
      };
      deployment.env = common;
      const apiStarts = Array.from({ length: apis }, () => spawnServer(common, ['serve', '--no-workers']));
      const workerStarts = Array.from({ length: workers }, () => spawnWorker(common));
      deployment.spawned.push(...apiStarts, ...workerStarts);
      deployment.apis = await withTimeout(Promise.all(apiStarts), 'the API processes');
      deployment.workers = await withTimeout(Promise.all(workerStarts), 'the worker processes');
      deployment.observer = new pg.Client({ connectionString: deployment.database.url });
      deployment.observer.on('error', () => {}); // terminated by the final forced drop: not an uncaught exception
      await deployment.observer.connect();
      return deployment;
    } catch (error) {
      await deployment.close();
      throw error;
    }
  }

  /** Who holds a lease on a run now, per run id (only runs with a lease). */
  async leases(): Promise<Map<string, string>> {
    const { rows } = await this.observer!.query<{ id: string; locked_by: string }>(
      'select id, locked_by from runs where locked_by is not null',
    );
    return new Map(rows.map((row) => [row.id, row.locked_by]));
  }

  /** A raw client and an SDK client of each API process, and an assistant made through the first. */
  async clients(): Promise<{ apis: ApiClient[]; clients: OpenAI[]; assistantId: string }> {
    const apis = this.apis.map((p) => new ApiClient(p.url));
    const clients = this.apis.map((p) => new OpenAI({ baseURL: `${p.url}/v1`, apiKey: 'test', maxRetries: 0 }));
    const assistantId = (await apis[0]!.post('/v1/assistants', { model: 'm' })).body.id as string;
    return { apis, clients, assistantId };
  }

  /** The advisory locks held on its database, by any session. */
  async advisoryLocks(): Promise<number> {
    const { rows } = await this.observer!.query<{ n: number }>(
      `select count(*)::int as n from pg_locks
       where locktype = 'advisory' and database = (select oid from pg_database where datname = current_database())`,
    );
    return rows[0]!.n;
  }

  /** One more API process, started as the others were; stopped with them. */
  async spawnApi(): Promise<ServerProcess> {
    const starting = spawnServer(this.env, ['serve', '--no-workers']);
    this.spawned.push(starting);
    return withTimeout(starting, 'the API process started later');
  }

  async statusCounts(): Promise<Map<string, number>> {
    const { rows } = await this.observer!.query<{ status: string; n: string }>(
      'select status, count(*) as n from runs group by status',
    );
    return new Map(rows.map((row) => [row.status, Number(row.n)]));
  }

  /** SIGKILLs every process (started or still starting), then drops the database. */
  async close(): Promise<void> {
    await Promise.all(
      this.spawned.map((starting) =>
        starting.then(
          (child) => child.stop('SIGKILL'),
          () => {},
        ),
      ),
    );
    await this.observer?.end().catch(() => {});
    await this.database.drop();
  }
}

/** A thread of one user message `text`, made through `api`. */
function newThread(api: ApiClient, text: string): Promise<string> {
  return api.post('/v1/threads', { messages: [{ role: 'user', content: text }] }).then(({ status, body }) => {
    assert.equal(status, 200, JSON.stringify(body));
    return body.id as string;
  });
}

/** A deployment a describe's tests share, with its clients (Deployment.clients). */
interface Suite {
  deployment: Deployment;
  apis: ApiClient[];
  clients: OpenAI[];
  assistantId: string;
}

/**
 * Starts a deployment before the tests of the describe that calls it and closes it after them (then `stopAlso`):
 * the tests read the suite's fields once it has started.
 */
function deploymentSuite(start: () => Promise<Deployment>, stopAlso?: () => Promise<void>): Suite {
  const suite = {} as Suite;
  before(
    async () => {
      suite.deployment = await start();
      Object.assign(suite, await suite.deployment.clients());
    },
    { timeout: 60_000 },
  );
  after(async () => {
    await suite.deployment?.close();
    await stopAlso?.();
  });
  return suite;
}

/**
 * A cancel through API process A stops a run executing in a worker process, and its model call: the worker learns
 * of it from A's notification (its lease, renewed every 200 s, would not tell it in time).
 */
async function cancelReachesWorker({ deployment, apis, assistantId }: Suite, upstream: FakeUpstream): Promise<void> {
  const text = `long cancel ${randomUUID()}`;
  const threadId = await newThread(apis[1]!, text);
  const created = await apis[1]!.post(`/v1/threads/${threadId}/runs`, { assistant_id: assistantId });
  assert.equal(created.status, 200);
  const runId = created.body.id as string;
  const request = await eventually('the run to reach the upstream', 5000, async () => callsFor(upstream, text)[0]);
  await waitForRun(apis[0]!, threadId, runId, (r) => r.status === 'in_progress', 5000);
  const holder = (await deployment.leases()).get(runId);
  assert.ok(
    holder !== undefined && deployment.workers.some((w) => w.id === holder),
    `run held by ${holder}, not a worker`,
  );
  assert.equal(request.abortedAt, undefined);

  const cancel = await apis[0]!.post(`/v1/threads/${threadId}/runs/${runId}/cancel`);
  assert.equal(cancel.status, 200);
  assert.ok(['cancelling', 'cancelled'].includes(cancel.body.status as string), String(cancel.body.status));
  // The reply takes 15 s and the worker's lease is not renewed before 200 s: a model call cut short (not
  // finished) shows the worker learnt of the cancel from the API process's notification.
  const [ended, cancelled] = await Promise.all([
    upstream.waitForEnd(request, 30_000),
    waitForRun(apis[0]!, threadId, runId, (r) => TERMINAL.has(r.status as string), 30_000),
  ]);
  assert.equal(ended, 'aborted');
  assert.equal(cancelled.status, 'cancelled');
  assert.equal(callsFor(upstream, text).length, 1);
}

/** createAndPoll through an API process is answered on the worker process's notification. */
async function pollsAnsweredOnNotification({ deployment, apis, clients, assistantId }: Suite): Promise<void> {
  const before = await Promise.all(deployment.apis.map((p) => heldPolls(p.url)));
  for (let i = 0; i < 6; i++) {
    const threadId = await newThread(apis[i % 2]!, `quick ${i} ${randomUUID()}`);
    const run = await clients[i % 2]!.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistantId });
    assert.equal(run.status, 'completed');
  }
  const after = await Promise.all(deployment.apis.map((p) => heldPolls(p.url)));
  const answered = (by: string) => after.reduce((sum, counts, i) => sum + counts[by]! - before[i]![by]!, 0);
  // The SDK polls every 5 s by default: its next poll is held instead, and answered when the worker process's
  // NOTIFY of the run's change reaches the API process, not by the once-a-second re-read of a held poll.
  assert.ok(answered('notified') >= 1, `held polls answered on a notification: ${answered('notified')}`);
  assert.equal(answered('rechecked'), 0, 'held polls answered by a re-read: the notifications did not arrive');
  assert.equal(answered('deadline'), 0);
}

const adminUrl = postgresUrlOrSkip();

if (adminUrl === undefined) {
  test('several assistd processes on one PostgreSQL database', { skip: POSTGRES_SKIP_REASON }, () => {});
} else {
  const serverUrl = adminUrl;
  let upstream: FakeUpstream;

  before(async () => {
    // The fake's pauses all listen on one AbortSignal: hundreds of requests in flight are expected, not a leak.
    setMaxListeners(2000);
    upstream = await FakeUpstream.start();
    upstream.setDefault(replyFor);
  });
  after(async () => upstream?.close());

  describe('two API processes and two worker processes on one PostgreSQL database', () => {
    const suite = deploymentSuite(() =>
      Deployment.start(serverUrl, upstream, {
        apis: 2,
        workers: 2,
        // Leases renewed every 200 s: within a test, only a notification can tell a worker of a cancel.
        env: { ASSISTD_WORKER_CONCURRENCY: '16', ASSISTD_WORKER_LEASE_S: '600' },
      }),
    );

    test('200 runs through both API processes: all complete, each model call made once, by both workers', async () => {
      const texts = Array.from({ length: 200 }, (_, i) => `plain ${i} ${randomUUID()}`);
      const threads = await pool(texts, 20, (text, i) => newThread(suite.apis[i % 2]!, text));
      const from = upstream.requests.length;

      // Who executes: every lease seen while the runs go, sampled from the database.
      const holders = new Map<string, string>();
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          for (const [runId, holder] of await suite.deployment.leases()) holders.set(runId, holder);
          await new Promise((r) => setTimeout(r, 10));
        }
      })();
      let runs: OpenAI.Beta.Threads.Run[];
      try {
        runs = await Promise.all(
          threads.map((threadId, i) =>
            suite.clients[i % 2]!.beta.threads.runs.createAndPoll(threadId, { assistant_id: suite.assistantId }),
          ),
        );
      } finally {
        sampling = false;
        await sampler;
      }

      const statuses = runs.map((r) => r.status);
      assert.deepEqual(
        statuses.filter((s) => s !== 'completed'),
        [],
      );
      assert.equal(new Set(runs.map((r) => r.id)).size, 200);
      // Exactly one model call per run: no run executed twice, none skipped.
      assert.equal(upstream.requests.length - from, 200);
      const counts = texts.map((text) => callsFor(upstream, text, from).length);
      assert.deepEqual(
        counts.map((n, i) => [i, n]).filter(([, n]) => n !== 1),
        [],
        'runs whose message reached the upstream other than once',
      );
      // Both worker processes executed runs; the API processes (no workers) none.
      const workerIds = suite.deployment.workers.map((w) => w.id);
      const byHolder = new Map<string, number>();
      for (const holder of holders.values()) byHolder.set(holder, (byHolder.get(holder) ?? 0) + 1);
      assert.deepEqual(
        [...byHolder.keys()].filter((holder) => !workerIds.includes(holder)),
        [],
        'leases held by a process other than the two workers',
      );
      for (const id of workerIds)
        assert.ok((byHolder.get(id) ?? 0) > 0, `worker ${id} executed none of the runs seen (${[...byHolder]})`);
      // Each answer was stored once, on the right thread.
      const messages = await pool(threads, 20, (threadId, i) =>
        suite.apis[(i + 1) % 2]!.get<{ data: Body[] }>(`/v1/threads/${threadId}/messages`),
      );
      for (const { body } of messages) {
        const answers = body.data.filter((m) => m.role === 'assistant');
        assert.equal(answers.length, 1);
      }
    });

    test('a cancel through API process A stops a run executing in a worker process, and its model call', () =>
      cancelReachesWorker(suite, upstream));

    test("deleting a thread through API process A: a worker's execution of its run stops, B's /events follower ends", async () => {
      const text = `long delete ${randomUUID()}`;
      const threadId = await newThread(suite.apis[1]!, text);
      const created = await suite.apis[1]!.post(`/v1/threads/${threadId}/runs`, { assistant_id: suite.assistantId });
      const runId = created.body.id as string;
      const request = await eventually('the run to reach the upstream', 5000, async () => callsFor(upstream, text)[0]);
      await waitForRun(suite.apis[1]!, threadId, runId, (r) => r.status === 'in_progress', 5000);
      const follower = readSse(
        await fetch(`${suite.deployment.apis[1]!.url}/v1/threads/${threadId}/runs/${runId}/events`),
      );

      const deleted = await suite.apis[0]!.delete(`/v1/threads/${threadId}`);
      assert.equal(deleted.status, 200);
      // The model call first: were the deletion not to reach the worker, its follower would never end.
      assert.equal(await upstream.waitForEnd(request, 30_000), 'aborted', 'the worker let the model go');
      const followed = await follower;
      assert.deepEqual(eventNames(followed).slice(-2), ['error', 'done']);
      assert.equal(followed.at(-2)!.data.message, `Thread ${threadId} was deleted, and run ${runId} with it.`);
      assert.equal((await suite.apis[1]!.get(`/v1/threads/${threadId}/runs/${runId}`)).status, 404);
    });

    test('50 concurrent run creations on one thread through both API processes: one 200, 49 thread-lock 400s', async () => {
      // The winner's run is slow, so that it is still active when the last creation arrives.
      const threadId = await newThread(suite.apis[0]!, `slow lock ${randomUUID()}`);
      const outcomes = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          suite.apis[i % 2]!.post(`/v1/threads/${threadId}/runs`, { assistant_id: suite.assistantId }),
        ),
      );
      const winners = outcomes.filter((o) => o.status === 200);
      assert.equal(winners.length, 1, `statuses: ${outcomes.map((o) => o.status).join(', ')}`);
      const winner = winners[0]!.body.id as string;
      const losers = outcomes.filter((o) => o.status !== 200);
      assert.equal(losers.length, 49);
      for (const loser of losers) {
        assert.equal(loser.status, 400);
        assert.deepEqual(loser.body, {
          error: {
            message: `Thread ${threadId} already has an active run ${winner}.`,
            type: 'invalid_request_error',
            param: null,
            code: null,
          },
        });
      }
      const listed = await suite.apis[1]!.get<{ data: Body[] }>(`/v1/threads/${threadId}/runs`);
      assert.deepEqual(
        listed.body.data.map((r) => r.id),
        [winner],
      );
      await suite.apis[1]!.post(`/v1/threads/${threadId}/runs/${winner}/cancel`);
      const ended = await waitForRun(suite.apis[0]!, threadId, winner, (r) => TERMINAL.has(r.status as string), 5000);
      assert.equal(ended.status, 'cancelled');
    });

    test('a streamed run works through either API process: official sequence, deltas add up to the message', async () => {
      for (const [i, server] of suite.deployment.apis.entries()) {
        const other = suite.apis[1 - i]!;
        const text = `stream ${i} ${randomUUID()}`;
        const threadId = await newThread(other, text);
        const events = await postSse(`${server.url}/v1/threads/${threadId}/runs`, {
          assistant_id: suite.assistantId,
          stream: true,
        });
        assert.deepEqual(eventNames(events), ANSWERED);
        const streamed = events
          .filter((e) => e.event === 'thread.message.delta')
          .flatMap((e) =>
            (e.data.delta.content as Array<{ text?: { value?: string } }>).map((c) => c.text?.value ?? ''),
          )
          .join('');
        assert.equal(streamed, PLAIN.join(''));
        const messages = await other.get<{
          data: Array<{ role: string; content: Array<{ text: { value: string } }> }>;
        }>(`/v1/threads/${threadId}/messages`);
        const answers = messages.body.data.filter((m) => m.role === 'assistant');
        assert.equal(answers.length, 1);
        assert.equal(answers[0]!.content[0]!.text.value, streamed);
        const runId = events[0]!.data.id as string;
        const run = await other.get(`/v1/threads/${threadId}/runs/${runId}`);
        assert.equal(run.body.status, 'completed');
        assert.equal(callsFor(upstream, text).length, 1);
      }
    });

    test("createAndPoll through an API process is answered on the worker process's notification", () =>
      pollsAnsweredOnNotification(suite));
  });

  describe('behind PgBouncer in transaction mode (Debian 12 ships 1.18: no prepared statements kept)', () => {
    let pooler: PgBouncer | undefined;
    const suite = deploymentSuite(
      async () => {
        pooler = await startPgBouncer(serverUrl, 'transaction');
        // Four processes at once on a fresh database: each migrates, through the pooler, one after the other.
        return Deployment.start(serverUrl, upstream, {
          apis: 2,
          workers: 2,
          pooler,
          env: {
            ASSISTD_DATABASE_PREPARED_STATEMENTS: 'off',
            ASSISTD_WORKER_CONCURRENCY: '16',
            ASSISTD_WORKER_LEASE_S: '600',
          },
        });
      },
      async () => pooler?.stop(),
    );

    test('the migration leaves no lock held on a pooled connection: a process started later starts', async () => {
      assert.equal(await suite.deployment.advisoryLocks(), 0);
      const later = new ApiClient((await suite.deployment.spawnApi()).url);
      const threadId = await newThread(later, `quick later ${randomUUID()}`);
      const run = await suite.clients[0]!.beta.threads.runs.createAndPoll(threadId, {
        assistant_id: suite.assistantId,
      });
      assert.equal(run.status, 'completed');
    });

    test("createAndPoll through an API process is answered on the worker process's notification", () =>
      pollsAnsweredOnNotification(suite));

    test('a cancel through API process A stops a run executing in a worker process, and its model call', () =>
      cancelReachesWorker(suite, upstream));
  });

  describe('a worker process killed mid-run', () => {
    test('SIGKILL one of two workers while both execute: every run completes on the other, one answer each', async () => {
      const deployment = await Deployment.start(serverUrl, upstream, {
        apis: 1,
        workers: 2,
        env: { ASSISTD_WORKER_LEASE_S: '2', ASSISTD_WORKER_CONCURRENCY: '5' },
      });
      try {
        const api = new ApiClient(deployment.apis[0]!.url);
        const assistant = await api.post('/v1/assistants', { model: 'm' });
        const texts = Array.from({ length: 10 }, (_, i) => `crash ${i} ${randomUUID()}`);
        const threads: string[] = [];
        for (const text of texts)
          threads.push(
            (await api.post('/v1/threads', { messages: [{ role: 'user', content: text }] })).body.id as string,
          );
        const runs = await Promise.all(
          threads.map(
            async (threadId) =>
              (await api.post(`/v1/threads/${threadId}/runs`, { assistant_id: assistant.body.id })).body.id as string,
          ),
        );

        // Five slots per worker: once all ten runs are at the upstream (~2 s each), both workers execute five.
        await eventually('every run to reach the upstream', 10_000, async () =>
          texts.every((text) => callsFor(upstream, text).length > 0) ? true : undefined,
        );
        const [victim, survivor] = deployment.workers as [WorkerProcess, WorkerProcess];
        const leases = await deployment.leases();
        const orphaned = runs.filter((id) => leases.get(id) === victim.id);
        assert.equal(orphaned.length, 5, `leases: ${[...leases]}`);
        assert.equal(runs.filter((id) => leases.get(id) === survivor.id).length, 5, `leases: ${[...leases]}`);
        await victim.stop('SIGKILL');

        const ended = await Promise.all(
          runs.map((runId, i) => waitForRun(api, threads[i]!, runId, (r) => TERMINAL.has(r.status as string), 15_000)),
        );
        assert.deepEqual(
          ended.map((r) => r.status),
          runs.map(() => 'completed'),
        );
        const counts = await deployment.statusCounts();
        assert.deepEqual([...counts], [['completed', 10]], 'no run left in a non-terminal status');
        for (const [i, threadId] of threads.entries()) {
          const messages = await api.get<{ data: Body[] }>(`/v1/threads/${threadId}/messages`);
          assert.equal(messages.body.data.filter((m) => m.role === 'assistant').length, 1, `thread ${i}`);
          // One model call answered in full per run; the killed worker's calls were cut off, not completed.
          const calls = callsFor(upstream, texts[i]!);
          assert.equal(calls.filter((c) => c.finishedAt !== undefined).length, 1, `thread ${i}`);
          const wasOrphaned = orphaned.includes(runs[i]!);
          assert.equal(calls.length, wasOrphaned ? 2 : 1, `thread ${i}`);
          if (wasOrphaned) assert.notEqual(calls[0]!.abortedAt, undefined);
        }
      } finally {
        await deployment.close();
      }
    });
  });
}
