import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import * as postgresMigration from '../../src/storage/postgres/migrations/009-thread-activity.ts';
import { openPostgresStore } from '../../src/storage/postgres/open-postgres-store.ts';
import type { SqlStore } from '../../src/storage/sql/sql-store.ts';
import * as sqliteMigration from '../../src/storage/sqlite/migrations/009-thread-activity.ts';
import { openSqliteStore, SQLITE_FILE_NAME } from '../../src/storage/sqlite/open-sqlite-store.ts';
import type { Scope } from '../../src/storage/store.ts';
import { aMessage, aRun, aThread } from '../support/builders.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { tempDir } from '../support/server.ts';

/**
 * Migration 009-thread-activity backfills `last_active_at` of the threads a database already holds: the latest of
 * the thread's creation, its clients' messages and its runs (a run's answers, which carry the run, do not count).
 * The column is dropped from a migrated database holding such threads and the migration run again.
 */

const scope: Scope = { projectId: 'proj_backfill' };

async function checkBackfill(
  store: SqlStore,
  raw: () => Kysely<unknown>,
  up: (db: Kysely<unknown>) => Promise<void>,
): Promise<void> {
  const quiet = aThread({ created_at: 1000 });
  const talked = aThread({ created_at: 1000 });
  const ran = aThread({ created_at: 1000 });
  const answered = aThread({ created_at: 1000 });
  await store.createThread(scope, quiet, []);
  await store.createThread(scope, talked, [aMessage(talked.id, 'first', { created_at: 1000 })]);
  await store.createMessage(scope, aMessage(talked.id, 'later', { created_at: 1500 }));
  await store.createThread(scope, ran, []);
  await store.createRun(scope, aRun(ran.id, { created_at: 1300 }), []);
  await store.createThread(scope, answered, [aMessage(answered.id, 'answer', { created_at: 1900, run_id: 'run_x' })]);
  await store.close();

  const db = raw();
  try {
    await sql`drop index threads_by_activity`.execute(db);
    await sql`alter table threads drop column last_active_at`.execute(db);
    await up(db);
    const { rows } = await sql<{ id: string; last_active_at: number | string }>`
      select id, last_active_at from threads`.execute(db);
    const activity = Object.fromEntries(rows.map((r) => [r.id, Number(r.last_active_at)]));
    assert.deepEqual(activity, { [quiet.id]: 1000, [talked.id]: 1500, [ran.id]: 1300, [answered.id]: 1000 });
  } finally {
    await db.destroy();
  }
}

test('009-thread-activity backfills last_active_at on SQLite', async () => {
  const dir = tempDir();
  try {
    const raw = () =>
      new Kysely<unknown>({
        dialect: new SqliteDialect({ database: new BetterSqlite3(path.join(dir, SQLITE_FILE_NAME)) }),
      });
    await checkBackfill(await openSqliteStore(dir), raw, sqliteMigration.up);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined)
  test('009-thread-activity backfills last_active_at on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  test('009-thread-activity backfills last_active_at on PostgreSQL', async () => {
    const database = await createTestDatabase(postgresUrl);
    try {
      const raw = () =>
        new Kysely<unknown>({
          dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: database.url, max: 1 }) }),
        });
      await checkBackfill(await openPostgresStore(database.url, 2), raw, postgresMigration.up);
    } finally {
      await database.drop();
    }
  });
