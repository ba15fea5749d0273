import { setImmediate as nextTurn } from 'node:timers/promises';
import { allocateMatrix, type ScoringMatrix } from './scoring-matrix.ts';

/**
 * Exact nearest-neighbour search over a store's chunk vectors, in memory: this process keeps each searched store's
 * vectors as one contiguous float32 matrix (row-major, one unit-length row per chunk; scoring-matrix.ts, scored by
 * WebAssembly SIMD) and scores a query by a dot product with every row — the cosine similarity, since rows and
 * query have length 1. PostgreSQL here has no vector
 * index (no pgvector), and an exact scan in the database would read every vector of the store from its pages on
 * every search; from memory it is one pass over rows × dimensions floats.
 *
 * A store is reloaded when its `vectors_version` (vector_stores, migration 006) has moved since it was loaded: the
 * version is bumped in the same transaction as every change of the store's vectors (a file completed with vectors,
 * a file removed or replaced), by whichever process makes it, and the search reads it anyway. The reload only reads
 * what changed: the list of the store's chunk seqs with a vector, then the vectors of the seqs it does not have.
 *
 * The cache holds at most `maxBytes` of vectors and MAX_CACHED_STORES stores, least recently searched stores dropped
 * first. A store larger than
 * that on its own is either loaded all the same, evicting every other (`oversized: 'load'`, when there is no other
 * way to search it), or not loaded (`'refuse'`: the caller searches it in place; SQLite's vec0 tables).
 */

/** One store's vectors as loaded. */
export interface StoreMatrix {
  readonly version: number;
  readonly dimensions: number;
  /** Row → the chunk's seq. */
  readonly seqs: Float64Array;
  /** Row → its file, an index into `fileIds`. */
  readonly files: Uint32Array;
  readonly fileIds: readonly string[];
  /** One row of length 1 per chunk. */
  readonly matrix: ScoringMatrix;
}

/** What a reload reads from the database. */
export interface MatrixSource {
  /** Every chunk of the store that has a vector: its seq and file, by seq. */
  rows(): Promise<Array<{ seq: number; fileId: string }>>;
  /** The vectors of these chunks (float32 little-endian); a chunk deleted meanwhile is missing. */
  vectors(seqs: readonly number[]): Promise<Map<number, Buffer>>;
}

export interface Neighbour {
  seq: number;
  similarity: number;
}

/** Rows of a matrix filled between turns of the event loop (2,048 × 384 dimensions: 3 MB, ~10–20 ms). */
const FILL_ROWS = 2048;

export const DEFAULT_CACHE_BYTES = 1024 * 1024 * 1024;
/**
 * The most stores cached at once, however small: a deployment with a store per thread searches many stores of a
 * few chunks, and each costs a map entry and its arrays beside its vectors.
 */
export const MAX_CACHED_STORES = 4096;

export class VectorMatrixCache {
  private readonly entries = new Map<string, StoreMatrix>();
  private readonly loading = new Map<string, Promise<StoreMatrix | undefined>>();
  private bytes = 0;
  /** Loads, for tests: how many vectors were read from the database. */
  vectorsRead = 0;

  /** How many stores are cached. */
  get size(): number {
    return this.entries.size;
  }

  constructor(private maxBytes = DEFAULT_CACHE_BYTES) {}

  /**
   * Changes the budget (tests: 0 makes a SQLite store searched in place by sqlite-vec); drops every store, and
   * forgets which were too large for the old budget.
   */
  resize(maxBytes: number): void {
    this.maxBytes = maxBytes;
    this.clear();
    this.oversized.clear();
  }

  /** Stores found too large to cache, with the version at which they were: not counted again until it moves. */
  private readonly oversized = new Map<string, number>();

  /**
   * The store's matrix at `version`, loaded or reloaded if the cached one is older; undefined for a store larger
   * than the whole cache when `oversized` is `refuse`.
   */
  async matrix(
    key: string,
    version: number,
    dimensions: number,
    source: MatrixSource,
    oversized: 'load' | 'refuse' = 'load',
  ): Promise<StoreMatrix | undefined> {
    if (oversized === 'refuse' && this.oversized.get(key) === version) return undefined;
    const cached = this.entries.get(key);
    if (cached && cached.version === version && cached.dimensions === dimensions) {
      this.entries.delete(key);
      this.entries.set(key, cached); // most recently used last
      return cached;
    }
    const pendingKey = `${key}\u0000${version}`;
    let pending = this.loading.get(pendingKey);
    if (!pending) {
      pending = this.load(key, version, dimensions, source, cached, oversized).finally(() =>
        this.loading.delete(pendingKey),
      );
      this.loading.set(pendingKey, pending);
    }
    return pending;
  }

