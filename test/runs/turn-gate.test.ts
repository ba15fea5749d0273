import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { TurnGate } from '../../src/runs/turn-gate.ts';
import { countTurns } from '../support/event-loop.ts';
import { busy } from '../support/processes.ts';

describe('TurnGate', () => {
  test('an idle server begins at once, within the same turn of the event loop', async () => {
    const gate = new TurnGate();
    let turnEnded = false;
    setImmediate(() => {
      turnEnded = true;
    });
    await gate.pass();
    assert.equal(turnEnded, false);
  });

  test('beginnings that arrive together go through one per turn, in order', async () => {
    const gate = new TurnGate();
    const turn = countTurns();
    const order: number[] = [];
    const turns: number[] = [];
    await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        await gate.pass();
        order.push(i);
        turns.push(turn.count);
      }),
    );
    turn.stop();
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(new Set(turns).size, 10, `turns ${turns.join(', ')}`);
  });

  test('the loop goes round between two beginnings: a timer (or a socket read) is never kept waiting behind more than one', async () => {
    const gate = new TurnGate();
    // Each beginning keeps the thread 3 ms; a timer due every millisecond counts the beginnings between its calls.
    const between: number[] = [];
    let begun = 0;
    let last = 0;
    const timer = setInterval(() => {
      between.push(begun - last);
      last = begun;
    }, 1);
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        await gate.pass();
        busy(3);
        begun += 1;
      }),
    );
    await nextTurn();
    clearInterval(timer);
    assert.ok(between.length >= 19, `the timer ran ${between.length} times during 20 beginnings`);
    assert.ok(Math.max(...between) <= 1, `beginnings between two timer calls: ${between.join(', ')}`);
  });

  test('the gate opens again once its waiters are through', async () => {
    const gate = new TurnGate();
    await Promise.all([gate.pass(), gate.pass()]);
    await nextTurn();
    await nextTurn();
    let turnEnded = false;
    setImmediate(() => {
      turnEnded = true;
    });
    await gate.pass();
    assert.equal(turnEnded, false);
  });
});
