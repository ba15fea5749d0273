import assert from 'node:assert/strict';
import { test } from 'node:test';
import { transitionStep } from '../../src/domain/run-state-machine.ts';
import { ZERO_USAGE } from '../../src/runs/run-accounting.ts';
import { RunEventBus } from '../../src/runs/run-event-bus.ts';
import type { RunSignal, SignalChannel } from '../../src/storage/store.ts';
import { aMessage, aRun, aStep } from '../support/builders.ts';

/** Two processes' channels on one database: what one sends, the other receives (never the sender itself). */
function linkedChannels(): [SignalChannel, SignalChannel] {
  const receivers: Array<(signal: RunSignal) => void> = [];
  const channel = (self: number): SignalChannel => ({
    othersListening: true,
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

test('the live turn is read as it is at that moment: what the turn changes later is not in it', () => {
  const bus = new RunEventBus();
  const run = aRun('thread_1', { status: 'in_progress' });
  const step = aStep(run);
  const message = aMessage('thread_1', 'alpha ');
  bus.setLiveTurn(run.id, { step, message });
  const read = bus.liveTurn(run.id);
  // As ModelTurn changes them: fields replaced.
  message.content = aMessage('thread_1', 'alpha beta').content;
  step.step_details = { type: 'tool_calls', tool_calls: [] };
  assert.deepEqual(read?.message?.content, aMessage('thread_1', 'alpha ').content);
  assert.equal(read?.step?.step_details.type === 'tool_calls' && read.step.step_details.tool_calls.length, 1);
});

test('the live turn ends with the step it shows: once that step has ended, nothing is live', () => {
  const bus = new RunEventBus();
  const run = aRun('thread_1', { status: 'in_progress' });
  const step = aStep(run);
  bus.setLiveTurn(run.id, { step, message: undefined });
  const other = transitionStep(aStep(run), { type: 'complete', at: 1, usage: ZERO_USAGE });
  bus.publishAll('thread_1', run.id, other.events);
  assert.equal(bus.liveTurn(run.id)?.step?.id, step.id, 'another step ending leaves it');
  const completed = transitionStep(step, { type: 'complete', at: 1, usage: ZERO_USAGE });
  bus.publishAll('thread_1', run.id, completed.events);
  assert.equal(bus.liveTurn(run.id), undefined);
});
