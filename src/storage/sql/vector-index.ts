import { type Kysely, sql } from 'kysely';
import type { Scope } from '../store.ts';
import type { QueryRunner } from './capabilities.ts';
import type { Database } from './schema.ts';
import { type MatrixSource, type Neighbour, nearestRows, VectorMatrixCache } from './vector-matrix-cache.ts';

type Db = Kysely<Database>;

/** A nearest-neighbour search of one store's chunk vectors. */
export interface VectorSearch {
  scope: Scope;
  vectorStoreId: string;
  dimensions: number;
  /** The store's `vectors_version` as just read. */
  version: number;
  /** Unit length. */
  vector: Float32Array;
  /** Only chunks of these files; undefined = every file. */
  fileIds: readonly string[] | undefined;
  limit: number;
}

/**
 * How one database finds the chunks nearest to a query vector. Both read the vectors from `chunks.embedding`
 * (migration 006), which the chunk's insert writes; similarity is the cosine (vectors are stored at length 1).
 */
export interface VectorIndex {
  /** After a completed file's chunks were inserted with their vectors (in the completion's transaction). */
  indexFile(trx: Db, file: { vectorStoreId: string; fileId: string; dimensions: number }): Promise<void>;
  /**
   * The nearest chunks, best first: seq and cosine similarity. Queries are built with `db` and run on `reads` (the
   * store's reader threads, or `db` itself: SqlCapabilities.searchReader).
   */
  nearest(db: Db, reads: QueryRunner, search: VectorSearch): Promise<Neighbour[]>;
}

/** Any database: the process's cache of each store's vectors, searched exactly (vector-matrix-cache.ts). */
export class MatrixCacheIndex implements VectorIndex {
  readonly cache: VectorMatrixCache;

  constructor(cache = new VectorMatrixCache()) {
    this.cache = cache;
  }

  async indexFile(): Promise<void> {
    // The vectors are in `chunks.embedding`; the store's version, bumped in the same transaction, tells every
    // process's cache to read them.
  }

  async nearest(db: Db, reads: QueryRunner, search: VectorSearch): Promise<Neighbour[]> {
    return (await this.search(db, reads, search, 'load'))!;
  }

  /** The nearest chunks from the cache, or undefined when the store is larger than the whole cache. */
  nearestIfCached(db: Db, reads: QueryRunner, search: VectorSearch): Promise<Neighbour[] | undefined> {
    return this.search(db, reads, search, 'refuse');
  }

  private async search(
    db: Db,
    reads: QueryRunner,
    search: VectorSearch,
    oversized: 'load' | 'refuse',
  ): Promise<Neighbour[] | undefined> {
    const { scope, vectorStoreId } = search;
    const source: MatrixSource = {
      rows: async () => {
        const query = completedChunks(db)
          .select(['chunks.seq', 'chunks.file_id'])
          .where('chunks.project_id', '=', scope.projectId)
          .where('chunks.vector_store_id', '=', vectorStoreId)
          .where('chunks.embedding', 'is not', null)
          .orderBy('chunks.seq')
          .compile();
        const { rows } = await reads.executeQuery(query);
        return rows.map((row) => ({ seq: Number(row.seq), fileId: row.file_id }));
      },
      vectors: async (seqs) => {
        const found = new Map<number, Buffer>();
        for (let i = 0; i < seqs.length; i += VECTOR_READ_BATCH) {
          const query = db
            .selectFrom('chunks')
            .select(['seq', 'embedding'])
            .where('seq', 'in', seqs.slice(i, i + VECTOR_READ_BATCH))
            .compile();
          const { rows } = await reads.executeQuery(query);
          for (const row of rows) if (row.embedding) found.set(Number(row.seq), row.embedding);
        }
        return found;
      },
    };
    const key = `${scope.projectId}\u0000${vectorStoreId}`;
    const store = await this.cache.matrix(key, search.version, search.dimensions, source, oversized);
    if (!store) return undefined;
    return nearestRows(store, search.vector, search.limit, search.fileIds && new Set(search.fileIds));
  }
}

/**
 * SQLite with sqlite-vec. A store's vectors are searched from this process's in-memory cache (MatrixCacheIndex)
 * when the store fits it, and in place by sqlite-vec when it does not: at 100,000 chunks of 384 dimensions, vec0's
 * KNN took 54 ms a search and the cache 16 ms (WebAssembly SIMD over one contiguous matrix, scoring-matrix.ts),
 * while hybrid search must stay within 50 ms with the keyword search added. The vec0 tables remain the index on
 * disk: for a store larger than the cache, searched without loading anything.
 *
 * vec0: a virtual table per dimension (`chunk_vectors_<dims>`; a vec0 column has a fixed dimension), rowid =
 * chunks.seq, partitioned by store, so a search scans only its store's vectors, which vec0 keeps in contiguous
 * blocks (90,000 × 384: 40 ms by vec0's L2 KNN against 140 ms for `vec_distance_cosine` over the chunks' blobs).
 * The L2 distance of unit vectors orders like their cosine (|a − b|² = 2 − 2·cos), and vec0's L2 is the faster of
 * its metrics (68 ms with `distance_metric=cosine`). `file_id` is a metadata column, so a file filter is applied
 * inside the KNN scan. Integers bound to vec0 must be BigInts: better-sqlite3 binds a JS number as a REAL, which
 * vec0 refuses for rowids and `k`.
 *
 * Each table is created with the first vector of its dimension (in that completion's transaction), with the
 * trigger that deletes a chunk's entry with the chunk — for the cascades of deleting a file or a store too, as
 * each project's keyword table's trigger does (fts5-tables.ts).
 */
