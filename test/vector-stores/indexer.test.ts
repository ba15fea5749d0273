import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { AUTO_CHUNKING } from '../../src/domain/vector-stores.ts';
import { indexingTimeBudgetMs, ThreadIndexer } from '../../src/vector-stores/indexer.ts';

/**
 * The indexing threads' time budget: a file whose indexing outlasts it fails with `server_error` instead of staying
 * in progress forever, and its thread is stopped and replaced. A budget of 1 ms runs out while the thread starts.
 */

const file = (text: string) => ({
  bytes: Buffer.from(text),
  filename: 'notes.txt',
  mimeType: 'text/plain',
  chunking: AUTO_CHUNKING,
});

const stopped = new ThreadIndexer(1, { timeBudgetMs: () => 1 });
const normal = new ThreadIndexer(1);
after(() => Promise.all([stopped.close(), normal.close()]));

test('an indexing that outlasts its budget fails the file, and the next file gets a new thread', async () => {
  for (let i = 0; i < 2; i++) {
    // With one thread, a second file would wait forever for a thread stopped but not replaced.
    assert.deepEqual(await stopped.index(file('Some notes.')), {
      ok: false,
      code: 'server_error',
      message: 'Indexing the file took longer than 1 s: it was stopped.',
    });
  }
  const indexed = await normal.index(file('Some notes.'));
  assert.equal(indexed.ok, true);
});

test('the budget: 5 minutes, and a second per MB', () => {
  assert.equal(indexingTimeBudgetMs(0), 300_000);
  assert.equal(indexingTimeBudgetMs(1), 301_000);
  assert.equal(indexingTimeBudgetMs(512_000_000), 812_000);
});

test('closing ends every indexing, the running and the waiting, and later ones, without starting a thread', async () => {
  const indexer = new ThreadIndexer(1);
  // A file large enough to keep the one thread busy while the close arrives; the second waits for the thread.
  const running = indexer.index(file('Some notes. '.repeat(200_000)));
  const waiting = indexer.index(file('Other notes.'));
  await new Promise((resolve) => setTimeout(resolve, 20));
  await indexer.close();
  const [first, second] = await Promise.all([running, waiting]);
  assert.equal(first.ok, false);
  assert.deepEqual(second, { ok: false, code: 'server_error', message: 'The indexer is closed.' });
  assert.deepEqual(await indexer.index(file('Late notes.')), {
    ok: false,
    code: 'server_error',
    message: 'The indexer is closed.',
  });
});
