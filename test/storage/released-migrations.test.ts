import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { ConfigError } from '../../src/config.ts';
import { openPostgresStore } from '../../src/storage/postgres/open-postgres-store.ts';
import { openSqliteStore, SQLITE_FILE_NAME } from '../../src/storage/sqlite/open-sqlite-store.ts';
import type { Scope, Store } from '../../src/storage/store.ts';
import { aMessage, aRun, aThread } from '../support/builders.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { tempDir } from '../support/server.ts';

/**
 * A database keeps the names of the migrations it ran, and a server refuses one that ran a migration it does not
 * list. So a released migration's name is never taken back: 021-step-tokens-window, released and then reverted, is
 * listed (doing nothing) and its index dropped by 023. A database migrated by a version this one does not know is
 * refused with a ConfigError saying what to do, and left as it was.
 */

interface Backend {
  open(): Promise<Store>;
  /** Runs SQL on the database with the store closed. */
  sql(statement: string): Promise<void>;
  /**
   * The names of the migrations the database ran, whether the reverted migration's index exists, and how many runs
   * are marked as having messages queued behind them (migration 024).
   */
  state(): Promise<{ migrations: string[]; stepTimeIndex: boolean; markedRuns: number }>;
  cleanup(): Promise<void>;
}

const scope: Scope = { projectId: 'proj_migrations' };

async function check(backend: Backend): Promise<void> {
  try {
    // A message queued behind a run, as a version before 024 left it: 024 marks the run (queued-messages.ts).
    const store = await backend.open();
    const thread = aThread();
    await store.createThread(scope, thread, []);
    await store.createRun(scope, aRun(thread.id), []);
    await store.createMessage(scope, aMessage(thread.id, 'asked while it ran'), { queue: true });
    await store.close();
    // As a version with the reverted migration left it: 001–020, then 021-step-tokens-window and its index.
    await backend.sql(`delete from kysely_migration where name > '021'`);
    await backend.sql(
      `insert into kysely_migration (name, timestamp) select '021-step-tokens-window', max(timestamp) from kysely_migration`,
    );
    await backend.sql('create index run_steps_by_time on run_steps (project_id, created_at)');
    await backend.sql('alter table runs drop column queued_messages'); // 024's
    await (await backend.open()).close();
    const upgraded = await backend.state();
    assert.deepEqual(upgraded.migrations.slice(-4), [
      '021-step-tokens-window',
      '022-stemmed-keywords',
      '023-no-step-time-index',
      '024-queued-messages-mark',
    ]);
    assert.equal(upgraded.stepTimeIndex, false, 'the reverted index is dropped');
    assert.equal(upgraded.markedRuns, 1, 'the run that a message waits behind is marked');

    // A newer version's migration: refused, said so, and nothing changed.
    await backend.sql(
      `insert into kysely_migration (name, timestamp) select '999-from-the-future', max(timestamp) from kysely_migration`,
    );
    const before = await backend.state();
    await assert.rejects(
      backend.open(),
      (error: unknown) =>
        error instanceof ConfigError &&
        /was migrated by another version of assistd \(its migration 999-from-the-future is unknown to this one\): run that version or a newer one, or restore a backup/.test(
          error.message,
        ),
    );
    assert.deepEqual(await backend.state(), before);
  } finally {
    await backend.cleanup();
  }
}

test('SQLite: every released migration name is known; a newer version’s database is refused clearly', async () => {
  const dir = tempDir();
  const file = path.join(dir, SQLITE_FILE_NAME);
  await check({
    open: () => openSqliteStore(dir),
    sql: async (statement) => {
      const db = new BetterSqlite3(file);
      db.exec(statement);
      db.close();
    },
    state: async () => {
      const db = new BetterSqlite3(file, { readonly: true });
      const migrations = (
        db.prepare('select name from kysely_migration order by name').all() as Array<{ name: string }>
      ).map((row) => row.name);
      const stepTimeIndex =
        db.prepare("select 1 from sqlite_master where name = 'run_steps_by_time'").get() !== undefined;
      const { n } = db.prepare('select count(*) as n from runs where queued_messages = 1').get() as { n: number };
      db.close();
      return { migrations, stepTimeIndex, markedRuns: n };
    },
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  });
});

const adminUrl = postgresUrlOrSkip();
test('PostgreSQL: every released migration name is known; a newer version’s database is refused clearly', {
  skip: adminUrl ? false : POSTGRES_SKIP_REASON,
}, async () => {
  const database = await createTestDatabase(adminUrl!);
  const query = async <R extends pg.QueryResultRow>(statement: string) => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      return (await client.query<R>(statement)).rows;
    } finally {
      await client.end();
    }
  };
  await check({
    open: () => openPostgresStore(database.url, 2),
    sql: async (statement) => void (await query(statement)),
    state: async () => ({
      migrations: (await query<{ name: string }>('select name from kysely_migration order by name')).map(
        (row) => row.name,
      ),
      stepTimeIndex: (await query(`select 1 from pg_indexes where indexname = 'run_steps_by_time'`)).length > 0,
      markedRuns: (await query<{ n: number }>('select count(*)::int as n from runs where queued_messages = 1'))[0]!.n,
    }),
    cleanup: () => database.drop(),
  });
});
