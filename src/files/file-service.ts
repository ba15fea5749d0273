import { hostname } from 'node:os';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { unixSeconds } from '../domain/clock.ts';
import { ApiError, noSuchFile } from '../domain/errors.ts';
import type { StoredFile } from '../domain/files.ts';
import { newId } from '../domain/ids.ts';
import type { BlobStore } from '../storage/blobs/blob-store.ts';
import type { FileRecords, Page, PageRequest, Scope } from '../storage/store.ts';
import { detectMimeType, SNIFF_BYTES } from './file-types.ts';

export interface FileServiceOptions {
  records: FileRecords;
  blobs: BlobStore;
  /** The largest file accepted, in bytes. */
  maxBytes: number;
  /** How long an upload's row stays leased to this process without a renewal (a crashed upload lapses then). */
  leaseMs: number;
  logger: Logger;
}

/** What the client said about a file besides its bytes. */
export interface FileFields {
  purpose: string;
  /** Seconds after creation the file expires, or null. */
  expiresAfterSeconds: number | null;
}

/** Bytes received and durable, not yet a file: `commit` makes it one, `abandon` removes it. */
export interface ReceivedUpload {
  readonly id: string;
  readonly bytes: number;
  commit(fields: FileFields): Promise<StoredFile>;
  abandon(): Promise<void>;
}

/**
 * The Files API's work: uploads streamed into the blob store under a leased row, reads, deletes. Bytes are never
 * held whole in memory, and every failure path removes what it wrote (a crash leaves it to FileSweeper).
 */
export class FileService {
  /** This process, as the owner of the uploads it receives. */
  readonly owner = `files_${hostname()}_${process.pid}_${newId('file').slice(-8)}`;
  private readonly options: FileServiceOptions;

  constructor(options: FileServiceOptions) {
    this.options = options;
  }

  get maxBytes(): number {
    return this.options.maxBytes;
  }

  /**
   * Streams one file's bytes into the blob store. Throws a 413 once more than `maxBytes` arrived, and whatever
   * `source` throws (a client that went away); in both cases nothing is left.
   */
  async receive(
    scope: Scope,
    filename: string,
    source: AsyncIterable<Uint8Array>,
    id: string = newId('file'),
  ): Promise<ReceivedUpload> {
    const { records, blobs, maxBytes, leaseMs } = this.options;
    const createdAt = unixSeconds();
    const owner = this.owner;
    await records.beginUpload(scope, id, createdAt, { owner, until: Date.now() + leaseMs });

    // The lease is renewed while bytes arrive; if it is lost (this process stalled past it and a sweeper removed
    // the row), the upload stops.
    const lost = new AbortController();
    const renewal = setInterval(
      () =>
        void records.renewUpload(id, { owner, until: Date.now() + leaseMs }).then(
          (held) => held || lost.abort(),
          () => {},
        ),
      Math.max(100, Math.floor(leaseMs / 3)),
    );
    const head: Buffer[] = [];
    let headBytes = 0;
    let bytes = 0;
    async function* limited(): AsyncIterable<Uint8Array> {
      for await (const chunk of source) {
        if (lost.signal.aborted) throw new Error(`the upload lease of ${id} was lost`);
        bytes += chunk.byteLength;
        if (bytes > maxBytes) throw fileTooLarge(maxBytes);
        if (headBytes < SNIFF_BYTES) {
          const part = Buffer.from(chunk.subarray(0, SNIFF_BYTES - headBytes));
          head.push(part);
          headBytes += part.byteLength;
        }
        yield chunk;
      }
    }
    try {
      await blobs.write(id, limited());
    } catch (error) {
      clearInterval(renewal);
      await records.abandonUpload(id, owner);
      throw error;
    }
    const mimeType = await detectMimeType(Buffer.concat(head, headBytes), filename);
    let settled = false;
    const settle = () => {
      settled = true;
      clearInterval(renewal);
    };
    return {
      id,
      bytes,
      commit: async (fields) => {
        if (settled) throw new Error('upload already settled');
        settle();
        const file: StoredFile = {
          id,
          created_at: createdAt,
          bytes,
          filename,
          purpose: fields.purpose,
          expires_at: fields.expiresAfterSeconds === null ? null : createdAt + fields.expiresAfterSeconds,
          mime_type: mimeType,
        };
        if (!(await records.finishUpload(scope, file, owner))) {
          await blobs.delete(id);
          throw new Error(`the upload lease of ${id} was lost before it was committed`);
        }
        return file;
      },
      abandon: async () => {
        if (settled) return;
        settle();
        await records.abandonUpload(id, owner);
        await blobs.delete(id);
      },
    };
  }

