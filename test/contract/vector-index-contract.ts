import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { newId } from '../../src/domain/ids.ts';
import type { Chunk } from '../../src/domain/vector-stores.ts';
import type { ChunkVectors, Scope, Store, VectorQuery, VectorStoreRecords } from '../../src/storage/store.ts';
import { aVectorStore, aVectorStoreFile } from '../support/builders.ts';
import { recordFile } from '../support/file-rows.ts';

export interface VectorIndexFixture {
  store: Store;
  /** Another store on the same database, as another process would open it: its changes are not this one's. */
  other: Store;
  /** Vectors read from the database by `store`'s in-memory cache so far, when it has one (undefined otherwise). */
  vectorsRead(): number | undefined;
  cleanup(): Promise<void>;
}

const scope: Scope = { projectId: 'proj_vectors' };
const otherScope: Scope = { projectId: 'proj_vectors_other' };
const T0 = 1_700_000_000;
const FOREVER = Number.MAX_SAFE_INTEGER;
const MODEL = 'test-embedding';

const aStore = () => aVectorStore({ name: 'vectors' });
const aFile = (vectorStoreId: string, fileId: string) => aVectorStoreFile(vectorStoreId, fileId);

const chunksOf = (texts: readonly string[]): Chunk[] => texts.map((text, index) => ({ index, text, tokens: 3 }));

