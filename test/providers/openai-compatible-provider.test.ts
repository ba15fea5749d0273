import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { keyHeader } from '../../src/providers/openai-compatible/chat-completions-client.ts';
import {
  completionLimitField,
  OpenAICompatibleProvider,
} from '../../src/providers/openai-compatible/openai-compatible-provider.ts';
import { type ChatEvent, type ChatMessage, type ChatRequest, ProviderError } from '../../src/providers/provider.ts';
import { FakeUpstream, llamaCppError, ROLES_MUST_ALTERNATE } from '../support/fake-upstream.ts';

const REQUEST: ChatRequest = { model: 'gpt-test', messages: [{ role: 'user', content: 'Hello' }] };
const API_KEY = 'sk-test-0123456789';

/** A tool call of a request's history. */
function call(id: string, name: string, args: string) {
  return { id, type: 'function' as const, function: { name, arguments: args } };
}

/** `server` listening on a free port, and a provider for it with `timeoutMs`; `close` stops both. */
async function listening(server: Server, timeoutMs: number) {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const provider = new OpenAICompatibleProvider({
    baseURL: `http://127.0.0.1:${port}/v1`,
    timeoutMs,
    contextWindow: 128_000,
  });
  return {
    provider,
    close: async () => {
      await provider.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function collect(events: AsyncIterable<ChatEvent>): Promise<ChatEvent[]> {
  const out: ChatEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}

/** Runs the stream to its end and returns what it threw. */
async function failure(events: AsyncIterable<ChatEvent>): Promise<{ error: unknown; events: ChatEvent[] }> {
  const seen: ChatEvent[] = [];
  try {
    for await (const event of events) seen.push(event);
  } catch (error) {
    return { error, events: seen };
  }
  assert.fail(`expected the stream to fail, got ${JSON.stringify(seen)}`);
}

function assertProviderError(
  error: unknown,
  expected: { code: string; retryable: boolean; retryAfterMs?: number; message?: RegExp },
): asserts error is ProviderError {
  assert.ok(error instanceof ProviderError, `expected a ProviderError, got ${String(error)}`);
  assert.equal(error.code, expected.code, error.message);
  assert.equal(error.retryable, expected.retryable, error.message);
  if ('retryAfterMs' in expected) assert.equal(error.retryAfterMs, expected.retryAfterMs);
  if (expected.message) assert.match(error.message, expected.message);
}

describe('OpenAICompatibleProvider', () => {
  let upstream: FakeUpstream;
  let provider: OpenAICompatibleProvider;
  let signal: AbortSignal;

  before(async () => {
    upstream = await FakeUpstream.start();
    // A timeout no test waits for: on a loaded machine a request may well be 300 ms late, and one that timed out
    // before its reply was taken would leave that reply to the next test. The timeouts' tests have their own.
    provider = new OpenAICompatibleProvider({
      baseURL: upstream.baseUrl,
      apiKey: API_KEY,
      timeoutMs: 60_000,
      contextWindow: 128_000,
    });
  });
  /** A provider for the shared upstream that gives up after `timeoutMs` without a byte. */
  const timingOut = (timeoutMs: number) =>
    new OpenAICompatibleProvider({ baseURL: upstream.baseUrl, timeoutMs, contextWindow: 128_000 });
  after(async () => upstream.close());
  beforeEach(() => {
    upstream.requests.length = 0;
    signal = new AbortController().signal;
  });

  test('streams text chunks in order, then usage and finish', async () => {
    upstream.enqueue({ text: ['Hel', 'lo', ' world'], usage: { prompt_tokens: 12, completion_tokens: 3 } });
    const events = await collect(provider.stream(REQUEST, signal));
    assert.deepEqual(events, [
      { type: 'text', text: 'Hel' },
      { type: 'text', text: 'lo' },
      { type: 'text', text: ' world' },
      { type: 'usage', usage: { prompt_tokens: 12, completion_tokens: 3 } },
      { type: 'finish', reason: 'stop' },
    ]);
  });

  test('sequential streams reuse kept-alive connections; multi-byte text arrives whole', async () => {
    // A fresh provider, so that earlier tests' sockets (some deliberately broken) do not count.
    const fresh = new OpenAICompatibleProvider({
      baseURL: upstream.baseUrl,
      timeoutMs: 60_000,
      contextWindow: 128_000,
    });
    const before = upstream.connections;
    for (let i = 0; i < 5; i++) {
      upstream.enqueue({ text: ['é', 'ü', ' 日本', '語 🙂'] });
      const events = await collect(fresh.stream(REQUEST, signal));
      const text = events.flatMap((e) => (e.type === 'text' ? [e.text] : [])).join('');
      assert.equal(text, 'éü 日本語 🙂');
    }
    // The next request may leave before the previous response's end is read, and open a second connection.
    assert.ok(upstream.connections - before <= 2, `${upstream.connections - before} connections for 5 requests`);
    await fresh.close();
  });

  test('finish_reason "error" (OpenRouter) → server_error, retryable: a cut-short answer, not a completion', async () => {
    upstream.enqueue({ text: ['A partial'], finishReason: 'error' });
    const { error, events } = await failure(provider.stream(REQUEST, signal));
    assertProviderError(error, { code: 'server_error', retryable: true, message: /finish_reason "error"/ });
    assert.ok(!events.some((e) => e.type === 'finish'), 'no finish event');
  });

  test("a base URL with a query (an Azure deployment's ?api-version=…) keeps it after the path", async () => {
    const azure = new OpenAICompatibleProvider({
      baseURL: `${upstream.baseUrl}?api-version=2024-10-21`,
      timeoutMs: 60_000,
      contextWindow: 128_000,
    });
    try {
      upstream.enqueue({ text: 'ok' });
      const events = await collect(azure.stream(REQUEST, signal));
      assert.deepEqual(events.at(-1), { type: 'finish', reason: 'stop' });
      assert.equal(upstream.requests.at(-1)!.url, '/v1/chat/completions?api-version=2024-10-21');
    } finally {
      await azure.close();
    }
  });

  test('inline reasoning at the start of the content (<think>…</think>) is not passed on as text', async () => {
    upstream.enqueue({ text: ['<think>', 'Greet them.', '</think>', '\n\n', 'Hello', '!'] });
    const events = await collect(provider.stream(REQUEST, signal));
    assert.deepEqual(
      events.filter((e) => e.type === 'text'),
      [
        { type: 'text', text: 'Hello' },
        { type: 'text', text: '!' },
      ],
    );
  });

  test('with reasoningOpened (the chat template opens <think> in the prompt), reasoning up to </think> is not text', async () => {
    const opened = new OpenAICompatibleProvider({
      baseURL: upstream.baseUrl,
      timeoutMs: 60_000,
      contextWindow: 128_000,
      reasoningOpened: true,
    });
    upstream.enqueue({ text: ['Greet', ' them.</th', 'ink>\n\n', 'Hello', '!'] });
    const texts = (await collect(opened.stream(REQUEST, signal))).filter((e) => e.type === 'text');
    assert.deepEqual(texts, [
      { type: 'text', text: 'Hello' },
      { type: 'text', text: '!' },
    ]);
    await opened.close();

    // Without it, the same stream is all answer: nothing says that it began with reasoning.
    upstream.enqueue({ text: ['Greet', ' them.</think>', 'Hello'] });
    const whole = (await collect(provider.stream(REQUEST, signal))).filter((e) => e.type === 'text');
    assert.equal(whole.map((e) => (e.type === 'text' ? e.text : '')).join(''), 'Greet them.</think>Hello');
  });

  test("tool-call ids sent to Mistral's models are 9 letters or digits, the same for a call and its output", async () => {
    const history: ChatRequest['messages'] = [
      { role: 'user', content: 'Weather in Paris and Rome?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_Ypay6pD6wiWMirFEYRKTZjUN', type: 'function', function: { name: 'weather', arguments: '{}' } },
          { id: 'abcDEF123', type: 'function', function: { name: 'weather', arguments: '{}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_Ypay6pD6wiWMirFEYRKTZjUN', content: 'sunny' },
      { role: 'tool', tool_call_id: 'abcDEF123', content: 'rain' },
    ];
    upstream.enqueue({ text: 'ok' }, { text: 'ok' }, { text: 'ok' });
    await collect(provider.stream({ model: 'mistral-large-latest', messages: history }, signal));
    await collect(provider.stream({ model: 'mistral-large-latest', messages: history }, signal));
    await collect(provider.stream({ model: 'gpt-test', messages: history }, signal));
    const [first, again, other] = upstream.requests.map((r) => r.body.messages as typeof history);
    const ids = (messages: typeof history) =>
      messages.flatMap((m) =>
        m.role === 'assistant' ? (m.tool_calls ?? []).map((c) => c.id) : m.role === 'tool' ? [m.tool_call_id] : [],
      );
    const sent = ids(first!);
    for (const id of sent) assert.match(id, /^[a-zA-Z0-9]{9}$/);
    assert.equal(sent[0], sent[2], 'the call and its output pair');
    assert.notEqual(sent[0], sent[1]);
    assert.equal(sent[1], 'abcDEF123', 'an id that already fits is kept');
    assert.deepEqual(ids(again!), sent, 'the same ids in every turn');
    assert.deepEqual(ids(other!), ids(history), 'other models get the ids as they are');
  });

  test("tool-call ids sent to Kimi's models are functions.<name>:<n>, counted through the conversation", async () => {
    const history: ChatRequest['messages'] = [
      { role: 'user', content: 'Weather in Paris and Rome?' },
      { role: 'assistant', content: null, tool_calls: [call('call_a', 'weather', '{}'), call('call_b', 'time', '{}')] },
      { role: 'tool', tool_call_id: 'call_a', content: 'sunny' },
      { role: 'tool', tool_call_id: 'call_b', content: 'noon' },
      { role: 'assistant', content: null, tool_calls: [call('call_c', 'weather', '{}')] },
      { role: 'tool', tool_call_id: 'call_c', content: 'rain' },
    ];
    const before = upstream.requests.length;
    upstream.enqueue({ text: 'ok' });
    await collect(provider.stream({ model: 'moonshotai/Kimi-K2.5', messages: history }, signal));
    const sent = upstream.requests[before]!.body.messages as typeof history;
    assert.deepEqual(
      sent.flatMap((m) =>
        m.role === 'assistant' ? (m.tool_calls ?? []).map((c) => c.id) : m.role === 'tool' ? [m.tool_call_id] : [],
      ),
      [
        'functions.weather:0',
        'functions.time:1',
        'functions.weather:0',
        'functions.time:1',
        'functions.weather:2',
        'functions.weather:2',
      ],
    );
  });

  test('maps finish_reason length', async () => {
    upstream.enqueue({ text: 'cut', finishReason: 'length' });
    const events = await collect(provider.stream(REQUEST, signal));
    assert.deepEqual(events.at(-1), { type: 'finish', reason: 'length' });
  });

  test("other servers' finish reasons: Anthropic's through gateways, TGI's, legacy function_call", async () => {
    const expected: Record<string, string> = {
      end_turn: 'stop',
      stop_sequence: 'stop',
      eos: 'stop',
      eos_token: 'stop',
      max_tokens: 'length',
      tool_use: 'tool_calls',
      function_call: 'tool_calls',
      something_else: 'other',
    };
    for (const [sent, reason] of Object.entries(expected)) {
      const frames = [
        { choices: [{ index: 0, delta: { content: 'x' }, finish_reason: null }] },
        { choices: [{ index: 0, delta: {}, finish_reason: sent }] },
      ].map((frame) => `data: ${JSON.stringify(frame)}\n\n`);
      upstream.enqueue({ raw: [...frames, 'data: [DONE]\n\n'], contentType: 'text/event-stream' });
      const events = await collect(provider.stream(REQUEST, signal));
      assert.deepEqual(events.at(-1), { type: 'finish', reason }, sent);
    }
  });

  test('tool-call arguments sent as a JSON object (llama.cpp --tool-args-object, TGI) are taken as their JSON', async () => {
    const call = (args: unknown) => ({
      choices: [
        {
          index: 0,
          delta: {
            tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'lookup', arguments: args } }],
          },
          finish_reason: null,
        },
      ],
    });
    const frames = [
      call({ city: 'Paris', days: 2 }),
      { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
    ];
    upstream.enqueue({
      raw: [...frames.map((frame) => `data: ${JSON.stringify(frame)}\n\n`), 'data: [DONE]\n\n'],
      contentType: 'text/event-stream',
    });
    const events = await collect(provider.stream(REQUEST, signal));
    const calls = events.filter((e) => e.type === 'tool_call');
    assert.deepEqual(calls, [
      { type: 'tool_call', index: 0, id: 'call_1', name: 'lookup', arguments: '{"city":"Paris","days":2}' },
    ]);
  });

  test('a tool call whose name comes after its first fragment (vLLM with Command-A, vmlx) keeps its name', async () => {
    const fragment = (call: object) => ({
      choices: [{ index: 0, delta: { tool_calls: [call] }, finish_reason: null }],
    });
    const frames = [
      fragment({ index: 0, id: 'call_x', type: 'function', function: { name: '', arguments: '' } }),
      fragment({ index: 0, id: 'call_x', function: { name: 'bash', arguments: '{"cmd":' } }),
      fragment({ index: 0, function: { arguments: ' "ls"}' } }),
      // Its arguments before its name, and a name that never comes.
      fragment({ index: 1, id: 'call_y', type: 'function', function: { name: '', arguments: '{"a":' } }),
      fragment({ index: 1, function: { name: 'add', arguments: '1}' } }),
      fragment({ index: 2, id: 'call_z', type: 'function', function: { name: '', arguments: '{}' } }),
      { choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] },
    ];
    upstream.enqueue({
      raw: [...frames.map((frame) => `data: ${JSON.stringify(frame)}\n\n`), 'data: [DONE]\n\n'],
      contentType: 'text/event-stream',
    });
    const events = await collect(provider.stream(REQUEST, signal));
    assert.deepEqual(
      events.filter((e) => e.type === 'tool_call'),
      [
        { type: 'tool_call', index: 0, id: 'call_x', name: 'bash', arguments: '{"cmd":' },
        { type: 'tool_call', index: 0, arguments: ' "ls"}' },
        { type: 'tool_call', index: 1, id: 'call_y', name: 'add', arguments: '{"a":1}' },
        { type: 'tool_call', index: 2, id: 'call_z', arguments: '{}' },
      ],
    );
    assert.deepEqual(events.at(-1), { type: 'finish', reason: 'tool_calls' });
  });

  test("usage in the choice (Moonshot's API) is read; a partial usage object (SGLang) replaces no whole one", async () => {
    const frames = [
      { choices: [{ index: 0, delta: { content: 'hi' }, finish_reason: null }] },
      {
        choices: [
          {
            index: 0,
            delta: {},
            finish_reason: 'stop',
            usage: { prompt_tokens: 19, completion_tokens: 13, total_tokens: 32 },
          },
        ],
      },
      { choices: [], usage: { prompt_tokens_details: { cached_tokens: 0 } } },
    ].map((frame) => `data: ${JSON.stringify(frame)}\n\n`);
    upstream.enqueue({ raw: [...frames, 'data: [DONE]\n\n'], contentType: 'text/event-stream' });
    const events = await collect(provider.stream(REQUEST, signal));
    assert.deepEqual(events.slice(-2), [
      { type: 'usage', usage: { prompt_tokens: 19, completion_tokens: 13 } },
      { type: 'finish', reason: 'stop' },
    ]);
  });

  test('an empty tool output is sent as a word (Gemini through OpenRouter, GLM and MiniMax refuse an empty one)', async () => {
    const request: ChatRequest = {
      model: 'm',
      messages: [
        { role: 'user', content: 'go' },
        { role: 'assistant', content: null, tool_calls: [call('c1', 'bash', '{}'), call('c2', 'bash', '{}')] },
        { role: 'tool', tool_call_id: 'c1', content: '' },
        { role: 'tool', tool_call_id: 'c2', content: '/' },
      ],
    };
    upstream.enqueue({ text: 'ok' });
    const before = upstream.requests.length;
    await collect(provider.stream(request, signal));
    const sent = upstream.requests[before]!.body.messages as Array<Record<string, unknown>>;
    assert.deepEqual(
      sent.slice(2).map((m) => m.content),
      ['(no output)', '/'],
    );
    assert.equal(request.messages[2]!.content, '', 'the messages the run keeps are not changed');
  });

  test('sends the request fields that are set, and only those', async () => {
    const tools: ChatRequest['tools'] = [
      { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } },
    ];
    const request: ChatRequest = {
      model: 'gpt-test',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Weather?' },
      ],
      tools,
      tool_choice: 'required',
      max_tokens: 64,
      temperature: 0.2,
      top_p: null,
      response_format: { type: 'json_object' },
      reasoning_effort: 'low',
    };
    await collect(provider.stream(request, signal));
    const [sent] = upstream.requests;
    assert.ok(sent);
    assert.equal(sent.headers['authorization'], `Bearer ${API_KEY}`);
    assert.deepEqual(sent.body, {
      model: 'gpt-test',
      messages: request.messages,
      tools,
      tool_choice: 'required',
      max_tokens: 64,
      temperature: 0.2,
      response_format: { type: 'json_object' },
      reasoning_effort: 'low',
      stream: true,
      stream_options: { include_usage: true },
    });

    await collect(provider.stream({ ...REQUEST, tools: [], tool_choice: 'auto', temperature: null }, signal));
    const minimal = upstream.requests[1]!.body;
    assert.deepEqual(Object.keys(minimal).sort(), ['messages', 'model', 'stream', 'stream_options']);
  });

  test("the completion's bound goes in max_completion_tokens to OpenAI's API, in max_tokens to any other", async () => {
    assert.equal(completionLimitField('https://api.openai.com/v1'), 'max_completion_tokens');
    for (const azure of [
      'https://my-res.openai.azure.com/openai/v1',
      'https://my-res.openai.azure.com/openai/deployments/gpt-5?api-version=2025-04-01-preview',
      'https://my-res.cognitiveservices.azure.com/openai/v1/',
      'https://my-proj.services.ai.azure.com/openai/v1',
    ])
      assert.equal(completionLimitField(azure), 'max_completion_tokens', azure);
    for (const other of ['http://127.0.0.1:11434/v1', 'https://openrouter.ai/api/v1', 'http://vllm:8000/v1'])
      assert.equal(completionLimitField(other), 'max_tokens', other);
    const openai = new OpenAICompatibleProvider({
      baseURL: upstream.baseUrl,
      timeoutMs: 5_000,
      contextWindow: 128_000,
      completionLimitField: 'max_completion_tokens',
    });
    try {
      await collect(openai.stream({ ...REQUEST, max_tokens: 64 }, signal));
      const sent = upstream.requests.at(-1)!.body;
      assert.equal(sent.max_completion_tokens, 64);
      assert.equal('max_tokens' in sent, false);
    } finally {
      await openai.close();
    }
  });

  test("the key goes in Azure OpenAI's api-key header, in Authorization: Bearer to any other endpoint", () => {
    for (const azure of [
      'https://my-res.openai.azure.com/openai/deployments/gpt-4o?api-version=2024-10-21',
      'https://my-res.openai.azure.com/openai/v1',
      'https://MY-RES.cognitiveservices.azure.com/openai/v1',
    ])
      assert.deepEqual(keyHeader(azure, 'k-1'), { 'api-key': 'k-1' }, azure);
    for (const other of ['https://api.openai.com/v1', 'http://127.0.0.1:8000/v1', 'https://azure.com.example/v1'])
      assert.deepEqual(keyHeader(other, 'k-1'), { authorization: 'Bearer k-1' }, other);
  });

  test('parallel tool calls: deltas by index, names, and arguments that concatenate to the originals', async () => {
    const calls = [
      { name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}', id: 'call_a' },
      { name: 'get_time', arguments: '{"tz":"Europe/Paris"}', id: 'call_b' },
    ];
    upstream.enqueue({ toolCalls: calls });
    const events = await collect(provider.stream(REQUEST, signal));
    const deltas = events.filter((e) => e.type === 'tool_call');
    assert.ok(deltas.length >= 6, 'each call streams its id/name, then 2+ argument fragments');
    for (const [index, call] of calls.entries()) {
      const mine = deltas.filter((e) => e.index === index);
      assert.deepEqual(mine[0], { type: 'tool_call', index, id: call.id, name: call.name });
      assert.ok(mine.slice(1).every((e) => e.name === undefined && e.id === undefined));
      assert.ok(mine.length >= 3);
      assert.equal(mine.map((e) => e.arguments ?? '').join(''), call.arguments);
    }
    assert.deepEqual(events.at(-1), { type: 'finish', reason: 'tool_calls' });
    assert.ok(events.some((e) => e.type === 'usage'));
    assert.ok(!events.some((e) => e.type === 'text'));
  });

  test('tool calls streamed with no index (Gemini), or all as index 0 (Ollama), are numbered: a new id starts a call', async () => {
    const frame = (delta: object, finish: string | null = null, choice: object = { index: 0 }) =>
      `data: ${JSON.stringify({ choices: [{ ...choice, delta, finish_reason: finish }] })}\n\n`;
    const call = (id: string | undefined, name: string | undefined, args: string) => ({
      ...(id === undefined ? {} : { id, type: 'function' }),
      function: { ...(name === undefined ? {} : { name }), arguments: args },
    });
    upstream.enqueue({
      contentType: 'text/event-stream',
      raw: [
        // Each call whole in its chunk; the choice without its index too.
        frame({ role: 'assistant', tool_calls: [call('a', 'get_weather', '{"city":"Paris"}')] }, null, {}),
        frame({ tool_calls: [call('b', 'get_time', '{"tz":"CET"}')] }),
        // A call in fragments: its id first, then none; then one that repeats its id on every fragment.
        frame({ tool_calls: [call('c', 'lookup', '{"q":')] }),
        frame({ tool_calls: [call(undefined, undefined, '"x"}')] }),
        frame({ tool_calls: [call('d', 'add', '{"a":1,')] }),
        frame({ tool_calls: [call('d', undefined, '"b":2}')] }),
        // Ollama: every call of the batch as index 0, each whole; and one in fragments after its start.
        frame({ tool_calls: [{ index: 0, ...call('e', 'write', '{"f":"a.py"}') }] }),
        frame({ tool_calls: [{ index: 0, ...call('f', 'write', '{"f":') }] }),
        frame({ tool_calls: [{ index: 0, ...call(undefined, undefined, '"b.py"}') }] }),
        frame({}, 'tool_calls'),
        'data: [DONE]\n\n',
      ],
    });
    const events = await collect(provider.stream(REQUEST, signal));
    const calls = new Map<number, { id?: string; name?: string; arguments: string }>();
    for (const event of events) {
      if (event.type !== 'tool_call') continue;
      const call = calls.get(event.index) ?? { arguments: '' };
      if (event.id) call.id ??= event.id;
      if (event.name) call.name ??= event.name;
      call.arguments += event.arguments ?? '';
      calls.set(event.index, call);
    }
    assert.deepEqual(
      [...calls.entries()],
      [
        [0, { id: 'a', name: 'get_weather', arguments: '{"city":"Paris"}' }],
        [1, { id: 'b', name: 'get_time', arguments: '{"tz":"CET"}' }],
        [2, { id: 'c', name: 'lookup', arguments: '{"q":"x"}' }],
        [3, { id: 'd', name: 'add', arguments: '{"a":1,"b":2}' }],
        [4, { id: 'e', name: 'write', arguments: '{"f":"a.py"}' }],
        [5, { id: 'f', name: 'write', arguments: '{"f":"b.py"}' }],
      ],
    );
    assert.deepEqual(events.at(-1), { type: 'finish', reason: 'tool_calls' });
  });

  test('calls with no index and an empty id (Gemini through proxies) are told apart: a name after whole arguments', async () => {
    const frame = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const call = (name: string, args: string) => ({ id: '', type: '', function: { name, arguments: args } });
    upstream.enqueue({
      contentType: 'text/event-stream',
      raw: [
        frame({ role: 'assistant', tool_calls: [call('a', '{"x":1}')] }),
        frame({ tool_calls: [call('b', '{"y":2}')] }),
        // Two in one delta, without ids at all; the second in fragments, its name repeated on each.
        frame({
          tool_calls: [{ function: { name: 'c', arguments: '{}' } }, { function: { name: 'd', arguments: '{"z":' } }],
        }),
        frame({ tool_calls: [{ function: { name: 'd', arguments: '3}' } }] }),
        frame({}, 'stop'),
        'data: [DONE]\n\n',
      ],
    });
    const events = await collect(provider.stream(REQUEST, signal));
    const calls: Array<{ name: string; arguments: string }> = [];
    for (const event of events) {
      if (event.type !== 'tool_call') continue;
      calls[event.index] ??= { name: event.name ?? '', arguments: '' };
      calls[event.index]!.arguments += event.arguments ?? '';
    }
    assert.deepEqual(calls, [
      { name: 'a', arguments: '{"x":1}' },
      { name: 'b', arguments: '{"y":2}' },
      { name: 'c', arguments: '{}' },
      { name: 'd', arguments: '{"z":3}' },
    ]);
  });

  test("Mistral's content as a list of parts: its text parts are the answer, its thinking parts are not shown", async () => {
    const frame = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const thinking = (text: string) => ({ type: 'thinking', thinking: [{ type: 'text', text }] });
    upstream.enqueue({
      contentType: 'text/event-stream',
      raw: [
        frame({ role: 'assistant', content: [thinking('The user wants ')] }),
        frame({ content: [thinking('a greeting.')] }),
        frame({ content: [{ type: 'text', text: 'Hello' }] }),
        frame({
          content: [
            { type: 'text', text: ', world' },
            { type: 'text', text: '!' },
          ],
        }),
        frame({ content: [] }),
        frame({}, 'stop'),
        'data: [DONE]\n\n',
      ],
    });
    const events = await collect(provider.stream(REQUEST, signal));
    assert.deepEqual(events, [
      { type: 'text', text: 'Hello' },
      { type: 'text', text: ', world' },
      { type: 'text', text: '!' },
      { type: 'finish', reason: 'stop' },
    ]);
  });

  test('reasoning_content and refusal are read from a stream, and from a whole chat.completion', async () => {
    const frame = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    upstream.enqueue({
      contentType: 'text/event-stream',
      raw: [frame({ role: 'assistant', reasoning_content: 'Hmm.' }), frame({ refusal: 'No.' }), frame({}, 'stop')],
    });
    assert.deepEqual(await collect(provider.stream(REQUEST, signal)), [
      { type: 'reasoning', field: 'reasoning_content', piece: 'Hmm.' },
      { type: 'refusal', text: 'No.' },
      { type: 'finish', reason: 'stop' },
    ]);
    const completion = (message: object) => ({
      contentType: 'application/json',
      raw: JSON.stringify({
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', ...message }, finish_reason: 'stop' }],
      }),
    });
    upstream.enqueue(
      completion({ content: null, reasoning_content: 'Hmm.', refusal: 'No.' }),
      completion({
        content: [
          { type: 'thinking', thinking: [{ type: 'text', text: 'Hmm.' }] },
          { type: 'text', text: 'Hi.' },
        ],
      }),
    );
    assert.deepEqual(await collect(provider.stream(REQUEST, signal)), [
      { type: 'reasoning', field: 'reasoning_content', piece: 'Hmm.' },
      { type: 'refusal', text: 'No.' },
      { type: 'finish', reason: 'stop' },
    ]);
    assert.deepEqual(await collect(provider.stream(REQUEST, signal)), [
      { type: 'text', text: 'Hi.' },
      { type: 'finish', reason: 'stop' },
    ]);
  });

  test("every field reasoning comes in is read, under its name: LiteLLM's thinking_blocks among them", async () => {
    const frame = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const block = { type: 'thinking', thinking: 'Hm.', signature: '' };
    const detail = { type: 'reasoning.text', text: 'Hm.', index: 0 };
    upstream.enqueue({
      contentType: 'text/event-stream',
      raw: [
        frame({ role: 'assistant', reasoning: 'Hm.', reasoning_details: [detail] }),
        frame({ reasoning_content: 'Hm.', thinking_blocks: [block] }),
        frame({}, 'stop'),
      ],
    });
    assert.deepEqual(await collect(provider.stream(REQUEST, signal)), [
      { type: 'reasoning', field: 'reasoning', piece: 'Hm.' },
      { type: 'reasoning', field: 'reasoning_details', piece: [detail] },
      { type: 'reasoning', field: 'reasoning_content', piece: 'Hm.' },
      { type: 'reasoning', field: 'thinking_blocks', piece: [block] },
      { type: 'finish', reason: 'stop' },
    ]);
  });

  test('no usage event when the upstream reports none', async () => {
    upstream.enqueue({ text: ['a', 'b'], usage: null });
    const events = await collect(provider.stream(REQUEST, signal));
    assert.deepEqual(events, [
      { type: 'text', text: 'a' },
      { type: 'text', text: 'b' },
      { type: 'finish', reason: 'stop' },
    ]);
  });

  test('a usage with a negative count is no usage (it would be counted, and the metrics counter refuses it)', async () => {
    upstream.enqueue({ text: ['a'], usage: { prompt_tokens: -1, completion_tokens: 3 } });
    const events = await collect(provider.stream(REQUEST, signal));
    assert.deepEqual(events, [
      { type: 'text', text: 'a' },
      { type: 'finish', reason: 'stop' },
    ]);
  });

  test('429 → rate_limit_exceeded, retryable, with retry-after', async () => {
    upstream.enqueue({ status: 429, headers: { 'retry-after': '2' } });
    const { error } = await failure(provider.stream(REQUEST, signal));
    assertProviderError(error, { code: 'rate_limit_exceeded', retryable: true, retryAfterMs: 2000 });

    upstream.enqueue({ status: 429, headers: { 'retry-after-ms': '150', 'retry-after': '9' } });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'rate_limit_exceeded',
      retryable: true,
      retryAfterMs: 150,
    });

    upstream.enqueue({ status: 429, headers: { 'retry-after': new Date(Date.now() + 60_000).toUTCString() } });
    const dated = (await failure(provider.stream(REQUEST, signal))).error;
    assertProviderError(dated, { code: 'rate_limit_exceeded', retryable: true });
    assert.ok(dated.retryAfterMs! > 55_000 && dated.retryAfterMs! <= 60_000, String(dated.retryAfterMs));

    upstream.enqueue({ status: 429 });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'rate_limit_exceeded',
      retryable: true,
      retryAfterMs: undefined,
    });
  });

  test('a 429\'s retry hint in its body (Gemini\'s retryDelay, "try again in"); a spent quota or a long wait is not retried', async () => {
    const cases: Array<[object, { retryable: boolean; retryAfterMs?: number }]> = [
      [
        {
          status: 429,
          body: [
            {
              error: {
                code: 429,
                message: 'You exceeded your current quota. Please retry in 25.465784708s.',
                status: 'RESOURCE_EXHAUSTED',
                details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '33s' }],
              },
            },
          ],
        },
        { retryable: true, retryAfterMs: 33_000 },
      ],
      [
        {
          status: 429,
          body: { error: { message: 'Rate limit reached for model. Please try again in 7.66s.', type: 'tokens' } },
        },
        { retryable: true, retryAfterMs: 7660 },
      ],
      [
        {
          status: 429,
          body: { error: { message: 'Rate limit reached. Please try again in 640ms.', code: 'rate_limit_exceeded' } },
        },
        { retryable: true, retryAfterMs: 640 },
      ],
      [
        { status: 429, body: { error: { message: 'You exceeded your current quota.', code: 'insufficient_quota' } } },
        { retryable: false },
      ],
      [
        {
          status: 429,
          body: [
            {
              error: {
                code: 429,
                message: 'Quota exceeded. Please retry in 40s.',
                details: [
                  {
                    '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
                    violations: [{ quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier' }],
                  },
                ],
              },
            },
          ],
        },
        { retryable: false },
      ],
      [
        { status: 429, headers: { 'retry-after': '300' } },
        { retryable: false, retryAfterMs: 300_000 },
      ],
    ];
    for (const [reply, expected] of cases) {
      upstream.enqueue(reply as Parameters<FakeUpstream['enqueue']>[0]);
      assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
        code: 'rate_limit_exceeded',
        ...expected,
      });
    }
  });

  test("402 (OpenRouter's credits) is this server's account, not the prompt; Groq's 498 is retried", async () => {
    upstream.enqueue(
      {
        status: 402,
        body: { error: { message: 'This request requires more credits, or fewer max_tokens.', code: 402 } },
      },
      { status: 498, body: { error: { message: 'Capacity exceeded', code: 'capacity_exceeded' } } },
    );
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: false,
      message: /billing \(402\): This request requires more credits/,
    });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: true,
    });
  });

  test("other servers' error bodies are quoted: TEI's { message, code, type }, a FastAPI server's { detail }", async () => {
    upstream.enqueue(
      {
        status: 422,
        body: { message: 'batch size 64 > maximum allowed batch size 32', code: 422, type: 'Validation' },
      },
      { status: 400, body: { detail: "'input_type' parameter is required for asymmetric models" } },
    );
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'invalid_prompt',
      retryable: false,
      message: /^batch size 64 > maximum allowed batch size 32$/,
    });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'invalid_prompt',
      retryable: false,
      message: /^'input_type' parameter is required for asymmetric models$/,
    });
  });

  test('an error in the stream with no status that refuses the prompt (LM Studio, TGI) is not retried', async () => {
    upstream.enqueue(
      {
        raw: [
          'event: error\ndata: {"error":{"message":"Input does not fit in context length. The input has 31430 tokens, but the context length only supports 30000 tokens."}}\n\n',
        ],
        contentType: 'text/event-stream',
      },
      {
        raw: [
          'data: {"error":"Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096","error_type":"validation"}\n\n',
        ],
        contentType: 'text/event-stream',
      },
      { raw: ['data: {"error":{"message":"the model crashed"}}\n\n'], contentType: 'text/event-stream' },
    );
    for (const message of [/does not fit in context length/, /Input validation error/])
      assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
        code: 'invalid_prompt',
        retryable: false,
        message,
      });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: true,
      message: /the model crashed/,
    });
  });

  test('5xx → server_error, retryable', async () => {
    upstream.enqueue({ status: 500 }, { status: 503 });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: true,
    });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: true,
    });
    assert.equal(upstream.requests.length, 2, 'the provider itself never retries');
  });

  test("a 5xx's, 408's or 409's Retry-After is the retry's wait; a wait too long is not retried", async () => {
    for (const status of [503, 408, 409]) {
      upstream.enqueue({ status, headers: { 'retry-after': '5' } });
      assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
        code: 'server_error',
        retryable: true,
        retryAfterMs: 5000,
      });
    }
    upstream.enqueue({ status: 502, headers: { 'retry-after-ms': '250' } });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: true,
      retryAfterMs: 250,
    });
    // A maintenance window, as a 503's Retry-After gives it.
    upstream.enqueue({ status: 503, headers: { 'retry-after': '3600' } });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: false,
      retryAfterMs: 3_600_000,
    });
  });

  test("a 500 saying the chat template raised → invalid_prompt, not retryable, in the template's words", async () => {
    // llama.cpp's server: the same prompt raises again, so retrying it only delays the run's failure.
    const message = 'Jinja Exception: No user query found in messages.';
    upstream.enqueue({ status: 500, body: { error: { code: 500, message, type: 'server_error' } } });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'invalid_prompt',
      retryable: false,
      message: /^Jinja Exception: No user query found in messages\.$/,
    });
  });

  test("4xx → invalid_prompt, not retryable, with the upstream's message", async () => {
    const message =
      "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.";
    upstream.enqueue(
      { status: 400, body: { error: { message, type: 'invalid_request_error', param: 'messages', code: null } } },
      { status: 404, body: { error: { message: 'The model `nope` does not exist', type: 'invalid_request_error' } } },
    );
    const { error } = await failure(provider.stream(REQUEST, signal));
    assertProviderError(error, { code: 'invalid_prompt', retryable: false });
    assert.equal(error.message, message);
    assertProviderError((await failure(provider.stream({ ...REQUEST, model: 'nope' }, signal))).error, {
      code: 'invalid_prompt',
      retryable: false,
      message: /model `nope` does not exist/,
    });
  });

  test("4xx in other servers' error shapes → invalid_prompt with their message", async () => {
    const message = 'This model supports at most 4096 tokens';
    const shapes = [
      { object: 'error', message, type: 'BadRequestError', code: 400 }, // older vLLM
      { error: message, error_type: 'validation' }, // Hugging Face TGI
      [{ error: { code: 400, message, status: 'INVALID_ARGUMENT' } }], // Gemini's endpoint
    ];
    for (const body of shapes) {
      upstream.enqueue({ status: 400, raw: JSON.stringify(body), contentType: 'application/json' });
      assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
        code: 'invalid_prompt',
        retryable: false,
        message: new RegExp(`^${message}$`),
      });
    }
    // A web framework's 404 for a path it does not have is still a wrong address.
    upstream.enqueue({ status: 404, raw: '{"detail":"Not Found"}', contentType: 'application/json' });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: false,
      message: /usually ends in \/v1$/,
    });
  });

  test("a 404 that is not an API's error (a wrong base URL, without its /v1) → server_error saying so", async () => {
    upstream.enqueue({ status: 404, raw: '404 page not found', contentType: 'text/plain' });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: false,
      message: /no Chat Completions endpoint at the address .* usually ends in \/v1$/,
    });
  });

  test('connection reset mid-stream → server_error, retryable, after the chunks already received', async () => {
    upstream.enqueue({ resetAfterChunks: 2, text: ['one ', 'two ', 'three'] });
    const { error, events } = await failure(provider.stream(REQUEST, signal));
    assertProviderError(error, { code: 'server_error', retryable: true });
    assert.deepEqual(events, [
      { type: 'text', text: 'one ' },
      { type: 'text', text: 'two ' },
    ]);
  });

  test('a 200 that is not an event stream → server_error, retryable, saying what came (no page body, no key)', async () => {
    const page =
      '<!doctype html><html><head><title>Sign in – Corporate Proxy</title></head><body>' +
      `<form><input type="hidden" name="csrf" value="csrf-secret-123"></form>Bearer ${API_KEY}</body></html>`;
    upstream.enqueue({ raw: page, contentType: 'text/html; charset=utf-8' });
    const html = (await failure(provider.stream(REQUEST, signal))).error;
    assertProviderError(html, { code: 'server_error', retryable: true });
    assert.equal(
      html.message,
      'The model backend answered 200 with text/html instead of an event stream: a page titled "Sign in – Corporate Proxy"',
    );

    upstream.enqueue(
      {
        raw: JSON.stringify({ error: { message: `quota exhausted for ${API_KEY}` } }),
        contentType: 'application/json',
      },
      { raw: 'Service temporarily parked', contentType: 'text/plain' },
      { raw: '', contentType: 'text/html', status: 302 },
    );
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: true,
      message:
        /^The model backend answered 200 with application\/json instead of an event stream, with the error: quota exhausted for \[api key\]$/,
    });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: true,
      message: /answered 200 with text\/plain instead of an event stream: "Service temporarily parked"$/,
    });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: true,
      message: /^The model backend answered 302 \(a redirect\) instead of an event stream$/,
    });
  });

  test('arguments resent whole in every fragment (some gateways do) pass on only what each adds', async () => {
    const frame = (index: number, fn: object, id?: string) =>
      `data: ${JSON.stringify({ choices: [{ index: 0, delta: { tool_calls: [{ index, ...(id ? { id, type: 'function' } : {}), function: fn }] }, finish_reason: null }] })}\n\n`;
    upstream.enqueue({
      contentType: 'text/event-stream',
      raw: [
        frame(0, { name: 'search', arguments: '' }, 'a'),
        frame(0, { arguments: '{"q":' }),
        frame(0, { arguments: '{"q":"cats"' }),
        frame(0, { arguments: '{"q":"cats"}' }),
        frame(0, { arguments: '{"q":"cats"}' }), // the whole of it once more
        // An ordinary call beside it, its fragments incremental.
        frame(1, { name: 'search', arguments: '{"q":' }, 'b'),
        frame(1, { arguments: '"dogs"}' }),
        `data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] })}\n\n`,
        'data: [DONE]\n\n',
      ],
    });
    const events = await collect(provider.stream(REQUEST, signal));
    const args = (index: number) =>
      events
        .filter((e) => e.type === 'tool_call' && e.index === index)
        .map((e) => (e.type === 'tool_call' ? (e.arguments ?? '') : ''))
        .join('');
    assert.equal(args(0), '{"q":"cats"}');
    assert.equal(args(1), '{"q":"dogs"}');
  });

  test('an endpoint that ignores `stream` and answers with the whole chat.completion is read as one chunk', async () => {
    const completion = (message: object, finish: string) =>
      JSON.stringify({
        id: 'c',
        object: 'chat.completion',
        created: 1,
        model: 'm',
        choices: [{ index: 0, message: { role: 'assistant', ...message }, finish_reason: finish }],
        usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
      });
    upstream.enqueue(
      { raw: completion({ content: 'Hello there.' }, 'stop'), contentType: 'application/json' },
      {
        raw: completion(
          {
            content: null,
            tool_calls: [
              { id: 'a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
              // Some endpoints send the arguments as an object.
              { id: 'b', type: 'function', function: { name: 'get_time', arguments: { tz: 'CET' } } },
            ],
          },
          'tool_calls',
        ),
        contentType: 'application/json; charset=utf-8',
      },
    );
    assert.deepEqual(await collect(provider.stream(REQUEST, signal)), [
      { type: 'text', text: 'Hello there.' },
      { type: 'usage', usage: { prompt_tokens: 9, completion_tokens: 3 } },
      { type: 'finish', reason: 'stop' },
    ]);
    assert.deepEqual(await collect(provider.stream(REQUEST, signal)), [
      { type: 'tool_call', index: 0, id: 'a', name: 'get_weather', arguments: '{"city":"Paris"}' },
      { type: 'tool_call', index: 1, id: 'b', name: 'get_time', arguments: '{"tz":"CET"}' },
      { type: 'usage', usage: { prompt_tokens: 9, completion_tokens: 3 } },
      { type: 'finish', reason: 'tool_calls' },
    ]);
  });

  test('a chunk that is not JSON, or not an object → server_error, retryable, after the chunks before it', async () => {
    const good = `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: null }] })}\n\n`;
    upstream.enqueue(
      {
        raw: [good, `data: {"choices":[{"index":0,"delta":{"content":"${'x'.repeat(300)}\n\n`],
        contentType: 'text/event-stream',
      },
      { raw: 'data: 42\n\n', contentType: 'text/event-stream' },
    );
    const { error, events } = await failure(provider.stream(REQUEST, signal));
    assertProviderError(error, {
      code: 'server_error',
      retryable: true,
      message: /^The model backend sent a stream chunk that is not JSON: "\{"choices/,
    });
    assert.ok(error.message.length < 200, 'a short excerpt, not the whole chunk');
    assert.deepEqual(events, [{ type: 'text', text: 'Hi' }]);
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: true,
      message: /not a chat completion chunk: "42"/,
    });
  });

  test('a stream without a finish_reason → server_error, retryable: empty, [DONE] alone, or cut short', async () => {
    upstream.enqueue(
      { raw: '', contentType: 'text/event-stream' },
      { raw: 'data: [DONE]\n\n', contentType: 'text/event-stream' },
      { text: ['half ', 'an answer'], finishReason: null, done: false },
    );
    for (let i = 0; i < 2; i++)
      assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
        code: 'server_error',
        retryable: true,
        message: /^The model backend answered with an empty event stream \(no chunks\)$/,
      });
    const { error, events } = await failure(provider.stream(REQUEST, signal));
    assertProviderError(error, { code: 'server_error', retryable: true, message: /ended without a finish_reason/ });
    assert.deepEqual(events, [
      { type: 'text', text: 'half ' },
      { type: 'text', text: 'an answer' },
    ]);
  });

  test('an answer that ends with [DONE] but no finish_reason (vllm-mlx, older llama-cpp-python) is whole', async () => {
    upstream.enqueue(
      { text: ['a whole ', 'answer'], finishReason: null, usage: { prompt_tokens: 4, completion_tokens: 3 } },
      {
        raw: [
          `data: ${JSON.stringify({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{}' } }] }, finish_reason: null }] })}\n\n`,
          'data: [DONE]\n\n',
        ],
        contentType: 'text/event-stream',
      },
      // Nothing but the assistant's role: no answer, [DONE] or not.
      {
        raw: [
          `data: ${JSON.stringify({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] })}\n\n`,
          'data: [DONE]\n\n',
        ],
        contentType: 'text/event-stream',
      },
    );
    assert.deepEqual(await collect(provider.stream(REQUEST, signal)), [
      { type: 'text', text: 'a whole ' },
      { type: 'text', text: 'answer' },
      { type: 'usage', usage: { prompt_tokens: 4, completion_tokens: 3 } },
      { type: 'finish', reason: 'stop' },
    ]);
    const calls = await collect(provider.stream(REQUEST, signal));
    assert.equal(calls.filter((e) => e.type === 'tool_call').length, 1, JSON.stringify(calls));
    assert.deepEqual(calls.at(-1), { type: 'finish', reason: 'tool_calls' });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: true,
      message: /ended without a finish_reason \(after 1 chunks\)/,
    });
  });

  test('a valid stream with a charset, or with no content type at all, is read', async () => {
    const frames = [
      `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'fine' }, finish_reason: null }] })}\n\n`,
      `data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
      'data: [DONE]\n\n',
    ];
    upstream.enqueue({ raw: frames, contentType: 'text/event-stream; charset=utf-8' }, { raw: frames });
    for (let i = 0; i < 2; i++)
      assert.deepEqual(await collect(provider.stream(REQUEST, signal)), [
        { type: 'text', text: 'fine' },
        { type: 'finish', reason: 'stop' },
      ]);
  });

  test('connection refused → server_error, retryable', async () => {
    const closed = await FakeUpstream.start();
    await closed.close();
    const orphan = new OpenAICompatibleProvider({ baseURL: closed.baseUrl, timeoutMs: 300, contextWindow: 128_000 });
    assertProviderError((await failure(orphan.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: true,
    });
  });

  test('a stalled stream → idle timeout, server_error retryable', async () => {
    upstream.enqueue({ hang: true, sendHeaders: true });
    const { error } = await failure(timingOut(300).stream(REQUEST, signal));
    assertProviderError(error, {
      code: 'server_error',
      retryable: true,
      message: /timed out after 300 ms waiting for the next chunk of its stream/,
    });
    assert.equal(upstream.requests.length, 1, 'one request: the provider does not retry on its own');
    assert.equal(await upstream.waitForEnd(upstream.requests[0]!), 'aborted');
  });

  test('no response headers at all → timeout, server_error retryable', async () => {
    upstream.enqueue({ hang: true });
    const { error } = await failure(timingOut(300).stream(REQUEST, signal));
    assertProviderError(error, {
      code: 'server_error',
      retryable: true,
      message: /timed out after 300 ms waiting for an answer/,
    });
    assert.equal(upstream.requests.length, 1, 'one request: the provider does not retry on its own');
    assert.equal(await upstream.waitForEnd(upstream.requests[0]!), 'aborted');
  });

  test('keep-alive comments before the first chunk (OpenRouter sends them) are not an idle timeout', async () => {
    // Comments every 100 ms for 900 ms, then the answer: longer than the 600 ms idle timeout, never 600 ms silent.
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let sent = 0;
      const timer = setInterval(() => {
        if (sent++ < 9) return void res.write(': OPENROUTER PROCESSING\n\n');
        clearInterval(timer);
        const chunk = (delta: object, finish: string | null) =>
          `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
        res.end(`${chunk({ content: 'late' }, null)}${chunk({}, 'stop')}data: [DONE]\n\n`);
      }, 100);
      res.on('close', () => clearInterval(timer));
    });
    const endpoint = await listening(server, 600);
    try {
      const events = await collect(endpoint.provider.stream(REQUEST, signal));
      assert.deepEqual(
        events.filter((e) => e.type === 'text'),
        [{ type: 'text', text: 'late' }],
      );
    } finally {
      await endpoint.close();
    }
  });

  for (const after of ['keep-alive comments', 'silence'] as const)
    test(`a stream that gave its finish_reason, then ${after} without [DONE] or its end, is a whole answer`, async () => {
      // The answer, its finish_reason and its usage, then the stream stays open: keep-alive comments every 100 ms, or
      // nothing. Neither is waited for until the idle timeout, which comments keep pushing back.
      let closed = false;
      const server = createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = (choices: object[], usage?: object) =>
          `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices, ...(usage ? { usage } : {}) })}\n\n`;
        res.write(chunk([{ index: 0, delta: { content: 'whole' }, finish_reason: null }]));
        res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
        res.write(chunk([], { prompt_tokens: 3, completion_tokens: 1 }));
        const timer = setInterval(() => after === 'keep-alive comments' && res.write(': keep-alive\n\n'), 100);
        res.on('close', () => {
          clearInterval(timer);
          closed = true;
        });
      });
      const endpoint = await listening(server, 600_000);
      // Bounds a failure of this test (a stream waited on for ever), not the time the provider takes.
      const stalled = new AbortController();
      const guard = setTimeout(() => stalled.abort(new Error('the stream was waited on for 60 s')), 60_000);
      try {
        assert.deepEqual(await collect(endpoint.provider.stream(REQUEST, stalled.signal)), [
          { type: 'text', text: 'whole' },
          { type: 'usage', usage: { prompt_tokens: 3, completion_tokens: 1 } },
          { type: 'finish', reason: 'stop' },
        ]);
        await new Promise((resolve) => setImmediate(resolve));
        assert.ok(closed, 'the connection the endpoint left open was closed');
      } finally {
        clearTimeout(guard);
        await endpoint.close();
      }
    });

  test('chunks that keep coming after a finish_reason are still read', async () => {
    const frames = [
      { choices: [{ index: 0, delta: { content: 'early ' }, finish_reason: 'stop' }] },
      { choices: [{ index: 0, delta: { content: 'late' }, finish_reason: null }] },
      { choices: [], usage: { prompt_tokens: 2, completion_tokens: 2 } },
    ].map((frame) => `data: ${JSON.stringify(frame)}\n\n`);
    upstream.enqueue({ raw: [...frames, 'data: [DONE]\n\n'], contentType: 'text/event-stream' });
    const events = await collect(provider.stream(REQUEST, signal));
    assert.deepEqual(
      events.filter((e) => e.type === 'text'),
      [
        { type: 'text', text: 'early ' },
        { type: 'text', text: 'late' },
      ],
    );
    assert.deepEqual(events.at(-1), { type: 'finish', reason: 'stop' });
  });

  test('a slow but steady stream is not an idle timeout', async () => {
    // Longer than the timeout in all, never silent for a third of it.
    upstream.enqueue({ text: ['a', 'b', 'c', 'd', 'e', 'f', 'g'], chunkDelayMs: 200 });
    const events = await collect(timingOut(1000).stream(REQUEST, signal));
    assert.equal(events.filter((e) => e.type === 'text').length, 7);
  });

  test('abort mid-stream throws the reason at once and the upstream request is closed', async () => {
    // The last piece is held until the test ends: a stream that waited for another chunk before it saw the abort
    // would never end.
    let release = () => {};
    const holdLast = new Promise<void>((resolve) => {
      release = resolve;
    });
    upstream.enqueue({ text: ['t0 ', 't1 ', 't2 '], holdLast });
    const controller = new AbortController();
    const reason = new Error('run cancelled');
    const seen: ChatEvent[] = [];
    try {
      await assert.rejects(
        (async () => {
          for await (const event of provider.stream(REQUEST, controller.signal)) {
            seen.push(event);
            if (seen.length === 2) controller.abort(reason);
          }
        })(),
        (error) => error === reason,
      );
      assert.equal(seen.length, 2);
      assert.equal(await upstream.waitForEnd(upstream.requests[0]!), 'aborted');
    } finally {
      release();
    }
  });

  test('abort while waiting for a chunk, and abort before the request', async () => {
    upstream.enqueue({ hang: true, sendHeaders: true });
    const controller = new AbortController();
    const reason = new Error('cancelled while waiting');
    // Aborted once the upstream has the request (it answers with headers, then nothing): the abort's own reason,
    // not the idle timeout's error, says that the wait ended with it.
    void upstream.waitForRequests(1).then(() => controller.abort(reason));
    const { error } = await failure(provider.stream(REQUEST, controller.signal));
    assert.equal(error, reason);
    await upstream.waitForAbort(upstream.requests[0]!, 500);

    const already = new AbortController();
    already.abort(reason);
    assert.equal((await failure(provider.stream(REQUEST, already.signal))).error, reason);
    assert.equal(upstream.requests.length, 1, 'no request once already aborted');
  });

  test('stopping after the whole response is in but before it is read leaves no error behind', async () => {
    // One write: the body is complete before the first chunk is handed over. An abort then used to be emitted on a
    // socket with no error listener, and crash the process.
    const frames = ['a', 'b', 'c']
      .map(
        (text) =>
          `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: text }, finish_reason: null }] })}\n\n`,
      )
      .join('');
    const whole = `${frames}data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`;
    upstream.enqueue(
      { raw: whole, contentType: 'text/event-stream' },
      { raw: whole, contentType: 'text/event-stream' },
    );
    for await (const event of provider.stream(REQUEST, signal)) if (event.type === 'text') break;
    const controller = new AbortController();
    const reason = new Error('run cancelled');
    const { error } = await failure(
      (async function* () {
        for await (const event of provider.stream(REQUEST, controller.signal)) {
          controller.abort(reason);
          yield event;
        }
      })(),
    );
    assert.equal(error, reason);
    await new Promise((resolve) => setTimeout(resolve, 50)); // where the stray error used to surface
  });

  test('breaking out of the loop closes the upstream request', async () => {
    upstream.enqueue({ text: Array.from({ length: 50 }, (_, i) => `t${i} `), chunkDelayMs: 30 });
    for await (const event of provider.stream(REQUEST, signal)) {
      if (event.type === 'text') break;
    }
    await upstream.waitForAbort(upstream.requests[0]!, 500);
  });
});

