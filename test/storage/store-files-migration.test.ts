import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import { newId } from '../../src/domain/ids.ts';
import { up as upPostgres } from '../../src/storage/postgres/migrations/013-store-files-of-deleted-files.ts';
import { openPostgresStore } from '../../src/storage/postgres/open-postgres-store.ts';
import { up as upSqlite } from '../../src/storage/sqlite/migrations/013-store-files-of-deleted-files.ts';
import { openSqliteStore, SQLITE_FILE_NAME } from '../../src/storage/sqlite/open-sqlite-store.ts';
import type { Scope, Store } from '../../src/storage/store.ts';
import { aVectorStore, aVectorStoreFile } from '../support/builders.ts';
import { recordFile } from '../support/file-rows.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { tempDir } from '../support/server.ts';

/**
 * Migration 013 takes out of their stores the vector-store files whose file is gone, as a file deleted or expired
 * before deletion and expiry did it in one transaction could be. A file row is deleted behind the store's back, as
 * then, and the migration run again: that file is out of its store with its chunks, the other file untouched.
 */

const T0 = 1_700_000_000;
const scope: Scope = { projectId: 'proj_migrate' };

interface Backend {
  open(): Promise<Store>;
  /** Runs `statement`, then migration 013, on a connection of its own with the store closed. */
  raw(statement: string): Promise<void>;
  cleanup(): Promise<void>;
}

async function checkMigration(backend: Backend): Promise<void> {
  let store = await backend.open();
  const id = newId('vectorStore');
  const gone = await recordFile(store.files, scope, 'expired.txt', T0);
  const kept = await recordFile(store.files, scope, 'kept.txt', T0);
  await store.vectorStores.createVectorStore(scope, aVectorStore({ id }), [
    aVectorStoreFile(id, gone),
    aVectorStoreFile(id, kept),
  ]);
  for (const job of await store.vectorStores.claimIngestions('w', Date.now(), Number.MAX_SAFE_INTEGER, 10)) {
    const chunks = [
      { index: 0, text: `wombat notes of ${job.fileId === gone ? 'the gone' : 'the kept'} file`, tokens: 5 },
    ];
    assert.equal(await store.vectorStores.completeIngestion(scope, id, job.fileId, 'w', chunks, 10), true);
  }
  const search = async () =>
    (await store.vectorStores.searchChunks(scope, { query: 'wombat', vectorStoreIds: [id], limit: 10 })).map(
      (hit) => hit.text,
    );
  assert.equal((await search()).length, 2);
  await store.close();

  await backend.raw(`delete from files where id = '${gone}'`);

  store = await backend.open();
  try {
    assert.equal(await store.vectorStores.getVectorStoreFile(scope, id, gone), undefined);
    assert.deepEqual(await store.vectorStores.fileChunks(scope, id, gone), []);
    assert.equal((await store.vectorStores.getVectorStoreFile(scope, id, kept))?.status, 'completed');
    assert.equal((await store.vectorStores.getVectorStore(scope, id))?.file_counts.total, 1);
    assert.deepEqual(await search(), ['wombat notes of the kept file']);
  } finally {
    await store.close();
    await backend.cleanup();
  }
}

test('013-store-files-of-deleted-files on SQLite', async () => {
  const dir = tempDir();
  await checkMigration({
    open: () => openSqliteStore(dir),
    raw: async (statement) => {
      const sqlite = new BetterSqlite3(path.join(dir, SQLITE_FILE_NAME));
      sqlite.pragma('foreign_keys = ON');
      const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: sqlite }) });
      await sql.raw(statement).execute(db);
      await upSqlite(db);
      await db.destroy();
    },
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  });
});

const adminUrl = postgresUrlOrSkip();
test('013-store-files-of-deleted-files on PostgreSQL', { skip: adminUrl ? false : POSTGRES_SKIP_REASON }, async () => {
  const database = await createTestDatabase(adminUrl!);
  await checkMigration({
    open: () => openPostgresStore(database.url, 4),
    raw: async (statement) => {
      const db = new Kysely<unknown>({
        dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: database.url }) }),
      });
      await sql.raw(statement).execute(db);
      await upPostgres(db);
      await db.destroy();
    },
    cleanup: () => database.drop(),
  });
});
