import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StorageFull } from '../store.ts';
import type { BlobStore } from './blob-store.ts';

/** How many ids the orphan sweep looks up at once. */
const SWEEP_BATCH = 500;

/**
 * Blobs as files in a directory: `blobs/<id>` once complete, `tmp/<id>.<random>` while being written. A write goes
 * to the temporary file, which is fsynced, renamed into place and its directory fsynced: a blob is either whole at
 * its name or absent, also after a power cut. Reads stream from the file, so neither direction holds a file in
 * memory.
 */
export class DirectoryBlobStore implements BlobStore {
  readonly description: string;
  private readonly root: string;
  private readonly blobsDir: string;
  private readonly tmpDir: string;
  private ready: Promise<void> | undefined;

  constructor(root: string) {
    this.description = `directory:${root}`;
    this.root = root;
    this.blobsDir = path.join(root, 'blobs');
    this.tmpDir = path.join(root, 'tmp');
  }

  async write(id: string, source: AsyncIterable<Uint8Array>): Promise<number> {
    await this.ensureDirs().catch((error: unknown) => {
      throw fullIfNoRoom(error);
    });
    const tmp = path.join(this.tmpDir, `${id}.${randomBytes(6).toString('hex')}`);
    let bytes = 0;
    // `flush` fsyncs the file before it is closed: the rename below must never publish bytes still in the cache.
    const out = createWriteStream(tmp, { flags: 'wx', flush: true });
    try {
      await pipeline(
        source,
        async function* count(chunks: AsyncIterable<Uint8Array>) {
          for await (const chunk of chunks) {
            bytes += chunk.byteLength;
            yield chunk;
          }
        },
        out,
      );
      await rename(tmp, this.blobPath(id));
      await syncDir(this.blobsDir);
      return bytes;
    } catch (error) {
      // A source failing at once ends the pipeline while the stream may still be opening, that is creating, its file.
      if (!out.closed) await new Promise<void>((closed) => out.once('close', () => closed()));
      await rm(tmp, { force: true });
      throw fullIfNoRoom(error);
    }
  }

  async read(id: string): Promise<Readable | undefined> {
    try {
      const handle = await open(this.blobPath(id), 'r');
      return handle.createReadStream({ highWaterMark: 1024 * 1024 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async delete(id: string): Promise<void> {
    await rm(this.blobPath(id), { force: true });
  }

  async sweepOrphans(
    rowStates: (ids: readonly string[]) => Promise<Map<string, 'uploading' | 'ready'>>,
  ): Promise<number> {
    await this.ensureDirs();
    let removed = 0;
    // A complete blob is an orphan when its id has no row at all.
    const blobs = await readdir(this.blobsDir);
    for (let i = 0; i < blobs.length; i += SWEEP_BATCH) {
      const batch = blobs.slice(i, i + SWEEP_BATCH);
      const states = await rowStates(batch);
      for (const name of batch) {
        if (states.has(name)) continue;
        await rm(path.join(this.blobsDir, name), { force: true });
        removed += 1;
      }
    }
    // A partial write is an orphan unless its id is an upload in progress (whose lease the sweeper checks first).
    const temporaries = await readdir(this.tmpDir);
    for (let i = 0; i < temporaries.length; i += SWEEP_BATCH) {
      const batch = temporaries.slice(i, i + SWEEP_BATCH);
      const states = await rowStates(batch.map(idOfTemporary));
      for (const name of batch) {
        if (states.get(idOfTemporary(name)) === 'uploading') continue;
        await rm(path.join(this.tmpDir, name), { force: true });
        removed += 1;
      }
    }
    return removed;
  }

  /**
   * Ties the directory to the database its bytes belong to, by the id in its file `database` (Store.databaseId):
   * with another database — its own lost and made anew, or another one named — the orphan sweep would delete every
   * blob. Returns why the directory is another database's, or undefined once it is marked as this one's. A directory
   * not marked yet (made by an older version) is another's when it holds blobs and the database was made just now,
   * or knows none of them (of the first SWEEP_BATCH).
   */
  async belongTo(
    databaseId: string,
    createdNow: boolean,
    rowStates: (ids: readonly string[]) => Promise<Map<string, 'uploading' | 'ready'>>,
  ): Promise<string | undefined> {
    const marker = path.join(this.root, 'database');
    const marked = await readFile(marker, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (marked !== undefined)
      return marked.trim() === databaseId ? undefined : `its bytes are those of another database (${marked.trim()})`;
    const blobs = await readdir(this.blobsDir);
    if (blobs.length > 0 && (createdNow || (await rowStates(blobs.slice(0, SWEEP_BATCH))).size === 0))
      return `it holds the bytes of ${blobs.length} files, and the database knows none of them`;
    const tmp = `${marker}.${randomBytes(6).toString('hex')}`;
    await writeFile(tmp, `${databaseId}\n`, { flush: true });
    await rename(tmp, marker);
    return undefined;
  }

  private blobPath(id: string): string {
    // Ids are generated by the server (file- and 24 base62 characters); the check keeps any other string out of
    // the path all the same.
    if (!/^[A-Za-z0-9_-]+$/.test(id)) throw new Error(`not a blob id: ${id}`);
    return path.join(this.blobsDir, id);
  }

  /** Made once; tried again at the next call when it fails (a full disk, say). */
  private ensureDirs(): Promise<void> {
    this.ready ??= (async () => {
      await mkdir(this.blobsDir, { recursive: true });
      await mkdir(this.tmpDir, { recursive: true });
    })().catch((error: unknown) => {
      this.ready = undefined;
      throw error;
    });
    return this.ready;
  }
}

function idOfTemporary(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot === -1 ? name : name.slice(0, dot);
}

/** fsync of a directory: its entries (a file just renamed into it) survive a crash. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A write refused for want of room (the disk, or the user's quota) as StorageFull; any other error as it is. */
export function fullIfNoRoom(error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' ? new StorageFull(error) : error;
}
