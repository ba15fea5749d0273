import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { FakeUpstream, type RecordedRequest, type Reply } from '../support/fake-upstream.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

type ChatMessage = { role: string; content: unknown; tool_calls?: unknown[]; tool_call_id?: string };

const orderTool = {
  type: 'function' as const,
  function: {
    name: 'calculate_order_total',
    description: 'Total price of an order',
    parameters: {
      type: 'object',
      properties: { items: { type: 'array', items: { type: 'object' } } },
      required: ['items'],
    },
  },
};

/** The scripted model: asks for the tool, then answers from the tool's output. */
function orderModel(request: RecordedRequest): Reply {
  const messages = request.body.messages as ChatMessage[];
  const last = messages.at(-1)!;
  if (last.role === 'tool') return { text: ['The total ', `is ${String(last.content)}.`] };
  return { toolCalls: [{ name: 'calculate_order_total', arguments: '{"items":[{"sku":"A","qty":2}]}' }] };
}

/** A run of `content` under `maxPromptTokens` ends incomplete (max_prompt_tokens) without asking the model. */
async function assertPromptOverBudget(
  client: OpenAI,
  upstream: FakeUpstream,
  assistantId: string,
  content: string,
  maxPromptTokens: number,
) {
  const thread = await client.beta.threads.create({ messages: [{ role: 'user', content }] });
  const before = upstream.requests.length;
  const run = await client.beta.threads.runs.createAndPoll(thread.id, {
    assistant_id: assistantId,
    max_prompt_tokens: maxPromptTokens,
  });
  assert.equal(run.status, 'incomplete');
  assert.deepEqual(run.incomplete_details, { reason: 'max_prompt_tokens' });
  assert.equal(upstream.requests.length, before);
}

