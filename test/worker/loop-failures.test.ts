import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { DatabaseUnavailable, StorageFull } from '../../src/storage/store.ts';
import { LoopFailures } from '../../src/worker/loop-failures.ts';

test("a loop's failures for want of the database are said once per reason, and once more when it works again", () => {
  const lines: Array<{ level: number; msg: string; reason?: string }> = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()));
        done();
      },
    }),
  );
  const failures = new LoopFailures(logger);
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