describe('OpenAICompatibleProvider: an endpoint whose chat template refuses roles in a row', () => {
  let upstream: FakeUpstream;
  before(async () => {
    upstream = await FakeUpstream.start();
  });
  after(async () => upstream.close());

  const rows: ChatRequest = {
    model: 'gemma-3-12b-it',
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Here is my question.' },
      { role: 'user', content: 'And the file it is about.' },
      { role: 'assistant', content: 'Hello!' },
      {
        role: 'assistant',
        content: 'Let me look.',
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'x' },
    ],
  };
  const vllm = ROLES_MUST_ALTERNATE;

  test('its refusal is answered by sending the request again with the rows joined, and so is every later one', async () => {
    const provider = new OpenAICompatibleProvider({ baseURL: upstream.baseUrl, timeoutMs: 2000, contextWindow: 8192 });
    const signal = new AbortController().signal;
    const before = upstream.requests.length;
    upstream.enqueue(vllm, { text: 'ok' }, { text: 'again' });
    const events = await collect(provider.stream(rows, signal));
    assert.deepEqual(events[0], { type: 'text', text: 'ok' });
    const [refused, first] = upstream.requests.slice(before).map((r) => r.body.messages);
    assert.deepEqual(refused, rows.messages, 'sent as they were, the first time');
    const joined = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Here is my question.\n\nAnd the file it is about.' },
      {
        role: 'assistant',
        content: 'Hello!\n\nLet me look.',
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'x' },
    ];
    assert.deepEqual(first, joined);
    await collect(provider.stream(rows, signal));
    assert.equal(upstream.requests.length - before, 3, 'the next request is joined at once');
    assert.deepEqual(upstream.requests.at(-1)!.body.messages, joined);
  });

  test("llama.cpp's 500 and mistral_common's wording are read the same way; other 400s are not", async () => {
    const signal = new AbortController().signal;
    for (const [status, message] of [
      [500, 'Conversation roles must alternate user/assistant/user/assistant/...'],
      [400, "Unexpected role 'assistant' after role 'assistant'"],
      [400, 'After the (optional) system message(s), user and assistant roles should be alternating.'],
      [
        400,
        'deepseek-reasoner does not support successive user or assistant messages (messages[1] and messages[2] in your input). You should interleave the user/assistant messages in the message sequence.',
      ],
    ] as const) {
      const provider = new OpenAICompatibleProvider({
        baseURL: upstream.baseUrl,
        timeoutMs: 2000,
        contextWindow: 8192,
      });
      const before = upstream.requests.length;
      upstream.enqueue({ status, body: { error: { code: status, message, type: 'server_error' } } }, { text: 'ok' });
      await collect(provider.stream(rows, signal));
      assert.equal(upstream.requests.slice(before).at(-1)!.body.messages.length, 4, message);
    }
    const provider = new OpenAICompatibleProvider({ baseURL: upstream.baseUrl, timeoutMs: 2000, contextWindow: 8192 });
    const before = upstream.requests.length;
    upstream.enqueue({
      status: 400,
      body: { error: { message: 'max_tokens is too large', type: 'invalid_request_error' } },
    });
    assertProviderError((await failure(provider.stream(rows, signal))).error, {
      code: 'invalid_prompt',
      retryable: false,
    });
    assert.equal(upstream.requests.length - before, 1);
  });

  test('a refusal repeated after the join is the error it is', async () => {
    const provider = new OpenAICompatibleProvider({ baseURL: upstream.baseUrl, timeoutMs: 2000, contextWindow: 8192 });
    upstream.enqueue(vllm, vllm);
    const { error } = await failure(provider.stream(rows, new AbortController().signal));
    assertProviderError(error, { code: 'invalid_prompt', retryable: false, message: /must alternate/ });
  });

  test('a refusal of a request with nothing in a row is the error it is', async () => {
    const provider = new OpenAICompatibleProvider({ baseURL: upstream.baseUrl, timeoutMs: 2000, contextWindow: 8192 });
    upstream.enqueue(vllm);
    const { error } = await failure(
      provider.stream(
        {
          model: 'm',
          messages: [
            { role: 'system', content: 'Be brief.' },
            { role: 'user', content: 'Hello' },
          ],
        },
        new AbortController().signal,
      ),
    );
    assertProviderError(error, { code: 'invalid_prompt', retryable: false, message: /must alternate/ });
  });
});