describe('run engine', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let client: OpenAI;
  let recorder: ValidatingFetch;

  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_UPSTREAM_MAX_RETRIES: '1' });
    recorder = createValidatingFetch();
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
  });
  after(async () => {
    await server.close();
    await upstream.close();
    recorder.assertNoViolations({ all: true });
  });

  async function assistantWith(tools: OpenAI.Beta.AssistantTool[] = [], instructions = 'You are a shop assistant.') {
    return client.beta.assistants.create({ model: 'gpt-test', instructions, tools });
  }

  test('the order-total flow: requires_action, tool outputs, then the answer built from them', async () => {
    upstream.setDefault(orderModel);
    const assistant = await assistantWith([orderTool]);
    const thread = await client.beta.threads.create({
      messages: [{ role: 'user', content: 'What is the total of 2 × A?' }],
    });
    const paused = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(paused.status, 'requires_action');
    const calls = paused.required_action!.submit_tool_outputs.tool_calls;
    assert.equal(calls.length, 1);
    assert.match(calls[0]!.id, /^call_/);
    assert.equal(calls[0]!.function.name, 'calculate_order_total');
    assert.deepEqual(JSON.parse(calls[0]!.function.arguments), { items: [{ sku: 'A', qty: 2 }] });
    assert.equal(paused.usage, null);

    const done = await client.beta.threads.runs.submitToolOutputsAndPoll(paused.id, {
      thread_id: thread.id,
      tool_outputs: [{ tool_call_id: calls[0]!.id, output: '$42.00' }],
    });
    assert.equal(done.status, 'completed');
    assert.ok(done.usage && done.usage.total_tokens > 0);
    assert.ok(done.completed_at);
    assert.equal(done.expires_at, null);

    const [newest] = (await client.beta.threads.messages.list(thread.id, { limit: 1 })).data;
    assert.equal(newest!.role, 'assistant');
    assert.equal(newest!.run_id, done.id);
    assert.equal(newest!.assistant_id, assistant.id);
    assert.deepEqual(newest!.content, [{ type: 'text', text: { value: 'The total is $42.00.', annotations: [] } }]);

    const steps = (await client.beta.threads.runs.steps.list(done.id, { thread_id: thread.id, order: 'asc' })).data;
    assert.deepEqual(
      steps.map((s) => [s.type, s.status]),
      [
        ['tool_calls', 'completed'],
        ['message_creation', 'completed'],
      ],
    );
    const toolStep = steps[0]!.step_details as OpenAI.Beta.Threads.Runs.ToolCallsStepDetails;
    const fn = toolStep.tool_calls[0] as OpenAI.Beta.Threads.Runs.FunctionToolCall;
    assert.equal(fn.function.output, '$42.00');
    assert.ok(steps.every((s) => s.usage !== null));

    // What assistd sent upstream on the second turn: system, user, the assistant's tool call, the tool's output.
    const second = upstream.requests.at(-1)!.body.messages as ChatMessage[];
    assert.deepEqual(
      second.map((m) => m.role),
      ['system', 'user', 'assistant', 'tool'],
    );
    assert.equal(second[0]!.content, 'You are a shop assistant.');
    assert.equal(second[3]!.tool_call_id, calls[0]!.id);
    assert.equal(upstream.requests.at(-1)!.body.tools?.[0]?.function.name, 'calculate_order_total');
  });

  test('a function defined without parameters is offered with an empty object schema, a strict of null without it', async () => {
    // llama.cpp's server refuses a function without parameters (OpenAI took it); Python programs dump `strict: None`.
    const assistant = await assistantWith([{ type: 'function', function: { name: 'get_time' } }]);
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Time?' }] });
    upstream.enqueue({ text: 'Noon.' }, { text: 'Noon.' });
    await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.deepEqual(upstream.requests.at(-1)!.body.tools, [
      { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } },
    ]);
    const dumped = { name: 'get_date', description: 'Today.', strict: null } as unknown as OpenAI.FunctionDefinition;
    await client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistant.id,
      tools: [{ type: 'function', function: dumped }],
    });
    assert.deepEqual(upstream.requests.at(-1)!.body.tools, [
      {
        type: 'function',
        function: { name: 'get_date', description: 'Today.', parameters: { type: 'object', properties: {} } },
      },
    ]);
  });

  test("every step shows its run's deadline as expires_at, streamed and listed, as OpenAI showed it", async () => {
    // openai-php reads a step's `expires_at` (what OpenAI sent), and fails without it; the spec names `expired_at`.
    const assistant = await assistantWith([orderTool]);
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Go' }] });
    upstream.enqueue({ toolCalls: [{ name: 'calculate_order_total', arguments: '{}' }] }, { text: 'Done.' });
    const deadlines: unknown[] = [];
    const watch = (stream: ReturnType<typeof client.beta.threads.runs.stream>) =>
      stream.on('event', ({ event, data }) => {
        if (event.startsWith('thread.run.step.') && event !== 'thread.run.step.delta')
          deadlines.push((data as unknown as { expires_at: unknown }).expires_at);
      });
    const paused = await watch(client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id })).finalRun();
    const deadline = paused.expires_at;
    assert.equal(typeof deadline, 'number');
    const [call] = paused.required_action!.submit_tool_outputs.tool_calls;
    const done = await watch(
      client.beta.threads.runs.submitToolOutputsStream(paused.id, {
        thread_id: thread.id,
        tool_outputs: [{ tool_call_id: call!.id, output: '$1' }],
      }),
    ).finalRun();
    assert.equal(done.status, 'completed');
    assert.ok(deadlines.length >= 5, JSON.stringify(deadlines));
    assert.ok(
      deadlines.every((d) => d === deadline),
      JSON.stringify({ deadline, deadlines }),
    );
    const steps = await client.beta.threads.runs.steps.list(done.id, { thread_id: thread.id });
    assert.deepEqual(
      steps.data.map((step) => [step.status, (step as unknown as { expires_at: unknown }).expires_at]),
      [
        ['completed', deadline],
        ['completed', deadline],
      ],
    );
  });

  test('two requires_action rounds in one run, and two parallel calls in one round', async () => {
    const assistant = await assistantWith([
      orderTool,
      { type: 'function', function: { name: 'get_tax', parameters: { type: 'object', properties: {} } } },
    ]);
    upstream.enqueue(
      { toolCalls: [{ name: 'calculate_order_total', arguments: '{"items":[]}' }] },
      {
        toolCalls: [
          { name: 'get_tax', arguments: '{}' },
          { name: 'calculate_order_total', arguments: '{"items":[1]}' },
        ],
      },
      { text: 'All done.' },
    );
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Go' }] });
    const first = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(first.status, 'requires_action');
    const [call] = first.required_action!.submit_tool_outputs.tool_calls;
    const second = await client.beta.threads.runs.submitToolOutputsAndPoll(first.id, {
      thread_id: thread.id,
      tool_outputs: [{ tool_call_id: call!.id, output: '0' }],
    });
    assert.equal(second.status, 'requires_action');
    const parallel = second.required_action!.submit_tool_outputs.tool_calls;
    assert.deepEqual(
      parallel.map((c) => c.function.name),
      ['get_tax', 'calculate_order_total'],
    );
    const done = await client.beta.threads.runs.submitToolOutputsAndPoll(first.id, {
      thread_id: thread.id,
      tool_outputs: parallel.map((c) => ({ tool_call_id: c.id, output: 'ok' })),
    });
    assert.equal(done.status, 'completed');
    const steps = (await client.beta.threads.runs.steps.list(first.id, { thread_id: thread.id, order: 'asc' })).data;
    assert.deepEqual(
      steps.map((s) => s.type),
      ['tool_calls', 'tool_calls', 'message_creation'],
    );
    const last = upstream.requests.at(-1)!.body.messages as ChatMessage[];
    assert.deepEqual(
      last.map((m) => m.role),
      ['system', 'user', 'assistant', 'tool', 'assistant', 'tool', 'tool'],
    );
  });

  test('parallel_tool_calls: false keeps at most one call, and tells the upstream', async () => {
    const assistant = await assistantWith([orderTool]);
    upstream.enqueue({
      toolCalls: [
        { name: 'calculate_order_total', arguments: '{}' },
        { name: 'calculate_order_total', arguments: '{"second":true}' },
      ],
    });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Go' }] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistant.id,
      parallel_tool_calls: false,
    });
    assert.equal(run.required_action!.submit_tool_outputs.tool_calls.length, 1);
    assert.equal(upstream.requests.at(-1)!.body.parallel_tool_calls, false);
    await client.beta.threads.runs.cancel(run.id, { thread_id: thread.id });
  });

  test('a function called with no arguments at all is given {}, streamed and stored, as OpenAI sends', async () => {
    // Some endpoints send `"arguments": ""` for a function without parameters; clients JSON.parse the arguments.
    const assistant = await assistantWith([orderTool]);
    upstream.enqueue({ toolCalls: [{ name: 'calculate_order_total', arguments: '' }] });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Go' }] });
    const stream = client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id });
    const done: OpenAI.Beta.Threads.Runs.ToolCall[] = [];
    stream.on('toolCallDone', (call) => done.push(call));
    const run = await stream.finalRun();
    assert.equal(run.status, 'requires_action');
    const [call] = run.required_action!.submit_tool_outputs.tool_calls;
    assert.equal(call!.function.arguments, '{}');
    assert.equal(done.length, 1);
    assert.equal(done[0]!.type === 'function' && done[0]!.function.arguments, '{}', 'the deltas add up to {}');
    const steps = await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id });
    const details = steps.data[0]!.step_details as OpenAI.Beta.Threads.Runs.ToolCallsStepDetails;
    assert.equal(details.tool_calls[0]!.type === 'function' && details.tool_calls[0]!.function.arguments, '{}');
    await client.beta.threads.runs.cancel(run.id, { thread_id: thread.id });
  });

  test('a call of a function the model was not offered is answered with an error, never asked of the client', async () => {
    const assistant = await assistantWith([orderTool]);
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Go' }] });
    // With a real one: the client is asked for that one only.
    upstream.enqueue(
      {
        toolCalls: [
          { name: 'python', arguments: '{"code":"1+1"}' },
          { name: 'calculate_order_total', arguments: '{}' },
        ],
      },
      { text: 'Done.' },
    );
    const paused = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(paused.status, 'requires_action');
    const asked = paused.required_action!.submit_tool_outputs.tool_calls;
    assert.deepEqual(
      asked.map((c) => c.function.name),
      ['calculate_order_total'],
    );
    // Semantic Kernel (.NET) reads the calls to execute from the step in progress: the same ones.
    const open = (await client.beta.threads.runs.steps.list(paused.id, { thread_id: thread.id })).data[0]!;
    assert.equal(open.status, 'in_progress');
    assert.deepEqual(
      (open.step_details as OpenAI.Beta.Threads.Runs.ToolCallsStepDetails).tool_calls.map((c) => c.id),
      asked.map((c) => c.id),
    );
    const done = await client.beta.threads.runs.submitToolOutputsAndPoll(paused.id, {
      thread_id: thread.id,
      tool_outputs: [{ tool_call_id: asked[0]!.id, output: '$1' }],
    });
    assert.equal(done.status, 'completed');
    const toolMessages = (upstream.requests.at(-1)!.body.messages as ChatMessage[]).filter((m) => m.role === 'tool');
    assert.deepEqual(
      toolMessages.map((m) => m.content),
      ["Error: there is no tool named 'python'. The tools are: calculate_order_total.", '$1'],
    );
    // The step shows only the call the client was asked for: Semantic Kernel fails on a function call it was not.
    const [step] = (await client.beta.threads.runs.steps.list(done.id, { thread_id: thread.id, order: 'asc' })).data;
    const calls = (step!.step_details as OpenAI.Beta.Threads.Runs.ToolCallsStepDetails).tool_calls;
    assert.deepEqual(
      calls.map((c) => c.type === 'function' && [c.id, c.function.name, c.function.output]),
      [[asked[0]!.id, 'calculate_order_total', '$1']],
    );
    const history = upstream.requests.at(-1)!.body.messages as ChatMessage[];
    const calling = history.find((m) => m.tool_calls !== undefined)!;
    assert.deepEqual(
      (calling.tool_calls as Array<{ function: { name: string } }>).map((c) => c.function.name),
      ['python', 'calculate_order_total'],
      'the model sees its calls as it wrote them',
    );

    // Only unknown ones, streamed: the step completes, showing no call, and the model answers, with no
    // requires_action at all. Semantic Kernel's streaming takes any function call delta for one to execute.
    upstream.enqueue({ toolCalls: [{ name: 'calculate_total', arguments: '{}' }] }, { text: 'Sorry.' });
    const events: string[] = [];
    const stream = client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id });
    stream.on('event', ({ event }) => events.push(event));
    const run = await stream.finalRun();
    assert.equal(run.status, 'completed');
    assert.ok(!events.includes('thread.run.requires_action'), events.join(' '));
    assert.ok(!events.includes('thread.run.step.delta'), events.join(' '));
    assert.ok(events.includes('thread.run.step.completed'));
    const shown = (await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id, order: 'asc' })).data;
    assert.deepEqual(
      shown.map((s) => [s.type, s.step_details.type === 'tool_calls' ? s.step_details.tool_calls.length : 1]),
      [
        ['tool_calls', 0],
        ['message_creation', 1],
      ],
    );
    const last = upstream.requests.at(-1)!.body.messages as ChatMessage[];
    assert.equal(
      last.at(-1)!.content,
      "Error: there is no tool named 'calculate_total'. The tools are: calculate_order_total.",
    );
  });

  test('a stray call written before a real one is not streamed, and the real one is the first call of the step', async () => {
    const assistant = await assistantWith([orderTool]);
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Go' }] });
    upstream.enqueue({
      toolCalls: [
        { name: 'python', arguments: '{"code":"1+1"}' },
        { name: 'calculate_order_total', arguments: '{"items":[]}' },
      ],
    });
    const stream = client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id });
    const indexes: number[] = [];
    const created: string[] = [];
    stream.on('event', ({ event, data }) => {
      if (event !== 'thread.run.step.delta') return;
      for (const call of (data.delta.step_details as { tool_calls: Array<{ index: number }> }).tool_calls)
        indexes.push(call.index);
    });
    stream.on('toolCallCreated', (call) => created.push(call.type === 'function' ? call.function.name : call.type));
    const run = await stream.finalRun();
    assert.equal(run.status, 'requires_action');
    assert.deepEqual(created, ['calculate_order_total']);
    assert.ok(indexes.length > 0 && indexes.every((i) => i === 0), JSON.stringify(indexes));
    const [call] = run.required_action!.submit_tool_outputs.tool_calls;
    assert.equal(call!.function.arguments, '{"items":[]}');
    await client.beta.threads.runs.cancel(run.id, { thread_id: thread.id });
  });

  test('a turn whose calls the server answered stays completed, its outputs kept, when the run ends before the next turn', async () => {
    // The turn spends the whole max_completion_tokens: the run ends incomplete before a next turn is asked for.
    const assistant = await assistantWith([orderTool]);
    upstream.enqueue({
      toolCalls: [{ name: 'python', arguments: '{"code":"1+1"}' }],
      usage: { prompt_tokens: 20, completion_tokens: 300 },
    });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Go' }] });
    const seen = upstream.requests.length;
    const run = await client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistant.id,
      max_completion_tokens: 256,
    });
    assert.equal(run.status, 'incomplete', `run ended ${run.status}: ${JSON.stringify(run.last_error)}`);
    assert.deepEqual(run.incomplete_details, { reason: 'max_completion_tokens' });
    assert.equal(upstream.requests.length - seen, 1);
    const [step] = (await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id })).data;
    assert.equal(step!.status, 'completed');
    assert.deepEqual(step!.usage, { prompt_tokens: 20, completion_tokens: 300, total_tokens: 320 });
    assert.deepEqual((step!.step_details as OpenAI.Beta.Threads.Runs.ToolCallsStepDetails).tool_calls, []);
  });

  test('tool outputs must cover every pending call exactly once', async () => {
    const assistant = await assistantWith([orderTool]);
    upstream.enqueue({
      toolCalls: [
        { name: 'calculate_order_total', arguments: '{}' },
        { name: 'calculate_order_total', arguments: '{}' },
      ],
    });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Go' }] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    const [a, b] = run.required_action!.submit_tool_outputs.tool_calls;
    const submit = (tool_outputs: Array<{ tool_call_id: string; output: string }>) =>
      server.api.post(`/v1/threads/${thread.id}/runs/${run.id}/submit_tool_outputs`, { tool_outputs });
    for (const [outputs, pattern] of [
      [[{ tool_call_id: a!.id, output: '1' }], new RegExp(`missing outputs for tool call ids ${b!.id}`)],
      [
        [
          { tool_call_id: a!.id, output: '1' },
          { tool_call_id: b!.id, output: '2' },
          { tool_call_id: 'call_nope', output: '3' },
        ],
        /unknown tool call ids call_nope/,
      ],
      [
        [
          { tool_call_id: a!.id, output: '1' },
          { tool_call_id: a!.id, output: '1' },
          { tool_call_id: b!.id, output: '2' },
        ],
        new RegExp(`more than one output for tool call ids ${a!.id}`),
      ],
    ] as const) {
      const response = await submit([...outputs]);
      assert.equal(response.status, 400);
      const error = response.body.error as { message: string; param: string; code: string };
      assert.match(error.message, pattern);
      assert.equal(error.param, 'tool_outputs');
    }
    const still = await client.beta.threads.runs.retrieve(run.id, { thread_id: thread.id });
    assert.equal(still.status, 'requires_action');
    const ok = await submit([
      { tool_call_id: a!.id, output: '1' },
      { tool_call_id: b!.id, output: '2' },
    ]);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.status, 'queued');
    const again = await submit([{ tool_call_id: a!.id, output: '1' }]);
    assert.equal(again.status, 400);
    assert.match((again.body.error as { message: string }).message, /do not accept tool outputs/);
  });

  test('two submissions of the same outputs at once: one is taken, the other is the official 400', async () => {
    const assistant = await assistantWith([orderTool]);
    upstream.enqueue({ toolCalls: [{ name: 'calculate_order_total', arguments: '{}' }] }, { text: 'Total: 3' });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Go' }] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    const [call] = run.required_action!.submit_tool_outputs.tool_calls;
    const submit = () =>
      server.api.post(`/v1/threads/${thread.id}/runs/${run.id}/submit_tool_outputs`, {
        tool_outputs: [{ tool_call_id: call!.id, output: '3' }],
      });
    // The loser read the run while it still required action; the winner commits before the loser reads its steps
    // (as another process may, between two statements).
    const store = server.server.store;
    const runSteps = store.runSteps.bind(store);
    let winner: Promise<Awaited<ReturnType<typeof submit>>> | undefined;
    store.runSteps = async (...args) => {
      if (!winner) {
        store.runSteps = runSteps;
        winner = submit();
        await winner;
      }
      return runSteps(...args);
    };
    let loser: Awaited<ReturnType<typeof submit>>;
    try {
      loser = await submit();
    } finally {
      store.runSteps = runSteps;
    }
    assert.ok(winner, 'the race was staged');
    assert.equal((await winner).status, 200);
    assert.equal(loser.status, 400, JSON.stringify(loser.body));
    assert.match(
      (loser.body.error as { message: string }).message,
      /^Runs in status "\w+" do not accept tool outputs\.$/,
    );
    const done = await client.beta.threads.runs.poll(run.id, { thread_id: thread.id });
    assert.equal(done.status, 'completed');
  });

  /**
   * A run that pauses twice: `stage(submitFirst)` patches the store so that a late submission of the first pause's
   * outputs is overtaken, at the patched point, by the first pause's own submission and the run's second pause.
   * The late one must be refused, never taken as the answer to the second pause, which stays pending.
   */
  async function overtakenSubmission(patch: 'runSteps' | 'commitRun') {
    const assistant = await assistantWith([orderTool]);
    upstream.enqueue(
      { toolCalls: [{ name: 'calculate_order_total', arguments: '{"n":1}' }] },
      { toolCalls: [{ name: 'calculate_order_total', arguments: '{"n":2}' }] },
      { text: 'Total: 3' },
    );
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Go' }] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    const [first] = run.required_action!.submit_tool_outputs.tool_calls;
    const submit = (id: string) =>
      server.api.post(`/v1/threads/${thread.id}/runs/${run.id}/submit_tool_outputs`, {
        tool_outputs: [{ tool_call_id: id, output: '3' }],
      });
    const store = server.server.store;
    const original = store[patch].bind(store) as (...args: unknown[]) => Promise<unknown>;
    let second: OpenAI.Beta.Threads.Run | undefined;
    (store as unknown as Record<string, unknown>)[patch] = async (...args: unknown[]) => {
      if (!second) {
        (store as unknown as Record<string, unknown>)[patch] = original;
        assert.equal((await submit(first!.id)).status, 200);
        second = await client.beta.threads.runs.poll(run.id, { thread_id: thread.id });
      }
      return original(...args);
    };
    let late: Awaited<ReturnType<typeof submit>>;
    try {
      late = await submit(first!.id);
    } finally {
      (store as unknown as Record<string, unknown>)[patch] = original;
    }
    assert.equal(second?.status, 'requires_action', 'the race was staged');
    const [pending] = second!.required_action!.submit_tool_outputs.tool_calls;
    assert.notEqual(pending!.id, first!.id);
    assert.equal(late.status, 400, JSON.stringify(late.body));
    assert.match((late.body.error as { message: string }).message, /unknown tool call ids/);
    const still = await client.beta.threads.runs.retrieve(run.id, { thread_id: thread.id });
    assert.equal(still.status, 'requires_action');
    assert.deepEqual(still.required_action, second!.required_action);
    const done = await client.beta.threads.runs.submitToolOutputsAndPoll(run.id, {
      thread_id: thread.id,
      tool_outputs: [{ tool_call_id: pending!.id, output: '3' }],
    });
    assert.equal(done.status, 'completed');
    const steps = await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id, order: 'asc' });
    const outputs = steps.data.flatMap((step) =>
      step.step_details.type === 'tool_calls'
        ? step.step_details.tool_calls.map((call) => (call.type === 'function' ? call.function.output : null))
        : [],
    );
    assert.deepEqual(outputs, ['3', '3']);
  }

  test("a submission overtaken by the run's next pause before it reads its steps is refused", async () => {
    await overtakenSubmission('runSteps');
  });

  test("a submission overtaken by the run's next pause before it commits is refused", async () => {
    await overtakenSubmission('commitRun');
  });

  test('cancel during a slow upstream reply: cancelled at once, upstream aborted, partial text kept', async () => {
    const assistant = await assistantWith();
    // The story's end is held until the test ends: a cancel that waited for the reply to finish would never end.
    let release = () => {};
    const holdLast = new Promise<void>((resolve) => {
      release = resolve;
    });
    upstream.enqueue({ text: ['Once ', 'upon ', 'a ', 'time ', 'there ', 'was '], chunkDelayMs: 100, holdLast });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Tell a story' }] });
    const seen = upstream.requests.length;
    const run = await client.beta.threads.runs.create(thread.id, { assistant_id: assistant.id });
    const request = (await upstream.waitForRequests(seen + 1)).at(-1);
    await new Promise((r) => setTimeout(r, 300)); // a chunk or two arrived
    const cancelling = await client.beta.threads.runs.cancel(run.id, { thread_id: thread.id });
    assert.equal(cancelling.status, 'cancelling');
    const final = await client.beta.threads.runs.poll(run.id, { thread_id: thread.id }).finally(release);
    assert.equal(final.status, 'cancelled');
    assert.ok(final.cancelled_at);
    assert.equal(await upstream.waitForEnd(request!), 'aborted');
    const [message] = (await client.beta.threads.messages.list(thread.id, { limit: 1, run_id: run.id })).data;
    assert.equal(message!.status, 'incomplete');
    assert.deepEqual(message!.incomplete_details, { reason: 'run_cancelled' });
    assert.match((message!.content[0] as OpenAI.Beta.Threads.TextContentBlock).text.value, /^Once /);
    // The tokens the cut-short turn used count (estimated: the upstream reports usage only at its end), on the run
    // and on its step.
    assert.ok(
      final.usage && final.usage.prompt_tokens > 5 && final.usage.completion_tokens >= 1,
      JSON.stringify(final.usage),
    );
    const [step] = (await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id })).data;
    assert.deepEqual(step!.usage, final.usage);

    const again = await server.api.post(`/v1/threads/${thread.id}/runs/${run.id}/cancel`);
    assert.equal(again.status, 400);
    assert.equal((again.body.error as { message: string }).message, "Cannot cancel run with status 'cancelled'.");
  });

  test('cancelling a run waiting for tool outputs cancels it and its step; a completed run cannot be cancelled', async () => {
    const assistant = await assistantWith([orderTool]);
    upstream.enqueue({
      toolCalls: [{ name: 'calculate_order_total', arguments: '{}' }],
      usage: { prompt_tokens: 18, completion_tokens: 1 },
    });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Go' }] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    const cancelled = await client.beta.threads.runs.cancel(run.id, { thread_id: thread.id });
    assert.equal(cancelled.status, 'cancelling');
    const final = await client.beta.threads.runs.retrieve(run.id, { thread_id: thread.id });
    assert.equal(final.status, 'cancelled');
    const [step] = (await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id })).data;
    assert.equal(step!.status, 'cancelled');
    const turnUsage = { prompt_tokens: 18, completion_tokens: 1, total_tokens: 19 };
    assert.deepEqual(final.usage, turnUsage);
    assert.deepEqual(
      step!.usage,
      turnUsage,
      "the ended step keeps its model turn's usage: the run's is its steps' sum",
    );

    upstream.enqueue({ text: 'hi' });
    const completed = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(completed.status, 'completed');
    const response = await server.api.post(`/v1/threads/${thread.id}/runs/${completed.id}/cancel`);
    assert.equal(response.status, 400);
    assert.equal((response.body.error as { message: string }).message, "Cannot cancel run with status 'completed'.");
  });

  test('the thread lock: while a run is active no other run starts and no message is added', async () => {
    const assistant = await assistantWith([orderTool]);
    upstream.enqueue({ toolCalls: [{ name: 'calculate_order_total', arguments: '{}' }] });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Go' }] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    const second = await server.api.post(`/v1/threads/${thread.id}/runs`, { assistant_id: assistant.id });
    assert.equal(second.status, 400);
    assert.equal(
      (second.body.error as { message: string }).message,
      `Thread ${thread.id} already has an active run ${run.id}.`,
    );
    const message = await server.api.post(`/v1/threads/${thread.id}/messages`, { role: 'user', content: 'more' });
    assert.equal(message.status, 400);
    assert.equal(
      (message.body.error as { message: string }).message,
      `Can't add messages to ${thread.id} while a run ${run.id} is active.`,
    );
    await client.beta.threads.runs.cancel(run.id, { thread_id: thread.id });
  });

  test('50 concurrent run creations on one thread: exactly one succeeds', async () => {
    const assistant = await assistantWith([orderTool]);
    upstream.setDefault(orderModel);
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Go' }] });
    const responses = await Promise.all(
      Array.from({ length: 50 }, () =>
        server.api.post(`/v1/threads/${thread.id}/runs`, { assistant_id: assistant.id }),
      ),
    );
    const statuses = responses.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 200).length, 1);
    assert.equal(statuses.filter((s) => s === 400).length, 49);
    const winner = responses.find((r) => r.status === 200)!.body.id as string;
    const final = await client.beta.threads.runs.poll(winner, { thread_id: thread.id });
    if (final.status === 'requires_action') await client.beta.threads.runs.cancel(winner, { thread_id: thread.id });
  });

  test('truncation last_messages: 2 sends the system message and exactly the last 2 messages', async () => {
    upstream.setDefault({ text: 'ok' });
    const assistant = await assistantWith();
    const thread = await client.beta.threads.create({
      messages: Array.from({ length: 10 }, (_, i) => ({ role: 'user' as const, content: `message ${i}` })),
    });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistant.id,
      truncation_strategy: { type: 'last_messages', last_messages: 2 },
    });
    assert.equal(run.status, 'completed');
    assert.deepEqual(run.truncation_strategy, { type: 'last_messages', last_messages: 2 });
    const sent = upstream.requests.at(-1)!.body.messages as ChatMessage[];
    assert.deepEqual(sent, [
      { role: 'system', content: 'You are a shop assistant.' },
      { role: 'user', content: 'message 8' },
      { role: 'user', content: 'message 9' },
    ]);
  });

  test('run options: instructions replace, additional_instructions append, additional_messages join the thread', async () => {
    upstream.setDefault({ text: 'ok', usage: { prompt_tokens: 30, completion_tokens: 2 } });
    const assistant = await assistantWith([], 'Base.');
    const thread = await client.beta.threads.create();
    const run = await client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistant.id,
      additional_instructions: 'Also be kind.',
      additional_messages: [{ role: 'user', content: 'Hello there' }],
      temperature: 0.3,
      reasoning_effort: 'high',
      metadata: { k: 'v' },
    });
    assert.equal(run.instructions, 'Base.\n\nAlso be kind.');
    assert.equal(run.temperature, 0.3);
    assert.equal((run as unknown as { reasoning_effort: string }).reasoning_effort, 'high');
    assert.deepEqual(run.metadata, { k: 'v' });
    assert.deepEqual(run.usage, { prompt_tokens: 30, completion_tokens: 2, total_tokens: 32 });
    const body = upstream.requests.at(-1)!.body;
    assert.equal(body.temperature, 0.3);
    // top_p is the API's default (1, no truncation): not sent, so the backend's own default holds. Some models
    // refuse it (OpenAI's reasoning models), or refuse it beside temperature (Claude's).
    assert.equal(run.top_p, 1);
    assert.ok(!('top_p' in body), `top_p sent: ${body.top_p}`);
    assert.equal(body.reasoning_effort, 'high', "the run's reasoning_effort reaches the model");
    assert.deepEqual(body.messages, [
      { role: 'system', content: 'Base.\n\nAlso be kind.' },
      { role: 'user', content: 'Hello there' },
    ]);
    const replaced = await client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistant.id,
      instructions: 'Replaced.',
    });
    assert.equal(replaced.instructions, 'Replaced.');
    // An empty override keeps the assistant's: OpenAssistantGPT sends `instructions: ""` on every chat whose widget
    // gives no prompt of its own, and its chatbots kept their assistant's prompt.
    const unset = await client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistant.id,
      instructions: '',
    });
    assert.equal(unset.instructions, 'Base.');
    assert.deepEqual((upstream.requests.at(-1)!.body.messages as ChatMessage[])[0], {
      role: 'system',
      content: 'Base.',
    });
    assert.equal(upstream.requests.at(-1)!.body.reasoning_effort, undefined, 'none sent when the run has none');
    assert.deepEqual([replaced.temperature, replaced.top_p], [1, 1]);
    const sampling = Object.keys(upstream.requests.at(-1)!.body).filter((k) => k === 'temperature' || k === 'top_p');
    assert.deepEqual(sampling, [], "the API's defaults are not sent");
    const listed = await client.beta.threads.runs.list(thread.id);
    assert.deepEqual(
      listed.data.map((r) => r.id),
      [unset.id, replaced.id, run.id],
    );
    const modified = await client.beta.threads.runs.update(run.id, { thread_id: thread.id, metadata: { k: 'w' } });
    assert.deepEqual(modified.metadata, { k: 'w' });
  });

  test('max_completion_tokens reached → incomplete run and an incomplete message', async () => {
    upstream.setDefault({
      text: 'a long answer',
      finishReason: 'length',
      usage: { prompt_tokens: 20, completion_tokens: 16 },
    });
    const assistant = await assistantWith();
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Write a lot' }] });
    // 16, below the schema's minimum of 256, as ruby-openai's README sends it and api.openai.com took it.
    const run = await client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistant.id,
      max_prompt_tokens: 256,
      max_completion_tokens: 16,
    });
    assert.equal(run.status, 'incomplete');
    assert.deepEqual(run.incomplete_details, { reason: 'max_completion_tokens' });
    assert.equal(upstream.requests.at(-1)!.body.max_tokens, 16);
    for (const [param, value] of [
      ['max_completion_tokens', 0],
      ['max_prompt_tokens', 255],
    ] as const)
      await assert.rejects(
        client.beta.threads.runs.create(thread.id, { assistant_id: assistant.id, [param]: value }),
        (error: InstanceType<typeof OpenAI.APIError>) => error.status === 400 && error.param === param,
      );
    const [message] = (await client.beta.threads.messages.list(thread.id, { limit: 1 })).data;
    assert.equal(message!.status, 'incomplete');
    assert.deepEqual(message!.incomplete_details, { reason: 'max_tokens' });
  });

  test('a tool call cut off by the token limit is never asked of the client: the run ends incomplete, or failed', async () => {
    const assistant = await assistantWith([orderTool]);
    const cut = { toolCalls: [{ name: 'calculate_order_total', arguments: '{"items": [{"sku": "A' }] };
    upstream.enqueue({ ...cut, finishReason: 'length', usage: { prompt_tokens: 100, completion_tokens: 256 } });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Total?' }] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistant.id,
      max_completion_tokens: 256,
    });
    assert.equal(run.status, 'incomplete');
    assert.deepEqual(run.incomplete_details, { reason: 'max_completion_tokens' });
    assert.equal(run.required_action, null);
    assert.deepEqual(run.usage, { prompt_tokens: 100, completion_tokens: 256, total_tokens: 356 });
    const [step] = (await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id })).data;
    assert.equal(step?.type, 'tool_calls');
    assert.notEqual(step?.status, 'in_progress');
    assert.deepEqual(step?.usage, run.usage);

    // Without a budget the limit was the backend's own: the run cannot go on, and says why.
    upstream.enqueue({ ...cut, finishReason: 'length', usage: { prompt_tokens: 100, completion_tokens: 50 } });
    const unbounded = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(unbounded.status, 'failed');
    assert.equal(unbounded.last_error?.code, 'server_error');
    assert.match(
      unbounded.last_error!.message,
      /cut off at its token limit \(finish_reason: length\) while it wrote its tool calls/,
    );
  });

  test('max_completion_tokens reached by a model that reports no usage: the run is incomplete all the same', async () => {
    // The answer's tokens are then counted with o200k, which may count fewer than the model's own tokenizer did:
    // what says the budget was reached is the model stopping at the max_tokens the run's budget set.
    upstream.setDefault({ text: 'a long answer', finishReason: 'length', usage: null });
    const assistant = await assistantWith();
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Write a lot' }] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistant.id,
      max_completion_tokens: 256,
    });
    assert.equal(upstream.requests.at(-1)!.body.max_tokens, 256);
    assert.equal(run.status, 'incomplete');
    assert.deepEqual(run.incomplete_details, { reason: 'max_completion_tokens' });
  });

  test('max_prompt_tokens too small for the prompt → incomplete without calling the model', async () => {
    await assertPromptOverBudget(client, upstream, (await assistantWith()).id, 'word '.repeat(400), 256);
  });

  test('upstream 500 on every try → failed with server_error; 429 → rate_limit_exceeded; 400 → invalid_prompt', async () => {
    const assistant = await assistantWith();
    for (const [reply, code] of [
      [{ status: 500, body: { error: { message: 'boom' } } }, 'server_error'],
      [
        { status: 429, body: { error: { message: 'slow down' } }, headers: { 'retry-after': '0' } },
        'rate_limit_exceeded',
      ],
      [{ status: 400, body: { error: { message: 'context length exceeded' } } }, 'invalid_prompt'],
    ] as const) {
      upstream.setDefault(reply);
      const before = upstream.requests.length;
      const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'hi' }] });
      const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
      assert.equal(run.status, 'failed');
      assert.equal(run.last_error?.code, code);
      assert.ok(run.failed_at);
      // ASSISTD_UPSTREAM_MAX_RETRIES=1: retryable errors are tried twice, the 400 once.
      assert.equal(upstream.requests.length - before, code === 'invalid_prompt' ? 1 : 2);
    }
    upstream.setDefault({ text: 'OK' });
  });

  test("a 429's retry-after is honoured before the next attempt", async () => {
    upstream.enqueue(
      { status: 429, body: { error: { message: 'slow down' } }, headers: { 'retry-after': '1' } },
      { text: 'ok' },
    );
    const assistant = await assistantWith();
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'hi' }] });
    const before = upstream.requests.length;
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed');
    const [first, second] = upstream.requests.slice(before);
    assert.ok(
      second!.receivedAt - first!.receivedAt >= 950,
      `retried after ${second!.receivedAt - first!.receivedAt} ms`,
    );
  });

  test('usage is counted with the tokenizer when the upstream reports none', async () => {
    upstream.enqueue({ text: 'hello world', usage: null });
    const assistant = await assistantWith([], '');
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'hello world' }] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    // o200k: "hello world" is 2 tokens; the prompt is one user message (3 + 1 role + 2) plus 3 for the reply.
    assert.deepEqual(run.usage, { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 });
  });

  test('a failure before any output is retried invisibly, and the run completes', async () => {
    upstream.enqueue({ resetAfterChunks: 0, text: ['never'] }, { text: 'whole answer' });
    const assistant = await assistantWith();
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'hi' }] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed');
    const messages = (await client.beta.threads.messages.list(thread.id)).data;
    assert.equal(messages.length, 2);
    assert.equal((messages[0]!.content[0] as OpenAI.Beta.Threads.TextContentBlock).text.value, 'whole answer');
  });

  test('a failure after text was produced fails the run and keeps the partial message as incomplete', async () => {
    upstream.enqueue({ resetAfterChunks: 3, text: ['par', 'tial', ' answer', ' lost'] });
    const assistant = await assistantWith();
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'hi' }] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'failed');
    assert.equal(run.last_error?.code, 'server_error');
    const [message] = (await client.beta.threads.messages.list(thread.id, { run_id: run.id })).data;
    assert.equal(message!.status, 'incomplete');
    assert.deepEqual(message!.incomplete_details, { reason: 'run_failed' });
    assert.match((message!.content[0] as OpenAI.Beta.Threads.TextContentBlock).text.value, /^par/);
    const [step] = (await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id })).data;
    assert.equal(step!.status, 'failed');
    assert.equal(step!.last_error?.code, 'server_error');
  });

  test('completed_at is when the answer ended, not when the model was asked', async () => {
    // The answer takes over a second to write, so its end falls in a later second than its start.
    upstream.enqueue({ text: ['Slow', ' answer', '.'], chunkDelayMs: 600 });
    const assistant = await assistantWith();
    const run = await client.beta.threads.createAndRunPoll({
      assistant_id: assistant.id,
      thread: { messages: [{ role: 'user', content: 'Take your time.' }] },
    });
    assert.equal(run.status, 'completed');
    assert.ok(run.completed_at! > run.started_at!, `completed_at ${run.completed_at}, started_at ${run.started_at}`);
    const [answer] = (await client.beta.threads.messages.list(run.thread_id, { run_id: run.id })).data;
    assert.ok(answer!.completed_at! > answer!.created_at, `message ${answer!.created_at}…${answer!.completed_at}`);
    const [step] = (await client.beta.threads.runs.steps.list(run.id, { thread_id: run.thread_id })).data;
    assert.ok(step!.completed_at! > step!.created_at, `step ${step!.created_at}…${step!.completed_at}`);
    assert.ok(run.completed_at! >= answer!.completed_at!);
  });

  test('createAndRunPoll creates the thread and runs it', async () => {
    upstream.setDefault({ text: 'Hi!' });
    const assistant = await assistantWith();
    const run = await client.beta.threads.createAndRunPoll({
      assistant_id: assistant.id,
      thread: { messages: [{ role: 'user', content: 'Hello' }], metadata: { via: 'createAndRun' } },
    });
    assert.equal(run.status, 'completed');
    const thread = await client.beta.threads.retrieve(run.thread_id);
    assert.deepEqual(thread.metadata, { via: 'createAndRun' });
    const messages = (await client.beta.threads.messages.list(run.thread_id, { order: 'asc' })).data;
    assert.deepEqual(
      messages.map((m) => m.role),
      ['user', 'assistant'],
    );
  });

  test('run errors: unknown assistant, unknown run, unknown thread', async () => {
    const thread = await client.beta.threads.create();
    const noAssistant = await server.api.post(`/v1/threads/${thread.id}/runs`, { assistant_id: 'asst_nope' });
    assert.equal(noAssistant.status, 404);
    assert.equal((noAssistant.body.error as { message: string }).message, "No assistant found with id 'asst_nope'.");
    assert.equal((await server.api.get(`/v1/threads/${thread.id}/runs/run_nope`)).status, 404);
    assert.equal((await server.api.get('/v1/threads/thread_nope/runs')).status, 404);
    assert.equal((await server.api.get(`/v1/threads/${thread.id}/runs/run_nope/steps`)).status, 404);
  });
});

