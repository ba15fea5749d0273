import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { ApiError } from '../../src/domain/errors.ts';
import type { Run } from '../../src/domain/runs.ts';
import { openStore } from '../../src/storage/open-store.ts';
import { kyselyPool } from '../../src/storage/postgres/kysely-pool.ts';
import { openPostgresStore, POSTGRES_CAPABILITIES } from '../../src/storage/postgres/open-postgres-store.ts';
import type { SqlCapabilities } from '../../src/storage/sql/capabilities.ts';
import type { Database } from '../../src/storage/sql/schema.ts';
import { SqlStore, WITH_ATTACHMENTS } from '../../src/storage/sql/sql-store.ts';
import type { Scope } from '../../src/storage/store.ts';
import { storeContract } from '../contract/store-contract.ts';
import { aMessage, anAssistant, aRun, aThread, storedThreadWithOneAttachment } from '../support/builders.ts';
import { eventually, within } from '../support/eventually.ts';
import { startPgBouncer } from '../support/pgbouncer.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { ROOT } from '../support/root.ts';
import { TcpProxy } from '../support/tcp-proxy.ts';

const adminUrl = postgresUrlOrSkip();
const scope: Scope = { projectId: 'proj_pg' };

test('the PostgreSQL settings: the pool, its timeout, and what a pooler in transaction mode needs, validated', () => {
  const url = 'postgres://u:secret@db.example:5432/assistd';
  assert.deepEqual(loadConfig({ ASSISTD_DATABASE_URL: url }).storage, {
    kind: 'postgres',
    url,
    poolSize: 10,
    timeoutMs: 30_000,
    preparedStatements: true,
  });
  const directUrl = 'postgresql://u:secret@db.example:5432/assistd';
  assert.deepEqual(
    loadConfig({
      ASSISTD_DATABASE_URL: url,
      ASSISTD_DATABASE_POOL: '4',
      ASSISTD_DATABASE_TIMEOUT_S: '5',
      ASSISTD_DATABASE_DIRECT_URL: directUrl,
      ASSISTD_DATABASE_PREPARED_STATEMENTS: 'off',
    }).storage,
    { kind: 'postgres', url, poolSize: 4, timeoutMs: 5000, directUrl, preparedStatements: false },
  );
  for (const [setting, bad] of [
    ['ASSISTD_DATABASE_POOL', ['0', 'ten', '-1', '1001']],
    ['ASSISTD_DATABASE_TIMEOUT_S', ['0', '1.5', '3601']],
    ['ASSISTD_DATABASE_DIRECT_URL', ['not a url', 'mysql://db.example/assistd']],
    ['ASSISTD_DATABASE_PREPARED_STATEMENTS', ['no', 'true']],
  ] as const)
    for (const value of bad)
      assert.throws(
        () => loadConfig({ ASSISTD_DATABASE_URL: url, [setting]: value }),
        (e: ConfigError) => e instanceof ConfigError && e.setting === setting,
      );
  assert.equal(loadConfig({ ASSISTD_DATABASE_POOL: 'ignored with SQLite' }).storage.kind, 'sqlite');
});