/** A deterministic pseudo-random vector (not unit length: the index scales it). */
function randomVector(seed: number, dims: number): Float32Array {
  let x = seed * 2654435761 + 1;
  const v = new Float32Array(dims);
  for (let i = 0; i < dims; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    v[i] = x / 2147483648 - 0.5;
  }
  return v;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

const axis = (dims: number, ...weights: number[]) => {
  const v = new Float32Array(dims);
  weights.forEach((w, i) => {
    v[i] = w;
  });
  return v;
};

/**
 * The vector index behind VectorStoreRecords (storeEmbedding, searchVectors, and the vectors of completeIngestion),
 * written once and run on every database: sqlite-vec's vec0 tables on SQLite, the in-memory cache of each store's
 * vectors on PostgreSQL. Each test uses its own stores and claims only its own files (by worker id) — the claim
 * queue is shared, so every claim here takes everything waiting and completes what it knows.
 */
export function vectorIndexContract(name: string, open: () => Promise<VectorIndexFixture>): void {
  describe(`vector index contract: ${name}`, () => {
    let fixture: VectorIndexFixture;
    let records: VectorStoreRecords;
    before(async () => {
      fixture = await open();
      records = fixture.store.vectorStores;
    });
    after(async () => fixture.cleanup());

    const upload = (filename: string, s: Scope = scope) => recordFile(fixture.store.files, s, filename, T0);

    /** Adds files to a store (created if `storeId` is undefined) and completes each with its chunks and vectors. */
    async function ingest(
      files: Array<{ name: string; texts: string[]; vectors?: ChunkVectors | undefined }>,
      storeId?: string,
      s: Scope = scope,
    ): Promise<{ id: string; files: Record<string, string> }> {
      let id = storeId;
      const ids: Record<string, string> = {};
      for (const file of files) ids[file.name] = await upload(file.name, s);
      const rows = Object.values(ids).map((fileId) => aFile(id ?? '', fileId));
      if (id === undefined) {
        const store = aStore();
        id = store.id;
        await records.createVectorStore(
          s,
          store,
          rows.map((row) => ({ ...row, vector_store_id: store.id })),
        );
      } else await records.addFiles(s, id, rows);
      const worker = newId('file');
      const claimed = await records.claimIngestions(worker, Date.now(), FOREVER, 100_000);
      for (const file of files) {
        const fileId = ids[file.name]!;
        assert.ok(claimed.some((c) => c.fileId === fileId && c.vectorStoreId === id));
        assert.equal(
          await records.completeIngestion(s, id, fileId, worker, chunksOf(file.texts), 1, file.vectors),
          true,
        );
      }
      return { id, files: ids };
    }

    const vectorsOf = (dims: number, vectors: Float32Array[], model = MODEL): ChunkVectors => ({
      model,
      dimensions: dims,
      vectors,
    });

    const nearest = (vectorStoreId: string, vector: Float32Array, extra: Partial<VectorQuery> = {}, s = scope) =>
      records.searchVectors(s, { vectorStoreId, model: MODEL, vector, limit: 10, ...extra });

    test('a file indexed again with new vectors is searched with them, its old ones forgotten', async () => {
      // Its new chunks may take the very seqs its old ones had (SQLite reuses the newest deleted rowids).
      const { id, files } = await ingest([{ name: 'again.txt', texts: ['east'], vectors: vectorsOf(2, [axis(2, 1)]) }]);
      assert.deepEqual(
        (await nearest(id, axis(2, 1))).map((h) => h.text),
        ['east'],
      );
      await records.addFiles(scope, id, [aFile(id, files['again.txt']!)]);
      const worker = newId('file');
      await records.claimIngestions(worker, Date.now(), FOREVER, 100_000);
      assert.ok(
        await records.completeIngestion(scope, id, files['again.txt']!, worker, chunksOf(['north']), 1, {
          ...vectorsOf(2, [axis(2, 0, 1)]),
        }),
      );
      assert.deepEqual(
        (await nearest(id, axis(2, 0, 1))).map((h) => [h.text, Math.round(h.score * 1000) / 1000]),
        [['north', 1]],
      );
      // At a right angle to the new vector: no similarity (the old vector would be 1).
      assert.deepEqual(
        (await nearest(id, axis(2, 1))).filter((h) => h.score > 1e-4),
        [],
        'the old vector is not searched',
      );
    });

    test('a store records its first embedded file’s model; search finds the nearest chunks by cosine, best first', async () => {
      const { id, files } = await ingest([
        { name: 'plain.txt', texts: ['no vectors here'] },
        {
          name: 'a.txt',
          texts: ['east', 'north', 'north-east'],
          vectors: vectorsOf(4, [axis(4, 5), axis(4, 0, 2), axis(4, 1, 1)]),
        },
        { name: 'b.txt', texts: ['west', 'zero'], vectors: vectorsOf(4, [axis(4, -3), axis(4)]) },
      ]);
      assert.deepEqual(await records.storeEmbedding(scope, id), { model: MODEL, dimensions: 4 });

      const hits = await nearest(id, axis(4, 1, 0.2));
      assert.deepEqual(
        hits.map((h) => h.text),
        ['east', 'north-east', 'north', 'west'],
        'the zero vector and the chunk without a vector are not candidates',
      );
      assert.equal(hits[0]!.filename, 'a.txt');
      assert.equal(hits[0]!.file_id, files['a.txt']);
      assert.equal(hits[0]!.chunk_index, 0);
      assert.ok(Math.abs(hits[0]!.score - cosine(axis(4, 1, 0.2), axis(4, 1))) < 1e-4, `${hits[0]!.score}`);
      assert.equal(hits[3]!.score, 0, 'a negative cosine scores 0');
      for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1]!.score >= hits[i]!.score);

      assert.deepEqual(
        (await nearest(id, axis(4, 1, 0.2), { limit: 2 })).map((h) => h.text),
        ['east', 'north-east'],
      );
      // The file filter applies inside the search: the nearest chunk of b.txt is found even with limit 1.
      assert.deepEqual(
        (await nearest(id, axis(4, 1, 0.2), { limit: 1, fileIds: [files['b.txt']!] })).map((h) => h.text),
        ['west'],
      );
      assert.deepEqual(await nearest(id, axis(4, 1), { fileIds: [] }), []);
      assert.deepEqual(await nearest(id, axis(4, 1), { model: 'another-model' }), [], 'another model: nothing');
      assert.deepEqual(await nearest(id, axis(5, 1)), [], 'another dimension: nothing');
      assert.deepEqual(await nearest(id, axis(4)), [], 'a zero query: nothing');
      assert.deepEqual(await nearest(id, axis(4, 1), {}, otherScope), [], 'another project: nothing');
      assert.equal(await records.storeEmbedding(otherScope, id), null);
      assert.deepEqual(await nearest('vs_missing', axis(4, 1)), []);
    });

    test('a store embedded by one model keeps it: another model’s file is stored without vectors', async () => {
      const { id } = await ingest([{ name: 'a.txt', texts: ['alpha'], vectors: vectorsOf(3, [axis(3, 1)]) }]);
      await ingest(
        [
          { name: 'b.txt', texts: ['bravo keyword'], vectors: vectorsOf(3, [axis(3, 1)], 'another-model') },
          { name: 'c.txt', texts: ['charlie keyword'], vectors: vectorsOf(2, [axis(2, 1)]) },
        ],
        id,
      );
      assert.deepEqual(await records.storeEmbedding(scope, id), { model: MODEL, dimensions: 3 });
      assert.deepEqual(
        (await nearest(id, axis(3, 1))).map((h) => h.text),
        ['alpha'],
      );
      assert.equal(
        (await records.searchChunks(scope, { query: 'keyword', vectorStoreIds: [id], limit: 10 })).length,
        2,
      );

      const fresh = await ingest([{ name: 'k.txt', texts: ['keyword only'] }]);
      assert.equal(await records.storeEmbedding(scope, fresh.id), null, 'no model until a file is embedded');
    });

    test('removing, replacing or deleting files removes their vectors, also when another process did it', async () => {
      const v = (x: number) => axis(3, 1, x);
      const { id, files } = await ingest([
        { name: 'a.txt', texts: ['a0', 'a1'], vectors: vectorsOf(3, [v(0), v(0.1)]) },
        { name: 'b.txt', texts: ['b0'], vectors: vectorsOf(3, [v(0.2)]) },
        { name: 'c.txt', texts: ['c0'], vectors: vectorsOf(3, [v(0.3)]) },
        { name: 'd.txt', texts: ['d0'], vectors: vectorsOf(3, [v(0.4)]) },
      ]);
      const texts = async () => (await nearest(id, v(0))).map((h) => h.text);
      assert.deepEqual(await texts(), ['a0', 'a1', 'b0', 'c0', 'd0']);

      assert.equal(await records.deleteVectorStoreFile(scope, id, files['a.txt']!), true);
      assert.deepEqual(await texts(), ['b0', 'c0', 'd0']);

      // Another process removes a file and replaces another: this one's next search sees both.
      const others = fixture.other.vectorStores;
      assert.equal(await others.deleteVectorStoreFile(scope, id, files['b.txt']!), true);
      await others.addFiles(scope, id, [aFile(id, files['c.txt']!)]);
      assert.deepEqual(await texts(), ['d0']);

      // … and adds one.
      const [job] = (await others.claimIngestions('other', Date.now(), FOREVER, 100)).filter(
        (c) => c.vectorStoreId === id,
      );
      assert.equal(job?.fileId, files['c.txt']);
      assert.equal(
        await others.completeIngestion(
          scope,
          id,
          files['c.txt']!,
          'other',
          chunksOf(['c new']),
          1,
          vectorsOf(3, [v(-0.1)]),
        ),
        true,
      );
      assert.deepEqual(await texts(), ['c new', 'd0']);

      assert.equal(await fixture.other.files.deleteFile(scope, files['d.txt']!), true);
      assert.deepEqual(await texts(), ['c new']);

      assert.equal(await others.deleteVectorStore(scope, id), true);
      assert.deepEqual(await texts(), []);
    });

    test('an expired store’s vectors are not searched', async () => {
      const { id } = await ingest([{ name: 'a.txt', texts: ['a'], vectors: vectorsOf(2, [axis(2, 1)]) }]);
      assert.equal((await nearest(id, axis(2, 1))).length, 1);
      await records.updateVectorStore(scope, id, { expires_at: T0 });
      await records.expireVectorStores(T0, 1000);
      assert.deepEqual(await nearest(id, axis(2, 1)), []);
    });

    test('search is exact: over 3,000 chunks it returns the true nearest, by brute force', async () => {
      const dims = 48;
      const perFile = 500;
      const docs = Array.from({ length: 6 }, (_, f) => {
        const vectors = Array.from({ length: perFile }, (_, i) => randomVector(f * perFile + i + 1, dims));
        return {
          name: `bulk${f}.txt`,
          texts: vectors.map((_, i) => `chunk ${f}-${i}`),
          vectors: vectorsOf(dims, vectors),
        };
      });
      const { id, files } = await ingest(docs);
      for (const seed of [9001, 9002, 9003]) {
        const query = randomVector(seed, dims);
        const expected = docs
          .flatMap((doc) =>
            doc.vectors.vectors.map((vector, i) => ({ text: doc.texts[i]!, score: cosine(query, vector) })),
          )
          .sort((a, b) => b.score - a.score)
          .slice(0, 25);
        const hits = await nearest(id, query, { limit: 25 });
        assert.deepEqual(
          hits.map((h) => h.text),
          expected.map((e) => e.text),
        );
        for (const [i, hit] of hits.entries()) assert.ok(Math.abs(hit.score - Math.max(0, expected[i]!.score)) < 1e-4);
        const onlyTwo = [files['bulk1.txt']!, files['bulk4.txt']!];
        const expectedInTwo = docs
          .filter((doc) => doc.name === 'bulk1.txt' || doc.name === 'bulk4.txt')
          .flatMap((doc) =>
            doc.vectors.vectors.map((vector, i) => ({ text: doc.texts[i]!, score: cosine(query, vector) })),
          )
          .sort((a, b) => b.score - a.score)
          .slice(0, 5);
        assert.deepEqual(
          (await nearest(id, query, { limit: 5, fileIds: onlyTwo })).map((h) => h.text),
          expectedInTwo.map((e) => e.text),
        );
      }
    });

    test('a cache of the vectors reads a store once, then only what changed', async (t) => {
      if (fixture.vectorsRead() === undefined) return t.skip('this database searches vectors in place');
      const { id } = await ingest([
        { name: 'a.txt', texts: ['a0', 'a1', 'a2'], vectors: vectorsOf(2, [axis(2, 1), axis(2, 1, 1), axis(2, 0, 1)]) },
      ]);
      const start = fixture.vectorsRead()!;
      assert.equal((await nearest(id, axis(2, 1))).length, 3);
      assert.equal(fixture.vectorsRead()! - start, 3, 'loaded once');
      await nearest(id, axis(2, 0, 1));
      assert.equal(fixture.vectorsRead()! - start, 3, 'unchanged: not read again');
      await ingest([{ name: 'b.txt', texts: ['b0'], vectors: vectorsOf(2, [axis(2, -1, 1)]) }], id);
      assert.deepEqual(
        (await nearest(id, axis(2, -1, 1), { limit: 1 })).map((h) => h.text),
        ['b0'],
      );
      assert.equal(fixture.vectorsRead()! - start, 4, 'only the new vector was read');
    });
  });
}
