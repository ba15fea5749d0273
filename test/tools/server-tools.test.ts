import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type OpenAI from 'openai';
import { SdkHarness } from '../support/sdk-harness.ts';
import { ADD_ERROR, ADD_FUNCTION, type AddTool, addCall, addTool } from '../support/test-tools.ts';

/**
 * Server-side tools (src/tools/tool.ts): a run whose tools enable one executes the model's calls of it itself, inside
 * the run, and goes on with the next model turn — no requires_action. The tool is the test tool `add` (enabled by
 * `{type: 'code_interpreter'}`, see test/support/test-tools.ts); the model is the fake upstream.
 */

type ChatMessage = { role: string; content?: unknown; tool_calls?: unknown[]; tool_call_id?: string };
type Steps = OpenAI.Beta.Threads.Runs.RunStep[];

const CODE_INTERPRETER = { type: 'code_interpreter' as const };
const lookup = {
  type: 'function' as const,
  function: { name: 'lookup', parameters: { type: 'object', properties: {} } },
};
const TERMINAL_STEP = new Set(['completed', 'failed', 'cancelled', 'expired']);

/** One test server with `tool` registered, its fake model, and an SDK client whose responses are schema-checked. */
class Harness extends SdkHarness {
  constructor(
    readonly tool: AddTool,
    env: Record<string, string> = {},
  ) {
    super(env, { tools: [tool] });
  }

  /** An assistant with `tools` (the code_interpreter tool, which enables `add`, by default) and a fresh thread. */
  async setup(tools: OpenAI.Beta.AssistantTool[] = [CODE_INTERPRETER], content = 'What is 2 + 3, then 4 + 5?') {
    const assistant = await this.client.beta.assistants.create({ model: 'gpt-test', instructions: 'Use add.', tools });
    const thread = await this.client.beta.threads.create({ messages: [{ role: 'user', content }] });
    return { assistant, thread };
  }

  async assistantMessages(threadId: string) {
    return (await this.client.beta.threads.messages.list(threadId)).data.filter((m) => m.role === 'assistant');
  }
}

function toolCallsOf(step: OpenAI.Beta.Threads.Runs.RunStep): OpenAI.Beta.Threads.Runs.ToolCall[] {
  assert.equal(step.step_details.type, 'tool_calls');
  return (step.step_details as OpenAI.Beta.Threads.Runs.ToolCallsStepDetails).tool_calls;
}

/** The code_interpreter details an `add(a, b)` call ends with. */
function addDetails(id: string, a: number, b: number) {
  return {
    id,
    type: 'code_interpreter',
    code_interpreter: { input: `${a} + ${b}`, outputs: [{ type: 'logs', logs: String(a + b) }] },
  };
}

/** How the model's history shows a call it made: a Chat Completions tool call. */
function modelCall(id: string, name: string, args: string) {
  return { id, type: 'function', function: { name, arguments: args } };
}

/** A tool round as sent upstream, `{role, tool_calls}` of the assistant message (its `content` is not compared). */
function assistantCalls(message: ChatMessage | undefined) {
  assert.ok(message, 'a message is there');
  return { role: message.role, tool_calls: message.tool_calls };
}

/**
 * A tool message as sent upstream, its content reduced to the ToolError's message: the output must carry that
 * message, and may frame it (e.g. `Error: …`).
 */
function toolOutput(message: ChatMessage | undefined) {
  assert.ok(message, 'a message is there');
  assert.equal(message.role, 'tool');
  assert.equal(typeof message.content, 'string');
  const content = message.content as string;
  return { tool_call_id: message.tool_call_id, content: content.includes(ADD_ERROR) ? ADD_ERROR : content };
}