if (adminUrl === undefined) {
  test('PostgreSQL store', { skip: POSTGRES_SKIP_REASON }, () => {});
} else {
  const serverUrl = adminUrl;

  storeContract('postgres', async () => {
    const database = await createTestDatabase(serverUrl);
    const store = await openPostgresStore(database.url, 10);
    return {
      store,
      cleanup: async () => {
        await store.close();
        await database.drop();
      },
    };
  });

  describe('PostgreSQL store', () => {
    test('four processes opening one fresh database at once migrate it once; reopening changes nothing', async () => {
      const database = await createTestDatabase(serverUrl);
      try {
        const stores = await Promise.all(Array.from({ length: 4 }, () => openPostgresStore(database.url, 2)));
        const assistant = anAssistant();
        await stores[0]!.createAssistant(scope, assistant);
        for (const store of stores) assert.deepEqual(await store.getAssistant(scope, assistant.id), assistant);
        await Promise.all(stores.map((store) => store.close()));

        const reopened = await openPostgresStore(database.url, 2);
        assert.deepEqual(await reopened.getAssistant(scope, assistant.id), assistant);
        await reopened.close();
        // Each migration of src/storage/postgres/migrations applied exactly once.
        const migrations = readdirSync(path.join(ROOT, 'src/storage/postgres/migrations'))
          .map((file) => ({ name: file.replace(/\.ts$/, '') }))
          .sort((a, b) => a.name.localeCompare(b.name));
        assert.ok(migrations.length >= 4);
        assert.deepEqual(await query(database.url, 'select name from kysely_migration order by name'), migrations);
      } finally {
        await database.drop();
      }
    });

    test('a migration waiting for another process says so, naming the holder; its connection lost, startup fails with the reason and rolls back', async () => {
      const database = await createTestDatabase(serverUrl);
      // Another process's migration, as it holds the lock (Kysely's id, which migrate takes in its transaction).
      const other = new pg.Client({ connectionString: database.url });
      await other.connect();
      // And another deployment's, migrating its own database on the same server: the same lock number, not this one.
      const elsewhere = await createTestDatabase(serverUrl);
      const neighbour = new pg.Client({ connectionString: elsewhere.url });
      await neighbour.connect();
      await neighbour.query('begin');
      await neighbour.query('select pg_advisory_xact_lock(3853314791062309107)');
      try {
        await other.query('begin');
        await other.query('select pg_advisory_xact_lock(3853314791062309107)');
        const told: string[] = [];
        const opening = openPostgresStore(database.url, 2, undefined, {
          onMigrationWait: (message) => told.push(message),
        }).then(
          () => assert.fail('the store opened'),
          (error: unknown) => error,
        );
        const [waiting] = await eventually('the migration waiting for the lock', 10_000, async () => {
          const rows = (await query(
            database.url,
            "select pid from pg_stat_activity where wait_event_type = 'Lock' and query like '%pg_advisory_xact_lock%'",
          )) as Array<{ pid: number }>;
          return rows.length > 0 ? rows : undefined;
        });
        // The wait is told once, naming the connection that holds the lock, which an operator may end by its pid.
        const [holder] = (await other.query('select pg_backend_pid() as pid')).rows as Array<{ pid: number }>;
        assert.equal(told.length, 1);
        assert.match(
          told[0]!,
          /: waiting for the migrations another process is running \(it holds the migration lock\)/,
        );
        assert.match(
          told[0]!,
          new RegExp(
            `PostgreSQL backend pid ${holder!.pid} \\(state idle in transaction, in its transaction for \\d+ s\\)\\.$`,
          ),
        );
        await query(database.url, `select pg_terminate_backend(${waiting!.pid})`);
        // Not a crash of this process (an 'error' event with no listener): startup's own error.
        assert.match(
          String(await opening),
          /^Error: the migrations of postgres:\/\/\S+ failed: the database is unavailable/,
        );
        await other.query('rollback');
        assert.deepEqual(await query(database.url, "select to_regclass('kysely_migration') as t"), [{ t: null }]);
      } finally {
        await other.end();
        await neighbour.end();
        await database.drop();
        await elsewhere.drop();
      }
    });

    test('through a pooler that cannot keep prepared statements: the error names the setting, and with it off all goes', async () => {
      const database = await createTestDatabase(serverUrl);
      // Debian 12's PgBouncer (1.18) in transaction mode, on one server connection: the store's two connections both
      // prepare their statements on it.
      const pooler = await startPgBouncer(serverUrl, 'transaction', 1);
      const direct = { directUrl: database.url };
      try {
        const prepared = await openPostgresStore(pooler.through(database.url), 2, undefined, direct);
        const both = () => Promise.all([0, 1].map(() => prepared.getAssistant(scope, 'asst_none')));
        await assert.rejects(async () => {
          for (let i = 0; i < 10; i++) await both();
        }, /prepared statement .*: a pooler in transaction mode .* ASSISTD_DATABASE_PREPARED_STATEMENTS=off/);
        await prepared.close();

        const unprepared = await openPostgresStore(pooler.through(database.url), 2, undefined, {
          ...direct,
          preparedStatements: false,
        });
        const assistant = anAssistant();
        await unprepared.createAssistant(scope, assistant);
        for (let i = 0; i < 10; i++)
          assert.deepEqual(await Promise.all([0, 1].map(() => unprepared.getAssistant(scope, assistant.id))), [
            assistant,
            assistant,
          ]);
        await unprepared.close();
      } finally {
        await pooler.stop();
        await database.drop();
      }
    });

    test("deleting a thread while a run's commit holds the run: the delete waits for it, and neither deadlocks", async () => {
      const database = await createTestDatabase(serverUrl);
      const store = await openPostgresStore(database.url, 4);
      const committer = new pg.Client({ connectionString: database.url });
      try {
        await committer.connect();
        const thread = aThread();
        await store.createThread(scope, thread, []);
        const run = aRun(thread.id);
        await store.createRun(scope, run, []);
        // A run's commit locks the run's row first (its fenced update), then, by the foreign key of a message or
        // step it writes, the thread's row (one-statement-commit.ts).
        await committer.query('begin');
        await committer.query(`update runs set status = 'in_progress' where id = $1`, [run.id]);
        const deleting = store.deleteThread(scope, thread.id);
        await eventually('the deletion to wait for a lock', 10_000, async () => {
          const [row] = await query(
            database.url,
            `select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock'`,
          );
          return (row as { n: number }).n > 0 ? true : undefined;
        });
        await committer.query('select 1 from threads where id = $1 for key share', [thread.id]);
        await committer.query('commit');
        assert.deepEqual(await deleting, [run.id]);
        assert.equal(await store.getThread(scope, thread.id), undefined);
      } finally {
        await committer.end().catch(() => {});
        await store.close();
        await database.drop();
      }
    });

    test('50 run creations on one thread, all in flight at once: the thread lock serialises them, one wins', async () => {
      const database = await createTestDatabase(serverUrl);
      await (await openPostgresStore(database.url, 1)).close(); // migrate
      // A store with 50 connections whose unique-violation check is counted: with the thread row locked, every
      // loser must be refused by the active-run check, none by the unique index behind it.
      let violations = 0;
      const capabilities: SqlCapabilities = {
        rowLocks: true,
        statementsOnEventLoop: false,
        keywordIndex: 'tsvector',
        vectorIndex: 'matrix-cache',
        jsonField: POSTGRES_CAPABILITIES.jsonField,
        isUniqueViolation: (error, index) => {
          const violated = POSTGRES_CAPABILITIES.rowLocks && POSTGRES_CAPABILITIES.isUniqueViolation(error, index);
          if (violated) violations++;
          return violated;
        },
      };
      const pool = new pg.Pool({ connectionString: database.url, max: 50 });
      // As in openPostgresStore: a connection the final forced drop terminates while it is still closing reports an
      // 'error' event, which must not become an uncaught exception.
      pool.on('error', () => {});
      const store = new SqlStore(new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }), 'spy', capabilities);
      try {
        const thread = aThread();
        await store.createThread(scope, thread, []);
        const runs = Array.from({ length: 50 }, () => aRun(thread.id));
        const outcomes = await Promise.allSettled(
          runs.map((run) => store.createRun(scope, run, [aMessage(thread.id)])),
        );
        const winners = runs.filter((_, i) => outcomes[i]?.status === 'fulfilled');
        assert.equal(winners.length, 1);
        const expected = `Thread ${thread.id} already has an active run ${winners[0]!.id}.`;
        for (const outcome of outcomes)
          if (outcome.status === 'rejected') {
            assert.ok(outcome.reason instanceof ApiError, String(outcome.reason));
            assert.equal(outcome.reason.message, expected);
          }
        assert.equal(violations, 0, 'no creation reached the unique index');
      } finally {
        await store.close();
        await database.drop();
      }
    });

    test('a run that slips past the thread lock hits the unique index and still gets the thread-lock error', async () => {
      const database = await createTestDatabase(serverUrl);
      const store = await openPostgresStore(database.url, 4);
      const intruder = new pg.Client({ connectionString: database.url });
      await intruder.connect();
      try {
        const thread = aThread();
        await store.createThread(scope, thread, []);
        // Another writer inserts an active run without locking the thread row and has not committed yet: the
        // store's active-run check cannot see it, so its insert waits on the unique index, then violates it.
        await intruder.query('begin');
        await intruder.query(
          `insert into runs (id, project_id, thread_id, assistant_id, created_at, status, model, instructions, tools,
             metadata, truncation_strategy, tool_choice, parallel_tool_calls, response_format)
           values ('run_intruder', $1, $2, 'asst_x', 1, 'queued', 'm', '', '[]', '{}', '{}', '"auto"', 1, '"auto"')`,
          [scope.projectId, thread.id],
        );
        const creating = store.createRun(scope, aRun(thread.id), []);
        creating.catch(() => {}); // observed below, after the intruder commits
        await waitFor(async () => {
          const rows = await query(
            database.url,
            `select 1 from pg_stat_activity where datname = '${database.name}' and wait_event_type = 'Lock'`,
          );
          return rows.length === 1;
        });
        await intruder.query('commit');
        await assert.rejects(creating, (e: ApiError) => {
          assert.ok(e instanceof ApiError, String(e));
          assert.equal(e.message, `Thread ${thread.id} already has an active run run_intruder.`);
          return true;
        });
      } finally {
        await intruder.end();
        await store.close();
        await database.drop();
      }
    });

    // Messages land behind a run at the moment that run's ending commits in one statement (one-statement-commit.ts):
    // a message queued then, or the messages of a waiting run cancelled then, moved behind the run going
    // (releaseQueuedMessages). The statement reads the thread as it was when it began, so what lands meanwhile must
    // still stop it; else the run ends without releasing them, and they wait behind an ended run for ever, unread by
    // every later run. A trigger holds the queuing transaction open between its writes until the ending has started.
    const landings: Array<
      [string, (store: SqlStore, threadId: string) => Promise<{ id: string; land(): Promise<unknown> }>]
    > = [
      [
        'a message queued behind a run as its ending commits joins the thread after it',
        async (store, threadId) => {
          const message = aMessage(threadId, 'asked as the run ended');
          return { id: message.id, land: () => store.createMessage(scope, message, { queue: true }) };
        },
      ],
      [
        'the messages of a waiting run cancelled as the run before it ends join the thread after that run',
        async (store, threadId) => {
          const waiting = aRun(threadId, { created_at: 1_700_000_001 });
          assert.deepEqual(await store.createRun(scope, waiting, [], undefined, { queue: true }), { waiting: true });
          const message = aMessage(threadId, 'asked after the waiting run');
          await store.createMessage(scope, message, { queue: true });
          const cancelled: Run = { ...waiting, status: 'cancelled', cancelled_at: 1_700_000_010 };
          return {
            id: message.id,
            land: () => store.commitRun(scope, { run: cancelled, expect: { status: 'queued' } }),
          };
        },
      ],
    ];
    for (const [name, arrange] of landings)
      test(name, async () => {
        const database = await createTestDatabase(serverUrl);
        const store = await openPostgresStore(database.url, 4);
        const holder = new pg.Client({ connectionString: database.url });
        try {
          await holder.connect();
          const thread = aThread();
          await store.createThread(scope, thread, []);
          const going = aRun(thread.id);
          await store.createRun(scope, going, []);
          const { id, land } = await arrange(store, thread.id);
          await holder.query(`create function hold_queuing() returns trigger language plpgsql as $$
            begin perform pg_advisory_xact_lock(4242); return new; end $$`);
          await holder.query(`create trigger hold_queuing before update of queued_behind on messages for each row
            when (new.queued_behind is not null) execute function hold_queuing()`);
          await holder.query('select pg_advisory_lock(4242)');
          const landing = land();
          const waiters = async () => {
            const [row] = await query(
              database.url,
              `select count(*)::int as n from pg_stat_activity where datname = '${database.name}' and wait_event_type in ('Lock', 'Advisory')`,
            );
            return (row as { n: number }).n;
          };
          await waitFor(async () => (await waiters()) === 1);
          let settled = false;
          const ending = store
            .commitRun(scope, {
              run: { ...going, status: 'completed', completed_at: 1_700_000_020 },
              expect: { status: 'queued' },
            })
            .finally(() => {
              settled = true;
            });
          // The ending waits for the landing (a second waiter), or, not stopped by it, has already ended the run.
          await waitFor(async () => settled || (await waiters()) === 2);
          await holder.query('select pg_advisory_unlock(4242)');
          await landing;
          assert.ok(await ending, 'the run ended');
          const stranded = await query(
            database.url,
            `select m.id from messages m join runs r on r.id = m.queued_behind where r.status not in ('queued', 'in_progress', 'requires_action', 'cancelling')`,
          );
          assert.deepEqual(stranded, [], 'no message waits behind an ended run');
          const read = await store.threadMessagesFrom(scope, thread.id, 'oldest', 0, 100);
          assert.ok(
            read.some((m) => m.id === id),
            'the next run reads the message',
          );
        } finally {
          await holder.end().catch(() => {});
          await store.close();
          await database.drop();
        }
      });

    test('an unreachable or missing database stops startup naming ASSISTD_DATABASE_URL, never the password', async () => {
      const password = 'pa55-s3cret';
      const missing = new URL(serverUrl);
      missing.password = password;
      missing.pathname = '/assistd_no_such_database';
      const refused = new URL(missing);
      refused.port = '1';
      for (const url of [missing.toString(), refused.toString()]) {
        const storage = loadConfig({ ASSISTD_DATABASE_URL: url, ASSISTD_DATABASE_POOL: '3' }).storage;
        assert.deepEqual(storage, { kind: 'postgres', url, poolSize: 3, timeoutMs: 30_000, preparedStatements: true });
        await assert.rejects(openStore(storage), (e: Error) => {
          assert.ok(e instanceof ConfigError, String(e));
          assert.equal(e.setting, 'ASSISTD_DATABASE_URL');
          assert.match(e.message, /^ASSISTD_DATABASE_URL: cannot connect to postgres:\/\/\S+: \S/);
          assert.ok(!e.message.includes(password), e.message);
          return true;
        });
      }
      // The listening connection's own URL, when given, is checked as well.
      const direct = loadConfig({ ASSISTD_DATABASE_URL: serverUrl, ASSISTD_DATABASE_DIRECT_URL: refused.toString() });
      await assert.rejects(openStore(direct.storage), (e: Error) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.equal(e.setting, 'ASSISTD_DATABASE_DIRECT_URL');
        assert.match(e.message, /^ASSISTD_DATABASE_DIRECT_URL: cannot connect to postgres:\/\/\S+:1\/\S+: \S/);
        assert.ok(!e.message.includes(password), e.message);
        return true;
      });
    });

    test('a user who may not create tables stops startup naming ASSISTD_DATABASE_URL and the grant, never the password', async () => {
      const database = await createTestDatabase(serverUrl);
      const role = `assistd_test_user_${database.name.slice(-12)}`;
      const password = 'pa55-s3cret';
      // PostgreSQL 15's default for a user who does not own the database: no CREATE on schema public.
      await query(serverUrl, `create role ${role} login password '${password}'`);
      await query(database.url, 'revoke create on schema public from public');
      const url = new URL(database.url);
      url.username = role;
      url.password = password;
      try {
        await assert.rejects(openStore(loadConfig({ ASSISTD_DATABASE_URL: url.toString() }).storage), (e: Error) => {
          assert.ok(e instanceof ConfigError, String(e));
          assert.equal(e.setting, 'ASSISTD_DATABASE_URL');
          assert.equal(
            e.message,
            `ASSISTD_DATABASE_URL: cannot create assistd's tables in postgres://${role}@${url.host}/${database.name}: permission denied for schema public (GRANT CREATE ON SCHEMA public TO ${role}, or make the user own the database)`,
          );
          assert.ok(!e.message.includes(password), e.message);
          return true;
        });
      } finally {
        await database.drop();
        await query(serverUrl, `drop role ${role}`);
      }
    });

    test('a database that does not answer stops startup once ASSISTD_DATABASE_TIMEOUT_S has passed', async () => {
      const database = await createTestDatabase(serverUrl);
      const target = new URL(database.url);
      const proxy = await TcpProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
      try {
        proxy.stall(); // connections accepted, never answered
        const storage = loadConfig({
          ASSISTD_DATABASE_URL: proxy.through(database.url),
          ASSISTD_DATABASE_TIMEOUT_S: '1',
        }).storage;
        const outcome = await within(
          'startup on a database that does not answer',
          5000,
          openStore(storage).then(
            (store) => store.close().then(() => 'opened'),
            (error: unknown) => error,
          ),
        );
        assert.ok(outcome instanceof ConfigError, String(outcome));
        assert.equal(outcome.setting, 'ASSISTD_DATABASE_URL');
        assert.match(outcome.message, /^ASSISTD_DATABASE_URL: cannot connect to postgres:\/\/\S+: timeout/);
      } finally {
        proxy.restore();
        await proxy.close();
        await database.drop();
      }
    });

    test("a thread's attachments are read from the index of the messages that have some, not by scanning the thread", async () => {
      const database = await createTestDatabase(serverUrl);
      const store = await openPostgresStore(database.url, 2);
      const pool = new pg.Pool({ connectionString: database.url, max: 1 });
      const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
      try {
        const thread = await storedThreadWithOneAttachment(store, scope);
        // A table this small is read whole whatever its indexes: the planner is told to use one if it can.
        await sql`set enable_seqscan = off`.execute(db);
        const plan = await sql<{ 'QUERY PLAN': string }>`explain select doc from messages
          where thread_id = ${thread.id} and project_id = ${scope.projectId} and queued_behind is null
            and ${WITH_ATTACHMENTS} order by created_at, seq`.execute(db);
        const text = plan.rows.map((row) => row['QUERY PLAN']).join('\n');
        assert.match(text, /Index Scan (using|on) messages_with_attachments/, text);
      } finally {
        await db.destroy();
        await store.close();
        await database.drop();
      }
    });

    test('statements run prepared, and one whose plan a migration invalidated runs again unprepared', async () => {
      const database = await createTestDatabase(adminUrl);
      const pool = new pg.Pool({ connectionString: database.url, max: 1 });
      const db = new Kysely<{ t: { id: number; extra?: string } }>({
        dialect: new PostgresDialect({ pool: kyselyPool(pool, 10_000) }),
      });
      try {
        await sql`create table t (id integer)`.execute(db);
        await sql`insert into t values (1)`.execute(db);
        const read = () => db.selectFrom('t').selectAll().where('id', '=', 1).execute();
        assert.deepEqual(await read(), [{ id: 1 }]);
        const prepared = await sql<{ n: number }>`select count(*)::int as n from pg_prepared_statements`.execute(db);
        assert.equal(prepared.rows[0]!.n, 1);
        // Another process's migration changes the table under the prepared plan.
        await query(database.url, "alter table t add column extra text default 'x'");
        assert.deepEqual(await read(), [{ id: 1, extra: 'x' }]);
        assert.deepEqual(await read(), [{ id: 1, extra: 'x' }]);
      } finally {
        await db.destroy();
        await database.drop();
      }
    });
  });
}

async function query(url: string, text: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text)).rows;
  } finally {
    await client.end();
  }
}

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the condition');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