  /**
   * A file the server makes (a code_interpreter plot, a file a run's answer links to), from bytes it holds, under
   * `id` when the id was promised before the bytes were at hand. Same limits and durability as an upload.
   */
  async save(
    scope: Scope,
    file: { filename: string; purpose: string; bytes: Uint8Array; id?: string },
  ): Promise<StoredFile> {
    const upload = await this.receive(scope, file.filename, oneChunk(file.bytes), file.id);
    try {
      return await upload.commit({ purpose: file.purpose, expiresAfterSeconds: null });
    } catch (error) {
      await upload.abandon();
      throw error;
    }
  }

  async get(scope: Scope, id: string): Promise<StoredFile> {
    const file = await this.options.records.getFile(scope, id);
    if (!file) throw noSuchFile(id);
    return file;
  }

  list(scope: Scope, page: PageRequest, purpose?: string): Promise<Page<StoredFile>> {
    return this.options.records.listFiles(scope, page, purpose);
  }

  /** The file and its bytes, streamed. */
  async content(scope: Scope, id: string): Promise<{ file: StoredFile; body: Readable }> {
    const file = await this.get(scope, id);
    const body = await this.bytesOf(scope, id);
    if (!body) throw noSuchFile(id);
    return { file, body };
  }

  /**
   * The whole content of a file, for the few readers that need it at once (an image for a model, a file indexed or
   * put in a sandbox); undefined when there is no such file. A file whose bytes are missing is a server error.
   */
  async readAll(scope: Scope, id: string): Promise<{ file: StoredFile; bytes: Buffer } | undefined> {
    const file = await this.options.records.getFile(scope, id);
    if (!file) return undefined;
    const body = await this.bytesOf(scope, id);
    if (!body) return undefined;
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return { file, bytes: Buffer.concat(chunks) };
  }

  /**
   * Deletes the file: its row, and with it its place and chunks in every vector store (one transaction), then its
   * bytes. Messages and tool resources that name it keep the id, as upstream.
   */
  async delete(scope: Scope, id: string): Promise<void> {
    if (!(await this.options.records.deleteFile(scope, id))) throw noSuchFile(id);
    await this.options.blobs.delete(id);
  }

  /**
   * The bytes of a file whose row was just read; undefined when the file is gone since. A delete (or the expiry
   * sweep) removes the row, then the bytes, so one that commits between the two reads leaves no bytes: the row is
   * read again to tell that file, gone, from a row whose bytes are missing (a server error).
   */
  private async bytesOf(scope: Scope, id: string): Promise<Readable | undefined> {
    const body = await this.options.blobs.read(id);
    if (body) return body;
    if (!(await this.options.records.getFile(scope, id))) return undefined;
    throw this.missingBytes(id);
  }

  /**
   * A row with no bytes: they were deleted behind the server's back, or this process's storage is not the one that
   * wrote them (`directory` storage in processes that do not share ASSISTD_DATA_DIR).
   */
  private missingBytes(id: string): ApiError {
    this.options.logger.error({ fileId: id }, "a file has a row but no bytes in this process's blob store");
    return new ApiError(500, `The content of file '${id}' is missing from storage.`, { type: 'server_error' });
  }

  /** Of `ids`, the ones that are not files of the scope. */
  missing(scope: Scope, ids: readonly string[]): Promise<string[]> {
    return this.options.records.missingFiles(scope, ids);
  }
}

async function* oneChunk(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

export function fileTooLarge(maxBytes: number): ApiError {
  return new ApiError(413, `File too large: the largest file accepted is ${maxBytes} bytes.`, {
    param: 'file',
    code: 'file_too_large',
  });
}