function sumUsage(steps: Steps) {
  return steps.reduce(
    (sum, step) => {
      assert.ok(step.usage, `step ${step.id} has usage`);
      return {
        prompt_tokens: sum.prompt_tokens + step.usage.prompt_tokens,
        completion_tokens: sum.completion_tokens + step.usage.completion_tokens,
        total_tokens: sum.total_tokens + step.usage.total_tokens,
      };
    },
    { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
  );
}

function textOf(message: OpenAI.Beta.Threads.Message | undefined): string {
  assert.ok(message, 'there is a message');
  return message.content.map((part) => (part.type === 'text' ? part.text.value : '')).join('');
}

describe('server-side tools: the run executes them itself', () => {
  const h = new Harness(addTool());
  before(() => h.start());
  after(() => h.close());

  test('two server-side calls in a row, then the answer, in one createAndPoll', async () => {
    const { assistant, thread } = await h.setup();
    const seen = h.upstream.requests.length;
    const executed = h.tool.executions.length;
    h.upstream.enqueue(
      addCall(2, 3, { prompt_tokens: 11, completion_tokens: 3 }),
      addCall(4, 5, { prompt_tokens: 13, completion_tokens: 4 }),
      { text: ['The ', 'answer'], usage: { prompt_tokens: 17, completion_tokens: 5 } },
    );
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', `run ended ${run.status}: ${JSON.stringify(run.last_error)}`);
    assert.equal(run.required_action, null);
    assert.deepEqual(run.usage, { prompt_tokens: 41, completion_tokens: 12, total_tokens: 53 });

    const steps = await h.steps(thread.id, run.id);
    assert.deepEqual(
      steps.map((s) => [s.type, s.status]),
      [
        ['tool_calls', 'completed'],
        ['tool_calls', 'completed'],
        ['message_creation', 'completed'],
      ],
    );
    const first = toolCallsOf(steps[0]!);
    const second = toolCallsOf(steps[1]!);
    assert.equal(first.length, 1);
    assert.equal(second.length, 1);
    const id1 = first[0]!.id;
    const id2 = second[0]!.id;
    assert.match(id1, /^call_/);
    assert.match(id2, /^call_/);
    assert.notEqual(id1, id2);
    assert.deepEqual(first[0], addDetails(id1, 2, 3));
    assert.deepEqual(second[0], addDetails(id2, 4, 5));
    assert.ok(
      steps.every((s) => s.usage !== null && s.completed_at !== null),
      'every step has usage and completed_at',
    );
    assert.deepEqual(sumUsage(steps), run.usage, "the run's usage is the sum of its steps'");

    const messages = await h.assistantMessages(thread.id);
    assert.equal(messages.length, 1, 'exactly one assistant message');
    assert.equal(textOf(messages[0]), 'The answer');
    assert.equal(messages[0]!.run_id, run.id);
    assert.deepEqual(steps[2]!.step_details, {
      type: 'message_creation',
      message_creation: { message_id: messages[0]!.id },
    });

    assert.deepEqual(h.tool.executions.slice(executed), [
      { callId: id1, a: 2, b: 3, started: true, finished: true, aborted: false },
      { callId: id2, a: 4, b: 5, started: true, finished: true, aborted: false },
    ]);

    const requests = h.upstream.requests.slice(seen);
    assert.equal(requests.length, 3, 'three model turns');
    for (const [i, request] of requests.entries()) {
      const offered = request.body.tools?.find((t) => t.function.name === 'add');
      assert.ok(offered, `request ${i + 1} offers add`);
      assert.equal(offered.type, 'function');
      assert.deepEqual(offered.function, ADD_FUNCTION);
    }
    const turn1 = requests[0]!.body.messages as ChatMessage[];
    assert.equal(turn1.at(-1)!.role, 'user', 'the first turn has no tool round');
    const turn2 = requests[1]!.body.messages as ChatMessage[];
    assert.deepEqual(assistantCalls(turn2.at(-2)), {
      role: 'assistant',
      tool_calls: [modelCall(id1, 'add', '{"a":2,"b":3}')],
    });
    assert.deepEqual(turn2.at(-1), { role: 'tool', tool_call_id: id1, content: '5' });
    assert.deepEqual(turn2.slice(0, -2), turn1, 'the tool round follows the first prompt');
    const turn3 = requests[2]!.body.messages as ChatMessage[];
    assert.deepEqual(turn3.slice(0, -2), turn2, 'the second round follows the first');
    assert.deepEqual(assistantCalls(turn3.at(-2)), {
      role: 'assistant',
      tool_calls: [modelCall(id2, 'add', '{"a":4,"b":5}')],
    });
    assert.deepEqual(turn3.at(-1), { role: 'tool', tool_call_id: id2, content: '9' });
  });

  test('a turn with a server-side call and a client function: the server runs its call, the client gets only its own', async () => {
    const { assistant, thread } = await h.setup([CODE_INTERPRETER, lookup], 'Add 2 and 3, and look it up.');
    const seen = h.upstream.requests.length;
    const executed = h.tool.executions.length;
    h.upstream.enqueue(
      {
        toolCalls: [
          { name: 'add', arguments: '{"a":2,"b":3}' },
          { name: 'lookup', arguments: '{}' },
        ],
      },
      { text: ['Found ', 'it.'] },
    );
    const paused = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(paused.status, 'requires_action', `run is ${paused.status}: ${JSON.stringify(paused.last_error)}`);
    const required = paused.required_action!.submit_tool_outputs.tool_calls;
    assert.equal(required.length, 1, 'only the client function is required');
    const lookupId = required[0]!.id;
    assert.deepEqual(required[0], modelCall(lookupId, 'lookup', '{}'));

    let steps = await h.steps(thread.id, paused.id);
    assert.deepEqual(
      steps.map((s) => [s.type, s.status]),
      [['tool_calls', 'in_progress']],
    );
    let calls = toolCallsOf(steps[0]!);
    assert.equal(calls.length, 2);
    const addId = calls[0]!.id;
    assert.match(addId, /^call_/);
    assert.notEqual(addId, lookupId);
    assert.deepEqual(calls[0], addDetails(addId, 2, 3), 'the server call already holds its final details');
    assert.deepEqual(calls[1], {
      id: lookupId,
      type: 'function',
      function: { name: 'lookup', arguments: '{}', output: null },
    });
    assert.deepEqual(h.tool.executions.slice(executed), [
      { callId: addId, a: 2, b: 3, started: true, finished: true, aborted: false },
    ]);
    assert.equal(h.upstream.requests.length - seen, 1);

    const done = await h.client.beta.threads.runs.submitToolOutputsAndPoll(paused.id, {
      thread_id: thread.id,
      tool_outputs: [{ tool_call_id: lookupId, output: 'found' }],
    });
    assert.equal(done.status, 'completed', `run ended ${done.status}: ${JSON.stringify(done.last_error)}`);
    steps = await h.steps(thread.id, done.id);
    assert.deepEqual(
      steps.map((s) => [s.type, s.status]),
      [
        ['tool_calls', 'completed'],
        ['message_creation', 'completed'],
      ],
    );
    calls = toolCallsOf(steps[0]!);
    assert.deepEqual(calls, [
      addDetails(addId, 2, 3),
      { id: lookupId, type: 'function', function: { name: 'lookup', arguments: '{}', output: 'found' } },
    ]);
    assert.equal(h.tool.executions.length - executed, 1, 'the server call is not executed again');
    const messages = await h.assistantMessages(thread.id);
    assert.equal(messages.length, 1);
    assert.equal(textOf(messages[0]), 'Found it.');

    const requests = h.upstream.requests.slice(seen);
    assert.equal(requests.length, 2);
    const turn2 = requests[1]!.body.messages as ChatMessage[];
    assert.deepEqual(assistantCalls(turn2.at(-3)), {
      role: 'assistant',
      tool_calls: [modelCall(addId, 'add', '{"a":2,"b":3}'), modelCall(lookupId, 'lookup', '{}')],
    });
    assert.deepEqual(turn2.slice(-2), [
      { role: 'tool', tool_call_id: addId, content: '5' },
      { role: 'tool', tool_call_id: lookupId, content: 'found' },
    ]);
    assert.equal(turn2.filter((m) => m.role === 'assistant').length, 1, 'one assistant message with both calls');
  });

  test('a forced tool_choice holds for the first model turn only, so a model that obeys it does not loop', async () => {
    // A model that obeys: while tool_choice forces a call it calls a tool (at most 4 times, so that a server that
    // kept forcing ends its run instead of looping until it expires), otherwise it answers.
    let forcedCalls = 0;
    h.upstream.onRequest = (request) => {
      const choice = request.body.tool_choice;
      const forced = choice === 'required' || (typeof choice === 'object' && choice !== null);
      if (forced && forcedCalls++ < 4) {
        const named = (choice as { function?: { name?: string } }).function?.name;
        h.upstream.enqueue(named === 'lookup' ? { toolCalls: [{ name: 'lookup', arguments: '{}' }] } : addCall(1, 2));
      } else h.upstream.enqueue({ text: 'Done.' });
    };
    try {
      for (const toolChoice of ['required', { type: 'code_interpreter' }] as const) {
        forcedCalls = 0;
        const { assistant, thread } = await h.setup();
        const seen = h.upstream.requests.length;
        const run = await h.client.beta.threads.runs.createAndPoll(thread.id, {
          assistant_id: assistant.id,
          tool_choice: toolChoice,
        });
        assert.equal(run.status, 'completed', `${JSON.stringify(toolChoice)}: run ended ${run.status}`);
        assert.deepEqual(run.tool_choice, toolChoice, 'the run still shows the choice it was created with');
        const sent = h.upstream.requests.slice(seen).map((r) => r.body.tool_choice);
        const forcedAs = toolChoice === 'required' ? 'required' : { type: 'function', function: { name: 'add' } };
        assert.deepEqual(sent, [forcedAs, 'auto'], `${JSON.stringify(toolChoice)}: forced once, then free`);
        assert.deepEqual(
          (await h.steps(thread.id, run.id)).map((s) => [s.type, s.status]),
          [
            ['tool_calls', 'completed'],
            ['message_creation', 'completed'],
          ],
        );
      }

      // A named function: forced on the turn that asks for it, not on the one after its output.
      forcedCalls = 0;
      const { assistant, thread } = await h.setup([CODE_INTERPRETER, lookup]);
      const seen = h.upstream.requests.length;
      const named = { type: 'function', function: { name: 'lookup' } } as const;
      const paused = await h.client.beta.threads.runs.createAndPoll(thread.id, {
        assistant_id: assistant.id,
        tool_choice: named,
      });
      assert.equal(paused.status, 'requires_action');
      const done = await h.client.beta.threads.runs.submitToolOutputsAndPoll(paused.id, {
        thread_id: thread.id,
        tool_outputs: [{ tool_call_id: paused.required_action!.submit_tool_outputs.tool_calls[0]!.id, output: 'x' }],
      });
      assert.equal(done.status, 'completed', `run ended ${done.status}`);
      assert.deepEqual(
        h.upstream.requests.slice(seen).map((r) => r.body.tool_choice),
        [named, 'auto'],
      );
    } finally {
      h.upstream.onRequest = undefined;
    }
  });

  test("invalid arguments: the model reads the ToolError's message as the call's output, and the run goes on", async () => {
    const { assistant, thread } = await h.setup([CODE_INTERPRETER], 'Add something.');
    const seen = h.upstream.requests.length;
    const executed = h.tool.executions.length;
    h.upstream.enqueue(
      { toolCalls: [{ name: 'add', arguments: '{"a":"x"}' }] },
      { toolCalls: [{ name: 'add', arguments: 'not json at all' }] },
      { text: ['Sorry, ', 'I cannot.'] },
    );
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', `run ended ${run.status}: ${JSON.stringify(run.last_error)}`);
    const steps = await h.steps(thread.id, run.id);
    assert.deepEqual(
      steps.map((s) => [s.type, s.status]),
      [
        ['tool_calls', 'completed'],
        ['tool_calls', 'completed'],
        ['message_creation', 'completed'],
      ],
    );
    const id1 = toolCallsOf(steps[0]!)[0]!.id;
    const id2 = toolCallsOf(steps[1]!)[0]!.id;
    assert.ok(toolCallsOf(steps[0]!).every((c) => c.type === 'code_interpreter'));
    const executions = h.tool.executions.slice(executed);
    assert.deepEqual(
      executions.map((e) => [e.callId, e.finished, e.error]),
      [
        [id1, false, ADD_ERROR],
        [id2, false, ADD_ERROR],
      ],
    );

    const requests = h.upstream.requests.slice(seen);
    assert.equal(requests.length, 3);
    const turn2 = requests[1]!.body.messages as ChatMessage[];
    assert.deepEqual(assistantCalls(turn2.at(-2)), {
      role: 'assistant',
      tool_calls: [modelCall(id1, 'add', '{"a":"x"}')],
    });
    assert.deepEqual(toolOutput(turn2.at(-1)), { tool_call_id: id1, content: ADD_ERROR });
    const turn3 = requests[2]!.body.messages as ChatMessage[];
    assert.deepEqual(assistantCalls(turn3.at(-2)), {
      role: 'assistant',
      tool_calls: [modelCall(id2, 'add', 'not json at all')],
    });
    assert.deepEqual(toolOutput(turn3.at(-1)), { tool_call_id: id2, content: ADD_ERROR });
    assert.equal(textOf((await h.assistantMessages(thread.id))[0]), 'Sorry, I cannot.');
  });
});

describe('server-side tools: a tool that throws a plain Error fails the run', () => {
  const h = new Harness(addTool({ fail: true }));
  before(() => h.start());
  after(() => h.close());

  test('the run is failed with server_error, and so is its tool_calls step', async () => {
    const { assistant, thread } = await h.setup();
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(addCall(2, 3), { text: 'never asked for' });
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'failed');
    assert.equal(run.last_error?.code, 'server_error');
    assert.ok(run.failed_at);
    const steps = await h.steps(thread.id, run.id);
    assert.deepEqual(
      steps.map((s) => [s.type, s.status]),
      [['tool_calls', 'failed']],
    );
    assert.ok(steps[0]!.failed_at);
    assert.equal(steps[0]!.last_error?.code, 'server_error');
    assert.equal(h.tool.executions.length, 1);
    assert.equal(toolCallsOf(steps[0]!)[0]!.id, h.tool.executions[0]!.callId);
    assert.equal(h.upstream.requests.length - seen, 1, 'no model turn after the failure');
    assert.equal((await h.assistantMessages(thread.id)).length, 0);
  });
});

