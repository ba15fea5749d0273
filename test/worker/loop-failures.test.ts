import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { FileSweeper } from '../../src/files/file-sweeper.ts';
import { LoopFailures } from '../../src/loop-failures.ts';
import type { BlobStore } from '../../src/storage/blobs/blob-store.ts';
import { DatabaseUnavailable, type FileRecords, StorageFull } from '../../src/storage/store.ts';
import { eventually } from '../support/eventually.ts';

/** A logger whose entries land in `lines`. */
function capturing(lines: Array<{ level: number; msg: string; reason?: string; err?: unknown }>) {
  return pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()));
        done();
      },
    }),
  );
}

test("a loop's failures for want of the database are said once per reason, and once more when it works again", () => {
  const lines: Array<{ level: number; msg: string; reason?: string }> = [];
  const failures = new LoopFailures(capturing(lines));
  const away = new DatabaseUnavailable(new Error('Connection terminated unexpectedly'));
  const full = new StorageFull(new Error('database or disk is full'));
  for (let i = 0; i < 3; i++) failures.failed('claiming runs', away);
  failures.failed('claiming runs', full); // another reason: said again, as an error
  failures.failed('claiming runs', full);
  failures.failed('expiring runs', away);
  failures.succeeded('claiming runs');
  failures.succeeded('claiming runs');
  failures.failed('claiming runs', new Error('a bug')); // any other failure: every time
  failures.failed('claiming runs', new Error('a bug'));
  assert.deepEqual(
    lines.map((l) => [l.level, l.msg]),
    [
      [40, 'claiming runs failed; it goes on trying, said again once it works'],
      [50, 'claiming runs failed; it goes on trying, said again once it works'],
      [40, 'expiring runs failed; it goes on trying, said again once it works'],
      [30, 'claiming runs works again'],
      [50, 'claiming runs failed'],
      [50, 'claiming runs failed'],
    ],
  );
  assert.equal(lines[1]!.reason, 'no room left to store: database or disk is full');
});

test('the file sweeper says a database away once, not at every pass, and once more when it sweeps again', async () => {
  const lines: Array<{ level: number; msg: string; reason?: string; err?: unknown }> = [];
  let passes = 0;
  const records = {
    deleteLapsedAndExpired: async () => {
      passes++;
      if (passes <= 5) throw new DatabaseUnavailable(new Error('Connection terminated unexpectedly'));
      return [];
    },
    rowStates: async () => new Map(),
  } as unknown as FileRecords;
  const blobs = { delete: async () => {}, sweepOrphans: async () => 0 } as unknown as BlobStore;
  const sweeper = new FileSweeper({ records, blobs, logger: capturing(lines), intervalMs: 10 });
  sweeper.start();
  try {
    await eventually('the sweeper to sweep again', 10_000, () => (passes > 6 ? true : undefined));
  } finally {
    await sweeper.close();
  }
  assert.deepEqual(
    lines.map((l) => [l.level, l.msg]),
    [
      [40, 'sweeping files failed; it goes on trying, said again once it works'],
      [30, 'sweeping files works again'],
    ],
  );
  assert.equal(lines[0]!.err, undefined); // no stack
  assert.equal(lines[0]!.reason, 'the database is unavailable: Connection terminated unexpectedly');
});
