import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import OpenAI, { toFile } from 'openai';
import pg from 'pg';
import { SQLITE_FILE_NAME } from '../../src/storage/sqlite/open-sqlite-store.ts';
import { eventually } from '../support/eventually.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { type ServerProcess, spawnServer, tempDir } from '../support/server.ts';

/**
 * Ingestion survives a killed server: with 50 files being indexed, SIGKILL, restart — every file ends completed, and
 * no chunk is indexed twice (the files in flight are indexed again from scratch once their lease lapses).
 */

const FILES = 50;

/** A text of roughly `words` words, different for each `seed`, so that chunking has real work to do. */
function document(seed: number, words: number): string {
  const parts: string[] = [`Document ${seed} begins.`];
  for (let i = 0; i < words; i++) parts.push(`w${seed}x${i % 997}`);
  return parts.join(' ');
}

interface Database {
  /** Rows of (file, chunk index) indexed more than once, and the chunk count. */
  duplicates(): Promise<{ duplicated: number; chunks: number }>;
  close(): Promise<void>;
}

async function killDuringIngestion(env: Record<string, string>, db: () => Database): Promise<void> {
  const settings = { ...env, ASSISTD_WORKER_LEASE_S: '1' };
  let server: ServerProcess = await spawnServer(settings);
  try {
    let client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0 });
    const store = await client.vectorStores.create({ name: 'crash' });
    const ids: string[] = [];
    for (let i = 0; i < FILES; i++) {
      const body = Buffer.from(document(i, 20_000), 'utf8');
      ids.push((await client.files.create({ file: await toFile(body, `doc${i}.txt`), purpose: 'assistants' })).id);
    }
    const batch = await client.vectorStores.fileBatches.create(store.id, { file_ids: ids });
    await eventually('some files indexed, others not yet', 60_000, async () => {
      const counts = (await client.vectorStores.fileBatches.retrieve(batch.id, { vector_store_id: store.id }))
        .file_counts;
      return counts.completed >= 3 && counts.in_progress > 0 ? counts : undefined;
    });
    await server.stop('SIGKILL');
    server = await spawnServer(settings);
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0 });
    const settled = await client.vectorStores.fileBatches.poll(store.id, batch.id, { pollIntervalMs: 200 });
    assert.equal(settled.status, 'completed');
    assert.deepEqual(settled.file_counts, { in_progress: 0, completed: FILES, failed: 0, cancelled: 0, total: FILES });

    const database = db();
    try {
      const { duplicated, chunks } = await database.duplicates();
      assert.equal(duplicated, 0, 'no chunk indexed twice');
      assert.ok(chunks >= FILES, `${chunks} chunks`);
      process.stdout.write(`# killed mid-ingestion of ${FILES} files: all completed, ${chunks} chunks, none twice\n`);
    } finally {
      await database.close();
    }
    const hits = await client.vectorStores.search(store.id, { query: 'w7x5' });
    assert.equal(hits.data[0]?.filename, 'doc7.txt');
  } finally {
    await server.stop();
  }
}

const DUPLICATES = `
  select
    (select count(*) from (select 1 from chunks group by vector_store_id, file_id, chunk_index having count(*) > 1) d)
      as duplicated,
    (select count(*) from chunks) as chunks`;

test('SIGKILL during ingestion on SQLite: every file completes, no chunk twice', async () => {
  const dataDir = tempDir();
  try {
    await killDuringIngestion({ ASSISTD_DATA_DIR: dataDir }, () => {
      const sqlite = new BetterSqlite3(path.join(dataDir, SQLITE_FILE_NAME), { readonly: true });
      return {
        duplicates: async () => sqlite.prepare(DUPLICATES).get() as { duplicated: number; chunks: number },
        close: async () => void sqlite.close(),
      };
    });
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

const postgresUrl = postgresUrlOrSkip();
test('SIGKILL during ingestion on PostgreSQL: every file completes, no chunk twice', {
  skip: postgresUrl === undefined && POSTGRES_SKIP_REASON,
}, async () => {
  const database = await createTestDatabase(postgresUrl!);
  const dataDir = tempDir();
  try {
    await killDuringIngestion({ ASSISTD_DATABASE_URL: database.url, ASSISTD_DATA_DIR: dataDir }, () => {
      const client = new pg.Client({ connectionString: database.url });
      const connected = client.connect();
      return {
        duplicates: async () => {
          await connected;
          const row = (await client.query(DUPLICATES)).rows[0];
          return { duplicated: Number(row.duplicated), chunks: Number(row.chunks) };
        },
        close: () => client.end(),
      };
    });
  } finally {
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
