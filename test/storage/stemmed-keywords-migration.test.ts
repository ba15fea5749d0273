import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import { newId } from '../../src/domain/ids.ts';
import { up as upPostgres } from '../../src/storage/postgres/migrations/022-stemmed-keywords.ts';
import { openPostgresStore } from '../../src/storage/postgres/open-postgres-store.ts';
import { ftsTableOf } from '../../src/storage/sql/fts5-tables.ts';
import { keywordText } from '../../src/storage/sql/keyword-text.ts';
import { up as upSqlite } from '../../src/storage/sqlite/migrations/022-stemmed-keywords.ts';
import { openSqliteStore, SQLITE_FILE_NAME } from '../../src/storage/sqlite/open-sqlite-store.ts';
import type { Scope, Store } from '../../src/storage/store.ts';
import { aVectorStore, aVectorStoreFile } from '../support/builders.ts';
import { recordFile } from '../support/file-rows.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { tempDir } from '../support/server.ts';

/**
 * Migration 022 moves stemming out of the databases into keywordText (sql/keyword-text.ts): SQLite's FTS5 tables
 * lose the `porter` tokenizer, PostgreSQL's vectors are made with the `simple` config. A database is put back as it
 * was before (the index as each database's stemmer made it) and migrated again: searches find what the stemmer the
 * two databases now share finds, and what ingestion writes next sits beside the migrated entries.
 */

const T0 = 1_700_000_000;
const scope: Scope = { projectId: 'proj_stems' };
/** A project whose chunks were all deleted, its FTS5 table left behind. */
const emptied: Scope = { projectId: 'proj_emptied' };
const TEXTS = ['Clear skies over the harbour.', 'Breaking news tonight.', 'A new bridge opened.'];

interface Backend {
  open(): Promise<Store>;
  /** Puts the keyword index back as before the migration, then runs migration 022, with the store closed. */
  migrate(): Promise<void>;
  cleanup(): Promise<void>;
}

async function storeWith(store: Store, projectScope: Scope, texts: string[]): Promise<string> {
  const id = newId('vectorStore');
  const fileId = await recordFile(store.files, projectScope, 'notes.txt', T0);
  await store.vectorStores.createVectorStore(projectScope, aVectorStore({ id }), [aVectorStoreFile(id, fileId)]);
  const [job] = await store.vectorStores.claimIngestions('w', Date.now(), Number.MAX_SAFE_INTEGER, 10);
  const chunks = texts.map((text, index) => ({ index, text, tokens: 4 }));
  assert.equal(await store.vectorStores.completeIngestion(projectScope, id, job!.fileId, 'w', chunks, 10), true);
  return id;
}

async function checkMigration(backend: Backend): Promise<void> {
  let store = await backend.open();
  const id = await storeWith(store, scope, TEXTS);
  const gone = await storeWith(store, emptied, ['Skies of a project emptied later.']);
  assert.equal(await store.vectorStores.deleteVectorStore(emptied, gone), true);
  await store.close();

  await backend.migrate();

  store = await backend.open();
  try {
    const found = async (projectScope: Scope, query: string, stores: string[]) =>
      (await store.vectorStores.searchChunks(projectScope, { query, vectorStoreIds: stores, limit: 10 })).map(
        (hit) => hit.text,
      );
    assert.deepEqual(await found(scope, 'sky', [id]), ['Clear skies over the harbour.']);
    assert.deepEqual(await found(scope, 'news', [id]), ['Breaking news tonight.']);
    assert.deepEqual(await found(scope, 'new', [id]), ['A new bridge opened.']);
    // Ingestion after the migration, in a project with entries and in the emptied one.
    const later = await storeWith(store, scope, ['Skies cleared again.']);
    assert.deepEqual((await found(scope, 'skies', [id, later])).sort(), [
      'Clear skies over the harbour.',
      'Skies cleared again.',
    ]);
    const again = await storeWith(store, emptied, ['Skies of a project in use again.']);
    assert.deepEqual(await found(emptied, 'sky', [again]), ['Skies of a project in use again.']);
  } finally {
    await store.close();
    await backend.cleanup();
  }
}

test('022-stemmed-keywords on SQLite: every FTS5 table is made again without porter, its entries from the text', async () => {
  const dir = tempDir();
  const file = path.join(dir, SQLITE_FILE_NAME);
  await checkMigration({
    open: () => openSqliteStore(dir),
    migrate: async () => {
      const sqlite = new BetterSqlite3(file);
      const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: sqlite }) });
      // As before: FTS5's porter stemmed what was indexed, unstemmed and with its stop words.
      for (const { projectId } of [scope, emptied]) {
        const table = ftsTableOf(projectId);
        await sql`drop trigger ${sql.id(`${table}_delete`)}`.execute(db);
        await sql`drop table ${sql.id(table)}`.execute(db);
        await sql`
          create virtual table ${sql.id(table)} using fts5(keywords, content = '', contentless_delete = 1,
            tokenize = "porter unicode61 remove_diacritics 0 categories 'L* N* Co M*'")`.execute(db);
        await sql`
          create trigger ${sql.id(`${table}_delete`)} after delete on chunks
          when old.project_id = ${sql.lit(projectId)} begin
            delete from ${sql.id(table)} where rowid = old.seq;
          end`.execute(db);
        await sql`
          insert into ${sql.id(table)} (rowid, keywords)
          select seq, lower(text) from chunks where project_id = ${projectId}`.execute(db);
      }
      await upSqlite(db);
      const { rows } = await sql<{ sql: string }>`
        select sql from sqlite_master where type = 'table' and sql like '%porter%'`.execute(db);
      assert.deepEqual(rows, [], 'no table tokenizes with porter');
      await db.destroy();
    },
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  });
});

const adminUrl = postgresUrlOrSkip();
test("022-stemmed-keywords on PostgreSQL: every chunk's vector is made again from its stemmed text with `simple`", {
  skip: adminUrl ? false : POSTGRES_SKIP_REASON,
}, async () => {
  const database = await createTestDatabase(adminUrl!);
  await checkMigration({
    open: () => openPostgresStore(database.url, 4),
    migrate: async () => {
      const db = new Kysely<unknown>({
        dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: database.url }) }),
      });
      // As before: the `english` config stemmed the unstemmed words.
      await sql`update chunks set keywords = to_tsvector('english', lower(text))`.execute(db);
      await upPostgres(db);
      const { rows } = await sql<{ text: string; keywords: string }>`
          select text, keywords::text as keywords from chunks`.execute(db);
      assert.equal(rows.length, TEXTS.length);
      for (const row of rows) {
        const { rows: expected } = await sql<{ keywords: string }>`
            select to_tsvector('simple', ${keywordText(row.text)})::text as keywords`.execute(db);
        assert.equal(row.keywords, expected[0]!.keywords, row.text);
      }
      await db.destroy();
    },
    cleanup: () => database.drop(),
  });
});
