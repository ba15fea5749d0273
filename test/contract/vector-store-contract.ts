import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ApiError } from '../../src/domain/errors.ts';
import { newId } from '../../src/domain/ids.ts';
import {
  AUTO_CHUNKING,
  type Chunk,
  type ChunkHit,
  type FileBatch,
  type StaticChunking,
  type VectorStore,
  type VectorStoreFile,
} from '../../src/domain/vector-stores.ts';
import type { ChunkQuery, PageRequest, Scope, Store, VectorStoreRecords } from '../../src/storage/store.ts';
import { aVectorStore, aVectorStoreFile } from '../support/builders.ts';
import { recordFile } from '../support/file-rows.ts';
import { collectIds } from '../support/paging.ts';

export interface VectorStoreFixture {
  store: Store;
  /** Entries in the keyword index: rows of the FTS5 table on SQLite, chunks (each holds its tsvector) on PostgreSQL. */
  indexEntries(): Promise<number>;
  /** The database's plan for the search statement. */
  explainSearch(scope: Scope, query: ChunkQuery): Promise<string>;
  /** Whether a plan finds chunks through the keyword index rather than by reading them all. */
  usesKeywordIndex(plan: string): boolean;
  /** Brings the planner's statistics up to date, as the database's own maintenance would. */
  analyze(): Promise<void>;
  cleanup(): Promise<void>;
}

const scope: Scope = { projectId: 'proj_vs_contract' };
const otherScope: Scope = { projectId: 'proj_vs_other' };
const T0 = 1_700_000_000;
/** A lease nobody in these tests outlives. */
const FOREVER = Number.MAX_SAFE_INTEGER;

const SMALL_CHUNKS: StaticChunking = {
  type: 'static',
  static: { max_chunk_size_tokens: 200, chunk_overlap_tokens: 50 },
};

/** The contract's stores carry metadata, to check it round-trips. */
const aStore = (overrides: Partial<VectorStore> = {}) => aVectorStore({ metadata: { team: 'a' }, ...overrides });
const aFile = aVectorStoreFile;

function aBatch(vectorStoreId: string, overrides: Partial<FileBatch> = {}): FileBatch {
  return { id: newId('fileBatch'), vector_store_id: vectorStoreId, created_at: T0, cancelled: false, ...overrides };
}

const chunksOf = (texts: readonly string[]): Chunk[] =>
  texts.map((text, index) => ({ index, text, tokens: text.split(' ').length }));

const counts = (c: Partial<Record<'in_progress' | 'completed' | 'failed' | 'cancelled', number>>) => {
  const full = { in_progress: 0, completed: 0, failed: 0, cancelled: 0, ...c };
  return { ...full, total: full.in_progress + full.completed + full.failed + full.cancelled };
};

/**
 * The behaviour every VectorStoreRecords must have, written once; each database's test file runs it on a fresh,
 * empty database. The tests share that database: the ingestion queue is global (claims take no scope), so a test
 * that claims first leases away whatever earlier tests left in progress (`drain`).
 */
