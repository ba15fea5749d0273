import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { openPostgresStore } from '../../src/storage/postgres/open-postgres-store.ts';
import { keywordText, MAX_QUERY_TERMS, queryTerms } from '../../src/storage/sql/keyword-text.ts';
import { MatrixCacheIndex, SqliteVecIndex } from '../../src/storage/sql/vector-index.ts';
import { openSqliteStore, SQLITE_FILE_NAME } from '../../src/storage/sqlite/open-sqlite-store.ts';
import { vectorIndexContract } from '../contract/vector-index-contract.ts';
import { vectorStoreContract } from '../contract/vector-store-contract.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { tempDir } from '../support/server.ts';

describe('keyword text: what both keyword indexes see', () => {
  test('words are lowercased runs of letters, digits and marks; everything else separates them', () => {
    assert.equal(keywordText('The "quick" (brown) fox-trot: x2 & ＡＢＣ \\ 🦊!'), 'the quick brown fox trot x2 abc');
    assert.equal(keywordText('Café Ångström naïve'), 'cafe angstrom naive');
    assert.equal(keywordText('नमस्ते дом'), 'नमस्ते дом');
    assert.equal(keywordText(`${'a'.repeat(257)} kept ${'b'.repeat(256)}`), `kept ${'b'.repeat(256)}`);
  });

  test('CJK runs are indexed as characters and overlapping bigrams, and queried by their bigrams', () => {
    assert.equal(keywordText('中文搜索'), '中 文 搜 索 中文 文搜 搜索');
    assert.equal(keywordText('iPhone手机壳'), 'iphone 手 机 壳 手机 机壳');
    assert.equal(keywordText('ラーメン'), 'ラ ー メ ン ラー ーメ メン');
    assert.deepEqual(queryTerms('中文搜索'), ['中文', '文搜', '搜索']);
    assert.deepEqual(queryTerms('猫 と 犬'), ['猫', 'と', '犬']);
    assert.deepEqual(queryTerms('학교에서'), ['학교', '교에', '에서']);
  });

  test('query terms are distinct, without English stop words or operators, and bounded', () => {
    assert.deepEqual(queryTerms('The fox AND the "fox" OR NOT (river)*'), ['fox', 'river']);
    assert.deepEqual(queryTerms('NEAR(a b) -c d:e'), ['near', 'b', 'c', 'd', 'e']);
    assert.deepEqual(queryTerms('"\'*:()\\🦊'), []);
    assert.deepEqual(queryTerms('to be or not to be'), []);
    const many = Array.from({ length: 100 }, (_, i) => `w${i}`);
    assert.deepEqual(queryTerms(many.join(' ')), many.slice(0, MAX_QUERY_TERMS));
  });
});

vectorStoreContract('sqlite', async () => {
  const dir = tempDir();
  const store = await openSqliteStore(dir);
  // A second connection to the same file (WAL: it reads what the store committed) for what the store does not show.
  const raw = new BetterSqlite3(path.join(dir, SQLITE_FILE_NAME));
  return {
    store,
    indexEntries: async () => (raw.prepare('select count(*) as n from chunks_fts').get() as { n: number }).n,
    explainSearch: (scope, query) => store.vectorStores.explainSearch(scope, query),
    // FTS5 answers the MATCH from its index (`VIRTUAL TABLE INDEX … :M…`); each hit's chunk is then found by its
    // rowid, never by reading the store's chunks (a scan of `chunks` or a walk of `chunks_by_file`).
    usesKeywordIndex: (plan) =>
      /SCAN chunks_fts VIRTUAL TABLE INDEX \d+:M/.test(plan) &&
      /SEARCH c USING INTEGER PRIMARY KEY \(rowid=\?\)/.test(plan) &&
      !/SCAN c\b|chunks_by_file/.test(plan),
    analyze: async () => {},
    cleanup: async () => {
      raw.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

const adminUrl = postgresUrlOrSkip();
if (adminUrl === undefined) {
  test('VectorStoreRecords contract: postgres', { skip: POSTGRES_SKIP_REASON }, () => {});
} else {
  const serverUrl = adminUrl;
  vectorStoreContract('postgres', async () => {
    const database = await createTestDatabase(serverUrl);
    const store = await openPostgresStore(database.url, 10);
    const raw = new pg.Client({ connectionString: database.url });
    await raw.connect();
    return {
      store,
      // The tsvector lives in the chunk's row: every chunk is one index entry.
      indexEntries: async () =>
        Number((await raw.query('select count(*) as n from chunks where keywords is not null')).rows[0].n),
      explainSearch: (scope, query) => store.vectorStores.explainSearch(scope, query),
      usesKeywordIndex: (plan) =>
        /(Bitmap Index Scan|Index Scan) on chunks_keywords/.test(plan) && !/Seq Scan on chunks/.test(plan),
      analyze: async () => {
        await raw.query('analyze');
      },
      cleanup: async () => {
        await raw.end();
        await store.close();
        await database.drop();
      },
    };
  });
}

for (const inPlace of [false, true])
  vectorIndexContract(inPlace ? 'sqlite (sqlite-vec in place)' : 'sqlite (in-memory cache)', async () => {
    const dir = tempDir();
    const store = await openSqliteStore(dir);
    const other = await openSqliteStore(dir);
    const index = store.vectorStores.vectorIndex;
    assert.ok(index instanceof SqliteVecIndex);
    // A cache of 0 bytes holds no store: every search goes to the vec0 tables.
    if (inPlace) index.memory.cache.resize(0);
    return {
      store,
      other,
      vectorsRead: () => (inPlace ? undefined : index.memory.cache.vectorsRead),
      cleanup: async () => {
        await other.close();
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  });

if (adminUrl !== undefined) {
  const serverUrl = adminUrl;
  vectorIndexContract('postgres (in-memory cache)', async () => {
    const database = await createTestDatabase(serverUrl);
    const store = await openPostgresStore(database.url, 4);
    const other = await openPostgresStore(database.url, 4);
    const index = store.vectorStores.vectorIndex;
    assert.ok(index instanceof MatrixCacheIndex);
    return {
      store,
      other,
      vectorsRead: () => index.cache.vectorsRead,
      cleanup: async () => {
        await other.close();
        await store.close();
        await database.drop();
      },
    };
  });
}
