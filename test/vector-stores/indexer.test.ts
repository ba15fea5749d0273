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

/**
 * The memory bound. The process's memory is made up here (`rss`): it stands high while a file named `bomb.txt` is
 * being read, as a file unpacking to gigabytes would make it, and it reads the indexer's own list of the files it
 * reads to know (a real bomb's memory cannot be told from its neighbours', which is why a file that went over
 * beside others is read again alone).
 */
function boundedIndexer(threads: number) {
  const indexer: ThreadIndexer = new ThreadIndexer(threads, {
    memoryBudgetBytes: 1_000_000,
    memoryCheckMs: 5,
    rss: () => {
      const jobs = (indexer as unknown as { jobs: Set<{ filename: string }> }).jobs;
      return [...jobs].some((job) => job.filename === 'bomb.txt') ? 5_000_000_000 : 100_000_000;
    },
  });
  return indexer;
}
/** Long enough to read that the memory is looked at meanwhile (tens of ms; it is looked at every 5 ms). */
const longText = 'Some notes on the subject. '.repeat(20_000);
const named = (filename: string) => ({ ...file(longText), filename });

test('a file during which the process grows past the budget fails invalid_file; its thread is replaced', async () => {
  const indexer = boundedIndexer(1);
  try {
    const bomb = await indexer.index(named('bomb.txt'));
    assert.equal(bomb.ok, false);
    assert.equal(!bomb.ok && bomb.code, 'invalid_file');
    assert.match(!bomb.ok ? bomb.message : '', /^Reading the file took more than 1 MiB of memory/);
    assert.equal((await indexer.index(named('notes.txt'))).ok, true);
  } finally {
    await indexer.close();
  }
});

test('files read beside the one that went over are read again alone, and only it fails', async () => {
  const indexer = boundedIndexer(3);
  try {
    const [before, bomb, after] = await Promise.all([
      indexer.index(named('before.txt')),
      indexer.index(named('bomb.txt')),
      indexer.index(named('after.txt')),
    ]);
    assert.equal(before.ok, true);
    assert.equal(after.ok, true);
    assert.equal(!bomb.ok && bomb.code, 'invalid_file');
  } finally {
    await indexer.close();
  }
});

test('more files than threads, one going over: every file is answered, and only it fails', async () => {
  // Files wait for a thread while others are read alone: a file to be read alone must not wait behind them.
  for (const threads of [1, 2, 3]) {
    const indexer = boundedIndexer(threads);
    try {
      const names = ['a.txt', 'bomb.txt', 'b.txt', 'c.txt', 'd.txt', 'e.txt'];
      const results = await Promise.all(names.map((name) => indexer.index(named(name))));
      assert.deepEqual(
        results.map((result) => (result.ok ? 'ok' : result.code)),
        names.map((name) => (name === 'bomb.txt' ? 'invalid_file' : 'ok')),
        `${threads} threads`,
      );
    } finally {
      await indexer.close();
    }
  }
});

test('with no budget (0), memory is not looked at', async () => {
  let looked = 0;
  const indexer = new ThreadIndexer(1, { memoryBudgetBytes: 0, memoryCheckMs: 5, rss: () => ++looked });
  try {
    assert.equal((await indexer.index(named('bomb.txt'))).ok, true);
    assert.equal(looked, 1, 'only the baseline of the file');
  } finally {
    await indexer.close();
  }
});