describe("server-side tools: what a tool adds to the run's answer", () => {
  const h = new Harness(addTool({ fillSums: true }));
  before(() => h.start());
  after(() => h.close());

  test('finishMessage rewrites the answer before it is stored and completed', async () => {
    const { assistant, thread } = await h.setup();
    h.upstream.enqueue(addCall(2, 3), { text: ['The sum is ', '{{sum}}', '.'] });
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed');
    const [answer] = await h.assistantMessages(thread.id);
    assert.deepEqual(answer!.content, [{ type: 'text', text: { value: 'The sum is 5.', annotations: [] } }]);
  });
});

describe('server-side tools: cancel during an execution', () => {
  const h = new Harness(addTool({ delayMs: 60_000 }));
  before(() => h.start());
  after(() => h.close());

  test("the tool's signal fires, the run is cancelled without waiting for the tool, and its tool_calls step too", async () => {
    const { assistant, thread } = await h.setup();
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(addCall(2, 3), { text: 'never asked for' });
    const run = await h.client.beta.threads.runs.create(thread.id, { assistant_id: assistant.id });
    await h.tool.waitFor((executions) => executions.length === 1, 10_000);
    const cancelling = await h.client.beta.threads.runs.cancel(run.id, { thread_id: thread.id });
    assert.equal(cancelling.status, 'cancelling');
    const final = await h.client.beta.threads.runs.poll(run.id, { thread_id: thread.id });
    assert.equal(final.status, 'cancelled');
    assert.ok(final.cancelled_at);

    // The tool takes a minute: it was stopped, not waited for.
    await h.tool.waitFor((executions) => executions[0]!.aborted, 10_000);
    const [execution] = h.tool.executions;
    assert.equal(execution!.aborted, true);
    assert.equal(execution!.finished, false);

    const steps = await h.steps(thread.id, run.id);
    assert.deepEqual(
      steps.map((s) => [s.type, s.status]),
      [['tool_calls', 'cancelled']],
    );
    assert.ok(steps[0]!.cancelled_at);
    assert.equal(toolCallsOf(steps[0]!)[0]!.id, execution!.callId);
    assert.equal(h.upstream.requests.length - seen, 1, 'no model turn after the cancel');
    assert.equal((await h.assistantMessages(thread.id)).length, 0);
  });
});

