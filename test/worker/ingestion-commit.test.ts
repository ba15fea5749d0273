import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import type { VectorStoreFileError } from '../../src/domain/vector-stores.ts';
import { DEFAULT_SCOPE, type VectorStoreRecords } from '../../src/storage/store.ts';
import type { Indexer } from '../../src/vector-stores/indexer.ts';
import { IngestionWorker } from '../../src/worker/ingestion-worker.ts';
import { aStoredFile } from '../support/builders.ts';
import { eventually } from '../support/eventually.ts';

/**
 * A file whose commit the database refuses every time (PostgreSQL refused text holding U+0000) ends failed: it was
 * indexed again from scratch at every lapse of its lease, in progress forever. A commit that fails once and then
 * succeeds completes the file.
 */

function workerOver(commits: Array<'throw' | 'ok'>) {
  const calls = { commits: 0, claims: 0, failed: [] as VectorStoreFileError[] };
  const records = {
    claimIngestions: async () =>
      calls.claims++ === 0
        ? [
            {
              scope: DEFAULT_SCOPE,
              vectorStoreId: 'vs_1',
              fileId: 'file-1',
              chunking: { max_chunk_size_tokens: 800, chunk_overlap_tokens: 400 },
            },
          ]
        : [],
    renewIngestion: async () => true,
    completeIngestion: async () => {
      const next = commits[calls.commits++];
      if (next === 'throw') throw new Error('invalid byte sequence for encoding "UTF8": 0x00');
      return true;
    },
    failIngestion: async (_s: unknown, _v: string, _f: string, _w: string, error: VectorStoreFileError) => {
      calls.failed.push(error);
      return true;
    },
    expireVectorStores: async () => [],
    storeEmbedding: async () => null,
  } as unknown as VectorStoreRecords;
  const indexer: Indexer = {
    index: async () => ({ ok: true, chunks: [{ index: 0, text: 'a\u0000b', tokens: 2 }] as never, usageBytes: 3 }),
    close: async () => {},
  };
  const worker = new IngestionWorker({
    records,
    readFile: async () => ({ file: aStoredFile({ filename: 'a.docx' }), bytes: Buffer.from('x') }),
    indexer,
    logger: pino({ level: 'silent' }),
    concurrency: 1,
    leaseMs: 60_000,
    pollMs: 50,
  });
  return { worker, calls };
}

test('a commit refused every time fails the file with server_error after a few tries', async () => {
  const { worker, calls } = workerOver(['throw', 'throw', 'throw', 'throw', 'throw']);
  worker.start();
  try {
    await eventually('the file failed', 10_000, () => (calls.failed.length > 0 ? true : undefined));
    assert.deepEqual(calls.failed, [{ code: 'server_error', message: "The file's chunks could not be stored." }]);
    assert.equal(calls.commits, 3);
  } finally {
    await worker.close();
  }
});

test('a commit refused once, then taken, completes the file', async () => {
  const { worker, calls } = workerOver(['throw', 'ok']);
  worker.start();
  try {
    await eventually('the second commit', 10_000, () => (calls.commits === 2 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(calls.failed, []);
  } finally {
    await worker.close();
  }
});
