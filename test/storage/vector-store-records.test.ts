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
import { aVectorStore, aVectorStoreFile } from '../support/builders.ts';
import { countTurns } from '../support/event-loop.ts';
import { eventually } from '../support/eventually.ts';
import { recordFile } from '../support/file-rows.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { tempDir } from '../support/server.ts';

describe('keyword text: what both keyword indexes see', () => {
  test('words are lowercased runs of letters, digits and marks; everything else separates them', () => {
    assert.equal(keywordText('The "quick" (brown) fox-trot: x2 & ＡＢＣ \\ 🦊!'), 'quick brown fox trot x2 abc');
    assert.equal(keywordText('Café Ångström naïve'), 'cafe angstrom naiv');
    assert.equal(keywordText('नमस्ते дом'), 'नमस्ते дом');
    assert.equal(keywordText(`${'a'.repeat(257)} kept ${'b'.repeat(256)}`), `kept ${'b'.repeat(256)}`);
  });

  test('CJK runs are indexed as characters and overlapping bigrams, and queried by their bigrams', () => {
    assert.equal(keywordText('中文搜索'), '中 文 搜 索 中文 文搜 搜索');
    assert.equal(keywordText('iPhone手机壳'), 'iphon 手 机 壳 手机 机壳');
    assert.equal(keywordText('ラーメン'), 'ラ ー メ ン ラー ーメ メン');
    assert.deepEqual(queryTerms('中文搜索'), ['中文', '文搜', '搜索']);
    assert.deepEqual(queryTerms('猫 と 犬'), ['猫', 'と', '犬']);
    assert.deepEqual(queryTerms('학교에서'), ['학교', '교에', '에서']);
  });

  test('English words are stemmed (Snowball English) and stop words left out, in the text and in queries alike', () => {
    assert.equal(keywordText('Running under clear skies, generously: v2s straße'), 'run clear sky generous v2s straße');
    assert.deepEqual(queryTerms('The runners were running to the skies'), ['runner', 'run', 'sky']);
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
    // Every project's FTS5 table (sql/fts5-tables.ts).
    indexEntries: async () => {
      const tables = raw
        .prepare("select name from sqlite_master where type = 'table' and sql like 'create virtual table%fts5%'")
        .all() as Array<{ name: string }>;
      let n = 0;
      for (const { name } of tables) n += (raw.prepare(`select count(*) as n from "${name}"`).get() as { n: number }).n;
      return n;
    },
    explainSearch: (scope, query) => store.vectorStores.explainSearch(scope, query),
    // FTS5 answers the MATCH from its index (`VIRTUAL TABLE INDEX … :M…`); each hit's chunk is then found by its
    // rowid, never by reading the store's chunks (a scan of `chunks` or a walk of `chunks_by_file`).
    usesKeywordIndex: (plan) =>
      /SCAN chunks_fts_[0-9a-f]+ VIRTUAL TABLE INDEX \d+:M/.test(plan) &&
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

test("SQLite: a large file's completion lets the event loop go round between its groups of chunks", async () => {
  // better-sqlite3's statements are synchronous: written in one go, a file of thousands of chunks held the event loop
  // (every stream and request of the process) for seconds. Counted in turns of the loop, not in time.
  const dir = tempDir();
  const store = await openSqliteStore(dir);
  try {
    const scope = { projectId: 'proj_turns' };
    const records = store.vectorStores;
    const fileId = await recordFile(store.files, scope, 'big.txt', 1_700_000_000);
    const vectorStore = aVectorStore();
    await records.createVectorStore(scope, vectorStore, [aVectorStoreFile(vectorStore.id, fileId)]);
    assert.equal((await records.claimIngestions('w', Date.now(), Number.MAX_SAFE_INTEGER, 1)).length, 1);
    const chunks = Array.from({ length: 2000 }, (_, index) => ({ index, text: `chunk ${index} words`, tokens: 3 }));
    const turns = countTurns();
    assert.equal(await records.completeIngestion(scope, vectorStore.id, fileId, 'w', chunks, 1), true);
    const during = turns.count;
    turns.stop();
    assert.ok(during >= 10, `the loop went round ${during} times while 2,000 chunks were written`);
    const hits = await records.searchChunks(scope, { vectorStoreIds: [vectorStore.id], query: 'chunk 1999', limit: 5 });
    assert.ok(
      hits.some((h) => h.text === 'chunk 1999 words'),
      'every group was written',
    );
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SQLite: deleting a file of thousands of chunks (from its store, or from the Files API), or their store, lets the event loop go round meanwhile', async () => {
  // One cascade deleted every chunk of a store (and each one's FTS5 and vector entries) in one statement: 20,000
  // chunks held the event loop for 435 ms. Counted in turns of the loop, not in time.
  const dir = tempDir();
  const store = await openSqliteStore(dir);
  try {
    const scope = { projectId: 'proj_turns' };
    const records = store.vectorStores;
    const vectorStore = aVectorStore();
    await records.createVectorStore(scope, vectorStore, []);
    const files: string[] = [];
    for (let f = 0; f < 3; f++) {
      const fileId = await recordFile(store.files, scope, `big${f}.txt`, 1_700_000_000);
      await records.addFiles(scope, vectorStore.id, [aVectorStoreFile(vectorStore.id, fileId)]);
      assert.equal((await records.claimIngestions('w', Date.now(), Number.MAX_SAFE_INTEGER, 1)).length, 1);
      const chunks = Array.from({ length: 2000 }, (_, index) => ({ index, text: `chunk ${index} of ${f}`, tokens: 3 }));
      assert.equal(await records.completeIngestion(scope, vectorStore.id, fileId, 'w', chunks, 1), true);
      files.push(fileId);
    }
    const whileDoing = async (work: () => Promise<unknown>) => {
      const turns = countTurns();
      await work();
      turns.stop();
      return turns.count;
    };
    const fileTurns = await whileDoing(() => records.deleteVectorStoreFile(scope, vectorStore.id, files[0]!));
    assert.ok(fileTurns >= 3, `the loop went round ${fileTurns} times while a file's 2,000 chunks were deleted`);
    assert.deepEqual(await records.fileChunks(scope, vectorStore.id, files[0]!), []);
    const deletedTurns = await whileDoing(() => store.files.deleteFile(scope, files[1]!));
    assert.ok(deletedTurns >= 3, `the loop went round ${deletedTurns} times while a file's 2,000 chunks were deleted`);
    assert.equal(await records.getVectorStoreFile(scope, vectorStore.id, files[1]!), undefined);
    const storeTurns = await whileDoing(() => records.deleteVectorStore(scope, vectorStore.id));
    assert.ok(storeTurns >= 3, `the loop went round ${storeTurns} times while a store's 2,000 chunks were deleted`);
    const hits = await records.searchChunks(scope, { vectorStoreIds: [vectorStore.id], query: 'chunk', limit: 5 });
    assert.deepEqual(hits, []);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
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
      // The keyword index alone: not ANDed with, nor replaced by, a walk of the store's chunks (`chunks_by_file`),
      // which is what PostgreSQL planned for a large store it had no statistics of.
      usesKeywordIndex: (plan) =>
        /(Bitmap Index Scan|Index Scan) on chunks_keywords/.test(plan) &&
        !/Seq Scan on chunks|chunks_by_file/.test(plan),
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

if (adminUrl !== undefined) {
  const serverUrl = adminUrl;
  describe('PostgreSQL: the ingestion keeps the statistics of chunks current', () => {
    test('chunks are analysed (and the GIN pending list merged) once never analysed, then each time they doubled', async () => {
      const database = await createTestDatabase(serverUrl);
      const store = await openPostgresStore(database.url, 4);
      const raw = new pg.Client({ connectionString: database.url });
      await raw.connect();
      try {
        const scope = { projectId: 'proj_stats' };
        const records = store.vectorStores;
        const stats = records.chunkStatistics;
        assert.ok(stats);
        const vectorStoreId = 'vs_stats';
        await records.createVectorStore(
          scope,
          {
            id: vectorStoreId,
            created_at: 1,
            name: null,
            description: null,
            metadata: {},
            expires_after: null,
            expires_at: null,
            last_active_at: null,
            expired: false,
          },
          [],
        );
        const analysed = async () => {
          const { rows } = await raw.query(
            `select c.reltuples::float8 as reltuples, s.last_analyze is not null as analysed
             from pg_class c join pg_stat_user_tables s on s.relid = c.oid where c.oid = 'chunks'::regclass`,
          );
          return rows[0] as { reltuples: number; analysed: boolean };
        };
        const found = async () => {
          const { rows } = await raw.query(
            `select count(*)::int as n from chunks where keywords @@ to_tsquery('simple', '${queryTerms('pending')[0]}')`,
          );
          return rows[0].n as number;
        };
        // gin_clean_pending_list merges what is pending and says how many pages that was: 0 once merged.
        const pending = async () =>
          Number((await raw.query(`select gin_clean_pending_list('chunks_keywords') as n`)).rows[0].n);
        let file = 0;
        /** Completes one file of `n` chunks. */
        const ingest = async (n: number) => {
          const fileId = await recordFile(store.files, scope, `file_${file++}.txt`, 1);
          await records.addFiles(scope, vectorStoreId, [
            {
              id: fileId,
              vector_store_id: vectorStoreId,
              created_at: 1,
              status: 'in_progress',
              last_error: null,
              usage_bytes: 0,
              chunking_strategy: { type: 'static', static: { max_chunk_size_tokens: 100, chunk_overlap_tokens: 0 } },
              attributes: null,
              batch_id: null,
            },
          ]);
          const [claim] = await records.claimIngestions('w', Date.now(), Number.MAX_SAFE_INTEGER, 1);
          assert.equal(claim?.fileId, fileId);
          const chunks = Array.from({ length: n }, (_, index) => ({
            index,
            text: `pending words of chunk ${index} in ${fileId}`,
            tokens: 7,
          }));
          assert.equal(await records.completeIngestion(scope, vectorStoreId, fileId, 'w', chunks, 1), true);
        };

        // The rule is looked at after every 1,000 chunks this process added.
        await ingest(600);
        assert.equal(stats.analyses, 0, 'under 1,000 chunks nothing is looked at');
        assert.equal((await analysed()).analysed, false);
        await ingest(600);
        assert.equal(stats.analyses, 1, 'never analysed, past 1,000 chunks: analysed');
        assert.deepEqual(await analysed(), { reltuples: 1200, analysed: true });
        assert.equal(await pending(), 0, 'the GIN pending list was merged');
        assert.equal(await found(), 1200, 'and lost nothing');
        // What PostgreSQL counts as changed since an ANALYZE (pg_stat_get_mod_since_analyze) also holds the inserts
        // of rows it analysed that their connections reported after it: a backend reports its counts at most once a
        // second, and when idle up to 10 s later, each report adding to the count the ANALYZE reset (ChunkStatistics'
        // slack). Here that added up to 1,200 rows to the 1,100 below, which then looked doubled. The changes are to be
        // counted from the 1,200 rows analysed: once every insert so far has been reported, they are analysed again
        // (the same 1,200 rows), so that the count starts at 0.
        await eventually('every insert so far to be reported to the statistics', 30_000, async () => {
          const { rows } = await raw.query(`select pg_stat_get_tuples_inserted('chunks'::regclass)::int as n`);
          return rows[0].n === 1200 ? true : undefined;
        });
        await raw.query('analyze chunks');
        assert.deepEqual(await analysed(), { reltuples: 1200, analysed: true });
        await ingest(600);
        await ingest(500);
        assert.equal(stats.analyses, 1, '1,100 changed rows against 1,200 analysed: not doubled, left alone');
        await ingest(1000);
        assert.equal(stats.analyses, 2, '2,100 changed rows: doubled, analysed again');
        assert.equal((await analysed()).reltuples, 3300);
      } finally {
        await raw.end();
        await store.close();
        await database.drop();
      }
    });
  });

  describe('PostgreSQL: deleting a vector store while its files change takes turns with them, never deadlocks', () => {
    test('against a file completing with vectors, a file removed from the store, and a file deleted', async () => {
      const database = await createTestDatabase(serverUrl);
      const store = await openPostgresStore(database.url, 10);
      const raw = new pg.Client({ connectionString: database.url });
      const blocker = new pg.Client({ connectionString: database.url });
      await raw.connect();
      await blocker.connect();
      try {
        const scope = { projectId: 'proj_turns' };
        const records = store.vectorStores;
        const vectors = (n: number) => ({
          model: 'embedder',
          dimensions: 2,
          vectors: Array.from({ length: n }, () => Float32Array.of(1, 0)),
        });
        const chunks = [{ index: 0, text: 'some words', tokens: 2 }];
        let n = 0;
        /** A store holding one file completed with vectors (so it has an embedding model), and one file claimed. */
        const storeWithFiles = async () => {
          const vectorStore = aVectorStore();
          await records.createVectorStore(scope, vectorStore, []);
          const ids: string[] = [];
          for (let i = 0; i < 2; i++) {
            const fileId = await recordFile(store.files, scope, `f${n++}.txt`, 1);
            await records.addFiles(scope, vectorStore.id, [aVectorStoreFile(vectorStore.id, fileId)]);
            const [claim] = await records.claimIngestions('w', Date.now(), Number.MAX_SAFE_INTEGER, 1);
            assert.equal(claim?.fileId, fileId);
            ids.push(fileId);
          }
          assert.ok(await records.completeIngestion(scope, vectorStore.id, ids[0]!, 'w', chunks, 1, vectors(1)));
          return { id: vectorStore.id, completed: ids[0]!, claimed: ids[1]! };
        };
        const lockWaits = async (count: number) =>
          eventually(`${count} statements waiting for a lock`, 20_000, async () => {
            const { rows } = await raw.query(
              "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
            );
            return rows[0].n >= count ? true : undefined;
          });
        /**
         * `change` starts while the chunks table is locked, so that it stops at its chunks holding its file's row;
         * the store's deletion then starts and waits for that row (or for the store, had `change` locked it
         * first). Both must end well once the chunks are free again.
         */
        const race = async (
          change: (vectorStoreId: string, fileId: string) => Promise<unknown>,
          which: 'completed' | 'claimed',
        ) => {
          const target = await storeWithFiles();
          await blocker.query('begin');
          await blocker.query('lock table chunks in share mode');
          const changing = change(target.id, target[which]);
          await lockWaits(1);
          const deleting = records.deleteVectorStore(scope, target.id);
          await lockWaits(2);
          await blocker.query('commit');
          const outcomes = await Promise.allSettled([changing, deleting]);
          assert.deepEqual(
            outcomes.map((o) => (o.status === 'fulfilled' ? 'ok' : String(o.reason))),
            ['ok', 'ok'],
            change.toString(),
          );
          assert.equal(await records.getVectorStore(scope, target.id), undefined);
        };

        await race((id, fileId) => records.completeIngestion(scope, id, fileId, 'w', chunks, 1, vectors(1)), 'claimed');
        await race((id, fileId) => records.deleteVectorStoreFile(scope, id, fileId), 'completed');
        await race((_id, fileId) => store.files.deleteFile(scope, fileId), 'completed');

        // A file added again (its chunks dropped while its row is held) against its removal from the store: both
        // lock the store first.
        const target = await storeWithFiles();
        await blocker.query('begin');
        await blocker.query('lock table chunks in share mode');
        const readding = records.addFiles(scope, target.id, [aVectorStoreFile(target.id, target.completed)]);
        await lockWaits(1);
        const removing = records.deleteVectorStoreFile(scope, target.id, target.completed);
        await lockWaits(2);
        await blocker.query('commit');
        const outcomes = await Promise.allSettled([readding, removing]);
        assert.deepEqual(
          outcomes.map((o) => (o.status === 'fulfilled' ? 'ok' : String(o.reason))),
          ['ok', 'ok'],
        );
      } finally {
        await blocker.query('rollback').catch(() => {});
        await Promise.all([raw.end(), blocker.end()]);
        await store.close();
        await database.drop();
      }
    });
  });
}
