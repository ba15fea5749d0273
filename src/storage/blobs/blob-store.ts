import type { Readable } from 'node:stream';

/**
 * Where the bytes of files live, behind the smallest interface the Files API needs. Implementations: a directory
 * (directory-blob-store.ts, the default on SQLite) and chunked rows in the database (sql/sql-blob-store.ts, the
 * default on PostgreSQL). Another backend — e.g. an S3-compatible object store — implements these four methods:
 * `write` as a multipart upload completed only at the end, `read` as a GET, `delete`, and `sweepOrphans` as a
 * listing of the bucket's keys.
 *
 * Blobs are keyed by file id. A blob is written only after its file's row exists (as an upload in progress), and a
 * file's row is deleted before its blob, so a blob whose id has no row is an orphan of a crash.
 */
export interface BlobStore {
  /** For the startup log, e.g. `directory:/data/files`. */
  readonly description: string;
  /**
   * Writes every chunk of `source` under `id` and returns their total size once the bytes are durable. When
   * `source` throws (a client that went away, a size limit), the error propagates and nothing is left under `id`.
   */
  write(id: string, source: AsyncIterable<Uint8Array>): Promise<number>;
  /** The bytes under `id`, streamed; undefined when there are none. */
  read(id: string): Promise<Readable | undefined>;
  /** Removes the bytes under `id`; removing what is not there is no error. */
  delete(id: string): Promise<void>;
  /**
   * Removes orphans: complete blobs whose id has no row, and partial writes whose id is not an upload in progress.
   * `rowStates` tells, for a batch of ids, which have a row and in which state. Returns how many were removed.
   */
  sweepOrphans(rowStates: (ids: readonly string[]) => Promise<Map<string, 'uploading' | 'ready'>>): Promise<number>;
}