describe('server-side tools: expiry while the model calls a tool every turn', () => {
  const h = new Harness(addTool({ delayMs: 300 }), { ASSISTD_RUN_EXPIRES_AFTER_S: '2' });
  before(async () => {
    await h.start();
    h.upstream.setDefault(addCall(1, 2));
  });
  after(() => h.close());

  test('the run expires although every turn calls the tool again, and leaves no step in progress', async () => {
    const { assistant, thread } = await h.setup();
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'expired', `run ended ${run.status}: ${JSON.stringify(run.last_error)}`);
    assert.equal(run.expires_at, null);
    const steps = await h.steps(thread.id, run.id);
    assert.ok(steps.length >= 1, 'the loop ran');
    assert.ok(
      steps.every((s) => s.type === 'tool_calls' && TERMINAL_STEP.has(s.status)),
      `steps: ${JSON.stringify(steps.map((s) => [s.type, s.status]))}`,
    );
    assert.ok(
      steps.every((s) => s.status === 'completed' || s.status === 'expired'),
      `steps: ${JSON.stringify(steps.map((s) => s.status))}`,
    );
    assert.ok(
      steps.filter((s) => s.status === 'expired').every((s) => s.expired_at !== null),
      'expired steps have expired_at',
    );
    // The execution in flight when the run expired was told to stop.
    await h.tool.waitFor((executions) => executions.every((e) => e.finished || e.aborted), 1000);
    assert.equal((await h.assistantMessages(thread.id)).length, 0);
  });
});

