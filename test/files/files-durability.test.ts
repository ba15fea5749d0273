import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { type ClientRequest, request as httpRequest } from 'node:http';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import OpenAI, { toFile } from 'openai';
import pg from 'pg';
import { eventually } from '../support/eventually.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { type ServerProcess, spawnServer, tempDir } from '../support/server.ts';

/**
 * Files survive a killed server: every upload the API acknowledged is downloadable byte-identical after a SIGKILL
 * and a restart, and the uploads that were in flight leave nothing once their lease lapses and the sweeper runs.
 * On PostgreSQL, every API process serves every file.
 */

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

function clientOf(server: ServerProcess): OpenAI {
  return new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0 });
}

/** An upload that sends its header and `bytes` of the file, then waits: in flight until it is destroyed. */
function startStalledUpload(url: string, bytes: number): ClientRequest {
  const boundary = 'stalledupload';
  const request = httpRequest(`${url}/v1/files`, {
    method: 'POST',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  });
  request.on('error', () => {});
  request.write(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="stalled.bin"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  request.write(randomBytes(bytes));
  return request;
}

/** What a storage holds besides what the API shows: files being uploaded, and the ids that have bytes. */
interface StorageProbe {
  uploading(): Promise<number>;
  /** Ids with complete bytes, and partial writes (temporary files) left. */
  bytes(): Promise<{ ids: string[]; partial: number }>;
}

async function killDuringUploads(env: Record<string, string>, probe: StorageProbe): Promise<void> {
  // A one-second lease: the killed server's uploads lapse a second after it dies.
  const settings = { ...env, ASSISTD_WORKER_LEASE_S: '1' };
  let server = await spawnServer(settings);
  const stalled: ClientRequest[] = [];
  try {
    let client = clientOf(server);
    const acknowledged = new Map<string, string>();
    for (let i = 0; i < 4; i++) {
      const bytes = randomBytes(500_000 + i * 700_000);
      const file = await client.files.create({ file: await toFile(bytes, `f${i}.bin`), purpose: 'assistants' });
      acknowledged.set(file.id, sha256(bytes));
    }
    for (let i = 0; i < 3; i++) stalled.push(startStalledUpload(server.url, 2_000_000 + i * 100_000));
    await eventually('three uploads in flight', 10_000, async () =>
      (await probe.uploading()) === 3 ? true : undefined,
    );

    await server.stop('SIGKILL');
    for (const request of stalled) request.destroy();
    server = await spawnServer(settings);
    client = clientOf(server);

    const expected = [...acknowledged.keys()].sort();
    await eventually('the sweeper to remove the killed uploads', 15_000, async () => {
      const { ids, partial } = await probe.bytes();
      const clean = (await probe.uploading()) === 0 && partial === 0;
      return clean && JSON.stringify([...ids].sort()) === JSON.stringify(expected) ? true : undefined;
    });
    const listed = (await client.files.list()).data.map((f) => f.id).sort();
    assert.deepEqual(listed, expected, 'every acknowledged file, and nothing else');
    for (const [id, digest] of acknowledged) {
      const body = Buffer.from(await (await client.files.content(id)).arrayBuffer());
      assert.equal(sha256(body), digest, `${id} is byte-identical`);
    }
    process.stdout.write(`# killed with 3 uploads in flight; ${acknowledged.size} acknowledged files intact\n`);
  } finally {
    for (const request of stalled) request.destroy();
    await server.stop();
  }
}

describe('SIGKILL during uploads', () => {
  test('SQLite, files in a directory', async () => {
    const dataDir = tempDir();
    try {
      const files = path.join(dataDir, 'files');
      await killDuringUploads(
        { ASSISTD_DATA_DIR: dataDir },
        {
          // An upload in flight writes a temporary file; its id is the part before the dot.
          uploading: async () => readdirSync(path.join(files, 'tmp')).length,
          bytes: async () => ({
            ids: readdirSync(path.join(files, 'blobs')),
            partial: readdirSync(path.join(files, 'tmp')).length,
          }),
        },
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  const postgresUrl = postgresUrlOrSkip();
  test('PostgreSQL, files in the database', { skip: postgresUrl === undefined && POSTGRES_SKIP_REASON }, async () => {
    const database = await createTestDatabase(postgresUrl!);
    const db = new pg.Client({ connectionString: database.url });
    const dataDir = tempDir();
    try {
      await db.connect();
      const count = async (query: string) => Number((await db.query(query)).rows[0].count);
      await killDuringUploads(
        { ASSISTD_DATABASE_URL: database.url, ASSISTD_DATA_DIR: dataDir },
        {
          uploading: () =>
            count(
              "select count(*) from files where state = 'uploading' and exists (select 1 from file_chunks where file_id = files.id)",
            ),
          bytes: async () => ({
            ids: (await db.query('select distinct file_id from file_chunks')).rows.map((r) => r.file_id as string),
            // Chunks whose id has no row, or whose row is not a file.
            partial: await count(
              "select count(*) from file_chunks c where not exists (select 1 from files f where f.id = c.file_id and f.state = 'ready')",
            ),
          }),
        },
      );
    } finally {
      await db.end();
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('two API processes on PostgreSQL', () => {
  const postgresUrl = postgresUrlOrSkip();
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  test('a file uploaded through one is listed, downloaded and deleted through the other', {
    skip: postgresUrl === undefined && POSTGRES_SKIP_REASON,
  }, async () => {
    const database = await createTestDatabase(postgresUrl!);
    cleanups.push(() => database.drop());
    const env = { ASSISTD_DATABASE_URL: database.url };
    // Separate data directories: nothing on disk is shared, as on two machines.
    const dirs = [tempDir(), tempDir()];
    cleanups.push(async () => {
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    });
    const one = await spawnServer({ ...env, ASSISTD_DATA_DIR: dirs[0]! });
    cleanups.push(async () => void (await one.stop()));
    const two = await spawnServer({ ...env, ASSISTD_DATA_DIR: dirs[1]!, ASSISTD_WORKER_CONCURRENCY: '0' });
    cleanups.push(async () => void (await two.stop()));

    const bytes = randomBytes(3_500_000);
    const uploaded = await clientOf(one).files.create({
      file: await toFile(bytes, 'shared.bin'),
      purpose: 'assistants',
    });
    const other = clientOf(two);
    assert.deepEqual({ ...(await other.files.retrieve(uploaded.id)) }, { ...uploaded });
    assert.deepEqual(
      (await other.files.list()).data.map((f) => f.id),
      [uploaded.id],
    );
    const downloaded = Buffer.from(await (await other.files.content(uploaded.id)).arrayBuffer());
    assert.equal(sha256(downloaded), sha256(bytes));
    await other.files.delete(uploaded.id);
    await assert.rejects(clientOf(one).files.content(uploaded.id), OpenAI.NotFoundError);
  });
});