describe('OpenAICompatibleProvider: an endpoint whose model reads no images', () => {
  let upstream: FakeUpstream;
  before(async () => {
    upstream = await FakeUpstream.start();
  });
  after(async () => upstream.close());

  const withImage: ChatRequest = {
    model: 'qwen3-8b',
    messages: [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is in it?' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
        ],
      },
    ],
  };

  test("llama.cpp's 500 without a projector: sent again at once with the image as a note, and so is every later one", async () => {
    const provider = new OpenAICompatibleProvider({ baseURL: upstream.baseUrl, timeoutMs: 2000, contextWindow: 8192 });
    const message = 'image input is not supported - hint: if this is unexpected, you may need to provide the mmproj';
    const before = upstream.requests.length;
    upstream.enqueue({ status: 500, body: { error: { code: 500, message, type: 'server_error' } } }, { text: 'ok' });
    const events = await collect(provider.stream(withImage, new AbortController().signal));
    assert.ok(events.some((e) => e.type === 'text'));
    assert.equal(upstream.requests.length - before, 2, 'one refusal, then the reshaped request: no backoff retries');
    const asNote = [{ role: 'user', content: 'What is in it?\n[image (inline data)]' }];
    assert.deepEqual(upstream.requests.at(-1)!.body.messages, asNote);
    upstream.enqueue({ text: 'ok' });
    await collect(provider.stream(withImage, new AbortController().signal));
    assert.equal(upstream.requests.length - before, 3);
    assert.deepEqual(upstream.requests.at(-1)!.body.messages, asNote);
  });

  test('vLLM and LM Studio say it in their words; a request without images is not reshaped', async () => {
    for (const message of ['Qwen/Qwen3-8B is not a multimodal model', 'Model does not support images.']) {
      const provider = new OpenAICompatibleProvider({
        baseURL: upstream.baseUrl,
        timeoutMs: 2000,
        contextWindow: 8192,
      });
      upstream.enqueue({ status: 400, body: { error: { message, type: 'BadRequestError' } } }, { text: 'ok' });
      await collect(provider.stream(withImage, new AbortController().signal));
      assert.equal(typeof upstream.requests.at(-1)!.body.messages[0]!.content, 'string', message);
    }
    const provider = new OpenAICompatibleProvider({ baseURL: upstream.baseUrl, timeoutMs: 2000, contextWindow: 8192 });
    const before = upstream.requests.length;
    upstream.enqueue({ status: 400, body: { error: { message: 'Model does not support images.', type: 'x' } } });
    const textOnly: ChatRequest = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
    assertProviderError((await failure(provider.stream(textOnly, new AbortController().signal))).error, {
      code: 'invalid_prompt',
      retryable: false,
    });
    assert.equal(upstream.requests.length - before, 1);
  });
});