describe('server-side tools: token budgets across the loop', () => {
  const h = new Harness(addTool());
  before(() => h.start());
  after(() => h.close());

  // A budget of 256 tokens (the least max_prompt_tokens the API takes): 100 tokens a turn reach it on the third turn
  // at the latest, while the first prompt (a few dozen tokens however it is counted) always fits.
  const budgets = [
    { budget: 'max_completion_tokens', usage: { prompt_tokens: 10, completion_tokens: 100 } },
    { budget: 'max_prompt_tokens', usage: { prompt_tokens: 100, completion_tokens: 5 } },
  ] as const;
  for (const { budget, usage } of budgets)
    test(`${budget}: incomplete after at most 3 model turns, usage summed over them`, async () => {
      h.upstream.setDefault(addCall(1, 2, usage));
      const { assistant, thread } = await h.setup();
      const seen = h.upstream.requests.length;
      const run = await h.client.beta.threads.runs.createAndPoll(thread.id, {
        assistant_id: assistant.id,
        [budget]: 256,
      });
      assert.equal(run.status, 'incomplete', `run ended ${run.status}: ${JSON.stringify(run.last_error)}`);
      assert.deepEqual(run.incomplete_details, { reason: budget });
      const turns = h.upstream.requests.length - seen;
      assert.ok(turns >= 1 && turns <= 3, `${turns} model turns`);
      assert.deepEqual(run.usage, {
        prompt_tokens: usage.prompt_tokens * turns,
        completion_tokens: usage.completion_tokens * turns,
        total_tokens: (usage.prompt_tokens + usage.completion_tokens) * turns,
      });
      const steps = await h.steps(thread.id, run.id);
      assert.ok(
        steps.every((s) => s.status !== 'in_progress'),
        `steps: ${JSON.stringify(steps.map((s) => s.status))}`,
      );
    });
});