describe('the context window: a 4,096-token model', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let client: OpenAI;
  const history = Array.from({ length: 6 }, (_, i) => ({
    role: 'user' as const,
    content: `message ${i}: ${'word '.repeat(300)}`,
  }));
  /** A function whose definition alone is about 2,500 tokens. */
  const bigTool = {
    type: 'function' as const,
    function: { name: 'lookup', description: 'detail '.repeat(2500), parameters: { type: 'object', properties: {} } },
  };

  before(async () => {
    upstream = await FakeUpstream.start();
    upstream.setDefault({ text: 'Done.' });
    server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_CONTEXT_WINDOW: '4096' });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0 });
  });
  after(async () => {
    await server.close();
    await upstream.close();
  });

  test('max_completion_tokens above the window bounds the answers, and reserves no more than usual', async () => {
    const assistant = await client.beta.assistants.create({ model: 'gpt-test' });
    for (const budget of [4096, 100_000]) {
      const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Hello' }] });
      const run = await client.beta.threads.runs.createAndPoll(thread.id, {
        assistant_id: assistant.id,
        max_completion_tokens: budget,
      });
      assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
      const sent = upstream.requests.at(-1)!.body.max_tokens as number;
      assert.ok(sent > 4000 && sent < 4096, `max_tokens ${sent}: what the window leaves after the prompt`);
    }
  });

  test("the tools' definitions count in the prompt: older messages make room for them", async () => {
    const plain = await client.beta.assistants.create({ model: 'gpt-test' });
    const tooled = await client.beta.assistants.create({ model: 'gpt-test', tools: [bigTool] });
    const sentMessages = async (assistantId: string) => {
      const thread = await client.beta.threads.create({ messages: history });
      const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
      assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
      return upstream.requests.at(-1)!.body.messages.filter((m) => m.role === 'user').length;
    };
    assert.equal(await sentMessages(plain.id), 6, 'without the tool the whole thread fits');
    const kept = await sentMessages(tooled.id);
    assert.ok(kept >= 1 && kept <= 3, `with the tool, ${kept} of the 6 messages are sent`);
  });

  test("max_prompt_tokens smaller than the tools' definitions → incomplete without calling the model", async () => {
    const assistant = await client.beta.assistants.create({ model: 'gpt-test', tools: [bigTool] });
    await assertPromptOverBudget(client, upstream, assistant.id, 'Hi', 1000);
  });
});
