import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunEventBus } from '../../src/runs/run-event-bus.ts';
import type { RunSignal, SignalChannel } from '../../src/storage/store.ts';

/** Two processes' channels on one database: what one sends, the other receives (never the sender itself). */
function linkedChannels(): [SignalChannel, SignalChannel] {
  const receivers: Array<(signal: RunSignal) => void> = [];
  const channel = (self: number): SignalChannel => ({
    send: (signal) => receivers[1 - self]?.(JSON.parse(JSON.stringify(signal)) as RunSignal),
    listen: (receive) => {
      receivers[self] = receive;
    },
  });
  return [channel(0), channel(1)];
}

test('a thread deleted through one process is deleted for every process: each drops what it keeps for it', () => {
  const [a, b] = linkedChannels();
  const here = new RunEventBus({ signals: a });
  const there = new RunEventBus({ signals: b });
  const seen: string[] = [];
  here.onThreadDeleted((threadId) => seen.push(`here ${threadId}`));
  const stop = there.onThreadDeleted((threadId) => seen.push(`there ${threadId}`));
  // A thread with no run going: its code_interpreter session may still live in the other process.
  here.runsDeleted('thread_1', []);
  assert.deepEqual(seen, ['here thread_1', 'there thread_1']);
  stop();
  here.runsDeleted('thread_2', []);
  assert.deepEqual(seen, ['here thread_1', 'there thread_1', 'here thread_2']);
});