describe('server-side tools: a bound on the rounds of calls a run makes in a row', () => {
  const h = new Harness(addTool(), { ASSISTD_MAX_TOOL_ROUNDS: '2' });
  before(() => h.start());
  after(() => h.close());

  /** The names of the tools a recorded request offered. */
  const offeredNames = (request: { body: { tools?: Array<{ function: { name: string } }> } }) =>
    (request.body.tools ?? []).map((t) => t.function.name);

  test('after two rounds the model may call no tool (tool_choice none), is told to answer, and answers', async () => {
    const { assistant, thread } = await h.setup();
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(addCall(1, 2), addCall(3, 4), { text: ['3 and 7.'] });
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', `run ended ${run.status}: ${JSON.stringify(run.last_error)}`);
    const requests = h.upstream.requests.slice(seen);
    // The tools stay declared (some endpoints refuse a history of tool calls without them); none may be called.
    assert.deepEqual(requests.map(offeredNames), [['add'], ['add'], ['add']]);
    assert.deepEqual(
      requests.map((r) => r.body.tool_choice),
      ['auto', 'auto', 'none'],
    );
    const system = (requests[2]!.body.messages as ChatMessage[])[0]!;
    assert.equal(system.role, 'system');
    assert.match(String(system.content), /call no tool now/);
    assert.doesNotMatch(String((requests[0]!.body.messages as ChatMessage[])[0]!.content), /call no tool/);
    const steps = await h.steps(thread.id, run.id);
    assert.deepEqual(
      steps.map((s) => [s.type, s.status]),
      [
        ['tool_calls', 'completed'],
        ['tool_calls', 'completed'],
        ['message_creation', 'completed'],
      ],
    );
    assert.equal(textOf((await h.assistantMessages(thread.id))[0]), '3 and 7.');
  });

  test('a model that calls a tool even then fails the run, the call not executed, no step left in progress', async () => {
    const { assistant, thread } = await h.setup();
    const seen = h.upstream.requests.length;
    const executed = h.tool.executions.length;
    h.upstream.enqueue(addCall(1, 2), addCall(3, 4), addCall(5, 6));
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'failed');
    assert.equal(run.last_error?.code, 'server_error');
    assert.match(run.last_error!.message, /after 2 rounds of tool calls in a row/);
    assert.equal(h.upstream.requests.length - seen, 3);
    const steps = await h.steps(thread.id, run.id);
    assert.ok(
      steps.every((s) => TERMINAL_STEP.has(s.status)),
      `steps: ${JSON.stringify(steps.map((s) => s.status))}`,
    );
    // The third turn's call, of a tool it was not offered, was answered by the server, not executed.
    assert.equal(steps.length, 3);
    assert.equal(steps[2]!.status, 'failed');
    assert.equal(h.tool.executions.length - executed, 2, 'the third call was not executed');
  });

  test("the client's function outputs start the count again", async () => {
    const { assistant, thread } = await h.setup([CODE_INTERPRETER, lookup]);
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(addCall(1, 2), { toolCalls: [{ name: 'lookup', arguments: '{}' }] }, addCall(3, 4), {
      text: ['done'],
    });
    const paused = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(paused.status, 'requires_action', `run is ${paused.status}: ${JSON.stringify(paused.last_error)}`);
    const call = paused.required_action!.submit_tool_outputs.tool_calls[0]!;
    const run = await h.client.beta.threads.runs.submitToolOutputsAndPoll(paused.id, {
      thread_id: thread.id,
      tool_outputs: [{ tool_call_id: call.id, output: 'found' }],
    });
    assert.equal(run.status, 'completed', `run ended ${run.status}: ${JSON.stringify(run.last_error)}`);
    // Two rounds without the client in all, but not in a row: every turn is offered the tools.
    assert.deepEqual(h.upstream.requests.slice(seen).map(offeredNames), [
      ['add', 'lookup'],
      ['add', 'lookup'],
      ['add', 'lookup'],
      ['add', 'lookup'],
    ]);
  });
});