describe('OpenAICompatibleProvider: an endpoint that refuses a field it does not take', () => {
  let upstream: FakeUpstream;
  before(async () => {
    upstream = await FakeUpstream.start();
  });
  after(async () => upstream.close());

  const open = () => new OpenAICompatibleProvider({ baseURL: upstream.baseUrl, timeoutMs: 2000, contextWindow: 8192 });
  const signal = new AbortController().signal;
  const tools: ChatRequest['tools'] = [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }];
  /** Mistral's 422 for a field it does not know, its message an object (pydantic's validation errors). */
  const mistral = (field: string) => ({
    status: 422,
    body: {
      object: 'error',
      message: {
        detail: [{ type: 'extra_forbidden', loc: ['body', field], msg: 'Extra inputs are not permitted', input: {} }],
      },
      type: 'invalid_request_error',
      param: null,
      code: null,
    },
  });

  test("Mistral's 422 for stream_options: sent again at once without it, and every later request too", async () => {
    const provider = open();
    const before = upstream.requests.length;
    upstream.enqueue(mistral('stream_options'), { text: 'ok' }, { text: 'again' });
    await collect(provider.stream(REQUEST, signal));
    await collect(provider.stream(REQUEST, signal));
    const sent = upstream.requests.slice(before).map((r) => 'stream_options' in r.body);
    assert.deepEqual(sent, [true, false, false]);
  });

  test('reasoning_effort (xAI), a forced tool_choice (thinking modes), parallel_tool_calls: each dropped once refused', async () => {
    const provider = open();
    const before = upstream.requests.length;
    upstream.enqueue(
      {
        status: 400,
        body: {
          error: { message: 'Model grok-4 does not support parameter reasoningEffort.', type: 'invalid_request_error' },
        },
      },
      {
        status: 400,
        body: {
          error: {
            message: 'The tool_choice parameter does not support being set to required or object in thinking mode',
            code: 'invalid_parameter_error',
          },
        },
      },
      {
        status: 400,
        body: { error: { message: "Unsupported parameter: 'parallel_tool_calls'", type: 'invalid_request_error' } },
      },
      { text: 'ok' },
    );
    const request: ChatRequest = {
      ...REQUEST,
      tools,
      tool_choice: 'required',
      parallel_tool_calls: false,
      reasoning_effort: 'low',
    };
    await collect(provider.stream(request, signal));
    const bodies = upstream.requests.slice(before).map((r) => r.body);
    assert.deepEqual(
      bodies.map((b) => ['reasoning_effort', 'tool_choice', 'parallel_tool_calls'].filter((f) => f in b)),
      [
        ['reasoning_effort', 'tool_choice', 'parallel_tool_calls'],
        ['tool_choice', 'parallel_tool_calls'],
        ['parallel_tool_calls'],
        [],
      ],
    );
    assert.deepEqual(bodies.at(-1)!.tools, tools, 'the tools themselves stay');
  });

  test("Ollama's refusal of thinking for a model without it drops reasoning_effort, in either wording", async () => {
    for (const message of [
      '"llama3.2" does not support thinking',
      'think value "medium" is not supported for this model',
    ]) {
      const provider = open();
      const before = upstream.requests.length;
      upstream.enqueue({ status: 400, body: { error: { message } } }, { text: 'ok' });
      const events = await collect(provider.stream({ ...REQUEST, reasoning_effort: 'medium' }, signal));
      assert.deepEqual(events.at(-1), { type: 'finish', reason: 'stop' }, message);
      const bodies = upstream.requests.slice(before).map((r) => r.body);
      assert.deepEqual(
        bodies.map((b) => 'reasoning_effort' in b),
        [true, false],
        message,
      );
    }
  });

  for (const [server, refusal] of [
    [
      'vLLM 0.24',
      {
        status: 400,
        body: {
          error: {
            message: 'Unterminated string starting at: line 1 column 9 (char 8)',
            type: 'BadRequestError',
            code: 400,
          },
        },
      },
    ],
    [
      'llama.cpp',
      llamaCppError(
        500,
        'Failed to parse tool call arguments as JSON: [json.exception.parse_error.101] parse error at line 1, column 12',
      ),
    ],
  ] as const)
    test(`history calls whose arguments are not a JSON object are sent as objects once refused (${server})`, async () => {
      const provider = open();
      const tools: ChatRequest['tools'] = [
        {
          type: 'function',
          function: { name: 'python', parameters: { type: 'object', properties: { code: { type: 'string' } } } },
        },
        {
          type: 'function',
          function: {
            name: 'bash',
            parameters: { type: 'object', properties: { cmd: { type: 'string' }, cwd: { type: 'string' } } },
          },
        },
      ];
      const request: ChatRequest = {
        model: 'm',
        tools,
        messages: [
          { role: 'user', content: 'go' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              call('c1', 'bash', '{"cmd": "ls'), // cut off by a length limit
              call('c2', 'python', 'print(1 + 1)'), // raw code, as llama.cpp's Python tool writes it
              call('c3', 'bash', '{"cmd": "pwd"}'),
            ],
          },
          { role: 'tool', tool_call_id: 'c1', content: 'error' },
          { role: 'tool', tool_call_id: 'c2', content: '2' },
          { role: 'tool', tool_call_id: 'c3', content: '/' },
        ],
      };
      const before = upstream.requests.length;
      upstream.enqueue(refusal, { text: 'ok' }, { text: 'again' });
      await collect(provider.stream(request, signal));
      await collect(provider.stream(request, signal));
      const argumentsSent = upstream.requests
        .slice(before)
        .map(
          (r) =>
            ((r.body.messages as ChatMessage[])[1] as { tool_calls: Array<{ function: { arguments: string } }> })
              .tool_calls,
        )
        .map((calls) => calls.map((c) => c.function.arguments));
      assert.deepEqual(argumentsSent, [
        ['{"cmd": "ls', 'print(1 + 1)', '{"cmd": "pwd"}'], // as written, which OpenAI takes: the model sees what it wrote
        ['{}', '{"code":"print(1 + 1)"}', '{"cmd": "pwd"}'],
        ['{}', '{"code":"print(1 + 1)"}', '{"cmd": "pwd"}'], // learnt
      ]);
    });

  for (const [server, refusal] of [
    [
      'LiteLLM in front of Mistral',
      {
        status: 422,
        body: {
          detail: [
            {
              type: 'extra_forbidden',
              loc: ['body', 'messages', 2, 'assistant', 'reasoning_content'],
              msg: 'Extra inputs are not permitted',
            },
          ],
        },
      },
    ],
    [
      'Groq',
      {
        status: 400,
        body: {
          error: {
            message:
              "'messages.2' : for 'role:assistant' the following must be satisfied[('messages.2' : property 'reasoning' is unsupported)]",
            type: 'invalid_request_error',
          },
        },
      },
    ],
  ] as const)
    test(`reasoning sent back that the endpoint does not know is no longer sent (${server})`, async () => {
      const provider = open();
      const request: ChatRequest = {
        model: 'm',
        messages: [
          { role: 'user', content: 'go' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [call('c1', 'bash', '{}')],
            reasoning: { reasoning_content: 'Let me look.', reasoning: 'Let me look.' },
          },
          { role: 'tool', tool_call_id: 'c1', content: '/' },
        ],
      };
      const before = upstream.requests.length;
      upstream.enqueue(refusal, { text: 'ok' }, { text: 'again' });
      assert.deepEqual((await collect(provider.stream(request, signal))).at(-1), { type: 'finish', reason: 'stop' });
      await collect(provider.stream(request, signal));
      const sent = upstream.requests.slice(before).map((r) => (r.body.messages as Array<Record<string, unknown>>)[1]!);
      assert.deepEqual(
        sent.map((m) => ['reasoning_content', 'reasoning'].filter((field) => field in m)),
        [['reasoning_content', 'reasoning'], [], []],
      );
    });

  test('structured output an endpoint does not offer is eased: JSON mode with the schema in words, then words alone', async () => {
    const provider = open();
    const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };
    const request: ChatRequest = {
      model: 'm',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Where?' },
      ],
      response_format: { type: 'json_schema', json_schema: { name: 'place', schema, strict: true } },
    };
    const before = upstream.requests.length;
    upstream.enqueue(
      // DeepSeek's.
      {
        status: 400,
        body: { error: { message: 'This response_format type is unavailable now', type: 'invalid_request_error' } },
      },
      // Gemini's, with tools.
      {
        status: 400,
        body: [
          {
            error: {
              code: 400,
              message: "Function calling with a response mime type: 'application/json' is unsupported",
              status: 'INVALID_ARGUMENT',
            },
          },
        ],
      },
      { text: '{"city":"Paris"}' },
    );
    assert.deepEqual((await collect(provider.stream(request, signal))).at(-1), { type: 'finish', reason: 'stop' });
    const bodies = upstream.requests.slice(before).map((r) => r.body as unknown as Record<string, unknown>);
    assert.deepEqual(
      bodies.map((b) => (b.response_format as { type?: string } | undefined)?.type),
      ['json_schema', 'json_object', undefined],
    );
    const systems = bodies.map((b) => (b.messages as Array<{ content: string }>)[0]!.content);
    assert.equal(systems[0], 'Be brief.');
    for (const system of systems.slice(1))
      assert.equal(
        system,
        `Be brief.\n\nAnswer with one JSON object and nothing else, matching this JSON schema: ${JSON.stringify(schema)}`,
      );
  });

  test("a schema the endpoint finds wrong is the client's error, not eased", async () => {
    for (const message of [
      "Invalid schema for response_format 'place': In context=(), 'additionalProperties' is required to be supplied and to be false.",
      // Worded like a refused field ("not permitted"), but about a keyword of the schema.
      "Invalid schema for response_format 'place': In context=('properties', 'name'), 'default' is not permitted.",
    ]) {
      const provider = open();
      upstream.enqueue({
        status: 400,
        body: { error: { message, type: 'invalid_request_error', param: 'response_format' } },
      });
      const before = upstream.requests.length;
      const { error } = await failure(
        provider.stream(
          { ...REQUEST, response_format: { type: 'json_schema', json_schema: { name: 'place', schema: {} } } },
          signal,
        ),
      );
      assertProviderError(error, {
        code: 'invalid_prompt',
        retryable: false,
        message: /Invalid schema for response_format/,
      });
      assert.equal(upstream.requests.length - before, 1, message);
    }
  });

  test('what one model refused is learnt for that model: the others behind the endpoint get their requests whole', async () => {
    // One endpoint serves many models (OpenAI's API, a gateway): a reasoning model refusing temperature says nothing
    // of the next model's, which would lose its temperature, its images or its schema for the process's life.
    const provider = open();
    upstream.enqueue(
      {
        status: 400,
        body: {
          error: {
            message: "Unsupported parameter: 'temperature' is not supported with this model.",
            type: 'invalid_request_error',
          },
        },
      },
      { text: 'reasoned' },
      { text: 'warm' },
      { text: 'reasoned again' },
    );
    const before = upstream.requests.length;
    await collect(provider.stream({ ...REQUEST, model: 'o3-mini', temperature: 0.5 }, signal));
    await collect(provider.stream({ ...REQUEST, model: 'gpt-4o', temperature: 0.2 }, signal));
    await collect(provider.stream({ ...REQUEST, model: 'o3-mini', temperature: 0.5 }, signal));
    assert.deepEqual(
      upstream.requests.slice(before).map((r) => [r.body.model, r.body.temperature]),
      [
        ['o3-mini', 0.5],
        ['o3-mini', undefined],
        ['gpt-4o', 0.2],
        ['o3-mini', undefined],
      ],
    );
  });

  test("an older llama.cpp's 500 for tools in a stream: requests with tools are sent unstreamed, their answer read whole", async () => {
    const provider = open();
    const before = upstream.requests.length;
    upstream.enqueue(
      { status: 500, body: { error: { code: 500, message: 'Cannot use tools with stream', type: 'server_error' } } },
      { toolCalls: [{ name: 'f', arguments: '{"x":1}', id: 'c1' }] },
      { text: 'plain' },
    );
    const events = await collect(provider.stream({ ...REQUEST, tools }, signal));
    const calls = events.filter((e) => e.type === 'tool_call');
    assert.equal(calls.map((e) => (e.type === 'tool_call' ? (e.arguments ?? '') : '')).join(''), '{"x":1}');
    assert.deepEqual(events.at(-1), { type: 'finish', reason: 'tool_calls' });
    await collect(provider.stream(REQUEST, signal));
    assert.deepEqual(
      upstream.requests.slice(before).map((r) => [r.body.stream, 'stream_options' in r.body]),
      [
        [true, true],
        [false, false],
        [true, true],
      ],
      'a request without tools still streams',
    );
  });

  test("a gateway that wants max_completion_tokens (OpenAI's reasoning models) gets it from then on", async () => {
    const provider = open();
    const before = upstream.requests.length;
    upstream.enqueue(
      {
        status: 400,
        body: {
          error: {
            message:
              "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            type: 'invalid_request_error',
            param: 'max_tokens',
            code: 'unsupported_parameter',
          },
        },
      },
      { text: 'ok' },
      { text: 'ok' },
    );
    await collect(provider.stream({ ...REQUEST, max_tokens: 50 }, signal));
    await collect(provider.stream({ ...REQUEST, max_tokens: 60 }, signal));
    assert.deepEqual(
      upstream.requests.slice(before).map((r) => [r.body.max_tokens ?? null, r.body.max_completion_tokens ?? null]),
      [
        [50, null],
        [null, 50],
        [null, 60],
      ],
    );
  });

  test('a refusal that names nothing learnable, or a field that was not sent, is the error it is; so is a fourth one', async () => {
    const provider = open();
    let before = upstream.requests.length;
    upstream.enqueue({
      status: 400,
      body: { error: { message: 'max_tokens must be at most 4096', type: 'invalid_request_error' } },
    });
    assertProviderError((await failure(provider.stream({ ...REQUEST, max_tokens: 9000 }, signal))).error, {
      code: 'invalid_prompt',
      retryable: false,
      message: /at most 4096/,
    });
    upstream.enqueue({ status: 400, body: { error: { message: 'temperature is not supported', type: 'x' } } });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'invalid_prompt',
      retryable: false,
    });
    assert.equal(upstream.requests.length - before, 2, 'neither was sent again');

    before = upstream.requests.length;
    const refusal = (field: string) => ({
      status: 400,
      body: { error: { message: `Unknown field: ${field}`, type: 'x' } },
    });
    upstream.enqueue(refusal('temperature'), refusal('top_p'), refusal('reasoning_effort'), refusal('tool_choice'));
    const request: ChatRequest = {
      ...REQUEST,
      tools,
      tool_choice: 'auto',
      temperature: 0.2,
      top_p: 0.9,
      reasoning_effort: 'low',
    };
    assertProviderError((await failure(provider.stream(request, signal))).error, {
      code: 'invalid_prompt',
      retryable: false,
      message: /tool_choice/,
    });
    assert.equal(upstream.requests.length - before, 4, 'sent again three times at most');
  });

  test("LM Studio's refusal of JSON mode ('must be json_schema or text') asks for JSON in words", async () => {
    const provider = open();
    const before = upstream.requests.length;
    upstream.enqueue(
      { status: 400, body: { error: "'response_format.type' must be 'json_schema' or 'text'" } },
      { text: '{"a":1}' },
    );
    const request: ChatRequest = { ...REQUEST, response_format: { type: 'json_object' } };
    assert.deepEqual((await collect(provider.stream(request, signal))).at(-1), { type: 'finish', reason: 'stop' });
    const bodies = upstream.requests.slice(before).map((r) => r.body as unknown as Record<string, unknown>);
    assert.deepEqual(
      bodies.map((b) => (b.response_format as { type?: string } | undefined)?.type),
      ['json_object', undefined],
    );
    assert.match((bodies[1]!.messages as Array<{ content: string }>)[0]!.content, /Answer with one JSON object/);
  });

  test("a tool's `strict` the endpoint does not know (Cohere through OpenRouter) is sent no more", async () => {
    const provider = open();
    const before = upstream.requests.length;
    const refusal = {
      status: 422,
      body: {
        error: {
          message:
            "unknown field: parameter 'strict' is not a valid field. For proper usage, please refer to https://docs.cohere.com/reference/chat",
          code: 422,
        },
      },
    };
    upstream.enqueue(refusal, { text: 'ok' }, { text: 'again' });
    const strict: ChatRequest['tools'] = [
      { type: 'function', function: { name: 'f', parameters: { type: 'object' }, strict: true } },
      { type: 'function', function: { name: 'g', description: 'G.', strict: false } },
    ];
    const request: ChatRequest = { ...REQUEST, tools: strict };
    assert.deepEqual((await collect(provider.stream(request, signal))).at(-1), { type: 'finish', reason: 'stop' });
    await collect(provider.stream(request, signal));
    const sent = upstream.requests.slice(before).map((r) => r.body.tools);
    assert.deepEqual(sent, [
      strict,
      [
        { type: 'function', function: { name: 'f', parameters: { type: 'object' } } },
        { type: 'function', function: { name: 'g', description: 'G.' } },
      ],
      [
        { type: 'function', function: { name: 'f', parameters: { type: 'object' } } },
        { type: 'function', function: { name: 'g', description: 'G.' } },
      ],
    ]);
  });

  test("validation errors are quoted: Mistral's object message, and a FastAPI server's 422", async () => {
    const provider = open();
    upstream.enqueue(mistral('foo'), {
      status: 422,
      body: { detail: [{ loc: ['body', 'messages', 0, 'role'], msg: 'Input should be user' }] },
    });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'invalid_prompt',
      retryable: false,
      message: /^body\.foo: Extra inputs are not permitted$/,
    });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'invalid_prompt',
      retryable: false,
      message: /^body\.messages\.0\.role: Input should be user$/,
    });
  });

  test('an error sent inside the stream after its 200 is a refusal when its code says so, else retryable', async () => {
    const provider = open();
    const frame = (data: object) => `data: ${JSON.stringify(data)}\n\n`;
    const erring = (error: object) => ({
      contentType: 'text/event-stream',
      raw: [
        frame({ choices: [{ index: 0, delta: { role: 'assistant', content: 'Par' }, finish_reason: null }] }),
        frame({ error }),
      ],
    });
    upstream.enqueue(
      erring({
        object: 'error',
        message: "This model's maximum context length is 4096 tokens.",
        type: 'BadRequestError',
        code: 400,
      }),
      erring({ message: 'CUDA error: out of memory', type: 'InternalServerError', code: 500 }),
      erring({ message: 'Too many requests', code: '429' }),
      erring({ message: 'The server had an error while processing your request.', type: 'server_error' }),
    );
    const { error, events } = await failure(provider.stream(REQUEST, signal));
    assert.deepEqual(events, [{ type: 'text', text: 'Par' }]);
    assertProviderError(error, { code: 'invalid_prompt', retryable: false, message: /maximum context length is 4096/ });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: true,
      message: /in its stream: CUDA error: out of memory/,
    });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'rate_limit_exceeded',
      retryable: true,
    });
    assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
      code: 'server_error',
      retryable: true,
      message: /processing your request/,
    });
  });

  test('finish reasons that mean a failure are retryable errors; Zhipu\'s "sensitive" is a content filter', async () => {
    const provider = open();
    const frame = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const ending = (reason: string) => ({
      contentType: 'text/event-stream',
      raw: [frame({ role: 'assistant', content: 'Part' }), frame({}, reason), 'data: [DONE]\n\n'],
    });
    for (const reason of ['network_error', 'insufficient_system_resource']) {
      upstream.enqueue(ending(reason));
      assertProviderError((await failure(provider.stream(REQUEST, signal))).error, {
        code: 'server_error',
        retryable: true,
        message: new RegExp(reason),
      });
    }
    upstream.enqueue(ending('sensitive'));
    assert.deepEqual((await collect(provider.stream(REQUEST, signal))).at(-1), {
      type: 'finish',
      reason: 'content_filter',
    });
  });

  test('vLLM\'s finish_reason "abort" (its engine shut down or went to sleep) is a failure, retried, not an answer', async () => {
    const provider = open();
    const frame = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    for (const content of ['', 'Part']) {
      upstream.enqueue({
        contentType: 'text/event-stream',
        raw: [frame({ role: 'assistant', content }), frame({}, 'abort'), 'data: [DONE]\n\n'],
      });
      const { error, events } = await failure(provider.stream(REQUEST, signal));
      assertProviderError(error, { code: 'server_error', retryable: true, message: /finish_reason "abort"/ });
      assert.ok(!events.some((e) => e.type === 'finish'), 'no finish event');
    }
  });
});

