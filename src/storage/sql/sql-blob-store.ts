import { Readable } from 'node:stream';
import { type Kysely, sql } from 'kysely';
import type { BlobStore } from '../blobs/blob-store.ts';
import type { Database } from './schema.ts';

/**
 * Rows of at most 1 MiB: large enough that a 512 MB file is ~500 inserts, small enough that neither a write nor a
 * read holds more than a chunk or two in memory, and far below PostgreSQL's 1 GB bytea limit.
 */
const CHUNK_BYTES = 1024 * 1024;

/**
 * Blobs as chunked rows in the database (`file_chunks`): every process reads every file with no shared disk. Each
 * chunk is its own statement, so an upload never holds a transaction open while the client sends; a file always
 * has a chunk 0 (empty for a 0-byte file), which tells "no bytes" from "not there". The chunks of a failed write
 * are deleted; those of a crashed one are orphans for the sweep, which needs only one statement here.
 */
export class SqlBlobStore implements BlobStore {
  readonly description: string;
  private readonly db: Kysely<Database>;

  constructor(db: Kysely<Database>, description: string) {
    this.db = db;
    this.description = description;
  }

  async write(id: string, source: AsyncIterable<Uint8Array>): Promise<number> {
    let idx = 0;
    let bytes = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      await this.db.insertInto('file_chunks').values({ file_id: id, idx, data }).execute();
      idx += 1;
      pending = [];
      pendingBytes = 0;
    };
    try {
      for await (const chunk of source) {
        let buffer = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        bytes += buffer.byteLength;
        while (pendingBytes + buffer.byteLength >= CHUNK_BYTES) {
          const take = CHUNK_BYTES - pendingBytes;
          pending.push(buffer.subarray(0, take));
          pendingBytes += take;
          buffer = buffer.subarray(take);
          await flush();
        }
        if (buffer.byteLength > 0) {
          // Copied: the source may reuse its buffer once the next chunk is asked for.
          pending.push(Buffer.from(buffer));
          pendingBytes += buffer.byteLength;
        }
      }
      if (pendingBytes > 0 || idx === 0) await flush();
      return bytes;
    } catch (error) {
      await this.delete(id);
      throw error;
    }
  }

  /**
   * The chunks in order, each its own statement. The file may be deleted while it is read (its chunks go after its
   * row): a chunk missing before the last one known at the start ends the stream with an error, never as a shorter
   * file that a reader (or an HTTP response that announced the length) would take for the whole.
   */
  async read(id: string): Promise<Readable | undefined> {
    const first = await this.chunk(id, 0);
    if (first === undefined) return undefined;
    const { last } = await this.db
      .selectFrom('file_chunks')
      .select((eb) => eb.fn.max('idx').as('last'))
      .where('file_id', '=', id)
      .executeTakeFirstOrThrow();
    const count = Number(last ?? 0) + 1;
    const next = (idx: number) => this.chunk(id, idx);
    return Readable.from(
      (async function* chunks() {
        let current: Buffer | undefined = first;
        for (let idx = 1; ; idx++) {
          // The next chunk is read while this one is sent.
          const following = idx < count ? next(idx) : undefined;
          // Handled here too: a reader that stops early leaves it unawaited, and a late failure must not crash.
          following?.catch(() => {});
          if (current.byteLength > 0) yield current;
          if (!following) return;
          current = await following;
          if (current === undefined) throw new Error(`file ${id} was deleted while it was read`);
        }
      })(),
      { objectMode: false },
    );
  }

  async delete(id: string): Promise<void> {
    await this.db.deleteFrom('file_chunks').where('file_id', '=', id).execute();
  }

  async sweepOrphans(): Promise<number> {
    // Chunks whose id has no row: an upload's row exists before its first chunk, and a file's row is deleted
    // before its chunks.
    const result = await sql`
      delete from file_chunks
      where not exists (select 1 from files where files.id = file_chunks.file_id)`.execute(this.db);
    return Number(result.numAffectedRows ?? 0n);
  }

  private async chunk(id: string, idx: number): Promise<Buffer | undefined> {
    const row = await this.db
      .selectFrom('file_chunks')
      .select('data')
      .where('file_id', '=', id)
      .where('idx', '=', idx)
      .executeTakeFirst();
    return row?.data;
  }
}