  /** Drops every store (tests). */
  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  private async load(
    key: string,
    version: number,
    dimensions: number,
    source: MatrixSource,
    previous: StoreMatrix | undefined,
    oversized: 'load' | 'refuse',
  ): Promise<StoreMatrix | undefined> {
    const rows = await source.rows();
    if (oversized === 'refuse' && rows.length * Math.ceil(dimensions / 8) * 8 * 4 > this.maxBytes) {
      this.oversized.set(key, version);
      if (previous) this.drop(key);
      return undefined;
    }
    this.oversized.delete(key);
    const reuse = new Map<number, number>();
    if (previous && previous.dimensions === dimensions)
      for (let row = 0; row < previous.seqs.length; row++) reuse.set(previous.seqs[row]!, row);
    const missing = rows.filter((row) => !reuse.has(row.seq)).map((row) => row.seq);
    const fetched = missing.length > 0 ? await source.vectors(missing) : new Map<number, Buffer>();
    this.vectorsRead += fetched.size;

    const kept = rows.filter((row) => reuse.has(row.seq) || fetched.get(row.seq)?.length === dimensions * 4);
    const matrix = allocateMatrix(kept.length, dimensions);
    const seqs = new Float64Array(kept.length);
    const files = new Uint32Array(kept.length);
    const fileIds: string[] = [];
    const fileIndex = new Map<string, number>();
    // The vectors' bytes are copied into the matrix as they are (a Float32Array made of a slice of each blob first
    // cost as much again), and the event loop goes round every FILL_ROWS rows: the first write of each page of a
    // new matrix is what costs — 20,000 rows of 384 dimensions (30 MB) took 90–160 ms on a 2-core VM, in one go.
    const bytes = new Uint8Array(matrix.data.buffer, matrix.data.byteOffset, matrix.data.byteLength);
    for (const [row, { seq, fileId }] of kept.entries()) {
      if (row > 0 && row % FILL_ROWS === 0) await nextTurn();
      seqs[row] = seq;
      let f = fileIndex.get(fileId);
      if (f === undefined) {
        f = fileIds.push(fileId) - 1;
        fileIndex.set(fileId, f);
      }
      files[row] = f;
      const old = reuse.get(seq);
      const at = row * matrix.stride;
      if (old !== undefined && previous) {
        const from = old * previous.matrix.stride;
        matrix.data.set(previous.matrix.data.subarray(from, from + dimensions), at);
      } else {
        bytes.set(fetched.get(seq)!, at * Float32Array.BYTES_PER_ELEMENT);
      }
    }
    const loaded: StoreMatrix = { version, dimensions, seqs, files, fileIds, matrix };
    this.put(key, loaded);
    return loaded;
  }

  private drop(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.bytes -= entry.matrix.bytes;
  }

  private put(key: string, entry: StoreMatrix): void {
    const old = this.entries.get(key);
    if (old) {
      this.entries.delete(key);
      this.bytes -= old.matrix.bytes;
    }
    this.entries.set(key, entry);
    this.bytes += entry.matrix.bytes;
    for (const [victim, evicted] of this.entries) {
      if ((this.bytes <= this.maxBytes && this.entries.size <= MAX_CACHED_STORES) || victim === key) break;
      this.entries.delete(victim);
      this.bytes -= evicted.matrix.bytes;
    }
  }
}

/**
 * The `limit` rows most similar to `query` (unit length), best first, among the rows of the allowed files (all when
 * undefined). One pass: a dot product per row, kept in a small array of the best so far.
 */
export function nearestRows(
  store: StoreMatrix,
  query: Float32Array,
  limit: number,
  allowedFiles?: ReadonlySet<string>,
): Neighbour[] {
  const { seqs, files, fileIds } = store;
  const rows = seqs.length;
  const scores = rows > 0 ? store.matrix.scores(query) : new Float32Array(0);
  let allowed: Uint8Array | undefined;
  if (allowedFiles) {
    allowed = new Uint8Array(fileIds.length);
    for (const [i, id] of fileIds.entries()) allowed[i] = allowedFiles.has(id) ? 1 : 0;
  }
  const bestRow = new Int32Array(limit);
  const bestScore = new Float64Array(limit);
  let count = 0;
  let worst = 0; // index in best* of the lowest score, once full
  for (let row = 0; row < rows; row++) {
    if (allowed && allowed[files[row]!] === 0) continue;
    const score = scores[row]!;
    if (count < limit) {
      bestRow[count] = row;
      bestScore[count] = score;
      count++;
      if (count === limit) worst = lowest(bestScore, count);
    } else if (score > bestScore[worst]!) {
      bestRow[worst] = row;
      bestScore[worst] = score;
      worst = lowest(bestScore, count);
    }
  }
  const out: Neighbour[] = [];
  for (let i = 0; i < count; i++) out.push({ seq: seqs[bestRow[i]!]!, similarity: bestScore[i]! });
  return out.sort((a, b) => b.similarity - a.similarity || a.seq - b.seq);
}

function lowest(scores: Float64Array, count: number): number {
  let at = 0;
  for (let i = 1; i < count; i++) if (scores[i]! < scores[at]!) at = i;
  return at;
}
