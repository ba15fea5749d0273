import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect, sql } from 'kysely';
import { newId } from '../../src/domain/ids.ts';
import { ftsTableOf } from '../../src/storage/sql/fts5-tables.ts';
import { up } from '../../src/storage/sqlite/migrations/012-keyword-index-per-project.ts';
import { openSqliteStore, SQLITE_FILE_NAME } from '../../src/storage/sqlite/open-sqlite-store.ts';
import type { Scope } from '../../src/storage/store.ts';
import { aVectorStore, aVectorStoreFile } from '../support/builders.ts';
import { recordFile } from '../support/file-rows.ts';
import { tempDir } from '../support/server.ts';

/**
 * Migration 012 moves SQLite's keyword index from one FTS5 table for every project to one per project
 * (sql/fts5-tables.ts), making the entries again from the chunks' text. A database is put back as it was before
 * (the shared `chunks_fts` and its trigger, the project tables gone) and migrated again: every project's searches
 * find what they found, and deleting a store still empties its entries.
 */

const T0 = 1_700_000_000;
const projects: Scope[] = [{ projectId: 'proj_a' }, { projectId: 'proj_B' }, { projectId: "proj_'quoted'" }];

test('012-keyword-index-per-project rebuilds every project keyword index from the chunks', async () => {
  const dir = tempDir();
  try {
    let store = await openSqliteStore(dir);
    const stores: Record<string, string> = {};
    for (const [n, scope] of projects.entries()) {
      const id = newId('vectorStore');
      stores[scope.projectId] = id;
      const fileId = await recordFile(store.files, scope, 'notes.txt', T0);
      await store.vectorStores.createVectorStore(scope, aVectorStore({ id }), [aVectorStoreFile(id, fileId)]);
      const [job] = await store.vectorStores.claimIngestions('w', Date.now(), Number.MAX_SAFE_INTEGER, 10);
      const texts = [`Café opening hours ${n}`, `The descaling schedule, project ${n}`, '中文搜索 works too'];
      const chunks = texts.map((text, index) => ({ index, text, tokens: 4 }));
      assert.equal(await store.vectorStores.completeIngestion(scope, id, job!.fileId, 'w', chunks, 10), true);
    }
    const searches = async () =>
      Promise.all(
        projects.flatMap((scope) =>
          ['cafe', 'descaling schedules', '搜索', `project ${projects.indexOf(scope)}`].map((query) =>
            store.vectorStores.searchChunks(scope, { query, vectorStoreIds: [stores[scope.projectId]!], limit: 10 }),
          ),
        ),
      );
    const before = await searches();
    assert.ok(before.every((hits) => hits.length > 0));
    await store.close();

    // As before the migration: one table for all, its trigger, no project tables.
    const raw = new Kysely<unknown>({
      dialect: new SqliteDialect({ database: new BetterSqlite3(path.join(dir, SQLITE_FILE_NAME)) }),
    });
    for (const scope of projects) {
      await sql`drop trigger ${sql.id(`${ftsTableOf(scope.projectId)}_delete`)}`.execute(raw);
      await sql`drop table ${sql.id(ftsTableOf(scope.projectId))}`.execute(raw);
    }
    await sql`
      create virtual table chunks_fts using fts5(keywords, content = '', contentless_delete = 1,
        tokenize = "porter unicode61 remove_diacritics 0 categories 'L* N* Co M*'")`.execute(raw);
    await sql`
      create trigger chunks_fts_delete after delete on chunks begin
        delete from chunks_fts where rowid = old.seq;
      end`.execute(raw);
    await up(raw);
    const { rows } = await sql<{ name: string }>`
      select name from sqlite_master where name in ('chunks_fts', 'chunks_fts_delete')`.execute(raw);
    assert.deepEqual(rows, [], 'the shared table and its trigger are gone');
    await raw.destroy();

    store = await openSqliteStore(dir);
    assert.deepEqual(await searches(), before);
    // A store's deletion still empties its entries (the project's trigger).
    const [first] = projects;
    assert.equal(await store.vectorStores.deleteVectorStore(first!, stores[first!.projectId]!), true);
    const check = new BetterSqlite3(path.join(dir, SQLITE_FILE_NAME), { readonly: true });
    const entries = (scope: Scope) =>
      (check.prepare(`select count(*) as n from "${ftsTableOf(scope.projectId)}"`).get() as { n: number }).n;
    assert.equal(entries(projects[0]!), 0);
    assert.equal(entries(projects[1]!), 3);
    check.close();
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
