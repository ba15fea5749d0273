import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { CompiledQuery } from 'kysely';
import type { SqlStore } from '../../src/storage/sql/sql-store.ts';
import { SqliteVecIndex } from '../../src/storage/sql/vector-index.ts';
import { openSqliteStore, SQLITE_FILE_NAME } from '../../src/storage/sqlite/open-sqlite-store.ts';
import { SqliteReaderPool } from '../../src/storage/sqlite/reader-pool.ts';
import { DatabaseUnavailable } from '../../src/storage/store.ts';
import { aVectorStore, aVectorStoreFile } from '../support/builders.ts';
import { longestStall } from '../support/event-loop.ts';
import { recordFile } from '../support/file-rows.ts';
import { tempDir } from '../support/server.ts';

/**
 * better-sqlite3 runs a statement synchronously on the thread that calls it. On the store's connection, a keyword
 * search of a word in every chunk of a large store held the event loop for its whole length, and searches made at
 * once held it for all of their lengths in a row (10 at once stalled /healthz 3.6 s). The store runs them on reader
 * threads (src/storage/sqlite/reader-pool.ts); `readerThreads: 0` is the store as it was, on the same file, so each
 * test measures both and compares their results.
 */

const CHUNKS = 20_000;
const FILES = 10;
const DIMENSIONS = 128;
/** Searches made at once. */
const AT_ONCE = 8;
const scope = { projectId: 'proj_readers' };

/** A deterministic pseudo-random vector. */
function vectorOf(seed: number): Float32Array {
  let x = seed * 2654435761;
  return Float32Array.from({ length: DIMENSIONS }, () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 2147483648 - 0.5;
  });
}

