import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs, { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { ApiError } from '../../src/domain/errors.ts';
import { FileService } from '../../src/files/file-service.ts';
import { FileSweeper } from '../../src/files/file-sweeper.ts';
import type { BlobStore } from '../../src/storage/blobs/blob-store.ts';
import { DirectoryBlobStore } from '../../src/storage/blobs/directory-blob-store.ts';
import { openPostgresStore } from '../../src/storage/postgres/open-postgres-store.ts';
import { openSqliteStore } from '../../src/storage/sqlite/open-sqlite-store.ts';
import type { FileRecords, Scope, Store } from '../../src/storage/store.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { tempDir } from '../support/server.ts';

/**
 * The file storage under the API, written once and run on every pairing of a database and a blob store: the
 * two-step write (a leased upload row, then a file), its fences, project scoping, the sweeper (expiry, lapsed
 * uploads, orphans) and blob round trips across chunk boundaries.
 */

const scope: Scope = { projectId: 'proj_files' };
const otherScope: Scope = { projectId: 'proj_elsewhere' };
const silent = pino({ level: 'silent' });
const MiB = 1024 * 1024;

async function* chunksOf(bytes: Buffer, size: number): AsyncIterable<Uint8Array> {
  for (let at = 0; at < bytes.byteLength; at += size) yield bytes.subarray(at, at + size);
}

async function readBlob(blobs: BlobStore, id: string): Promise<Buffer | undefined> {
  const stream = await blobs.read(id);
  if (!stream) return undefined;
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

interface Fixture {
  store: Store;
  blobs: BlobStore;
  /** Extra things only a directory has: its temporary files. */
  temporaries?: () => string[];
  cleanup(): Promise<void>;
}

function fileStorageSuite(name: string, open: () => Promise<Fixture>): void {
  describe(`file storage: ${name}`, () => {
    let fixture: Fixture;
    let files: FileService;
    const leaseMs = 60_000;

    before(async () => {
      fixture = await open();
      files = new FileService({
        records: fixture.store.files,
        blobs: fixture.blobs,
        maxBytes: 8 * MiB,
        leaseMs,
        logger: silent,
      });
    });
    after(async () => fixture.cleanup());

    const sweeper = (now = Date.now()) =>
      new FileSweeper({
        records: fixture.store.files,
        blobs: fixture.blobs,
        logger: silent,
        intervalMs: 1000,
        now: () => now,
      });

    test('blobs round-trip across chunk boundaries, including 0 bytes', async () => {
      for (const size of [0, 1, MiB - 1, MiB, MiB + 1, 3 * MiB + 17]) {
        const bytes = randomBytes(size);
        const id = `file-blob${size}`;
        assert.equal(await fixture.blobs.write(id, chunksOf(bytes, 64 * 1024 + 3)), size);
        const back = await readBlob(fixture.blobs, id);
        assert.equal(back?.byteLength, size, `size ${size}`);
        assert.equal(sha(back!), sha(bytes), `size ${size}`);
        await fixture.blobs.delete(id);
        assert.equal(await fixture.blobs.read(id), undefined);
      }
      await fixture.blobs.delete('file-neverwritten');
    });

    test('a blob deleted while it is read: the reader gets all of it or an error, never a shorter blob', async () => {
      const bytes = randomBytes(3 * MiB + 17);
      await fixture.blobs.write('file-deleted-midway', chunksOf(bytes, MiB));
      const body = (await fixture.blobs.read('file-deleted-midway'))!;
      const parts: Buffer[] = [];
      const read = (async () => {
        for await (const part of body) {
          parts.push(part as Buffer);
          if (parts.length === 1) await fixture.blobs.delete('file-deleted-midway');
        }
      })();
      const outcome = await read.then(
        () => 'read',
        (error: Error) => error.message,
      );
      if (outcome === 'read') assert.equal(sha(Buffer.concat(parts)), sha(bytes), 'a whole blob, as it was');
      else assert.match(outcome, /deleted while it was read/);
    });

    test('a failing source leaves no bytes', async () => {
      async function* failing(): AsyncIterable<Uint8Array> {
        yield randomBytes(2 * MiB);
        throw new Error('client went away');
      }
      await assert.rejects(fixture.blobs.write('file-failing', failing()), /client went away/);
      assert.equal(await fixture.blobs.read('file-failing'), undefined);
      assert.deepEqual(fixture.temporaries?.() ?? [], []);
    });

    test('an upload is invisible until committed, then scoped to its project', async () => {
      const bytes = randomBytes(100_000);
      const received = await files.receive(scope, 'photo.bin', chunksOf(bytes, 10_000));
      assert.equal(received.bytes, bytes.byteLength);
      assert.equal(await fixture.store.files.getFile(scope, received.id), undefined, 'not a file before commit');
      assert.deepEqual(await files.missing(scope, [received.id]), [received.id]);

      const file = await received.commit({ purpose: 'assistants', expiresAfterSeconds: null });
      assert.deepEqual(await files.get(scope, file.id), file);
      assert.deepEqual(await files.missing(scope, [file.id, 'file-nope']), ['file-nope']);
      assert.equal(sha((await files.readAll(scope, file.id))!.bytes), sha(bytes));

      assert.equal(await fixture.store.files.getFile(otherScope, file.id), undefined);
      assert.deepEqual(await files.missing(otherScope, [file.id]), [file.id]);
      assert.equal((await files.list(otherScope, { limit: 100, order: 'desc' })).data.length, 0);
      await assert.rejects(files.delete(otherScope, file.id), /No such File object/);

      await files.delete(scope, file.id);
      assert.equal(await fixture.blobs.read(file.id), undefined, 'the bytes are deleted with the file');
    });

    test('an upload over the limit is refused while it streams and leaves nothing', async () => {
      await assert.rejects(files.receive(scope, 'big.bin', chunksOf(randomBytes(9 * MiB), MiB)), (error: unknown) => {
        assert.equal((error as { status?: number }).status, 413);
        return true;
      });
      assert.deepEqual(await fixture.store.files.rowStates(await idsOfAllRows(fixture)), new Map());
      assert.deepEqual(fixture.temporaries?.() ?? [], []);
    });

    test('an abandoned upload leaves nothing; a commit after a lost lease writes nothing', async () => {
      const abandoned = await files.receive(scope, 'a.txt', chunksOf(Buffer.from('abc'), 1));
      await abandoned.abandon();
      assert.deepEqual(await fixture.store.files.rowStates([abandoned.id]), new Map());
      assert.equal(await fixture.blobs.read(abandoned.id), undefined);

      const lost = await files.receive(scope, 'b.txt', chunksOf(Buffer.from('def'), 1));
      // Another process's sweeper judged the lease lapsed and removed the row.
      await sweeper(Date.now() + leaseMs + 1000).sweep(false);
      await assert.rejects(lost.commit({ purpose: 'assistants', expiresAfterSeconds: null }), /lease/);
      assert.equal(await fixture.store.files.getFile(scope, lost.id), undefined);
      assert.equal(await fixture.blobs.read(lost.id), undefined);
    });

    test('renewUpload and finishUpload hold only for the owner of the lease', async () => {
      const id = 'file-leasecheck000000000000';
      const records = fixture.store.files;
      await records.beginUpload(scope, id, 1, { owner: 'me', until: Date.now() + 1000 });
      assert.equal(await records.renewUpload(id, { owner: 'someone-else', until: Date.now() + 5000 }), false);
      assert.equal(await records.renewUpload(id, { owner: 'me', until: Date.now() + 5000 }), true);
      const file = {
        id,
        created_at: 1,
        bytes: 0,
        filename: 'x',
        purpose: 'assistants',
        expires_at: null,
        mime_type: null,
      };
      assert.equal(await records.finishUpload(scope, file, 'someone-else'), false);
      assert.equal(await records.finishUpload(otherScope, file, 'me'), false);
      assert.equal(await records.finishUpload(scope, file, 'me'), true);
      assert.deepEqual(await records.getFile(scope, id), file);
      assert.equal(
        await records.renewUpload(id, { owner: 'me', until: Date.now() + 5000 }),
        false,
        'a file is no upload',
      );
      assert.equal(await records.deleteFile(scope, id), true);
    });

    test('the sweeper deletes expired files with their bytes, and keeps the rest', async () => {
      const keep = await (await files.receive(scope, 'keep.txt', chunksOf(Buffer.from('keep'), 4))).commit({
        purpose: 'assistants',
        expiresAfterSeconds: null,
      });
      const later = await (await files.receive(scope, 'later.txt', chunksOf(Buffer.from('later'), 5))).commit({
        purpose: 'assistants',
        expiresAfterSeconds: 7200,
      });
      const soon = await (await files.receive(scope, 'soon.txt', chunksOf(Buffer.from('soon'), 4))).commit({
        purpose: 'assistants',
        expiresAfterSeconds: 3600,
      });
      assert.equal(soon.expires_at, soon.created_at + 3600);

      await sweeper().sweep(true);
      assert.ok(await fixture.store.files.getFile(scope, soon.id), 'nothing is due yet');

      await sweeper((soon.expires_at! + 1) * 1000).sweep(false);
      assert.equal(await fixture.store.files.getFile(scope, soon.id), undefined);
      assert.equal(await fixture.blobs.read(soon.id), undefined);
      assert.ok(await fixture.store.files.getFile(scope, keep.id));
      assert.ok(await fixture.store.files.getFile(scope, later.id));
      assert.equal((await readBlob(fixture.blobs, later.id))?.toString(), 'later');

      for (const id of [keep.id, later.id]) await files.delete(scope, id);
    });

    test('a file deleted between the read of its row and of its bytes is a 404; a row without bytes stays a 500', async () => {
      const upload = async (name: string) =>
        (await files.receive(scope, name, chunksOf(Buffer.from(name), 4))).commit({
          purpose: 'assistants',
          expiresAfterSeconds: null,
        });
      // A DELETE that commits right after the reader found the row: it removes the row, then the bytes.
      const records = fixture.store.files;
      const deletedOnce = new Set<string>();
      const racing: FileRecords = Object.create(records, {
        getFile: {
          value: async (of: Scope, id: string) => {
            const file = await records.getFile(of, id);
            if (file && !deletedOnce.has(id)) {
              deletedOnce.add(id);
              await files.delete(of, id);
            }
            return file;
          },
        },
      });
      const reader = new FileService({ records: racing, blobs: fixture.blobs, maxBytes: MiB, leaseMs, logger: silent });

      const downloaded = await upload('downloaded.txt');
      await assert.rejects(reader.content(scope, downloaded.id), (error: unknown) => {
        assert.ok(error instanceof ApiError);
        assert.equal(error.status, 404);
        assert.equal(error.message, `No such File object: ${downloaded.id}`);
        return true;
      });
      const indexed = await upload('indexed.txt');
      assert.equal(await reader.readAll(scope, indexed.id), undefined, 'as if it had been deleted before');

      // The bytes alone gone, the row still there: storage lost them, a server error.
      const lost = await upload('lost.txt');
      await fixture.blobs.delete(lost.id);
      for (const read of [() => files.content(scope, lost.id), () => files.readAll(scope, lost.id)])
        await assert.rejects(read(), (error: unknown) => {
          assert.ok(error instanceof ApiError);
          assert.equal(error.status, 500);
          assert.equal(error.message, `The content of file '${lost.id}' is missing from storage.`);
          return true;
        });
      await files.delete(scope, lost.id);
    });

    test('the sweeper removes uploads whose lease lapsed and bytes without a row, never a live upload', async () => {
      const records = fixture.store.files;
      // A crashed upload: its row leased to a dead process, its bytes (part of them) written.
      await records.beginUpload(scope, 'file-crashed00000000000000000', 1, { owner: 'dead', until: Date.now() - 1 });
      await fixture.blobs.write('file-crashed00000000000000000', chunksOf(randomBytes(5000), 1000));
      // Bytes whose row was deleted (a crash between a file's row delete and its bytes' delete).
      await fixture.blobs.write('file-orphan000000000000000000', chunksOf(randomBytes(5000), 1000));
      // An upload in progress in another process: leased into the future.
      await records.beginUpload(scope, 'file-live0000000000000000000', 1, {
        owner: 'alive',
        until: Date.now() + 60_000,
      });
      await fixture.blobs.write('file-live0000000000000000000', chunksOf(randomBytes(5000), 1000));

      await sweeper().sweep(true);
      assert.deepEqual(
        await records.rowStates(['file-crashed00000000000000000', 'file-live0000000000000000000']),
        new Map([['file-live0000000000000000000', 'uploading']]),
      );
      assert.equal(await fixture.blobs.read('file-crashed00000000000000000'), undefined);
      assert.equal(await fixture.blobs.read('file-orphan000000000000000000'), undefined);
      assert.equal(
        (await readBlob(fixture.blobs, 'file-live0000000000000000000'))?.byteLength,
        5000,
        'a live upload keeps its bytes',
      );

      await records.abandonUpload('file-live0000000000000000000', 'alive');
      await fixture.blobs.delete('file-live0000000000000000000');
    });
  });
}

/** Every file id with a row, whatever its state (for "nothing left"). */
async function idsOfAllRows(fixture: Fixture): Promise<string[]> {
  const page = await fixture.store.files.listFiles(scope, { limit: 1000, order: 'asc' });
  return page.data.map((f) => f.id);
}

fileStorageSuite('SQLite + directory', async () => {
  const dir = tempDir();
  const store = await openSqliteStore(dir);
  const root = path.join(dir, 'files');
  return {
    store,
    blobs: new DirectoryBlobStore(root),
    temporaries: () => readdirSync(path.join(root, 'tmp')),
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

fileStorageSuite('SQLite + database rows', async () => {
  const dir = tempDir();
  const store = await openSqliteStore(dir);
  return {
    store,
    blobs: store.databaseBlobs(),
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined) test('file storage on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  fileStorageSuite('PostgreSQL + database rows', async () => {
    const database = await createTestDatabase(postgresUrl);
    const store = await openPostgresStore(database.url, 4);
    return {
      store,
      blobs: store.databaseBlobs(),
      cleanup: async () => {
        await store.close();
        await database.drop();
      },
    };
  });

describe('directory blob store', () => {
  test('a source that fails while the temporary file is still being opened leaves no temporary file', async () => {
    // The pipeline ends as the source fails, while the file's open may still be waiting in libuv's pool beside the
    // removal: without waiting for the stream to close, about 1 in 2,000 removals ran before the file existed. Here
    // that order is made certain rather than waited for: the write stream's open (fs.open) is held back until the
    // write has settled, or 100 ms have passed (a write that waits for its stream to close waits for the open).
    const root = tempDir();
    const open = fs.open;
    let held = 0;
    try {
      const blobs = new DirectoryBlobStore(root);
      async function* gone(): AsyncIterable<Uint8Array> {
        yield Buffer.from('abc');
        throw new Error('client went away');
      }
      for (let i = 0; i < 3; i++) {
        let settled!: () => void;
        const written = new Promise<void>((resolve) => (settled = resolve));
        const opened: Array<Promise<void>> = [];
        fs.open = ((...args: unknown[]) => {
          held++;
          const callback = args.pop() as (...result: unknown[]) => void;
          opened.push(
            new Promise<void>((done) => {
              void Promise.race([written, sleep(100)]).then(() =>
                (open as (...a: unknown[]) => void)(...args, (...result: unknown[]) => {
                  callback(...result);
                  done();
                }),
              );
            }),
          );
        }) as typeof fs.open;
        await assert.rejects(blobs.write(`file-gone${i}`, gone()), /client went away/);
        settled();
        await Promise.all(opened);
        fs.open = open;
      }
      assert.equal(held, 3, 'each write opened its file through fs.open, held back');
      assert.deepEqual(readdirSync(path.join(root, 'tmp')), []);
    } finally {
      fs.open = open;
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('directories it could not make (a full disk, say) are made at the next write, once they can be', async () => {
    const root = tempDir();
    try {
      writeFileSync(path.join(root, 'blobs'), 'in the way'); // mkdir fails, as it would on a full disk
      const blobs = new DirectoryBlobStore(root);
      const bytes = async function* (): AsyncIterable<Uint8Array> {
        yield Buffer.from('abc');
      };
      await assert.rejects(blobs.write('file-a', bytes()));
      rmSync(path.join(root, 'blobs'));
      assert.equal(await blobs.write('file-a', bytes()), 3);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('a temporary file of a live upload is kept by the orphan sweep; one of a dead upload is removed', async () => {
    const root = tempDir();
    try {
      const blobs = new DirectoryBlobStore(root);
      await blobs.sweepOrphans(async () => new Map());
      writeFileSync(path.join(root, 'tmp', 'file-live.abc123'), 'partial');
      writeFileSync(path.join(root, 'tmp', 'file-dead.def456'), 'partial');
      writeFileSync(path.join(root, 'tmp', 'file-done.aaa111'), 'left after the rename failed');
      mkdirSync(path.join(root, 'blobs'), { recursive: true });
      writeFileSync(path.join(root, 'blobs', 'file-done'), 'complete');
      const states = new Map<string, 'uploading' | 'ready'>([
        ['file-live', 'uploading'],
        ['file-done', 'ready'],
      ]);
      const removed = await blobs.sweepOrphans(
        async (ids) => new Map(ids.flatMap((id) => (states.has(id) ? [[id, states.get(id)!]] : []))),
      );
      assert.equal(removed, 2);
      assert.deepEqual(readdirSync(path.join(root, 'tmp')), ['file-live.abc123']);
      assert.deepEqual(readdirSync(path.join(root, 'blobs')), ['file-done']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