export function vectorStoreContract(name: string, open: () => Promise<VectorStoreFixture>): void {
  describe(`VectorStoreRecords contract: ${name}`, () => {
    let fixture: VectorStoreFixture;
    let records: VectorStoreRecords;
    before(async () => {
      fixture = await open();
      records = fixture.store.vectorStores;
    });
    after(async () => fixture.cleanup());

    const uploadFile = (filename: string, s: Scope = scope) => recordFile(fixture.store.files, s, filename, T0);
    /** `n` files of the Files API, as a vector store's files must be. */
    const uploadFiles = async (n: number, s: Scope = scope) => {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) ids.push(await uploadFile(`file-${i}.txt`, s));
      return ids;
    };

    /** Leases every file waiting in the queue to a worker that never finishes: later claims see only new files. */
    async function drain(): Promise<void> {
      while ((await records.claimIngestions('drain', Date.now(), FOREVER, 1000)).length > 0);
    }

    /** Indexes files the way a worker would: claim, then complete each with the given chunks, by store and file. */
    async function ingest(
      s: Scope,
      stores: Record<string, Record<string, readonly string[]>>,
      usage = 0,
    ): Promise<void> {
      const claimed = await records.claimIngestions('indexer', Date.now(), FOREVER, 100_000);
      for (const [vectorStoreId, files] of Object.entries(stores))
        for (const [fileId, texts] of Object.entries(files)) {
          const job = claimed.find((c) => c.vectorStoreId === vectorStoreId && c.fileId === fileId);
          assert.ok(job, `file ${fileId} was claimable`);
          assert.deepEqual(job.scope, s);
          assert.equal(
            await records.completeIngestion(s, vectorStoreId, fileId, 'indexer', chunksOf(texts), usage),
            true,
          );
        }
    }

    /** A store with completed files holding these chunks; returns its id and its files' ids by name. */
    async function storeWith(
      docs: Record<string, readonly string[]>,
      s: Scope = scope,
    ): Promise<{ id: string; files: Record<string, string> }> {
      const store = aStore();
      const files: Record<string, string> = {};
      for (const filename of Object.keys(docs)) files[filename] = await uploadFile(filename, s);
      await records.createVectorStore(
        s,
        store,
        Object.values(files).map((id) => aFile(store.id, id)),
      );
      await ingest(s, {
        [store.id]: Object.fromEntries(Object.entries(docs).map(([filename, texts]) => [files[filename]!, texts])),
      });
      return { id: store.id, files };
    }

    const search = (query: string, vectorStoreIds: string[], extra: Partial<ChunkQuery> = {}, s: Scope = scope) =>
      records.searchChunks(s, { query, vectorStoreIds, limit: 20, ...extra });

    test("a project's search scores and order do not depend on another project's chunks", async () => {
      await drain();
      const neighbour: Scope = { projectId: 'proj_vs_neighbour' };
      // Each project has a term of its own, so that its index is not empty of the words searched below.
      const mine = await storeWith(
        {
          'mine.txt': ['quokka 4465 4466 zebra walrus', 'quokka penguins penguins', 'zebra 4471 notes'],
        },
        scope,
      );
      const query = async () =>
        (await search('zebra 4471 quokka penguins', [mine.id])).map((h) => [h.chunk_index, h.score]);
      const before = await query();
      assert.equal(before.length, 3);
      // Another project's files full of some of those words (and of others), as a neighbour would upload.
      await storeWith(
        {
          'secret.txt': Array.from({ length: 30 }, (_, i) => `ZEBRA-4471-ALPHA penguins ${i} ${'filler '.repeat(i)}`),
        },
        neighbour,
      );
      assert.deepEqual(await query(), before);
      for (const term of ['4471', 'zebra', 'penguins', 'walrus']) {
        const scores = (await search(term, [mine.id])).map((h) => h.score);
        assert.ok(scores.length > 0, term);
        await storeWith({ [`more-${term}.txt`]: [`${term} ${term} ${term}`] }, neighbour);
        assert.deepEqual(
          (await search(term, [mine.id])).map((h) => h.score),
          scores,
          `the scores for '${term}' moved with another project's chunks`,
        );
      }
    });

    test('use moves a store’s expiry as stored when it happens; a new expiry counts from last_active_at', async () => {
      const week = { anchor: 'last_active_at' as const, days: 7 };
      const a = aStore({ expires_after: week, expires_at: T0 + 7 * 86_400 });
      const b = aStore({ expires_after: week, expires_at: T0 + 7 * 86_400 });
      const c = aStore();
      for (const store of [a, b, c]) await records.createVectorStore(scope, store, []);
      const read = async (id: string) => {
        const { last_active_at, expires_after, expires_at } = (await records.getVectorStore(scope, id))!;
        return { last_active_at, expires_after, expires_at };
      };

      // Modified since a search read it: the search's use keeps the new expiry (none for a, 2 days for b).
      await records.updateVectorStore(scope, a.id, { expires_after: null });
      await records.updateVectorStore(scope, b.id, { expires_after: { anchor: 'last_active_at', days: 2 } });
      assert.deepEqual(await read(b.id), {
        last_active_at: T0,
        expires_after: { anchor: 'last_active_at', days: 2 },
        expires_at: T0 + 2 * 86_400,
      });
      await records.touchVectorStores(scope, [a.id, b.id, c.id], T0 + 100);
      assert.deepEqual(await read(a.id), { last_active_at: T0 + 100, expires_after: null, expires_at: null });
      assert.deepEqual(await read(b.id), {
        last_active_at: T0 + 100,
        expires_after: { anchor: 'last_active_at', days: 2 },
        expires_at: T0 + 100 + 2 * 86_400,
      });
      assert.deepEqual(await read(c.id), { last_active_at: T0 + 100, expires_after: null, expires_at: null });
      // Another project's use of the ids touches nothing.
      await records.touchVectorStores({ projectId: 'proj_vs_toucher' }, [b.id], T0 + 500);
      assert.equal((await read(b.id)).last_active_at, T0 + 100);

      // A store that expired stays as it expired.
      await records.updateVectorStore(scope, b.id, { expires_at: T0 + 200 });
      assert.ok((await records.expireVectorStores(T0 + 300, 100)).includes(b.id));
      await records.touchVectorStores(scope, [b.id], T0 + 400);
      const expired = (await records.getVectorStore(scope, b.id))!;
      assert.equal(expired.expired, true);
      assert.equal(expired.last_active_at, T0 + 100);
      assert.equal(expired.expires_at, T0 + 200);
    });

    test('a store round-trips, reads its file counts and usage from its files, updates and deletes', async () => {
      await drain();
      const store = aStore({ expires_after: { anchor: 'last_active_at', days: 7 }, expires_at: T0 + 7 * 86_400 });
      const [f1, f2, f3] = (await uploadFiles(3)) as [string, string, string];
      await records.createVectorStore(scope, store, [aFile(store.id, f1), aFile(store.id, f2), aFile(store.id, f3)]);
      assert.deepEqual(await records.getVectorStore(scope, store.id), {
        ...store,
        file_counts: counts({ in_progress: 3 }),
        usage_bytes: 0,
      });

      const claimed = await records.claimIngestions('w', Date.now(), FOREVER, 10);
      assert.deepEqual(
        claimed.map((c) => c.fileId),
        [f1, f2, f3],
      );
      assert.deepEqual(claimed[0]!.chunking, AUTO_CHUNKING);
      assert.equal(await records.completeIngestion(scope, store.id, f1, 'w', chunksOf(['one', 'two']), 1234), true);
      assert.equal(await records.completeIngestion(scope, store.id, f2, 'w', chunksOf(['three']), 66), true);
      const error = { code: 'unsupported_file' as const, message: 'no text' };
      assert.equal(await records.failIngestion(scope, store.id, f3, 'w', error), true);

      const read = await records.getVectorStore(scope, store.id);
      assert.deepEqual(read?.file_counts, counts({ completed: 2, failed: 1 }));
      assert.equal(read?.usage_bytes, 1300);
      assert.deepEqual(await records.getVectorStoreFile(scope, store.id, f3), {
        ...aFile(store.id, f3),
        status: 'failed',
        last_error: error,
      });
      assert.deepEqual(await records.getVectorStoreFile(scope, store.id, f1), {
        ...aFile(store.id, f1),
        status: 'completed',
        usage_bytes: 1234,
      });

      const updated = await records.updateVectorStore(scope, store.id, {
        name: null,
        metadata: { v: '2' },
        expires_after: null,
        expires_at: null,
        last_active_at: T0 + 5,
      });
      assert.deepEqual(updated, {
        ...store,
        name: null,
        metadata: { v: '2' },
        expires_after: null,
        expires_at: null,
        last_active_at: T0 + 5,
        file_counts: counts({ completed: 2, failed: 1 }),
        usage_bytes: 1300,
      });
      assert.deepEqual(await records.updateVectorStore(scope, store.id, {}), updated);
      assert.equal(await records.updateVectorStore(scope, 'vs_missing', { name: 'x' }), undefined);
      assert.equal(await records.getVectorStore(scope, 'vs_missing'), undefined);

      assert.equal(await records.deleteVectorStore(scope, store.id), true);
      assert.equal(await records.getVectorStore(scope, store.id), undefined);
      assert.equal(await records.getVectorStoreFile(scope, store.id, f1), undefined);
      assert.deepEqual(await records.fileChunks(scope, store.id, f1), []);
      assert.equal(await records.deleteVectorStore(scope, store.id), false);
    });

    test('stores list newest first or oldest first, page by after/before without skipping ties, with counts', async () => {
      const listScope: Scope = { projectId: 'proj_vs_list' };
      const stores = [0, 0, 1, 1, 1, 2].map((dt) => aStore({ created_at: T0 + dt }));
      for (const store of stores)
        await records.createVectorStore(listScope, store, [aFile(store.id, await uploadFile('f.txt', listScope))]);
      const asc = stores.map((s) => s.id);
      const desc = [...asc].reverse();
      const list = (page: PageRequest) => records.listVectorStores(listScope, page);
      for (const limit of [1, 2, 4, 100]) {
        assert.deepEqual(await collectIds(list, 'asc', 'after', limit), asc);
        assert.deepEqual(await collectIds(list, 'desc', 'after', limit), desc);
        assert.deepEqual(await collectIds(list, 'asc', 'before', limit, asc[5]), asc.slice(0, 5));
      }
      assert.deepEqual(await collectIds(list, 'desc', 'before', 2, asc[0]), desc.slice(0, 5));
      assert.deepEqual(await collectIds(list, 'asc', 'after', 2, asc[1]), asc.slice(2));
      const page = await list({ limit: 2, order: 'desc' });
      assert.equal(page.hasMore, true);
      assert.deepEqual(page.data[0]?.file_counts, counts({ in_progress: 1 }));
      await assert.rejects(list({ limit: 2, order: 'desc', after: 'vs_nope' }), (e: ApiError) => e.status === 400);
    });

    test('files: batches, status and batch filters, cursors, attributes, storeFiles and deletion', async () => {
      await drain();
      await assert.rejects(
        records.addFiles(scope, 'vs_missing', [aFile('vs_missing', newId('file'))]),
        (e: ApiError) => e instanceof ApiError && e.status === 404,
      );
      await assert.rejects(
        records.listVectorStoreFiles(scope, 'vs_missing', { limit: 10, order: 'desc' }),
        (e: ApiError) => e instanceof ApiError && e.status === 404,
      );
      const store = aStore();
      await records.createVectorStore(scope, store, []);
      assert.deepEqual(await records.listVectorStoreFiles(scope, store.id, { limit: 10, order: 'desc' }), {
        data: [],
        hasMore: false,
      });

      const loose = await uploadFiles(2);
      await records.addFiles(scope, store.id, [
        aFile(store.id, loose[0]!, { attributes: { lang: 'en', year: 2024, draft: false } }),
        aFile(store.id, loose[1]!, { created_at: T0 + 1 }),
      ]);
      const batch = aBatch(store.id, { created_at: T0 + 2 });
      const batched = await uploadFiles(3);
      await records.addFiles(
        scope,
        store.id,
        batched.map((id) => aFile(store.id, id, { created_at: T0 + 2, batch_id: batch.id })),
        batch,
      );
      assert.deepEqual(await records.getFileBatch(scope, store.id, batch.id), {
        ...batch,
        file_counts: counts({ in_progress: 3 }),
      });
      assert.equal(await records.getFileBatch(scope, 'vs_other', batch.id), undefined);

      const all = [...loose, ...batched];
      const list = (page: PageRequest) => records.listVectorStoreFiles(scope, store.id, page);
      for (const limit of [1, 2, 10]) {
        assert.deepEqual(await collectIds(list, 'asc', 'after', limit), all);
        assert.deepEqual(await collectIds(list, 'desc', 'after', limit), [...all].reverse());
        assert.deepEqual(await collectIds(list, 'desc', 'before', limit, all[0]), [...all].reverse().slice(0, -1));
      }
      const inBatch = (page: PageRequest) => records.listVectorStoreFiles(scope, store.id, page, { batchId: batch.id });
      assert.deepEqual(await collectIds(inBatch, 'asc', 'after', 2), batched);
      assert.deepEqual(await collectIds(inBatch, 'asc', 'after', 1, batched[0]), batched.slice(1));
      await assert.rejects(list({ limit: 2, order: 'asc', after: 'file-not-here' }), (e: ApiError) => e.status === 400);

      const claimed = await records.claimIngestions('w', Date.now(), FOREVER, 10);
      assert.deepEqual(
        claimed.map((c) => c.fileId),
        all,
      );
      await records.completeIngestion(scope, store.id, batched[0]!, 'w', chunksOf(['x']), 1);
      await records.failIngestion(scope, store.id, batched[1]!, 'w', { code: 'invalid_file', message: 'bad' });
      const byStatus = async (status: VectorStoreFile['status'], batchId?: string) =>
        (
          await records.listVectorStoreFiles(scope, store.id, { limit: 10, order: 'asc' }, { status, batchId })
        ).data.map((f) => f.id);
      assert.deepEqual(await byStatus('completed'), [batched[0]]);
      assert.deepEqual(await byStatus('failed', batch.id), [batched[1]]);
      assert.deepEqual(await byStatus('in_progress'), [...loose, batched[2]]);
      assert.deepEqual(await byStatus('in_progress', batch.id), [batched[2]]);
      assert.deepEqual(await byStatus('cancelled'), []);
      assert.deepEqual((await records.getFileBatch(scope, store.id, batch.id))?.file_counts, {
        ...counts({ in_progress: 1, completed: 1, failed: 1 }),
      });

      const attributes = { lang: 'fr', n: 1.5 };
      assert.deepEqual(await records.updateFileAttributes(scope, store.id, loose[1]!, attributes), {
        ...aFile(store.id, loose[1]!, { created_at: T0 + 1 }),
        attributes,
      });
      assert.equal((await records.updateFileAttributes(scope, store.id, loose[0]!, null))?.attributes, null);
      assert.equal(await records.updateFileAttributes(scope, store.id, 'file-missing', attributes), undefined);
      assert.deepEqual(await records.storeFiles(scope, store.id), [
        { fileId: loose[0], attributes: null, status: 'in_progress' },
        { fileId: loose[1], attributes, status: 'in_progress' },
        { fileId: batched[0], attributes: null, status: 'completed' },
        { fileId: batched[1], attributes: null, status: 'failed' },
        { fileId: batched[2], attributes: null, status: 'in_progress' },
      ]);

      assert.equal(await records.deleteVectorStoreFile(scope, store.id, batched[0]!), true);
      assert.equal(await records.deleteVectorStoreFile(scope, store.id, batched[0]!), false);
      assert.equal(await records.getVectorStoreFile(scope, store.id, batched[0]!), undefined);
      assert.deepEqual(await records.fileChunks(scope, store.id, batched[0]!), []);
      const read = await records.getVectorStore(scope, store.id);
      assert.deepEqual(read?.file_counts, counts({ in_progress: 3, failed: 1 }));
      assert.equal(read?.usage_bytes, 0);
    });

    test('adding a file already in the store replaces it: chunks dropped, in progress again, lease cleared', async () => {
      await drain();
      const { id, files } = await storeWith({ 'guide.md': ['alpha replaced text', 'second part'] });
      const fileId = files['guide.md']!;
      assert.equal((await search('alpha', [id])).length, 1);
      const entries = await fixture.indexEntries();

      // Another replacement while a worker holds the file: the worker's lease is gone with it.
      const batch = aBatch(id);
      const replacement = aFile(id, fileId, {
        created_at: T0 + 9,
        chunking_strategy: SMALL_CHUNKS,
        attributes: { v: 2 },
        batch_id: batch.id,
      });
      await records.addFiles(scope, id, [replacement, replacement], batch);
      assert.deepEqual(await records.getVectorStoreFile(scope, id, fileId), replacement);
      assert.deepEqual(await records.fileChunks(scope, id, fileId), []);
      assert.deepEqual(await search('alpha', [id]), []);
      assert.equal(await fixture.indexEntries(), entries - 2);
      assert.deepEqual((await records.getVectorStore(scope, id))?.file_counts, counts({ in_progress: 1 }));

      const [job] = await records.claimIngestions('w1', Date.now(), FOREVER, 10);
      assert.deepEqual(job, { scope, vectorStoreId: id, fileId, chunking: SMALL_CHUNKS });
      await records.addFiles(scope, id, [replacement]);
      assert.equal(await records.completeIngestion(scope, id, fileId, 'w1', chunksOf(['stale']), 5), false);
      const [again] = await records.claimIngestions('w2', Date.now(), FOREVER, 10);
      assert.equal(again?.fileId, fileId, 'the replaced file is claimable again at once');
      assert.equal(await records.completeIngestion(scope, id, fileId, 'w2', chunksOf(['fresh beta']), 9), true);
      assert.deepEqual(await records.fileChunks(scope, id, fileId), chunksOf(['fresh beta']));
      assert.equal(await fixture.indexEntries(), entries - 1);
    });

    test("a large file's chunks go in over several transactions: queries run between them, none reads them early", async () => {
      await drain();
      const store = aStore();
      const fileId = await uploadFile('large.txt');
      await records.createVectorStore(scope, store, [aFile(store.id, fileId)]);
      const [job] = await records.claimIngestions('w', Date.now(), FOREVER, 10);
      assert.equal(job?.fileId, fileId);
      // 20 transactions: under load a round of reads can take as long as several of them.
      const texts = Array.from({ length: 4000 }, (_, i) => `zeta${i} large chunk ${i}`);
      // Whatever the reads below start (SQLite's reader threads, two at once) is started before.
      const warm = await storeWith({ 'warm.txt': ['zeta0 warm'] });
      const [warmHits, warmChunks] = await Promise.all([
        search('zeta0', [warm.id]),
        records.fileChunks(scope, warm.id, warm.files['warm.txt']!),
      ]);
      assert.deepEqual([warmHits.length, warmChunks.length], [1, 1]);
      let pending = true;
      const completion = records
        .completeIngestion(scope, store.id, fileId, 'w', chunksOf(texts), 10)
        .finally(() => (pending = false));
      let answeredMeanwhile = 0;
      while (pending) {
        // A read sees all of the file's chunks or none: none while the file is in progress (its status read after).
        const [hits, chunks] = await Promise.all([
          search('zeta0 zeta3999', [store.id]),
          records.fileChunks(scope, store.id, fileId),
        ]);
        const status = (await records.getVectorStoreFile(scope, store.id, fileId))?.status;
        if (status === 'in_progress') {
          answeredMeanwhile++;
          assert.deepEqual([hits, chunks], [[], []]);
        } else {
          assert.ok([0, 2].includes(hits.length), `${hits.length} hits`); // each read before or after the commit
          assert.ok([0, texts.length].includes(chunks.length), `${chunks.length} chunks`);
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
      assert.equal(await completion, true);
      assert.ok(answeredMeanwhile >= 2, `only ${answeredMeanwhile} reads answered while 4,000 chunks were written`);
      assert.deepEqual(await records.fileChunks(scope, store.id, fileId), chunksOf(texts));
      assert.equal((await search('zeta0 zeta3999', [store.id])).length, 2);
    });

    test('a large ingestion cut short leaves no chunk: cancelled, re-added, or lost to a worker that fails or completes', async () => {
      await drain();
      // Enough transactions (20) that the cut, made once the first is committed, always comes before the last.
      const texts = Array.from({ length: 4000 }, (_, i) => `eta${i} cut chunk ${i}`);
      const entries = await fixture.indexEntries();
      /** Starts `worker`'s completion of the file, and resolves once some of its chunks are written. */
      async function cutShort(
        store: string,
        fileId: string,
        worker: string,
        cut: () => Promise<unknown>,
      ): Promise<void> {
        const completion = records.completeIngestion(scope, store, fileId, worker, chunksOf(texts), 10);
        while ((await fixture.indexEntries()) === entries) await new Promise((resolve) => setImmediate(resolve));
        await cut();
        assert.equal(await completion, false, 'the fence stops the rest');
      }

      /** 'w2' takes the file over once its lease has expired (PostgreSQL's claim skips it while a write holds it). */
      async function takeOver(fileId: string): Promise<void> {
        while (
          !(await records.claimIngestions('w2', Date.now() + 120_000, FOREVER, 10)).some((c) => c.fileId === fileId)
        );
      }

      // Cancelled with its batch.
      const store = aStore();
      const batch = aBatch(store.id);
      const [cancelled, readded, lost] = await uploadFiles(3);
      await records.createVectorStore(scope, store, []);
      await records.addFiles(scope, store.id, [aFile(store.id, cancelled!, { batch_id: batch.id })], batch);
      await records.claimIngestions('w', Date.now(), FOREVER, 10);
      await cutShort(store.id, cancelled!, 'w', () => records.cancelFileBatch(scope, store.id, batch.id));
      assert.equal((await records.getVectorStoreFile(scope, store.id, cancelled!))?.status, 'cancelled');
      assert.equal(await fixture.indexEntries(), entries);

      // Added again meanwhile.
      await records.addFiles(scope, store.id, [aFile(store.id, readded!)]);
      await records.claimIngestions('w', Date.now(), FOREVER, 10);
      await cutShort(store.id, readded!, 'w', () => records.addFiles(scope, store.id, [aFile(store.id, readded!)]));
      assert.equal((await records.getVectorStoreFile(scope, store.id, readded!))?.status, 'in_progress');
      assert.equal(await fixture.indexEntries(), entries);
      await drain();

      // Its lease expired (a crash) and another worker took it over: that worker's failure drops the chunks, as
      // does its completion, which writes each chunk once.
      await records.addFiles(scope, store.id, [aFile(store.id, lost!)]);
      await records.claimIngestions('w', Date.now(), Date.now() + 60_000, 10);
      await cutShort(store.id, lost!, 'w', () => takeOver(lost!));
      assert.ok((await fixture.indexEntries()) > entries, "the crashed worker's chunks are still there");
      assert.equal(
        await records.failIngestion(scope, store.id, lost!, 'w2', { code: 'server_error', message: 'x' }),
        true,
      );
      assert.equal(await fixture.indexEntries(), entries);

      await records.addFiles(scope, store.id, [aFile(store.id, lost!)]);
      await records.claimIngestions('w', Date.now(), Date.now() + 60_000, 10);
      await cutShort(store.id, lost!, 'w', () => takeOver(lost!));
      assert.equal(await records.completeIngestion(scope, store.id, lost!, 'w2', chunksOf(texts), 10), true);
      assert.deepEqual(await records.fileChunks(scope, store.id, lost!), chunksOf(texts));
      assert.equal(await fixture.indexEntries(), entries + texts.length);
    });

    test('another project sees none of it: not the store, its files, its batches, its chunks or its search hits', async () => {
      await drain();
      const { id, files } = await storeWith({ 'secret.txt': ['classified zebra payload'] });
      const fileId = files['secret.txt']!;
      const batch = aBatch(id);
      const pending = await uploadFile('pending.txt');
      await records.addFiles(scope, id, [aFile(id, pending, { batch_id: batch.id })], batch);

      assert.equal(await records.getVectorStore(otherScope, id), undefined);
      assert.deepEqual((await records.listVectorStores(otherScope, { limit: 100, order: 'desc' })).data, []);
      assert.equal(await records.updateVectorStore(otherScope, id, { name: 'stolen' }), undefined);
      assert.equal(await records.deleteVectorStore(otherScope, id), false);
      await assert.rejects(
        records.addFiles(otherScope, id, [aFile(id, newId('file'))]),
        (e: ApiError) => e.status === 404,
      );
      await assert.rejects(
        records.listVectorStoreFiles(otherScope, id, { limit: 10, order: 'desc' }),
        (e: ApiError) => e.status === 404,
      );
      assert.equal(await records.getVectorStoreFile(otherScope, id, fileId), undefined);
      assert.equal(await records.updateFileAttributes(otherScope, id, fileId, { a: 1 }), undefined);
      assert.equal(await records.deleteVectorStoreFile(otherScope, id, fileId), false);
      assert.equal(await fixture.store.files.deleteFile(otherScope, fileId), false);
      assert.deepEqual(await records.storeFiles(otherScope, id), []);
      assert.deepEqual(await records.fileChunks(otherScope, id, fileId), []);
      assert.equal(await records.getFileBatch(otherScope, id, batch.id), undefined);
      assert.equal(await records.cancelFileBatch(otherScope, id, batch.id), undefined);
      assert.deepEqual(await search('classified zebra', [id], {}, otherScope), []);

      const [job] = await records.claimIngestions('w', Date.now(), FOREVER, 10);
      assert.deepEqual(job?.scope, scope);
      assert.equal(await records.renewIngestion(otherScope, id, pending, 'w', FOREVER), false);
      assert.equal(await records.completeIngestion(otherScope, id, pending, 'w', chunksOf(['x']), 1), false);
      assert.equal(
        await records.failIngestion(otherScope, id, pending, 'w', { code: 'server_error', message: 'x' }),
        false,
      );

      // All of it still there for its own project.
      assert.equal((await records.getVectorStore(scope, id))?.file_counts.total, 2);
      assert.equal((await records.getVectorStoreFile(scope, id, pending))?.status, 'in_progress');
      assert.deepEqual(await records.fileChunks(scope, id, fileId), chunksOf(['classified zebra payload']));
      assert.equal((await search('classified zebra', [id])).length, 1);
      assert.equal(await records.renewIngestion(scope, id, pending, 'w', FOREVER), true);
    });

    test('claims lease oldest first and skip live leases; renew, complete and fail are fenced on the lease', async () => {
      await drain();
      const store = aStore();
      const ids = await uploadFiles(3);
      await records.createVectorStore(
        scope,
        store,
        ids.map((id, i) => aFile(store.id, id, { created_at: T0 + 10 - i })),
      );
      const now = Date.now();
      const first = await records.claimIngestions('w1', now, now + 1000, 2);
      assert.deepEqual(
        first.map((c) => c.fileId),
        [ids[2], ids[1]],
      );
      assert.deepEqual(
        (await records.claimIngestions('w2', now + 10, now + 1000, 10)).map((c) => c.fileId),
        [ids[0]],
      );
      assert.deepEqual(await records.claimIngestions('w3', now + 20, now + 1000, 10), []);
      assert.deepEqual(await records.claimIngestions('w3', now, now + 1000, 0), []);

      // w1 renews one lease; the other lapses and w3 takes it over.
      assert.equal(await records.renewIngestion(scope, store.id, ids[2]!, 'w1', now + 5000), true);
      assert.equal(await records.renewIngestion(scope, store.id, ids[2]!, 'w2', now + 5000), false);
      const takeover = await records.claimIngestions('w3', now + 2000, now + 9000, 10);
      assert.deepEqual(
        takeover.map((c) => c.fileId),
        [ids[1], ids[0]],
      );
      assert.equal(await records.renewIngestion(scope, store.id, ids[1]!, 'w1', now + 9000), false);

      // The late worker writes nothing; the one holding the lease completes; a retry of either writes nothing more.
      const entries = await fixture.indexEntries();
      assert.equal(
        await records.completeIngestion(scope, store.id, ids[1]!, 'w1', chunksOf(['late a', 'late b']), 9),
        false,
      );
      assert.deepEqual(await records.fileChunks(scope, store.id, ids[1]!), []);
      assert.equal(
        await records.failIngestion(scope, store.id, ids[1]!, 'w1', { code: 'server_error', message: 'x' }),
        false,
      );
      assert.equal(
        await records.completeIngestion(scope, store.id, ids[1]!, 'w3', chunksOf(['kept one', 'kept two']), 7),
        true,
      );
      assert.equal(
        await records.completeIngestion(scope, store.id, ids[1]!, 'w3', chunksOf(['kept one', 'kept two']), 7),
        false,
      );
      assert.equal(
        await records.completeIngestion(scope, store.id, ids[1]!, 'w1', chunksOf(['late a', 'late b']), 9),
        false,
      );
      assert.deepEqual(await records.fileChunks(scope, store.id, ids[1]!), chunksOf(['kept one', 'kept two']));
      assert.equal(await fixture.indexEntries(), entries + 2);
      assert.equal(await records.renewIngestion(scope, store.id, ids[1]!, 'w3', now + 9000), false, 'completed');

      const error = { code: 'server_error' as const, message: 'extraction crashed' };
      assert.equal(await records.failIngestion(scope, store.id, ids[0]!, 'w1', error), false);
      assert.equal(await records.failIngestion(scope, store.id, ids[0]!, 'w3', error), true);
      assert.equal(await records.completeIngestion(scope, store.id, ids[0]!, 'w3', chunksOf(['x']), 1), false);
      const failed = await records.getVectorStoreFile(scope, store.id, ids[0]!);
      assert.deepEqual([failed?.status, failed?.last_error], ['failed', error]);
      assert.equal(await records.completeIngestion(scope, store.id, ids[2]!, 'w1', [], 0), true);

      const read = await records.getVectorStore(scope, store.id);
      assert.deepEqual(read?.file_counts, counts({ completed: 2, failed: 1 }));
      assert.equal(read?.usage_bytes, 7);
      assert.deepEqual(
        await records.claimIngestions('w4', FOREVER - 1, FOREVER, 10),
        [],
        'nothing in progress is left',
      );
    });

    test('cancelling a batch cancels its files in progress; an ingestion in flight then writes nothing', async () => {
      await drain();
      const store = aStore();
      const batch = aBatch(store.id);
      const ids = await uploadFiles(3);
      const outside = await uploadFile('outside.txt');
      await records.createVectorStore(scope, store, [aFile(store.id, outside)]);
      await records.addFiles(
        scope,
        store.id,
        ids.map((id) => aFile(store.id, id, { batch_id: batch.id, created_at: T0 + 1 })),
        batch,
      );
      const claimed = await records.claimIngestions('w', Date.now(), FOREVER, 3);
      assert.deepEqual(
        claimed.map((c) => c.fileId),
        [outside, ids[0], ids[1]],
      );
      assert.equal(await records.completeIngestion(scope, store.id, ids[0]!, 'w', chunksOf(['done before']), 3), true);

      assert.equal(await records.cancelFileBatch(scope, store.id, 'vsfb_missing'), undefined);
      const cancelled = await records.cancelFileBatch(scope, store.id, batch.id);
      assert.deepEqual(cancelled, { ...batch, cancelled: true, file_counts: counts({ completed: 1, cancelled: 2 }) });
      assert.deepEqual(await records.getFileBatch(scope, store.id, batch.id), cancelled);
      // A batch no longer in progress is left as it is.
      assert.deepEqual(await records.cancelFileBatch(scope, store.id, batch.id), cancelled);

      assert.equal(await records.completeIngestion(scope, store.id, ids[1]!, 'w', chunksOf(['too late']), 3), false);
      assert.equal(await records.renewIngestion(scope, store.id, ids[1]!, 'w', FOREVER), false);
      assert.deepEqual(await records.fileChunks(scope, store.id, ids[1]!), []);
      assert.equal((await records.getVectorStoreFile(scope, store.id, ids[2]!))?.status, 'cancelled');
      assert.deepEqual(
        await records.claimIngestions('w2', FOREVER - 1, FOREVER, 10),
        [],
        'no cancelled file is claimable',
      );
      assert.equal((await records.getVectorStoreFile(scope, store.id, outside))?.status, 'in_progress');
      assert.deepEqual(await records.fileChunks(scope, store.id, ids[0]!), chunksOf(['done before']));
    });

    test('5 workers claiming 50 files at once never share one, and together take them all', async () => {
      await drain();
      const store = aStore();
      const ids = await uploadFiles(50);
      await records.createVectorStore(
        scope,
        store,
        ids.map((id) => aFile(store.id, id)),
      );
      const now = Date.now();
      const taken = new Map<string, string[]>();
      await Promise.all(
        Array.from({ length: 5 }, async (_, w) => {
          const mine: string[] = [];
          taken.set(`w${w}`, mine);
          for (;;) {
            const claimed = await records.claimIngestions(`w${w}`, now, FOREVER, 3);
            if (claimed.length === 0) return;
            mine.push(...claimed.map((c) => c.fileId));
          }
        }),
      );
      const all = [...taken.values()].flat();
      assert.equal(all.length, 50, 'no file was claimed twice');
      assert.deepEqual(new Set(all), new Set(ids));
      // Each worker can complete exactly the files it holds.
      for (const [worker, fileIds] of taken)
        for (const fileId of fileIds) {
          const other = worker === 'w0' ? 'w1' : 'w0';
          assert.equal(await records.completeIngestion(scope, store.id, fileId, other, chunksOf(['x']), 1), false);
          assert.equal(await records.completeIngestion(scope, store.id, fileId, worker, chunksOf(['x']), 1), true);
        }
      assert.deepEqual((await records.getVectorStore(scope, store.id))?.file_counts, counts({ completed: 50 }));
    });

    test('search ranks chunks by how many query terms they hold, then by relevance; scores lie in 0..1', async () => {
      await drain();
      const { id, files } = await storeWith({
        'animals.md': [
          'The quick brown fox jumps over the lazy dog.',
          'A brown bear sleeps in the forest.',
          'Foxes and more foxes: fox fox fox fox fox fox fox fox.',
          'Nothing relevant here at all.',
        ],
        'plants.txt': ['Brown leaves fall from the quick growing oak.', 'Indexes of plant names, indexed yearly.'],
      });
      const hits = await search('quick brown fox', [id]);
      const at = (text: string) => hits.findIndex((h) => h.text.startsWith(text));
      assert.equal(hits.length, 4);
      assert.equal(at('The quick brown fox'), 0, 'all three terms');
      assert.equal(at('Brown leaves'), 1, 'two terms');
      assert.ok(at('Foxes and more') > 1 && at('A brown bear') > 1, 'one term');
      assert.equal(at('Nothing'), -1);
      for (const hit of hits) assert.ok(hit.score > 0 && hit.score <= 1, `score ${hit.score} in 0..1`);
      for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1]!.score >= hits[i]!.score, 'best first');
      assert.ok(hits[0]!.score > hits[1]!.score && hits[1]!.score > hits[2]!.score, 'each extra term scores higher');
      assert.deepEqual({ ...hits[0], score: 0 }, {
        vector_store_id: id,
        file_id: files['animals.md']!,
        filename: 'animals.md',
        chunk_index: 0,
        text: 'The quick brown fox jumps over the lazy dog.',
        score: 0,
      } satisfies ChunkHit);

      // A chunk repeating one term many times still ranks below one holding both terms once.
      const two = await search('fox bear', [id]);
      assert.equal(two[0]?.text, 'Foxes and more foxes: fox fox fox fox fox fox fox fox.');
      const pair = await search('fox jumps', [id]);
      assert.equal(pair[0]?.text, 'The quick brown fox jumps over the lazy dog.');
      assert.ok(pair[0]!.score > pair[1]!.score);

      // The score reads the same in every query: every term found ≥ 1/2; one of three < 1/2.
      const single = await search('fox', [id]);
      assert.ok(single.every((h) => h.score >= 0.5 && h.score < 1));
      assert.ok(
        hits.filter((h) => !h.text.startsWith('The quick') && !h.text.startsWith('Brown')).every((h) => h.score < 0.5),
      );

      // Stemming: "indexing" finds "Indexes … indexed"; stop words are not terms.
      assert.deepEqual(
        (await search('indexing', [id])).map((h) => h.text),
        ['Indexes of plant names, indexed yearly.'],
      );
      assert.deepEqual(await search('the of and', [id]), []);

      assert.equal((await search('brown', [id], { limit: 2 })).length, 2);
      const onlyPlants = await search('quick brown fox', [id], { fileIds: [files['plants.txt']!] });
      assert.deepEqual(
        onlyPlants.map((h) => h.filename),
        ['plants.txt'],
      );
      assert.deepEqual(await search('quick brown fox', [id], { fileIds: [] }), []);
      assert.deepEqual(await search('quick brown fox', []), []);
      assert.deepEqual(await search('quick brown fox', ['vs_unknown']), []);
    });

    test('search covers several stores, only completed files, and no store that has expired', async () => {
      await drain();
      const a = await storeWith({ 'a.txt': ['shared walrus term in a'] });
      const b = await storeWith({ 'b.txt': ['shared walrus term in b'] });
      const pending = await uploadFile('pending.txt');
      await records.addFiles(scope, a.id, [aFile(a.id, pending)]);
      const [job] = await records.claimIngestions('w', Date.now(), FOREVER, 10);
      assert.equal(job?.fileId, pending);
      assert.deepEqual((await search('walrus', [a.id, b.id])).map((h) => h.filename).sort(), ['a.txt', 'b.txt']);
      assert.deepEqual(
        (await search('walrus', [b.id])).map((h) => h.filename),
        ['b.txt'],
      );
      await records.updateVectorStore(scope, b.id, { expires_at: T0 });
      assert.deepEqual(await records.expireVectorStores(T0, 100), [b.id]);
      assert.deepEqual(
        (await search('walrus', [a.id, b.id])).map((h) => h.filename),
        ['a.txt'],
      );
    });

    test('user text never breaks the query: quotes, operators, brackets, backslashes and emoji are only separators', async () => {
      await drain();
      const { id } = await storeWith({ 'q.txt': ['The fox said NEAR the river: hello-world!', 'unrelated content'] });
      const finds = [
        'fox"',
        '"fox',
        '"fox" OR "river"',
        'fox*',
        '*fox',
        'fox AND OR NOT river',
        '(fox',
        'fox)',
        'NEAR(fox river)',
        'NEAR fox',
        '-fox',
        'fox -river',
        'keywords:fox',
        'text:fox',
        "fox'",
        "'fox' & !river",
        'fox <-> river',
        'fox:*',
        'fox\\',
        '\\"fox\\"',
        '🦊 fox 🦊',
        'fox;drop table chunks;--',
        '{fox}',
        '^fox',
        'fox + river',
        'ＦＯＸ',
      ];
      for (const query of finds) {
        const hits = await search(query, [id]);
        assert.equal(hits[0]?.text, 'The fox said NEAR the river: hello-world!', `query ${JSON.stringify(query)}`);
      }
      const nothing = [
        '',
        '   ',
        '"',
        '""',
        '*',
        '(',
        ')',
        ':',
        '-',
        "'",
        "''",
        '\\',
        '\\\\',
        '🦊',
        'AND OR NOT',
        '"*":^',
      ];
      for (const query of nothing) assert.deepEqual(await search(query, [id]), [], `query ${JSON.stringify(query)}`);
      assert.equal((await search('hello world', [id]))[0]?.text, 'The fox said NEAR the river: hello-world!');
      assert.equal((await search('near', [id])).length, 1);
    });

    test('English words are stemmed the same on both databases: inflections meet, unrelated words do not', async () => {
      await drain();
      const { id } = await storeWith({
        'stems.txt': [
          'Clear skies over the harbour.',
          'He was lying about the results.',
          'A generous donation arrived.',
          'General meeting at noon.',
          'Breaking news tonight.',
          'A new bridge opened.',
          'The organizations met.',
        ],
      });
      const found = async (query: string) => (await search(query, [id])).map((hit) => hit.text);
      assert.deepEqual(await found('sky'), ['Clear skies over the harbour.']);
      assert.deepEqual(await found('lie'), ['He was lying about the results.']);
      assert.deepEqual(await found('generously'), ['A generous donation arrived.']);
      assert.deepEqual(await found('generals'), ['General meeting at noon.']);
      assert.deepEqual(await found('news'), ['Breaking news tonight.']);
      assert.deepEqual(await found('new'), ['A new bridge opened.']);
      assert.deepEqual(await found('organization'), ['The organizations met.']);
    });

    test('Chinese and Japanese text is found by words inside runs without spaces', async () => {
      await drain();
      const { id } = await storeWith({
        '中文.txt': ['我们的系统支持中文全文搜索功能。', '今天天气很好，我们去公园散步。'],
        'japanese.txt': ['東京タワーの近くにある美味しいラーメン屋。', 'English words only.'],
        'mixed.txt': ['iPhone手机壳 and a café'],
      });
      const zh = await search('中文搜索', [id]);
      assert.equal(zh[0]?.text, '我们的系统支持中文全文搜索功能。');
      assert.equal(zh[0]?.filename, '中文.txt');
      assert.ok(zh.every((h) => h.text !== 'English words only.'));
      assert.equal((await search('公园', [id]))[0]?.text, '今天天气很好，我们去公园散步。');
      assert.equal((await search('ラーメン', [id]))[0]?.text, '東京タワーの近くにある美味しいラーメン屋。');
      assert.equal((await search('東京', [id]))[0]?.text, '東京タワーの近くにある美味しいラーメン屋。');
      assert.equal((await search('猫', [id])).length, 0);
      assert.equal((await search('园', [id]))[0]?.text, '今天天气很好，我们去公园散步。', 'one character');
      assert.equal((await search('手机', [id]))[0]?.filename, 'mixed.txt');
      assert.equal((await search('iphone', [id]))[0]?.filename, 'mixed.txt');
      assert.equal((await search('CAFE', [id]))[0]?.filename, 'mixed.txt', 'diacritics folded');
      assert.deepEqual(await search('火星探测', [id]), []);
    });

    test('deleting a file everywhere or a store leaves no chunk and no index entry behind', async () => {
      await drain();
      const entries = await fixture.indexEntries();
      const shared = await uploadFile('shared.txt');
      const keep = await uploadFile('keep.txt');
      const stores = [aStore(), aStore()];
      for (const store of stores)
        await records.createVectorStore(scope, store, [aFile(store.id, shared), aFile(store.id, keep)]);
      const texts = { [shared]: ['ocelot one', 'ocelot two'], [keep]: ['keeper ocelot'] };
      await ingest(scope, Object.fromEntries(stores.map((store) => [store.id, texts])));
      assert.equal(await fixture.indexEntries(), entries + 6);
      assert.equal(
        (
          await search(
            'ocelot',
            stores.map((s) => s.id),
          )
        ).length,
        6,
      );

      assert.equal(await fixture.store.files.deleteFile(scope, shared), true);
      for (const store of stores) {
        assert.equal(await records.getVectorStoreFile(scope, store.id, shared), undefined);
        assert.deepEqual(await records.fileChunks(scope, store.id, shared), []);
        assert.deepEqual((await records.getVectorStore(scope, store.id))?.file_counts, counts({ completed: 1 }));
      }
      assert.equal(await fixture.indexEntries(), entries + 2);
      assert.deepEqual(
        (
          await search(
            'ocelot',
            stores.map((s) => s.id),
          )
        ).map((h) => h.text),
        ['keeper ocelot', 'keeper ocelot'],
      );

      const batch = aBatch(stores[0]!.id);
      await records.addFiles(
        scope,
        stores[0]!.id,
        [aFile(stores[0]!.id, await uploadFile('batched.txt'), { batch_id: batch.id })],
        batch,
      );
      assert.equal(await records.deleteVectorStore(scope, stores[0]!.id), true);
      assert.equal(await records.getFileBatch(scope, stores[0]!.id, batch.id), undefined);
      assert.deepEqual(await records.fileChunks(scope, stores[0]!.id, keep), []);
      assert.equal(await fixture.indexEntries(), entries + 1);
      assert.equal(await records.deleteVectorStore(scope, stores[1]!.id), true);
      assert.equal(await fixture.indexEntries(), entries);
      assert.deepEqual(
        await search(
          'ocelot',
          stores.map((s) => s.id),
        ),
        [],
      );
    });

    test('a store holds only files the Files API has: a missing or expired file is out of every store', async () => {
      await drain();
      const store = aStore();
      await records.createVectorStore(scope, store, []);
      const ghost = newId('file');
      const foreign = await uploadFile('foreign.txt', otherScope);
      for (const missing of [ghost, foreign]) {
        await assert.rejects(records.addFiles(scope, store.id, [aFile(store.id, missing)]), (e: ApiError) => {
          assert.equal(e.status, 404);
          assert.match(e.message, new RegExp(missing));
          return true;
        });
        const other = aStore();
        await assert.rejects(records.createVectorStore(scope, other, [aFile(other.id, missing)]), (e: ApiError) => {
          assert.equal(e.status, 404);
          return true;
        });
        assert.equal(await records.getVectorStore(scope, other.id), undefined, 'no store is made');
      }
      assert.deepEqual(await records.storeFiles(scope, store.id), []);

      // A file past its expires_at is swept like a deleted one: out of its stores, its chunks unsearchable. (It
      // expires in an hour: one that has expired already cannot be added.)
      const expiring = newId('file');
      const at = Math.floor(Date.now() / 1000) + 3600;
      await fixture.store.files.beginUpload(scope, expiring, T0, { owner: 'u', until: Date.now() + 60_000 });
      const file = { id: expiring, created_at: T0, bytes: 1, filename: 'dingo.txt', purpose: 'assistants' };
      assert.equal(
        await fixture.store.files.finishUpload(scope, { ...file, expires_at: at, mime_type: null }, 'u'),
        true,
      );
      const keep = await uploadFile('keep.txt');
      await records.addFiles(scope, store.id, [aFile(store.id, expiring), aFile(store.id, keep)]);
      await ingest(scope, { [store.id]: { [expiring]: ['dingo facts'], [keep]: ['dingo lore kept'] } });
      assert.equal((await search('dingo', [store.id])).length, 2);
      assert.deepEqual(await fixture.store.files.deleteLapsedAndExpired(Date.now(), at, 100), [expiring]);
      assert.equal(await records.getVectorStoreFile(scope, store.id, expiring), undefined);
      assert.deepEqual(await records.fileChunks(scope, store.id, expiring), []);
      assert.deepEqual((await records.getVectorStore(scope, store.id))?.file_counts, counts({ completed: 1 }));
      assert.deepEqual(
        (await search('dingo', [store.id])).map((hit) => hit.text),
        ['dingo lore kept'],
      );
    });

    test('expireVectorStores marks the stores whose expires_at has passed, once, at most `limit` at a time', async () => {
      const now = T0 + 50_000;
      const due = [aStore({ expires_at: now - 10 }), aStore({ expires_at: now - 5 }), aStore({ expires_at: now })];
      const notDue = [aStore({ expires_at: now + 1 }), aStore({ expires_at: null })];
      const foreign = aStore({ expires_at: now - 1 });
      for (const store of [...due, ...notDue]) await records.createVectorStore(scope, store, []);
      await records.createVectorStore(otherScope, foreign, []);
      const first = await records.expireVectorStores(now, 2);
      assert.equal(first.length, 2);
      const rest = await records.expireVectorStores(now, 100);
      assert.deepEqual(new Set([...first, ...rest]), new Set([...due.map((s) => s.id), foreign.id]));
      assert.deepEqual(await records.expireVectorStores(now, 100), []);
      for (const store of due) assert.equal((await records.getVectorStore(scope, store.id))?.expired, true);
      for (const store of notDue) assert.equal((await records.getVectorStore(scope, store.id))?.expired, false);
      assert.equal((await records.getVectorStore(otherScope, foreign.id))?.expired, true);
    });

    test('fileChunks returns a file’s chunks in order, whatever order they were written in', async () => {
      await drain();
      const store = aStore();
      const fileId = await uploadFile('f.txt');
      await records.createVectorStore(scope, store, [aFile(store.id, fileId)]);
      await records.claimIngestions('w', Date.now(), FOREVER, 10);
      const chunks = chunksOf(Array.from({ length: 12 }, (_, i) => `piece ${i}`));
      const shuffled = [...chunks].sort((a, b) => ((a.index * 7) % 12) - ((b.index * 7) % 12));
      assert.equal(await records.completeIngestion(scope, store.id, fileId, 'w', shuffled, 100), true);
      assert.deepEqual(await records.fileChunks(scope, store.id, fileId), chunks);
    });

    test('a chunk’s overlap is kept with it; a chunk written without one is read back without one', async () => {
      await drain();
      const store = aStore();
      const [said, unsaid] = [await uploadFile('said.txt'), await uploadFile('unsaid.txt')];
      await records.createVectorStore(scope, store, [aFile(store.id, said), aFile(store.id, unsaid)]);
      await records.claimIngestions('w', Date.now(), FOREVER, 10);
      const overlapping = chunksOf(['one two three', 'three four five']).map((c, i) => ({ ...c, overlap: i * 5 }));
      assert.equal(await records.completeIngestion(scope, store.id, said, 'w', overlapping, 100), true);
      assert.equal(
        await records.completeIngestion(scope, store.id, unsaid, 'w', chunksOf(['old', 'chunks']), 100),
        true,
      );
      assert.deepEqual(await records.fileChunks(scope, store.id, said), overlapping);
      assert.deepEqual(await records.fileChunks(scope, store.id, unsaid), chunksOf(['old', 'chunks']));
    });

    test('a keyword search over 20,000 chunks goes through the keyword index', async () => {
      await drain();
      const store = aStore();
      const fileIds = await uploadFiles(20);
      await records.createVectorStore(
        scope,
        store,
        fileIds.map((id) => aFile(store.id, id)),
      );
      const vocabulary = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta', 'iota', 'kappa'];
      const claimed = await records.claimIngestions('bulk', Date.now(), FOREVER, 100);
      assert.equal(claimed.length, 20);
      for (const [f, fileId] of fileIds.entries()) {
        const texts = Array.from({ length: 1000 }, (_, i) => {
          const n = f * 1000 + i;
          const words = Array.from({ length: 12 }, (_, k) => vocabulary[(n * 7 + k * 3) % vocabulary.length]);
          return `${words.join(' ')} item${n}${n % 5000 === 17 ? ' aardvark' : ''}`;
        });
        assert.equal(await records.completeIngestion(scope, store.id, fileId, 'bulk', chunksOf(texts), 1), true);
      }
      const query = { query: 'aardvark', vectorStoreIds: [store.id], limit: 10 };
      // Right after the ingestion, before anything else analysed the database (autovacuum may be off or behind):
      // the ingestion itself keeps the planner's statistics current where the plan depends on them.
      const fresh = await fixture.explainSearch(scope, { ...query, query: 'item12345 aardvark alpha' });
      assert.ok(fixture.usesKeywordIndex(fresh), fresh);
      await fixture.analyze();
      const hits = await records.searchChunks(scope, query);
      assert.deepEqual(
        hits.map((h) => h.chunk_index).sort((a, b) => a - b),
        [17, 17, 17, 17],
      );
      const plan = await fixture.explainSearch(scope, query);
      assert.ok(fixture.usesKeywordIndex(plan), plan);
      const twoTerms = await fixture.explainSearch(scope, { ...query, query: 'item12345 aardvark' });
      assert.ok(fixture.usesKeywordIndex(twoTerms), twoTerms);
    });
  });
}