describe('server-side tools: what the model wrote before its calls, in the next turns', () => {
  const h = new Harness(addTool());
  before(() => h.start());
  after(() => h.close());

  /** A turn that writes `text`, then calls add(a, b): raw SSE, as an endpoint streams it. */
  function saidThenAdd(text: string, a: number, b: number) {
    const chunk = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'gpt-test', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const call = {
      index: 0,
      id: `up_${a}`,
      type: 'function',
      function: { name: 'add', arguments: JSON.stringify({ a, b }) },
    };
    return {
      raw: [
        chunk({ role: 'assistant', content: text }),
        chunk({ tool_calls: [call] }),
        chunk({}, 'tool_calls'),
        'data: [DONE]\n\n',
      ],
      contentType: 'text/event-stream',
    };
  }

  test("each text is sent with its turn's calls, in the order written, not all before every round", async () => {
    const { assistant, thread } = await h.setup();
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(saidThenAdd('Let me add 1 and 2.', 1, 2), saidThenAdd('Now 3 and 4.', 3, 4), {
      text: ['3 and 7.'],
    });
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', `run ended ${run.status}: ${JSON.stringify(run.last_error)}`);
    const texts = (await h.assistantMessages(thread.id)).map(textOf).reverse();
    assert.deepEqual(texts, ['Let me add 1 and 2.', 'Now 3 and 4.', '3 and 7.'], 'each is a message of the thread');

    const last = h.upstream.requests.slice(seen)[2]!.body.messages as ChatMessage[];
    const shape = last.map((m) => [m.role, m.content ?? null, m.tool_calls?.length ?? 0]);
    assert.deepEqual(shape, [
      ['system', 'Use add.', 0],
      ['user', 'What is 2 + 3, then 4 + 5?', 0],
      ['assistant', 'Let me add 1 and 2.', 1],
      ['tool', '3', 0],
      ['assistant', 'Now 3 and 4.', 1],
      ['tool', '7', 0],
    ]);
  });
});