describe('SQLite: searches run on reader threads, and the event loop goes on meanwhile', () => {
  const dir = tempDir();
  let threaded: SqlStore;
  let inline: SqlStore;
  let storeId: string;

  before(async () => {
    threaded = await openSqliteStore(dir);
    inline = await openSqliteStore(dir, { readerThreads: 0 });
    const records = threaded.vectorStores;
    const store = aVectorStore();
    storeId = store.id;
    const fileIds: string[] = [];
    for (let f = 0; f < FILES; f++)
      fileIds.push(await recordFile(threaded.files, scope, `part-${f}.txt`, 1_700_000_000));
    await records.createVectorStore(
      scope,
      store,
      fileIds.map((id) => aVectorStoreFile(store.id, id)),
    );
    const jobs = await records.claimIngestions('w', Date.now(), Number.MAX_SAFE_INTEGER, FILES);
    const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel'];
    for (const [f, job] of jobs.entries()) {
      const chunks = Array.from({ length: CHUNKS / FILES }, (_, index) => ({
        index,
        text: `common ${words[index % words.length]} part ${f} chunk ${index} of the shared corpus, said twice: common`,
        tokens: 16,
      }));
      const vectors = chunks.map((_, index) => vectorOf(f * CHUNKS + index));
      assert.equal(
        await records.completeIngestion(scope, store.id, job.fileId, 'w', chunks, 1, {
          model: 'm',
          dimensions: DIMENSIONS,
          vectors,
        }),
        true,
      );
    }
  });

  after(async () => {
    await inline?.close();
    await threaded?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('keyword searches of a word in every chunk: the same hits, and no stall', async () => {
    const queries = ['common', 'common delta', 'chunk 1999 alpha', 'part 7 golf', 'nothing here'];
    for (const query of queries) {
      const search = { vectorStoreIds: [storeId], query, limit: 20 };
      assert.deepEqual(
        await threaded.vectorStores.searchChunks(scope, search),
        await inline.vectorStores.searchChunks(scope, search),
        query,
      );
    }
    const search = { vectorStoreIds: [storeId], query: 'common', limit: 20 };
    const expected = await inline.vectorStores.searchChunks(scope, search);
    const atOnce = (store: SqlStore) =>
      longestStall(() =>
        Promise.all(Array.from({ length: AT_ONCE }, () => store.vectorStores.searchChunks(scope, search))),
      );
    await atOnce(threaded); // every reader thread started
    const before = await atOnce(inline);
    const now = await atOnce(threaded);
    console.log(
      `${AT_ONCE} keyword searches at once over ${CHUNKS} chunks: the event loop stalled ` +
        `${before.stallMs.toFixed(0)} ms on the store's connection, ${now.stallMs.toFixed(0)} ms with reader threads`,
    );
    for (const hits of now.result) assert.deepEqual(hits, expected);
    assert.ok(
      now.stallMs * 4 < before.stallMs,
      `stalled ${now.stallMs.toFixed(0)} ms, against ${before.stallMs.toFixed(0)} ms on the store's connection`,
    );
  });

  test("a file's content, every chunk of it (/vector_stores/{id}/files/{id}/content): the same chunks, and no stall", async () => {
    const fileIds = (await threaded.vectorStores.storeFiles(scope, storeId)).map((f) => f.fileId);
    // Three readers of each file at once.
    const contents = (store: SqlStore) =>
      longestStall(() =>
        Promise.all(
          [...fileIds, ...fileIds, ...fileIds].map((id) => store.vectorStores.fileChunks(scope, storeId, id)),
        ),
      );
    await contents(threaded);
    const before = await contents(inline);
    // Each file's chunks are read by a reader thread: the statements go to the pool, none to the store's connection.
    const { pooled, value: now } = await onReaderThreads(() => contents(threaded));
    assert.deepEqual(now.result, before.result);
    assert.equal(now.result.flat().length, 3 * CHUNKS);
    assert.ok(pooled >= 3 * FILES, `${pooled} statements on reader threads for ${3 * FILES} reads`);
    // What the main thread still does is take the rows the threads send (their copies): printed, not asserted, as
    // a time on a shared machine is.
    console.log(
      `the content of ${FILES} files of ${CHUNKS / FILES} chunks, 3 readers each, at once: the event loop stalled ` +
        `${before.stallMs.toFixed(0)} ms on the store's connection, ${now.stallMs.toFixed(0)} ms with reader threads`,
    );
  });

  test("vector searches, by the vector cache and by sqlite-vec's KNN: the same hits, and no stall", async () => {
    const query = (i: number) => ({ vectorStoreId: storeId, model: 'm', vector: vectorOf(-1 - i), limit: 20 });
    const fileIds = (await threaded.vectorStores.storeFiles(scope, storeId)).slice(0, 3).map((f) => f.fileId);
    for (let i = 0; i < 3; i++)
      assert.deepEqual(
        await threaded.vectorStores.searchVectors(scope, { ...query(i), fileIds }),
        await inline.vectorStores.searchVectors(scope, { ...query(i), fileIds }),
      );

    // In place: sqlite-vec's KNN over the store's vectors (a store larger than the cache).
    for (const store of [threaded, inline]) {
      const index = store.vectorStores.vectorIndex;
      assert.ok(index instanceof SqliteVecIndex);
      index.memory.cache.resize(0);
    }
    // Twice as many: a KNN search is lighter than the keyword search of a word in every chunk.
    const atOnce = (store: SqlStore) =>
      longestStall(() =>
        Promise.all(Array.from({ length: 2 * AT_ONCE }, (_, i) => store.vectorStores.searchVectors(scope, query(i)))),
      );
    await atOnce(threaded);
    const before = await atOnce(inline);
    const now = await atOnce(threaded);
    assert.deepEqual(now.result, before.result);
    console.log(
      `${2 * AT_ONCE} KNN searches at once over ${CHUNKS} vectors: the event loop stalled ` +
        `${before.stallMs.toFixed(0)} ms on the store's connection, ${now.stallMs.toFixed(0)} ms with reader threads`,
    );
    assert.ok(
      now.stallMs * 4 < before.stallMs,
      `stalled ${now.stallMs.toFixed(0)} ms, against ${before.stallMs.toFixed(0)} ms on the store's connection`,
    );

    // The cache's load of the store's vectors: every seq, then every vector.
    const load = async (store: SqlStore) => {
      const index = store.vectorStores.vectorIndex as SqliteVecIndex;
      index.memory.cache.resize(1024 * 1024 * 1024);
      return longestStall(() => store.vectorStores.searchVectors(scope, query(0)));
    };
    const loadedBefore = await load(inline);
    const { pooled: loadStatements, value: loadedNow } = await onReaderThreads(() => load(threaded));
    assert.deepEqual(loadedNow.result, loadedBefore.result);
    // The load's statements (every seq, then every vector) go to the reader threads; what the main thread still does
    // is take the rows they send: printed, not asserted, as a time on a shared machine is (it failed a CI run at a
    // ratio of 1.99 against a bound of 2).
    assert.ok(loadStatements >= 2, `${loadStatements} statements of the cache's load on reader threads`);
    console.log(
      `loading ${CHUNKS} vectors into the cache: the event loop stalled ${loadedBefore.stallMs.toFixed(0)} ms on the ` +
        `store's connection, ${loadedNow.stallMs.toFixed(0)} ms with reader threads`,
    );
  });
});

/**
 * A statement of ~250 ms, still running when its thread is ended 50 ms in. A thread cannot be stopped inside a
 * statement: it ends when the statement returns, before it can answer.
 */
const LONG = CompiledQuery.raw(
  'with recursive n(i) as (select 1 union all select i + 1 from n where i < 2000000) select count(*) as n from n',
);

describe('SQLite reader pool', () => {
  const dir = tempDir();
  let store: SqlStore;
  let pool: SqliteReaderPool;

  before(async () => {
    store = await openSqliteStore(dir, { readerThreads: 0 });
    pool = new SqliteReaderPool({ file: path.join(dir, SQLITE_FILE_NAME), sqliteVec: true }, 1);
  });

  after(async () => {
    await pool?.close();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("runs read-only statements and reports SQLite's errors as they are; it writes nothing", async () => {
    const { rows } = await pool.executeQuery(
      CompiledQuery.raw('select ? + 1 as n, ? as blob, vec_length(?) as dims', [41, Buffer.from([1, 2]), '[1, 2, 3]']),
    );
    assert.deepEqual(rows, [{ n: 42, blob: Buffer.from([1, 2]), dims: 3 }]);
    assert.ok(Buffer.isBuffer((rows[0] as { blob: unknown }).blob), 'a blob reads as a Buffer, as on the store');
    await assert.rejects(pool.executeQuery(CompiledQuery.raw('select * from no_such_table')), {
      message: 'no such table: no_such_table',
      code: 'SQLITE_ERROR',
    });
    await assert.rejects(pool.executeQuery(CompiledQuery.raw('create table scratch (x)')), {
      message: 'a reader thread runs statements that return rows only',
    });
  });

  test('a thread that dies fails its statement, not the ones waiting; the next statement gets a new thread', async () => {
    assert.equal((await pool.executeQuery(CompiledQuery.raw('select 1 as one'))).rows.length, 1);
    const [thread] = pool.threads;
    assert.ok(thread);
    const long = pool.executeQuery(LONG);
    const waiting = pool.executeQuery(CompiledQuery.raw('select 2 as two'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await thread.terminate();
    await assert.rejects(long, /^Error: A SQLite reader thread stopped \(exit code 1\)\.$/);
    assert.deepEqual((await waiting).rows, [{ two: 2 }]);
    assert.equal(pool.threads.length, 1);
    assert.notEqual(pool.threads[0], thread);
  });

  test('close() fails the statements waiting, ends the threads, and refuses more', async () => {
    await pool.executeQuery(CompiledQuery.raw('select 1'));
    const running = pool.executeQuery(LONG);
    const waiting = pool.executeQuery(CompiledQuery.raw('select 1'));
    const failed = Promise.all([
      assert.rejects(running, { message: 'The store is closed.' }),
      assert.rejects(waiting, { message: 'The store is closed.' }),
    ]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await pool.close();
    await failed;
    await assert.rejects(pool.executeQuery(CompiledQuery.raw('select 1')), { message: 'The store is closed.' });
    assert.deepEqual(pool.threads, []);
  });
});

test('a read refused for a lock another process holds past the busy timeout is DatabaseUnavailable (a 503)', async () => {
  const dir = tempDir();
  const file = path.join(dir, SQLITE_FILE_NAME);
  await (await openSqliteStore(dir, { readerThreads: 0 })).close();
  // WAL readers wait for no writer, except one that holds the database exclusively.
  const holder = new BetterSqlite3(file);
  const pool = new SqliteReaderPool({ file, sqliteVec: true }, 1);
  try {
    holder.pragma('locking_mode = exclusive');
    holder.exec('begin exclusive');
    const refused = await pool.executeQuery(CompiledQuery.raw('select 1 as one')).then(
      () => assert.fail('the read went through'),
      (error: unknown) => error,
    );
    assert.ok(refused instanceof DatabaseUnavailable, String(refused));
    assert.match(refused.message, /^the database is unavailable: database is locked/);
    holder.close();
    assert.deepEqual((await pool.executeQuery(CompiledQuery.raw('select 1 as one'))).rows, [{ one: 1 }]);
  } finally {
    await pool.close();
    if (holder.open) holder.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** What `run` gives, and how many statements it sent to the reader threads meanwhile. */
async function onReaderThreads<T>(run: () => Promise<T>): Promise<{ pooled: number; value: T }> {
  const executeQuery = SqliteReaderPool.prototype.executeQuery;
  let pooled = 0;
  SqliteReaderPool.prototype.executeQuery = function (this: SqliteReaderPool, query) {
    pooled++;
    return executeQuery.call(this, query);
  } as typeof executeQuery;
  try {
    const value = await run();
    return { pooled, value };
  } finally {
    SqliteReaderPool.prototype.executeQuery = executeQuery;
  }
}
