import type { Metadata } from './objects.ts';

/**
 * Vector stores, their files and file batches as assistd stores them. What the wire shows that follows from other
 * rows — a store's `status`, `file_counts` and `usage_bytes`, a batch's `status` and `file_counts` — is computed
 * from its files when read (see VectorStoreRecords in storage/store.ts), never stored twice.
 */

/** How a file is cut into chunks: always `static` once resolved (`auto` is 800 tokens with a 400-token overlap). */
export interface StaticChunking {
  type: 'static';
  static: { max_chunk_size_tokens: number; chunk_overlap_tokens: number };
}

export const AUTO_CHUNKING: StaticChunking = Object.freeze({
  type: 'static',
  static: Object.freeze({ max_chunk_size_tokens: 800, chunk_overlap_tokens: 400 }),
}) as StaticChunking;

/** Bounds of a `static` strategy: 100–4096 tokens a chunk, an overlap of at most half of it. */
export const MIN_CHUNK_TOKENS = 100;
export const MAX_CHUNK_TOKENS = 4096;

/** `attributes` of a vector-store file: ≤16 pairs, keys ≤64 characters, strings ≤512, numbers or booleans. */
export type Attributes = Record<string, string | number | boolean>;

export interface VectorStoreExpiry {
  anchor: 'last_active_at';
  days: number;
}

/** How long after its last activity a store with this expiry expires, in seconds. */
export function expirySeconds(expiry: VectorStoreExpiry): number {
  return expiry.days * 86_400;
}

export interface VectorStore {
  id: string;
  created_at: number;
  name: string | null;
  description: string | null;
  metadata: Metadata;
  expires_after: VectorStoreExpiry | null;
  /** Unix seconds; from `last_active_at` + `expires_after.days`; null when the store does not expire. */
  expires_at: number | null;
  last_active_at: number | null;
  /** Set once the store has expired (the sweeper): its files are no longer searched. */
  expired: boolean;
}

export type VectorStoreFileStatus = 'in_progress' | 'completed' | 'cancelled' | 'failed';

export interface VectorStoreFileError {
  code: 'server_error' | 'unsupported_file' | 'invalid_file';
  message: string;
}

export interface VectorStoreFile {
  /** The file's id (a vector-store file is named by the file it indexes). */
  id: string;
  vector_store_id: string;
  created_at: number;
  status: VectorStoreFileStatus;
  last_error: VectorStoreFileError | null;
  /** The bytes of text indexed (0 until completed). */
  usage_bytes: number;
  chunking_strategy: StaticChunking;
  attributes: Attributes | null;
  /** The batch that added it, if any. */
  batch_id: string | null;
}

export interface FileCounts {
  in_progress: number;
  completed: number;
  failed: number;
  cancelled: number;
  total: number;
}

export const NO_FILES: FileCounts = Object.freeze({ in_progress: 0, completed: 0, failed: 0, cancelled: 0, total: 0 });

/** A store as read: with what follows from its files. */
export interface VectorStoreView extends VectorStore {
  file_counts: FileCounts;
  usage_bytes: number;
}

export interface FileBatch {
  id: string;
  vector_store_id: string;
  created_at: number;
  /** Set by a cancel: the batch is `cancelled` once nothing of it is in progress. */
  cancelled: boolean;
}

export interface FileBatchView extends FileBatch {
  file_counts: FileCounts;
}

/** The wire status of a store: expired, in progress while any file is, else completed. */
export function vectorStoreStatus(store: VectorStoreView): 'expired' | 'in_progress' | 'completed' {
  if (store.expired) return 'expired';
  return store.file_counts.in_progress > 0 ? 'in_progress' : 'completed';
}

/**
 * The wire status of a batch: in progress while any of its files is; then cancelled if it was cancelled, failed if
 * every file failed, else completed.
 */
export function fileBatchStatus(batch: FileBatchView): 'in_progress' | 'completed' | 'cancelled' | 'failed' {
  const counts = batch.file_counts;
  if (counts.in_progress > 0) return 'in_progress';
  if (batch.cancelled) return 'cancelled';
  if (counts.total > 0 && counts.failed === counts.total) return 'failed';
  return 'completed';
}

/** One piece of a file's text, as indexed and as a search returns it. */
export interface Chunk {
  /** Position of the chunk in its file, from 0. */
  index: number;
  text: string;
  tokens: number;
  /**
   * How many characters at its start repeat the end of the chunk before it (the chunking strategy's overlap, in
   * characters): `text.slice(overlap)` is what this chunk adds to the file's text. Absent for chunks stored before
   * it was recorded (migration 019), where it is not known.
   */
  overlap?: number;
}

/** A search hit: a chunk of a file of a store, with a score in 0..1 (higher is better). */
export interface ChunkHit {
  vector_store_id: string;
  file_id: string;
  filename: string;
  chunk_index: number;
  text: string;
  score: number;
}

// ── filters ──────────────────────────────────────────────────────────────────

export type ComparisonFilter = {
  type: 'eq' | 'ne' | 'gt' | 'gte' | 'lt' | 'lte' | 'in' | 'nin';
  key: string;
  value: string | number | boolean | Array<string | number>;
};

export type CompoundFilter = { type: 'and' | 'or'; filters: AttributeFilter[] };

export type AttributeFilter = ComparisonFilter | CompoundFilter;

function isCompound(filter: AttributeFilter): filter is CompoundFilter {
  return filter.type === 'and' || filter.type === 'or';
}

/** Whether a file's attributes pass a filter (upstream's semantics: a missing key fails every comparison but `ne`/`nin`). */
export function matchesFilter(attributes: Attributes | null, filter: AttributeFilter): boolean {
  if (isCompound(filter))
    return filter.type === 'and'
      ? filter.filters.every((f) => matchesFilter(attributes, f))
      : filter.filters.some((f) => matchesFilter(attributes, f));
  const actual = attributes?.[filter.key];
  const expected = filter.value;
  switch (filter.type) {
    case 'eq':
      return actual !== undefined && actual === expected;
    case 'ne':
      return actual !== expected;
    case 'in':
      return actual !== undefined && Array.isArray(expected) && expected.some((v) => v === actual);
    case 'nin':
      return !(Array.isArray(expected) && expected.some((v) => v === actual));
    default: {
      if (actual === undefined || typeof actual === 'boolean' || typeof expected === 'boolean') return false;
      if (Array.isArray(expected) || typeof actual !== typeof expected) return false;
      const a = actual as number | string;
      const b = expected as number | string;
      if (filter.type === 'gt') return a > b;
      if (filter.type === 'gte') return a >= b;
      if (filter.type === 'lt') return a < b;
      return a <= b;
    }
  }
}