describe("server-side tools: what a model sends beside its calls (its reasoning, Gemini's signatures) goes back with them", () => {
  const h = new Harness(addTool());
  before(() => h.start());
  after(() => h.close());

  /** A turn that reasons in `reasoning_content` (DeepSeek's thinking mode), then calls `name`: raw SSE. */
  function thinkThenCall(reasoning: string[], name: string, args: object, id: string) {
    const chunk = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'deepseek-test', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const call = { index: 0, id, type: 'function', function: { name, arguments: JSON.stringify(args) } };
    return {
      raw: [
        chunk({ role: 'assistant', content: null, reasoning_content: reasoning[0] }),
        ...reasoning.slice(1).map((piece) => chunk({ content: null, reasoning_content: piece })),
        chunk({ content: '', tool_calls: [call] }),
        chunk({}, 'tool_calls'),
        'data: [DONE]\n\n',
      ],
      contentType: 'text/event-stream',
    };
  }

  test('each tool-call turn carries its reasoning_content in the next turns; no client sees it', async () => {
    const { assistant, thread } = await h.setup([CODE_INTERPRETER, lookup]);
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(
      thinkThenCall(['I should add ', 'first.'], 'add', { a: 1, b: 2 }, 'up_1'),
      thinkThenCall(['Now look it up.'], 'lookup', {}, 'up_2'),
      { text: ['Done: 3.'] },
    );
    const paused = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(paused.status, 'requires_action', `run ended ${paused.status}: ${JSON.stringify(paused.last_error)}`);
    const second = h.upstream.requests.slice(seen)[1]!.body.messages as (ChatMessage & {
      reasoning_content?: string;
    })[];
    assert.deepEqual(
      second.map((m) => [m.role, m.reasoning_content ?? null]),
      [
        ['system', null],
        ['user', null],
        ['assistant', 'I should add first.'],
        ['tool', null],
      ],
    );

    const callId = paused.required_action!.submit_tool_outputs.tool_calls[0]!.id;
    const stream = h.client.beta.threads.runs.submitToolOutputsStream(paused.id, {
      thread_id: thread.id,
      tool_outputs: [{ tool_call_id: callId, output: 'found' }],
    });
    const frames: string[] = [];
    stream.on('event', (event) => frames.push(JSON.stringify(event)));
    const run = await stream.finalRun();
    assert.equal(run.status, 'completed', `run ended ${run.status}: ${JSON.stringify(run.last_error)}`);
    const third = h.upstream.requests.slice(seen)[2]!.body.messages as (ChatMessage & { reasoning_content?: string })[];
    assert.deepEqual(
      third.map((m) => [m.role, m.reasoning_content ?? null]),
      [
        ['system', null],
        ['user', null],
        ['assistant', 'I should add first.'],
        ['tool', null],
        ['assistant', 'Now look it up.'],
        ['tool', null],
      ],
    );
    assert.ok(!third.some((m) => 'reasoning' in m), 'the internal field name is not sent');

    // The reasoning is the model's own: not in the thread, the steps, or any streamed frame.
    const messages = await h.client.beta.threads.messages.list(thread.id);
    const steps = await h.client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id });
    for (const shown of [JSON.stringify(messages.data), JSON.stringify(steps.data), ...frames])
      assert.ok(!shown.includes('look it up') && !shown.includes('should add'), shown);
  });

  test("OpenRouter's reasoning and reasoning_details go back as they came, the details' pieces joined", async () => {
    const { assistant, thread } = await h.setup();
    const seen = h.upstream.requests.length;
    const frame = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const detail = (fields: object) => ({ type: 'reasoning.text', format: 'google-gemini-v1', index: 0, ...fields });
    h.upstream.enqueue(
      {
        contentType: 'text/event-stream',
        raw: [
          frame({ role: 'assistant', reasoning: 'Add them', reasoning_details: [detail({ text: 'Add them' })] }),
          frame({ reasoning: ' now.', reasoning_details: [detail({ text: ' now.' })] }),
          frame({
            reasoning_details: [
              {
                type: 'reasoning.encrypted',
                data: 'CiQB0e2Kb',
                id: 'tool_add_1',
                format: 'google-gemini-v1',
                index: 1,
              },
            ],
          }),
          frame({
            tool_calls: [
              { index: 0, id: 'tool_add_1', type: 'function', function: { name: 'add', arguments: '{"a":2,"b":3}' } },
            ],
          }),
          frame({}, 'tool_calls'),
          'data: [DONE]\n\n',
        ],
      },
      { text: ['5.'] },
    );
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const next = h.upstream.requests.slice(seen)[1]!.body.messages as Record<string, unknown>[];
    const calls = next.find((m) => m['tool_calls'])!;
    assert.equal(calls['reasoning'], 'Add them now.');
    assert.deepEqual(calls['reasoning_details'], [
      detail({ text: 'Add them now.' }),
      { type: 'reasoning.encrypted', data: 'CiQB0e2Kb', id: 'tool_add_1', format: 'google-gemini-v1', index: 1 },
    ]);
    assert.equal('reasoning_content' in calls, false, 'no field it did not send');
  });

  test("Gemini's thought signature on a call (extra_content) goes back on that call in the next turns", async () => {
    const { assistant, thread } = await h.setup([CODE_INTERPRETER, lookup]);
    const seen = h.upstream.requests.length;
    // As Google's OpenAI-compatible endpoint streams Gemini 3's calls: whole, no index, the signature beside them.
    const frame = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const signed = (id: string, name: string, args: object, signature?: string) => ({
      id,
      type: 'function',
      function: { name, arguments: JSON.stringify(args) },
      ...(signature === undefined ? {} : { extra_content: { google: { thought_signature: signature } } }),
    });
    const turn = (...calls: object[]) => ({
      contentType: 'text/event-stream',
      raw: [frame({ role: 'assistant', tool_calls: calls }), frame({}, 'tool_calls'), 'data: [DONE]\n\n'],
    });
    h.upstream.enqueue(
      turn(signed('g1', 'add', { a: 1, b: 2 }, 'EoYCCoMCARFNMg')),
      turn(signed('g2', 'lookup', {}, 'Ep8BCpwBAXLI2n'), signed('g3', 'add', { a: 2, b: 2 })),
      { text: ['Done.'] },
    );
    const paused = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(paused.status, 'requires_action', JSON.stringify(paused.last_error));
    const callId = paused.required_action!.submit_tool_outputs.tool_calls[0]!.id;
    const run = await h.client.beta.threads.runs.submitToolOutputsAndPoll(paused.id, {
      thread_id: thread.id,
      tool_outputs: [{ tool_call_id: callId, output: 'found' }],
    });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const last = h.upstream.requests.slice(seen)[2]!.body.messages as ChatMessage[];
    const calls = last
      .filter((m) => m.tool_calls)
      .map((m) => (m.tool_calls as Array<{ extra_content?: unknown }>).map((c) => c.extra_content ?? null));
    assert.deepEqual(calls, [
      [{ google: { thought_signature: 'EoYCCoMCARFNMg' } }],
      [{ google: { thought_signature: 'Ep8BCpwBAXLI2n' } }, null],
    ]);
    assert.ok(!JSON.stringify(last).includes('"extra"'), 'the internal field name is not sent');
    const steps = await h.client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id });
    assert.ok(!JSON.stringify(steps.data).includes('thought_signature'), 'clients are not shown it');
  });

  test('an endpoint that writes no reasoning is sent none', async () => {
    const { assistant, thread } = await h.setup();
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(addCall(2, 3), { text: ['5.'] });
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed');
    const second = h.upstream.requests.slice(seen)[1]!.body.messages as object[];
    assert.ok(!second.some((m) => 'reasoning_content' in m || 'reasoning' in m), JSON.stringify(second));
  });
});
