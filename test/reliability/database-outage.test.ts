import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import OpenAI from 'openai';
import pg from 'pg';
import { eventually, within } from '../support/eventually.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip, type TestDatabase } from '../support/postgres.ts';
import { startTestServer, type TestServer, type TestServerOptions } from '../support/server.ts';
import { ANSWERED, eventNames, postSse, type SseEvent } from '../support/sse.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';

/**
 * PostgreSQL goes away for a while under a running server (a restart, a failover, a network cut), simulated by a TCP
 * proxy between the two that drops every connection and refuses new ones: requests meanwhile get a 503 that says
 * so, and a run whose model turn ends in the outage commits it once the database is back, so that its stream goes
 * on as if nothing had happened. An outage longer than the run's lease ends the stream with an `error` event saying
 * the run goes on, and the run does go on.
 */

type Body = Record<string, unknown>;

/** 20 words, one every 100 ms: a turn of two seconds, for the outage to fall into. */
const WORDS = Array.from({ length: 20 }, (_, i) => `w${i} `);

const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined) test('database outages (PostgreSQL)', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  describe('a database outage under a running server (PostgreSQL)', { concurrency: 3 }, () => {
    /**
     * A server on a fresh database reached through a proxy, with a model of its own; `check` gets them all, and
     * everything is closed after. Each test has its own, so that the tests run side by side (most of their time is
     * spent waiting for an outage to be noticed or to end).
     */
    async function withServer(
      env: Record<string, string>,
      check: (server: TestServer, proxy: TcpProxy, database: TestDatabase, upstream: FakeUpstream) => Promise<void>,
      options: TestServerOptions = {},
    ) {
      const upstream = await FakeUpstream.start();
      upstream.setDefault({ text: WORDS, chunkDelayMs: 100 });
      const database: TestDatabase = await createTestDatabase(postgresUrl!);
      const target = new URL(database.url);
      const proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
      const server = await startTestServer(
        {
          ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
          ASSISTD_DATABASE_URL: proxy.through(database.url),
          ...env,
        },
        options,
      );
      try {
        await check(server, proxy, database, upstream);
      } catch (error) {
        proxy.cut(); // what still waits on a silenced connection fails, so that the server can close
        throw error;
      } finally {
        proxy.restore(); // a failed check may have left it cut or stalled
        await server.close();
        await proxy.close();
        await database.drop();
        await upstream.close();
      }
    }

    /** Starts a streamed run; resolves with its events once the stream ends. `onDelta` is called at the first delta. */
    async function streamedRun(server: TestServer, onDelta: (threadId: string) => Promise<void>) {
      const assistant = await server.api.post('/v1/assistants', { model: 'm' });
      const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
      let cut: Promise<void> | undefined;
      const events = await postSse(
        `${server.url}/v1/threads/${thread.body.id}/runs`,
        { assistant_id: assistant.body.id, stream: true },
        (event: SseEvent) => {
          if (event.event === 'thread.message.delta' && !cut) cut = onDelta(thread.body.id as string);
        },
      );
      await cut;
      return { events, threadId: thread.body.id as string, runId: events[0]!.data.id as string };
    }

    function streamedText(events: SseEvent[]): string {
      return events
        .filter((e) => e.event === 'thread.message.delta')
        .map((e) => e.data.delta.content[0].text.value)
        .join('');
    }

    /**
     * The run of `streamed` went as if nothing had happened: its stream in the official order with the whole answer,
     * the model asked once (`asked`: its requests before), the run completed, its answer the thread's last message.
     * Answers the run.
     */
    async function answeredOnce(
      server: TestServer,
      upstream: FakeUpstream,
      streamed: { events: SseEvent[]; threadId: string; runId: string },
      asked: number,
    ): Promise<Body> {
      const { events, threadId, runId } = streamed;
      assert.deepEqual(eventNames(events), ANSWERED);
      assert.equal(streamedText(events), WORDS.join(''));
      assert.equal(upstream.requests.length, asked + 1); // its answer was kept, not asked for again
      const run = await server.api.get(`/v1/threads/${threadId}/runs/${runId}`);
      assert.equal(run.body.status, 'completed');
      const messages = await server.api.get<{ data: Body[] }>(`/v1/threads/${threadId}/messages`);
      assert.deepEqual(
        messages.body.data.map((m) => m.role),
        ['assistant', 'user'],
      );
      assert.equal(
        (messages.body.data[0]!.content as Array<{ text: { value: string } }>)[0]!.text.value,
        WORDS.join(''),
      );
      return run.body;
    }

    test('a turn that ends while the database is away is committed when it is back: the stream goes on as usual', async () => {
      await withServer({}, async (server, proxy, _database, upstream) => {
        const asked = upstream.requests.length;
        const streamed = await streamedRun(server, async (threadId) => {
          proxy.cut();
          // The model's turn ends in the outage (its last word comes ~1.9 s after the first), and its commit fails
          // for a while; meanwhile a request gets the 503 that says why.
          const [request] = upstream.requests.slice(asked);
          assert.equal(await upstream.waitForEnd(request!), 'finished');
          const during = await server.api.get(`/v1/threads/${threadId}`);
          assert.equal(during.status, 503);
          assert.deepEqual(during.body, {
            error: {
              message: 'The database is unavailable at the moment; try again shortly.',
              type: 'server_error',
              param: null,
              code: 'database_unavailable',
            },
          });
          assert.equal(during.headers.get('retry-after'), '1');
          await new Promise((resolve) => setTimeout(resolve, 1000));
          proxy.restore();
        });
        await answeredOnce(server, upstream, streamed, asked);
      });
    });

    test('an outage is logged once by each loop of the workers, and once more when it works again, not at every turn', async () => {
      const lines: string[] = [];
      await withServer(
        {},
        async (server, proxy) => {
          proxy.cut();
          await new Promise((resolve) => setTimeout(resolve, 3500)); // three turns of the claim loops, at least
          proxy.restore();
          await eventually('the claim loop to work again', 10_000, () =>
            lines.some((line) => line.includes('claiming runs works again')) ? true : undefined,
          );
          assert.equal((await server.api.post('/v1/threads', {})).status, 200);
        },
        { logLines: lines },
      );
      const entries = lines.map(
        (line) => JSON.parse(line) as { level: number; msg: string; reason?: string; err?: unknown },
      );
      const failures = entries.filter((e) => e.msg.endsWith('failed; it goes on trying, said again once it works'));
      const loops = failures.map((e) => e.msg.replace(' failed; it goes on trying, said again once it works', ''));
      assert.ok(loops.includes('claiming runs'), JSON.stringify(loops));
      assert.ok(loops.includes('claiming files to index'), JSON.stringify(loops));
      assert.deepEqual(loops, [...new Set(loops)], 'one line per loop');
      for (const failure of failures) {
        assert.equal(failure.level, 40); // a warning: the database comes back by itself
        assert.match(failure.reason!, /^the database is unavailable: /);
        assert.equal(failure.err, undefined); // no stack, once per loop
      }
      // Nothing else of the workers said the outage: no error line at all.
      assert.deepEqual(
        entries.filter((e) => e.level >= 50).map((e) => e.msg),
        [],
      );
    });

    test('a connection lost under a running statement fails that request with a 503, and the server goes on', async () => {
      await withServer({}, async (server, proxy, database) => {
        const thread = await server.api.post('/v1/threads', {});
        // The update waits on a row lock held by another client (not through the proxy) while its connection is cut:
        // pg reports such a loss on the connection itself, with no listener while the pool has it lent out.
        const locker = new pg.Client({ connectionString: database.url });
        await locker.connect();
        try {
          await locker.query('begin');
          await locker.query('select id from threads where id = $1 for update', [thread.body.id]);
          const update = server.api.post(`/v1/threads/${thread.body.id}`, { metadata: { topic: 'pets' } });
          await eventually('the update to wait on the lock', 10_000, async () =>
            (await lockWaits(database)) > 0 ? true : undefined,
          );
          proxy.cut();
          const failed = await update;
          assert.equal(failed.status, 503, JSON.stringify(failed.body));
          proxy.restore();
          await locker.query('commit');
        } finally {
          await locker.end();
        }
        const updated = await server.api.post(`/v1/threads/${thread.body.id}`, { metadata: { topic: 'pets' } });
        assert.equal(updated.status, 200);
        assert.deepEqual(updated.body.metadata, { topic: 'pets' });
      });
    });

    test('the official SDK retries through a short outage without a word to its program', async () => {
      await withServer({}, async (server, proxy) => {
        const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none' });
        const assistant = await client.beta.assistants.create({ model: 'm' });
        proxy.cut();
        setTimeout(() => proxy.restore(), 1500);
        const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'hi' }] });
        const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
        assert.equal(run.status, 'completed');
      });
    });

    test('a file indexed while the database is away is stored once it is back, its embeddings not asked again', async () => {
      await withServer({ ASSISTD_EMBEDDINGS_MODEL: 'embedder' }, async (server, proxy, _database, upstream) => {
        const file = await server.api.upload('Cats and kittens purr.\n\nDogs and puppies bark.', 'pets.txt');
        const store = await server.api.post('/v1/vector_stores', { name: 'pets' });
        const asked = upstream.embeddingRequests.length;
        // The database goes away as the file's vectors are computed: the commit that follows meets the outage.
        const embed = upstream.embed;
        let cut = false;
        upstream.embed = (text) => {
          if (!cut) proxy.cut();
          cut = true;
          return embed(text);
        };
        try {
          const added = await server.api.post(`/v1/vector_stores/${store.body.id}/files`, { file_id: file.id });
          assert.equal(added.status, 200, JSON.stringify(added.body));
          // The file's embeddings come once the server's first indexing thread has started (its parsers and
          // tokenizer loaded: about a second on an idle machine, many more on a loaded one): a bound only for a wait
          // that never ends.
          await eventually('the outage', 120_000, () => (cut ? true : undefined));
          await new Promise((resolve) => setTimeout(resolve, 2500));
          proxy.restore();
          const indexed = await eventually('the file to be indexed', 30_000, async () => {
            const { body } = await server.api.get(`/v1/vector_stores/${store.body.id}/files/${file.id}`);
            return body.status === 'in_progress' ? undefined : body;
          });
          assert.equal(indexed.status, 'completed', JSON.stringify(indexed.last_error));
          assert.equal(upstream.embeddingRequests.length - asked, 1);
        } finally {
          upstream.embed = embed;
        }
      });
    });

    /**
     * The sessions on `database` that match `where`, by pid, read on a connection of their own (within a transaction,
     * pg_stat_activity would show the same snapshot every time).
     */
    async function sessions(database: TestDatabase, where: string): Promise<number[]> {
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      try {
        const { rows } = await client.query<{ pid: number }>(
          `select pid from pg_stat_activity where datname = current_database() and ${where}`,
        );
        return rows.map((row) => row.pid);
      } finally {
        await client.end();
      }
    }

    /** The sessions LISTENing for this database's signals (PgSignals). */
    const listeners = (database: TestDatabase) => sessions(database, "query = 'listen assistd_runs'");
    /** How many sessions wait on a lock. */
    const lockWaits = async (database: TestDatabase) => (await sessions(database, "wait_event_type = 'Lock'")).length;

    // A database that stops answering without closing its connections (a failover, a host or a network gone): the
    // proxy's stall(). Nothing fails on its own; the server's timeout (ASSISTD_DATABASE_TIMEOUT_S) is what notices.
    const SILENCE_TIMEOUT = { ASSISTD_DATABASE_TIMEOUT_S: '1' };

    // 3 s, not 1: the ten updates of the next test must all wait on the locks before the first gives up, which on a
    // loaded machine took more than a second.
    const LOCK_WAITS_TIMEOUT = { ASSISTD_DATABASE_TIMEOUT_S: '3' };

    test('a database that stops answering gets requests a 503, not a hang; once it is back, the silent connections are not used', async () => {
      await withServer({ ...LOCK_WAITS_TIMEOUT, ASSISTD_DATABASE_POOL: '20' }, async (server, proxy, database) => {
        const thread = await server.api.post('/v1/threads', {});
        // Ten connections open in the pool, all of them silenced by the stall: updates that wait together on row
        // locks each hold one. More than the server's own polling takes (and so gives up) while the stall lasts.
        const threads = await Promise.all(Array.from({ length: 10 }, () => server.api.post('/v1/threads', {})));
        const locker = new pg.Client({ connectionString: database.url });
        locker.on('error', () => {});
        await locker.connect();
        try {
          await locker.query('begin');
          await locker.query('select id from threads where id = any($1) for update', [threads.map((t) => t.body.id)]);
          const updates = threads.map((t) => server.api.post(`/v1/threads/${t.body.id}`, { metadata: { a: 'b' } }));
          await eventually('the updates to wait on the locks', 10_000, async () =>
            (await lockWaits(database)) >= 10 ? true : undefined,
          );
          await locker.query('commit');
          assert.deepEqual(
            (await Promise.all(updates)).map((r) => r.status),
            Array(10).fill(200),
          );
        } finally {
          await locker.end();
        }
        proxy.stall();
        const during = await within(
          'a request to a silent database',
          10_000,
          server.api.get(`/v1/threads/${thread.body.id}`),
        );
        assert.equal(during.status, 503, JSON.stringify(during.body));
        assert.equal((during.body.error as Body).code, 'database_unavailable');
        proxy.restore();
        // A silent connection taken from the pool now would cost its request the timeout and a 503: none is.
        for (let i = 0; i < 12; i++) {
          const after = await within(
            'a request once the database is back',
            10_000,
            server.api.get(`/v1/threads/${thread.body.id}`),
          );
          assert.equal(after.status, 200, `request ${i}: ${JSON.stringify(after.body)}`);
        }
      });
    });

    test('while the database does not answer, requests get their 503 within twice the timeout, however many wait for the pool', async () => {
      // A timeout above the listener's 2-second checks, and a pool of two for the server's own polling and ten requests.
      await withServer({ ASSISTD_DATABASE_TIMEOUT_S: '3', ASSISTD_DATABASE_POOL: '2' }, async (server, proxy) => {
        const thread = await server.api.post('/v1/threads', {});
        proxy.stall();
        await new Promise((resolve) => setTimeout(resolve, 4000)); // the server's polling has queued for the pool
        const answers = await within(
          'ten requests to a silent database',
          30_000,
          Promise.all(
            Array.from({ length: 10 }, async () => {
              const started = Date.now();
              const response = await server.api.get(`/v1/threads/${thread.body.id}`);
              return { status: response.status, ms: Date.now() - started };
            }),
          ),
        );
        proxy.restore();
        assert.deepEqual(
          answers.map((a) => a.status),
          Array(10).fill(503),
        );
        // At most the timeout waiting for a connection of the pool, and the timeout opening one (a second of slack).
        const slowest = Math.max(...answers.map((a) => a.ms));
        assert.ok(slowest <= 7000, `the slowest request took ${slowest} ms`);
      });
    });

    test('a turn that ends while the database does not answer is committed once it does: the stream goes on as usual', async () => {
      await withServer(SILENCE_TIMEOUT, async (server, proxy, _database, upstream) => {
        const asked = upstream.requests.length;
        const streamed = streamedRun(server, async () => {
          proxy.stall();
          const [request] = upstream.requests.slice(asked);
          assert.equal(await upstream.waitForEnd(request!), 'finished');
          await new Promise((resolve) => setTimeout(resolve, 1500)); // the commit's statement goes unanswered, then a connection attempt
          proxy.restore();
        });
        await answeredOnce(server, upstream, await within('the stream', 30_000, streamed), asked);
      });
    });

    test('a listening connection that stops answering is given up and opened again', async () => {
      await withServer(SILENCE_TIMEOUT, async (server, proxy, database) => {
        const [before] = await eventually('the server to listen', 10_000, async () => {
          const pids = await listeners(database);
          return pids.length === 1 ? pids : undefined;
        });
        proxy.stall();
        // Given up: its session ends, as the proxy closes the other side of a connection closed on this one.
        await eventually('the silent listener to be given up', 10_000, async () =>
          (await listeners(database)).includes(before!) ? undefined : true,
        );
        proxy.restore();
        const [again] = await eventually('the server to listen again', 10_000, async () => {
          const pids = await listeners(database);
          return pids.length === 1 ? pids : undefined;
        });
        assert.notEqual(again, before);
        assert.equal((await server.api.post('/v1/threads', {})).status, 200);
      });
    });

    for (const [when, settings] of [
      ['its fence refuses it again', { ASSISTD_DATABASE_TIMEOUT_S: '2' }],
      // The wait for the answer outlasts the lease: the lease's renewal (another connection) finds the run released by
      // that very commit and stops the execution, whose wait for the database is then given up.
      ['its lease lapses meanwhile', { ASSISTD_DATABASE_TIMEOUT_S: '3', ASSISTD_WORKER_LEASE_S: '1' }],
    ] as const)
      test(`a turn whose commit was applied but whose answer was lost ends its stream as usual, not as interrupted (${when})`, async () => {
        await withServer(settings, async (server, proxy, database, upstream) => {
          const asked = upstream.requests.length;
          const locker = new pg.Client({ connectionString: database.url });
          locker.on('error', () => {});
          await locker.connect();
          try {
            const streamed = streamedRun(server, async (threadId) => {
              // Modified meanwhile: its metadata, which no commit writes, is newer than the execution's copy.
              const runs = await server.api.get<{ data: Body[] }>(`/v1/threads/${threadId}/runs`);
              const modified = await server.api.post(`/v1/threads/${threadId}/runs/${runs.body.data[0]!.id}`, {
                metadata: { topic: 'pets' },
              });
              assert.equal(modified.status, 200);
              // The run's row locked: its ending commit, sent to the database, waits there.
              await locker.query('begin');
              await locker.query('select id from runs where thread_id = $1 for update', [threadId]);
              await eventually('the commit to wait on the lock', 10_000, async () =>
                (await sessions(database, `wait_event_type = 'Lock' and query like 'with r as (update "runs"%'`))
                  .length > 0
                  ? true
                  : undefined,
              );
              // Applied once the lock is let go, its answer lost: the server gives its connection up (2 s) and commits
              // again, which the run's fence refuses, the run having ended.
              proxy.loseAnswers();
              await locker.query('commit');
            });
            const run = await answeredOnce(server, upstream, await within('the stream', 30_000, streamed), asked);
            assert.deepEqual(run.metadata, { topic: 'pets' });
          } finally {
            await locker.end();
          }
        });
      });

    test('an outage longer than the lease ends the stream with an error saying the run goes on; it does', async () => {
      await withServer({ ASSISTD_WORKER_LEASE_S: '1' }, async (server, proxy, _database, upstream) => {
        const asked = upstream.requests.length;
        // The stream ends while the database is still away: the commit waited a lease (a second) for it.
        const { events, threadId, runId } = await streamedRun(server, async () => proxy.cut());
        proxy.restore();
        const names = eventNames(events);
        assert.deepEqual(names.slice(-3), ['thread.message.delta*', 'error', 'done']);
        const error = {
          message: `The execution of run ${runId} was interrupted (its database was away too long, or another worker took the run over); the run is not over and goes on in a new attempt. Follow it with GET /v1/threads/${threadId}/runs/${runId}/events, or poll it.`,
          type: 'server_error',
          param: null,
          code: 'run_interrupted',
        };
        assert.deepEqual(events.at(-2)!.data, { ...error, error });
        // The run goes on, once, and ends with one answer.
        const run = await eventually('the run to complete', 30_000, async () => {
          const { body } = await server.api.get(`/v1/threads/${threadId}/runs/${runId}`);
          return body.status === 'completed' ? body : undefined;
        });
        assert.equal(run.status, 'completed');
        assert.equal(upstream.requests.length - asked, 2); // the interrupted attempt, and the one that completed
        const messages = await server.api.get<{ data: Body[] }>(`/v1/threads/${threadId}/messages`);
        assert.deepEqual(
          messages.body.data.map((m) => [m.role, m.status]),
          [
            ['assistant', 'completed'],
            ['user', 'completed'],
          ],
        );
        const steps = await server.api.get<{ data: Body[] }>(`/v1/threads/${threadId}/runs/${runId}/steps`);
        assert.deepEqual(
          steps.body.data.map((s) => s.status),
          ['completed'],
        );
      });
    });
  });