export class SqliteVecIndex implements VectorIndex {
  readonly memory: MatrixCacheIndex;

  constructor(memory = new MatrixCacheIndex()) {
    this.memory = memory;
  }

  async indexFile(
    trx: Db,
    { vectorStoreId, fileId, dimensions }: { vectorStoreId: string; fileId: string; dimensions: number },
  ): Promise<void> {
    const table = sql.raw(vecTable(dimensions));
    await sql`
      create virtual table if not exists ${table} using vec0(
        vector_store_id text partition key,
        file_id text,
        embedding float[${sql.raw(String(dimensions))}]
      )`.execute(trx);
    await sql`
      create trigger if not exists ${sql.raw(`${vecTable(dimensions)}_delete`)} after delete on chunks
      when length(old.embedding) = ${sql.raw(String(dimensions * 4))}
      begin
        delete from ${table} where rowid = old.seq;
      end`.execute(trx);
    await sql`
      insert into ${table} (rowid, vector_store_id, file_id, embedding)
      select seq, vector_store_id, file_id, embedding from chunks
      where vector_store_id = ${vectorStoreId} and file_id = ${fileId} and embedding is not null`.execute(trx);
  }

  async nearest(db: Db, reads: QueryRunner, search: VectorSearch): Promise<Neighbour[]> {
    return (await this.memory.nearestIfCached(db, reads, search)) ?? this.inPlace(db, reads, search);
  }

  /** vec0's exact KNN over the store's partition. */
  async inPlace(db: Db, reads: QueryRunner, search: VectorSearch): Promise<Neighbour[]> {
    const table = sql.raw(vecTable(search.dimensions));
    const files =
      search.fileIds === undefined
        ? sql``
        : sql`and file_id in (select value from json_each(${JSON.stringify(search.fileIds)}))`;
    try {
      const query = sql<{ seq: number; distance: number }>`
        select rowid as seq, distance from ${table}
        where embedding match ${toBlob(search.vector)} and k = ${BigInt(search.limit)}
          and vector_store_id = ${search.vectorStoreId} ${files}
        order by distance`.compile(db);
      const { rows } = await reads.executeQuery(query);
      return rows.map((row) => ({ seq: Number(row.seq), similarity: 1 - (row.distance * row.distance) / 2 }));
    } catch (error) {
      // No vector of this dimension was ever stored (every one of the store's chunks embedded to zero).
      if (/no such table/.test(String((error as Error)?.message))) return [];
      throw error;
    }
  }
}

function vecTable(dimensions: number): string {
  if (!Number.isInteger(dimensions) || dimensions <= 0) throw new RangeError(`bad dimension ${dimensions}`);
  return `chunk_vectors_${dimensions}`;
}

/** Vectors read per statement when a store is (re)loaded: bounded bound parameters, and bounded result sets. */
const VECTOR_READ_BATCH = 2000;

/** The chunks of completed files, to select from: a large file in progress has some of its chunks written already. */
export function completedChunks(db: Db) {
  return db
    .selectFrom('chunks')
    .innerJoin('vector_store_files as vf', (join) =>
      join.onRef('vf.vector_store_id', '=', 'chunks.vector_store_id').onRef('vf.file_id', '=', 'chunks.file_id'),
    )
    .where('vf.status', '=', 'completed');
}

/** A vector scaled to length 1, or undefined for a zero (or non-finite) vector, which has no direction. */
export function unitVector(vector: Float32Array): Float32Array | undefined {
  let norm = 0;
  for (let i = 0; i < vector.length; i++) norm += vector[i]! * vector[i]!;
  norm = Math.sqrt(norm);
  if (!(norm > 0) || !Number.isFinite(norm)) return undefined;
  const unit = new Float32Array(vector.length);
  for (let i = 0; i < vector.length; i++) unit[i] = vector[i]! / norm;
  return unit;
}

/** float32 little-endian bytes (the platforms assistd runs on are little-endian, as sqlite-vec expects). */
export function toBlob(vector: Float32Array): Buffer {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
}

export function fromBlob(blob: Buffer): Float32Array {
  return new Float32Array(blob.buffer.slice(blob.byteOffset, blob.byteOffset + blob.length));
}
