import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import BetterSqlite3 from 'better-sqlite3';
import OpenAI, { toFile } from 'openai';
import { backupSqlite } from '../../src/storage/backup.ts';
import type { BlobStore } from '../../src/storage/blobs/blob-store.ts';
import { DirectoryBlobStore } from '../../src/storage/blobs/directory-blob-store.ts';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { runCli, type ServerProcess, spawnServer, startTestServer, tempDir } from '../support/server.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

/**
 * `assistd backup` of a running SQLite deployment: a client keeps writing messages, runs and files (and deleting
 * files) while the backup is taken; a server started on the backup has every write acknowledged before the backup
 * began, every file it lists has its exact bytes, and it starts cleanly: /healthz, the runs it inherited finish,
 * and a new run completes.
 */

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** The bytes of upload `i`: deterministic, of sizes from 1 kB to 200 kB. */
function uploadBytes(i: number): Buffer {
  const size = 1000 + ((i * 7919) % 200_000);
  const blocks: Buffer[] = [];
  for (let block = 0; block * 32 < size; block++) blocks.push(createHash('sha256').update(`${i}:${block}`).digest());
  return Buffer.concat(blocks).subarray(0, size);
}

interface Acknowledged {
  messages: Array<{ threadId: string; id: string; text: string }>;
  runs: Array<{ threadId: string; runId: string }>;
  /** Uploaded files, by id: the digest of their bytes. */
  files: Map<string, string>;
  deletedFiles: string[];
  /** Files whose deletion was asked for, acknowledged or not yet. */
  deleting: Set<string>;
}

function emptyLog(): Acknowledged {
  return { messages: [], runs: [], files: new Map(), deletedFiles: [], deleting: new Set() };
}

/** What was acknowledged at this moment: later acknowledgements do not change it. */
function copyOf(log: Acknowledged): Acknowledged {
  return {
    messages: [...log.messages],
    runs: [...log.runs],
    files: new Map(log.files),
    deletedFiles: [...log.deletedFiles],
    deleting: new Set(log.deleting),
  };
}

/**
 * Three writers, each a loop of acknowledged writes until `stop`: messages on one thread; a new thread and run
 * (threads.createAndRun) each time; a file uploaded each time and, every third time, an earlier one deleted.
 */
function startWriters(client: OpenAI, assistantId: string, messageThread: string, log: Acknowledged) {
  let stopped = false;
  const pause = () => sleep(15);
  const messages = (async () => {
    for (let i = 0; !stopped; i++) {
      const text = `message ${i}`;
      const message = await client.beta.threads.messages.create(messageThread, { role: 'user', content: text });
      log.messages.push({ threadId: messageThread, id: message.id, text });
      await pause();
    }
  })();
  const runs = (async () => {
    for (let i = 0; !stopped; i++) {
      const run = await client.beta.threads.createAndRun({
        assistant_id: assistantId,
        thread: { messages: [{ role: 'user', content: `question ${i}` }] },
      });
      log.runs.push({ threadId: run.thread_id, runId: run.id });
      await pause();
    }
  })();
  const files = (async () => {
    for (let i = 0; !stopped; i++) {
      const bytes = uploadBytes(i);
      const file = await client.files.create({ file: await toFile(bytes, `upload-${i}.bin`), purpose: 'assistants' });
      log.files.set(file.id, sha256(bytes));
      if (i % 3 === 2) {
        const victim = [...log.files.keys()].find((id) => !log.deleting.has(id))!;
        log.deleting.add(victim);
        await client.files.delete(victim);
        log.deletedFiles.push(victim);
      }
      await pause();
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await Promise.all([messages, runs, files]);
    },
  };
}

function clientOf(server: ServerProcess, validating: ValidatingFetch): OpenAI {
  return new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0, fetch: validating.fetch });
}

