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
 * A file added to its store again while it is being indexed is indexed again, in the same process: the earlier
 * ingestion, now stale, must not write its chunks. Its lease was the worker's id, the same for both, so it did: the
 * file ended completed with the earlier chunking's chunks (or, racing, a mix of both), and the latest was dropped.
 */
test('a file added again while it is indexed ends with the chunks of the latest ingestion only', async () => {
  const dir = tempDir();
  const store = await openSqliteStore(dir);
  const scope = { projectId: 'proj_readd' };
  const records = store.vectorStores;
  /** Each call of the indexer waits for its release; its chunks say which ingestion made them. */
  const calls: Array<{ release: () => void; size: number }> = [];
  const indexer: Indexer = {
    index: ({ chunking }) =>
      new Promise<IndexResult>((resolve) => {
        const size = chunking.static.max_chunk_size_tokens;
        const chunks = [0, 1].map((index) => ({ index, text: `part ${index} of chunks of ${size}`, tokens: 5 }));
        calls.push({ size, release: () => resolve({ ok: true, chunks, usageBytes: 10 }) });
      }),
    close: async () => {},
  };
  const worker = new IngestionWorker({
    records,
    readFile: async () => ({ file: aStoredFile(), bytes: Buffer.from('text') }),
    indexer,
    logger: pino({ level: 'silent' }),
    concurrency: 4,
    leaseMs: 60_000,
    pollMs: 50,
  });
  try {
    const fileId = await recordFile(store.files, scope, 'notes.txt', 1_700_000_000);
    const vectorStore = aVectorStore();
    const chunking = (size: number) => ({
      type: 'static' as const,
      static: { max_chunk_size_tokens: size, chunk_overlap_tokens: 0 },
    });
    await records.createVectorStore(scope, vectorStore, [
      aVectorStoreFile(vectorStore.id, fileId, { chunking_strategy: chunking(100) }),
    ]);
    worker.start();
    await eventually('the first ingestion is indexing', 5_000, () => (calls.length === 1 ? true : undefined));
    await records.addFiles(scope, vectorStore.id, [
      aVectorStoreFile(vectorStore.id, fileId, { chunking_strategy: chunking(200) }),
    ]);
    worker.wake();
    await eventually('the second ingestion is indexing', 5_000, () => (calls.length === 2 ? true : undefined));

    // The stale one finishes first: its commit must not hold.
    calls[0]!.release();
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal((await records.getVectorStoreFile(scope, vectorStore.id, fileId))?.status, 'in_progress');
    assert.deepEqual(await records.fileChunks(scope, vectorStore.id, fileId), []);
    calls[1]!.release();
    await eventually('the file completed', 5_000, async () =>
      (await records.getVectorStoreFile(scope, vectorStore.id, fileId))?.status === 'completed' ? true : undefined,
    );
    assert.deepEqual(
      (await records.fileChunks(scope, vectorStore.id, fileId)).map((chunk) => chunk.text),
      ['part 0 of chunks of 200', 'part 1 of chunks of 200'],
    );
  } finally {
    await worker.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