describe('FakeUpstream', () => {
  let upstream: FakeUpstream;
  before(async () => {
    upstream = await FakeUpstream.start();
  });
  after(async () => upstream.close());

  test('answers non-streaming requests with a chat.completion, and unknown routes with 404', async () => {
    upstream.enqueue({ text: ['Hi', ' there'], usage: { prompt_tokens: 3, completion_tokens: 2 } });
    const response = await fetch(`${upstream.baseUrl}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] }),
    });
    const body = (await response.json()) as Record<string, unknown>;
    assert.equal(body['object'], 'chat.completion');
    assert.equal(body['model'], 'm');
    assert.deepEqual(body['usage'], { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
    assert.deepEqual((body['choices'] as unknown[])[0], {
      index: 0,
      message: { role: 'assistant', content: 'Hi there', refusal: null },
      logprobs: null,
      finish_reason: 'stop',
    });

    const missing = await fetch(`${upstream.baseUrl}/models`);
    assert.equal(missing.status, 404);
    assert.ok(((await missing.json()) as { error: { message: string } }).error.message);
  });

  test('streams SSE frames ending in [DONE], with a usage chunk only when asked', async () => {
    const post = (body: Record<string, unknown>) =>
      fetch(`${upstream.baseUrl}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', messages: [], stream: true, ...body }),
      });
    const plain = await post({});
    assert.equal(plain.headers.get('content-type'), 'text/event-stream');
    const frames = (await plain.text()).split('\n\n').filter(Boolean);
    assert.equal(frames.at(-1), 'data: [DONE]');
    const chunks = frames.slice(0, -1).map((f) => JSON.parse(f.replace(/^data: /, '')) as Record<string, unknown>);
    assert.ok(chunks.every((c) => c['object'] === 'chat.completion.chunk' && c['model'] === 'm'));
    assert.ok(chunks.every((c) => !('usage' in c)));

    const withUsage = await post({ stream_options: { include_usage: true } });
    const last = (await withUsage.text()).split('\n\n').filter(Boolean).at(-2)!;
    const usageChunk = JSON.parse(last.replace(/^data: /, '')) as Record<string, unknown>;
    assert.deepEqual(usageChunk['choices'], []);
    assert.equal((usageChunk['usage'] as { total_tokens: number }).total_tokens > 0, true);
  });
});
