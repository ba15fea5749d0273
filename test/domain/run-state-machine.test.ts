import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { serializeRun, serializeRunStep } from '../../src/api/serializers.ts';
import { ApiError } from '../../src/domain/errors.ts';
import { createRun, type RunCommand, transition, transitionStep } from '../../src/domain/run-state-machine.ts';
import type { Run, RunStatus, RunStep } from '../../src/domain/runs.ts';
import { assertMatchesSchema } from '../support/openapi.ts';

const usage = { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 };
const call = { id: 'call_1', type: 'function' as const, function: { name: 'f', arguments: '{}' } };

function aRun(status: RunStatus = 'queued', overrides: Partial<Run> = {}): Run {
  return {
    id: 'run_1',
    created_at: 1000,
    thread_id: 'thread_1',
    assistant_id: 'asst_1',
    status,
    required_action: null,
    last_error: null,
    expires_at: 1600,
    started_at: null,
    cancelled_at: null,
    failed_at: null,
    completed_at: null,
    incomplete_details: null,
    model: 'gpt-4o',
    instructions: 'Be brief.',
    tools: [],
    metadata: {},
    usage: null,
    temperature: 1,
    top_p: 1,
    max_prompt_tokens: null,
    max_completion_tokens: null,
    truncation_strategy: { type: 'auto', last_messages: null },
    tool_choice: 'auto',
    parallel_tool_calls: true,
    response_format: 'auto',
    reasoning_effort: null,
    ...overrides,
  };
}

const COMMANDS: RunCommand[] = [
  { type: 'start', at: 1001 },
  { type: 'require_action', at: 1002, toolCalls: [call] },
  { type: 'submit_tool_outputs', at: 1003 },
  { type: 'complete', at: 1004, usage },
  { type: 'incomplete', at: 1004, reason: 'max_completion_tokens', usage },
  { type: 'fail', at: 1004, error: { code: 'server_error', message: 'upstream down' }, usage },
  { type: 'cancel', at: 1004 },
  { type: 'confirm_cancel', at: 1005, usage },
  { type: 'expire', at: 1600, usage },
];

// The whole table: which command is legal in which status, and where it leads.
const LEGAL: Record<string, Partial<Record<RunStatus, RunStatus>>> = {
  start: { queued: 'in_progress' },
  require_action: { in_progress: 'requires_action' },
  submit_tool_outputs: { requires_action: 'queued' },
  complete: { in_progress: 'completed' },
  incomplete: { in_progress: 'incomplete' },
  fail: { queued: 'failed', in_progress: 'failed' },
  cancel: { queued: 'cancelling', in_progress: 'cancelling', requires_action: 'cancelling' },
  confirm_cancel: { cancelling: 'cancelled' },
  expire: { queued: 'expired', in_progress: 'expired', requires_action: 'expired', cancelling: 'expired' },
};

const STATUSES: RunStatus[] = [
  'queued',
  'in_progress',
  'requires_action',
  'cancelling',
  'cancelled',
  'failed',
  'completed',
  'incomplete',
  'expired',
];