for (const storage of ['directory', 'database'] as const) {
  describe(`assistd backup of a running SQLite deployment, file bytes in the ${storage}`, () => {
    let upstream: FakeUpstream;
    const validating = createValidatingFetch();
    const dataDir = tempDir('assistd-backup-live-');
    const backupDir = path.join(tempDir('assistd-backups-'), 'backup-1');
    // A one-second lease: the runs the backup caught in progress resume a second after the restored server starts.
    const env = {
      ASSISTD_DATA_DIR: dataDir,
      ASSISTD_FILE_STORAGE: storage,
      ASSISTD_WORKER_LEASE_S: '1',
    };

    before(async () => {
      // Slow answers, so that the backup catches runs queued and in progress, not only finished ones.
      upstream = await FakeUpstream.start({ latencyMs: 300 });
    });
    after(async () => {
      await upstream?.close();
      validating.assertNoViolations({ all: true });
    });

    test('restores every write acknowledged before it began, and the restored server starts cleanly', async () => {
      const settings = { ...env, ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl };
      const live = await spawnServer(settings);
      let acknowledged: Acknowledged;
      let everything: Acknowledged;
      let duringBackup: number;
      try {
        const client = clientOf(live, validating);
        const assistant = await client.beta.assistants.create({ model: 'test-model' });
        const thread = await client.beta.threads.create();
        const log = emptyLog();
        const writers = startWriters(client, assistant.id, thread.id, log);
        await eventually('writes of every kind', 20_000, () =>
          log.messages.length >= 10 && log.runs.length >= 10 && log.deletedFiles.length >= 2 ? true : undefined,
        );

        acknowledged = copyOf(log);
        const writesBefore = log.messages.length + log.runs.length + log.files.size;
        const backup = await runCli(settings, ['backup', backupDir], 60_000);
        duringBackup = log.messages.length + log.runs.length + log.files.size - writesBefore;
        await writers.stop();
        everything = log;
        assert.equal(backup.code, 0, backup.stderr);
        assert.match(backup.stdout, /backup written to .*backup-1 \(database \d+ bytes, \d+ files?\)/);
      } finally {
        await live.stop();
      }
      assert.ok(duringBackup > 0, 'the client kept writing while the backup ran');

      const restored = await spawnServer({
        ...env,
        ASSISTD_DATA_DIR: backupDir,
        ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      });
      try {
        const health = await fetch(`${restored.url}/healthz`);
        assert.equal(health.status, 200);
        assert.equal(((await health.json()) as { status: string }).status, 'ok');
        const client = clientOf(restored, validating);

        for (const { threadId, id, text } of acknowledged.messages) {
          const message = await client.beta.threads.messages.retrieve(id, { thread_id: threadId });
          assert.deepEqual(
            message.content.map((part) => (part.type === 'text' ? part.text.value : part.type)),
            [text],
          );
        }
        for (const id of acknowledged.deletedFiles)
          await assert.rejects(client.files.retrieve(id), { status: 404 }, `${id} was deleted before the backup`);
        for (const [id, digest] of acknowledged.files) {
          // A deletion asked for later may or may not be in the backup.
          if (everything.deleting.has(id)) continue;
          const bytes = Buffer.from(await (await client.files.content(id)).arrayBuffer());
          assert.equal(sha256(bytes), digest, `the bytes of ${id}`);
        }
        // Files acknowledged after the backup began may be there or not; those there are whole.
        const everyUpload = new Set([...acknowledged.files.values()]);
        for (let i = 0; everyUpload.size < acknowledged.files.size + 200; i++) everyUpload.add(sha256(uploadBytes(i)));
        for await (const file of client.files.list()) {
          const bytes = Buffer.from(await (await client.files.content(file.id)).arrayBuffer());
          assert.ok(everyUpload.has(sha256(bytes)), `${file.id} has the bytes of an upload`);
        }

        // Every run it inherited ends: queued ones are claimed, those caught in progress resume once their lease lapses.
        await eventually('the restored runs to complete', 60_000, async () => {
          for (const { threadId, runId } of acknowledged.runs) {
            const run = await client.beta.threads.runs.retrieve(runId, { thread_id: threadId });
            if (run.status !== 'completed') return undefined;
          }
          return true;
        });
        const fresh = await client.beta.threads.createAndRunPoll({
          assistant_id: (await client.beta.assistants.list()).data[0]!.id,
          thread: { messages: [{ role: 'user', content: 'after the restore' }] },
        });
        assert.equal(fresh.status, 'completed');
      } finally {
        await restored.stop();
      }

      // Only the whole backup sits where it was asked for: no partial directory beside it.
      assert.deepEqual(readdirSync(path.dirname(backupDir)), ['backup-1']);
    });

    test('with file storage not the server’s, the backup fails and names the setting', async () => {
      const wrong = storage === 'directory' ? 'database' : 'directory';
      const target = path.join(path.dirname(backupDir), 'backup-wrong');
      const result = await runCli({ ...env, ASSISTD_FILE_STORAGE: wrong }, ['backup', target], 60_000);
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(result.stderr, /^assistd backup: .*ASSISTD_FILE_STORAGE the server's\?\n$/);
      assert.equal(existsSync(target), false);
      assert.deepEqual(readdirSync(path.dirname(backupDir)), ['backup-1']);
    });
  });
}

describe('assistd backup refuses', () => {
  test('without a directory, to an existing one, and with no database', async () => {
    const dataDir = tempDir();
    const existing = tempDir();
    const [missing, taken, nothing] = await Promise.all([
      runCli({ ASSISTD_DATA_DIR: dataDir }, ['backup']),
      runCli({ ASSISTD_DATA_DIR: dataDir }, ['backup', existing]),
      runCli({ ASSISTD_DATA_DIR: dataDir }, ['backup', path.join(existing, 'b')]),
    ]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /name the directory to write/);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /already exists: name a new directory/);
    assert.equal(nothing.code, 1);
    assert.match(nothing.stderr, /there is no database at .*assistd\.sqlite: is ASSISTD_DATA_DIR the server's\?/);
    assert.deepEqual(readdirSync(existing), []);
  });

  test('a PostgreSQL deployment, pointing to pg_dump and the file directory', async () => {
    const target = path.join(tempDir(), 'b');
    // Refused before any connection: nothing listens on port 1.
    const url = 'postgres://assistd@127.0.0.1:1/assistd';
    const dataDir = tempDir();
    const [inDatabase, inDirectory] = await Promise.all([
      runCli({ ASSISTD_DATABASE_URL: url }, ['backup', target]),
      runCli({ ASSISTD_DATABASE_URL: url, ASSISTD_DATA_DIR: dataDir, ASSISTD_FILE_STORAGE: 'directory' }, [
        'backup',
        target,
      ]),
    ]);
    assert.equal(inDatabase.code, 1);
    assert.match(inDatabase.stderr, /PostgreSQL .* use pg_dump\. See the README/);
    assert.equal(inDirectory.code, 1);
    assert.match(inDirectory.stderr, new RegExp(`use pg_dump, and copy ${path.join(dataDir, 'files')}`));
    assert.equal(existsSync(target), false);
  });
});

test('a file deleted between the copy of the database and the copy of its bytes: the database is copied again', async () => {
  const server = await startTestServer();
  try {
    const upload = async (i: number) => {
      const form = new FormData();
      form.append('file', new Blob([uploadBytes(i)]), `f${i}.bin`);
      form.append('purpose', 'assistants');
      const response = await fetch(`${server.url}/v1/files`, { method: 'POST', body: form });
      return ((await response.json()) as { id: string }).id;
    };
    const ids = [await upload(0), await upload(1), await upload(2)];
    const victim = ids[1]!;
    const live = new DirectoryBlobStore(path.join(server.dataDir, 'files'));
    // The bytes of the victim are asked for once the database has been copied with it: it is deleted through the API
    // right then (row, then bytes), as a client's delete racing the backup would be.
    const racing = beforeEachRead(live, async (id) => {
      if (id === victim) assert.equal((await fetch(`${server.url}/v1/files/${id}`, { method: 'DELETE' })).status, 200);
    });
    const target = path.join(tempDir(), 'backup');
    const summary = await backupSqlite(
      {
        dataDir: server.dataDir,
        blobs: { source: racing, target: (dir) => new DirectoryBlobStore(path.join(dir, 'files')) },
      },
      target,
    );
    assert.equal(summary.snapshots, 2);
    assert.equal(summary.files, 2);
    const copy = new BetterSqlite3(path.join(target, 'assistd.sqlite'), { readonly: true });
    const rows = copy.prepare('select id from files order by seq').all() as Array<{ id: string }>;
    copy.close();
    assert.deepEqual(
      rows.map((row) => row.id),
      [ids[0], ids[2]],
    );
    assert.deepEqual(readdirSync(path.join(target, 'files', 'blobs')).sort(), [ids[0], ids[2]].sort());
  } finally {
    await server.close();
  }
});

test('a backup stopped midway (SIGINT, SIGTERM) leaves nothing: no backup, no partial directory beside it', async () => {
  const server = await startTestServer();
  try {
    for (const i of [0, 1, 2]) {
      const form = new FormData();
      form.append('file', new Blob([uploadBytes(i)]), `f${i}.bin`);
      form.append('purpose', 'assistants');
      assert.equal((await fetch(`${server.url}/v1/files`, { method: 'POST', body: form })).status, 200);
    }
    const live = new DirectoryBlobStore(path.join(server.dataDir, 'files'));
    const parent = tempDir();
    const target = path.join(parent, 'backup');
    const stopped = new AbortController();
    let leftAtAbort: string[] = [];
    // The process is told to stop while the second file's bytes are copied.
    let reads = 0;
    const interrupted = beforeEachRead(live, async () => {
      if (++reads === 2) {
        stopped.abort();
        leftAtAbort = readdirSync(parent);
      }
    });
    await assert.rejects(
      backupSqlite(
        {
          dataDir: server.dataDir,
          blobs: { source: interrupted, target: (dir) => new DirectoryBlobStore(path.join(dir, 'files')) },
        },
        target,
        stopped.signal,
      ),
      { name: 'AbortError' },
    );
    assert.deepEqual(leftAtAbort, [], 'the partial backup is gone as soon as the stop is asked for');
    assert.deepEqual(readdirSync(parent), [], 'and nothing the copy still wrote is left');
  } finally {
    await server.close();
  }
});

/** `blobs`, calling `before` with a file's id before each read of its bytes (what a backup copies). */
function beforeEachRead(blobs: BlobStore, before: (id: string) => Promise<void>): BlobStore {
  return {
    description: blobs.description,
    write: (id, source) => blobs.write(id, source),
    delete: (id) => blobs.delete(id),
    sweepOrphans: (rowStates) => blobs.sweepOrphans(rowStates),
    read: async (id) => {
      await before(id);
      return blobs.read(id);
    },
  };
}
