import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import { pino } from 'pino';
import { openSqliteStore } from '../../src/storage/sqlite/open-sqlite-store.ts';
import type { Indexer, IndexResult } from '../../src/vector-stores/indexer.ts';
import { IngestionWorker } from '../../src/worker/ingestion-worker.ts';
import { aStoredFile, aVectorStore, aVectorStoreFile } from '../support/builders.ts';
import { eventually } from '../support/eventually.ts';
import { recordFile } from '../support/file-rows.ts';
import { tempDir } from '../support/server.ts';

/**
 * A worker that closes while it indexes hands its files back, as a run worker hands back its runs: close() returns
 * once its ingestions have stopped, and the next worker (a restarted server) claims them at once, not after the
 * lease (a minute here) has lapsed.
 */
/** An indexer that holds every file until it is closed, then fails them, as ThreadIndexer does. */
function holdingIndexer(): { holding: Indexer; pending: Set<(result: IndexResult) => void> } {
  const pending = new Set<(result: IndexResult) => void>();
  const holding: Indexer = {
    index: () => new Promise<IndexResult>((resolve) => pending.add(resolve)),
    close: async () => {
      for (const resolve of pending) resolve({ ok: false, code: 'server_error', message: 'The indexer is closed.' });
    },
  };
  return { holding, pending };
}

test('closing hands the files being indexed back: the next worker indexes them at once', async () => {
  const dir = tempDir();
  const store = await openSqliteStore(dir);
  const scope = { projectId: 'proj_close' };
  const records = store.vectorStores;
  const { holding, pending } = holdingIndexer();
  const indexing: Indexer = {
    index: async () => ({ ok: true, chunks: [{ index: 0, text: 'notes', tokens: 1 }], usageBytes: 5 }),
    close: async () => {},
  };
  const worker = (indexer: Indexer) =>
    new IngestionWorker({
      records,
      readFile: async () => ({ file: aStoredFile(), bytes: Buffer.from('notes') }),
      indexer,
      logger: pino({ level: 'silent' }),
      concurrency: 4,
      leaseMs: 60_000,
      pollMs: 50,
    });
  const first = worker(holding);
  const second = worker(indexing);
  try {
    const fileId = await recordFile(store.files, scope, 'notes.txt', 1_700_000_000);
    const vectorStore = aVectorStore();
    await records.createVectorStore(scope, vectorStore, [aVectorStoreFile(vectorStore.id, fileId)]);
    first.start();
    await eventually('the file is being indexed', 5_000, () => (pending.size === 1 ? true : undefined));
    await first.close();
    // Closing did not fail the file: it is still to be indexed.
    assert.equal((await records.getVectorStoreFile(scope, vectorStore.id, fileId))?.status, 'in_progress');
    second.start();
    await eventually('the next worker indexed the file', 5_000, async () =>
      (await records.getVectorStoreFile(scope, vectorStore.id, fileId))?.status === 'completed' ? true : undefined,
    );
  } finally {
    await first.close();
    await second.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a lease renewal under way when the worker closes does not take back a file it handed back', async () => {
  const dir = tempDir();
  const store = await openSqliteStore(dir);
  const scope = { projectId: 'proj_close_renewal' };
  const records = store.vectorStores;
  const { holding } = holdingIndexer();
  // Every renewal takes 300 ms to answer, as a busy database's would: the close comes while one is under way. The
  // hand-back (a lease ending at 0) answers at once.
  let renewals = 0;
  const slow = Object.create(records) as typeof records;
  slow.renewIngestion = async (...args) => {
    if (args[4] !== 0) {
      renewals++;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    return records.renewIngestion(...args);
  };
  const worker = new IngestionWorker({
    records: slow,
    readFile: async () => ({ file: aStoredFile(), bytes: Buffer.from('notes') }),
    indexer: holding,
    logger: pino({ level: 'silent' }),
    concurrency: 4,
    leaseMs: 600,
    pollMs: 50,
  });
  try {
    const fileId = await recordFile(store.files, scope, 'notes.txt', 1_700_000_000);
    const vectorStore = aVectorStore();
    await records.createVectorStore(scope, vectorStore, [aVectorStoreFile(vectorStore.id, fileId)]);
    worker.start();
    await eventually('a renewal is under way', 5_000, () => (renewals > 0 ? true : undefined));
    await worker.close();
    await new Promise((resolve) => setTimeout(resolve, 400)); // the renewal, had it gone on, has answered
    const claimed = await records.claimIngestions('next', Date.now(), Date.now() + 60_000, 4);
    assert.deepEqual(
      claimed.map((c) => c.fileId),
      [fileId],
      'the next worker claims the file at once',
    );
  } finally {
    await worker.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