describe('run state machine', () => {
  test('every command in every status either moves as the table says or is a 400', () => {
    for (const command of COMMANDS)
      for (const status of STATUSES) {
        const expected = LEGAL[command.type]![status];
        const run = aRun(status, status === 'requires_action' ? transitionToAction() : {});
        if (expected) {
          const { run: next, events } = transition(run, command);
          assert.equal(next.status, expected, `${command.type} from ${status}`);
          assert.deepEqual(events, [{ event: `thread.run.${expected}`, data: next }]);
          assertMatchesSchema('RunObject', { ...serializeRun(next) }, `${command.type} from ${status}`);
        } else {
          assert.throws(
            () => transition(run, command),
            (e: ApiError) => e.status === 400,
            `${command.type} from ${status}`,
          );
        }
      }
  });

  test('a function-calling round trip sets and clears required_action and keeps the first started_at', () => {
    let run = transition(aRun(), { type: 'start', at: 1001 }).run;
    assert.equal(run.started_at, 1001);
    run = transition(run, { type: 'require_action', at: 1002, toolCalls: [call] }).run;
    assert.deepEqual(run.required_action, { type: 'submit_tool_outputs', submit_tool_outputs: { tool_calls: [call] } });
    assert.equal(run.usage, null, 'usage stays null until the run ends');
    run = transition(run, { type: 'submit_tool_outputs', at: 1003 }).run;
    assert.equal(run.required_action, null);
    run = transition(run, { type: 'start', at: 1004 }).run;
    assert.equal(run.started_at, 1001);
    run = transition(run, { type: 'complete', at: 1005, usage }).run;
    assert.equal(run.completed_at, 1005);
    assert.equal(run.expires_at, null, 'a terminal run no longer expires');
    assert.deepEqual(run.usage, usage);
  });

  test('terminal outcomes set their own fields', () => {
    const inProgress = aRun('in_progress', { started_at: 1001 });
    const failed = transition(inProgress, COMMANDS[5]!).run;
    assert.equal(failed.failed_at, 1004);
    assert.deepEqual(failed.last_error, { code: 'server_error', message: 'upstream down' });
    const incomplete = transition(inProgress, COMMANDS[4]!).run;
    assert.deepEqual(incomplete.incomplete_details, { reason: 'max_completion_tokens' });
    const cancelling = transition(inProgress, { type: 'cancel', at: 1004 }).run;
    assert.equal(cancelling.cancelled_at, null);
    const cancelled = transition(cancelling, { type: 'confirm_cancel', at: 1005, usage }).run;
    assert.equal(cancelled.cancelled_at, 1005);
    const stopping = transition(aRun('requires_action', transitionToAction()), { type: 'cancel', at: 1004 }).run;
    assert.equal(stopping.required_action, null, 'a cancelling run takes no tool outputs: no action is required');
    const expired = transition(aRun('requires_action', transitionToAction()), { type: 'expire', at: 1600, usage }).run;
    assert.equal(expired.required_action, null);
    assert.equal(expired.expires_at, null);
  });

  test('illegal client commands carry upstream wording', () => {
    assert.throws(
      () => transition(aRun('completed'), { type: 'cancel', at: 1 }),
      (e: ApiError) => e.message === "Cannot cancel run with status 'completed'.",
    );
    assert.throws(
      () => transition(aRun('in_progress'), { type: 'submit_tool_outputs', at: 1 }),
      (e: ApiError) => e.message === 'Runs in status "in_progress" do not accept tool outputs.',
    );
  });

  test('a pause past its expires_at takes no tool outputs, as the expired run it is, recorded or not', () => {
    const paused = aRun('requires_action', { ...transitionToAction(), expires_at: 1600 });
    assert.equal(transition(paused, { type: 'submit_tool_outputs', at: 1599 }).run.status, 'queued');
    for (const at of [1600, 1700])
      assert.throws(
        () => transition(paused, { type: 'submit_tool_outputs', at }),
        (e: ApiError) => e.status === 400 && e.message === 'Runs in status "expired" do not accept tool outputs.',
      );
  });

  test('a new run announces created then queued', () => {
    const { status: _status, ...fields } = aRun();
    const created = createRun(fields);
    assert.equal(created.run.status, 'queued');
    assert.deepEqual(
      created.events.map((e) => e.event),
      ['thread.run.created', 'thread.run.queued'],
    );
  });
});

describe('run step transitions', () => {
  const step: RunStep = {
    id: 'step_1',
    created_at: 1000,
    assistant_id: 'asst_1',
    thread_id: 'thread_1',
    run_id: 'run_1',
    type: 'tool_calls',
    status: 'in_progress',
    step_details: { type: 'tool_calls', tool_calls: [{ ...call, function: { ...call.function, output: null } }] },
    last_error: null,
    expired_at: null,
    expires_at: null,
    cancelled_at: null,
    failed_at: null,
    completed_at: null,
    metadata: {},
    usage: null,
  };

  test('in_progress steps complete, fail, cancel or expire, each once', () => {
    const withOutput = {
      type: 'tool_calls' as const,
      tool_calls: [{ ...call, function: { ...call.function, output: '42' } }],
    };
    const completed = transitionStep(step, { type: 'complete', at: 1001, usage, stepDetails: withOutput });
    assert.deepEqual(
      completed.events.map((e) => e.event),
      ['thread.run.step.completed'],
    );
    assert.deepEqual(completed.step.step_details, withOutput);
    assertMatchesSchema('RunStepObject', serializeRunStep(completed.step));
    assertMatchesSchema('RunStepObject', serializeRunStep(step));
    const expired = transitionStep(step, { type: 'expire', at: 1600, usage });
    assert.deepEqual([expired.step.expired_at, expired.step.usage], [1600, usage]);
    const cancelled = transitionStep(step, { type: 'cancel', at: 1002, usage: null });
    assert.deepEqual([cancelled.step.cancelled_at, cancelled.step.usage], [1002, null]);
    const failed = transitionStep(step, {
      type: 'fail',
      at: 1003,
      error: { code: 'server_error', message: 'x' },
      usage: null,
    });
    assert.equal(failed.step.failed_at, 1003);
    assert.throws(() => transitionStep(completed.step, { type: 'cancel', at: 1004, usage: null }), ApiError);
  });
});

function transitionToAction(): Partial<Run> {
  return { required_action: { type: 'submit_tool_outputs', submit_tool_outputs: { tool_calls: [call] } } };
}
