import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { sendError } from '../../src/api/app.ts';
import { untilClientGone } from '../../src/api/client-gone.ts';
import { completeInProcess } from '../../src/api/routes/in-process-completions.ts';
import { ApiError } from '../../src/domain/errors.ts';
import { type ChatEvent, type ChatRequest, type ModelProvider, ProviderError } from '../../src/providers/provider.ts';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import { END, scriptedGguf } from '../support/gguf.ts';
import { startScriptedModels } from '../support/gguf-server.ts';
import { type TestServer, tempDir } from '../support/server.ts';

/**
 * Chat completions of a GGUF model run in-process, which has no endpoint to pass them on to: served from the
 * backend's events, in OpenAI's `chat.completion` and `chat.completion.chunk` shapes, read by the official SDK.
 */

const hi = [{ role: 'user' as const, content: 'hi' }];

describe('chat completions of a GGUF model, through the SDK', () => {
  let dir: string;
  let upstream: FakeUpstream;
  let server: TestServer;
  let client: OpenAI;

  before(async () => {
    dir = tempDir();
    writeFileSync(path.join(dir, 'local.gguf'), scriptedGguf({ reply: ['Hello', ' there', END] }));
    ({ upstream, server, client } = await startScriptedModels(dir, { local: 'local.gguf' }));
  });
  after(async () => {
    await server?.close();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('not streamed: a chat.completion with the text, the finish reason and the usage', async () => {
    const answer = await client.chat.completions.create({ model: 'local', messages: hi });
    assert.match(answer.id, /^chatcmpl-/);
    assert.equal(answer.object, 'chat.completion');
    assert.equal(answer.model, 'local');
    assert.deepEqual(answer.choices, [
      {
        index: 0,
        message: { role: 'assistant', content: 'Hello there', refusal: null },
        logprobs: null,
        finish_reason: 'stop',
      },
    ]);
    const usage = answer.usage!;
    assert.ok(usage.prompt_tokens > 0 && usage.completion_tokens > 0, JSON.stringify(usage));
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  });

  test('max_completion_tokens cuts the answer short: finish_reason length', async () => {
    const answer = await client.chat.completions.create({ model: 'local', messages: hi, max_completion_tokens: 1 });
    assert.equal(answer.choices[0]!.message.content, 'Hello');
    assert.equal(answer.choices[0]!.finish_reason, 'length');
  });

  test('streamed: the role, each piece, the finish reason, then the usage in a chunk without choices', async () => {
    const stream = await client.chat.completions.create({
      model: 'local',
      messages: hi,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.deepEqual(chunks[0]!.choices[0]!.delta, { role: 'assistant', content: '', refusal: null });
    assert.deepEqual(
      chunks.slice(1, 3).map((c) => c.choices[0]!.delta.content),
      ['Hello', ' there'],
    );
    assert.equal(chunks[3]!.choices[0]!.finish_reason, 'stop');
    const last = chunks.at(-1)!;
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage && last.usage.completion_tokens > 0);
    assert.equal(new Set(chunks.map((c) => c.id)).size, 1, 'one id for the whole stream');
  });

  test("the SDK's stream helper puts the completion together", async () => {
    const stream = client.chat.completions.stream({ model: 'local', messages: hi });
    const deltas: string[] = [];
    stream.on('content', (delta) => deltas.push(delta));
    assert.equal(await stream.finalContent(), 'Hello there');
    assert.deepEqual(deltas, ['Hello', ' there']);
  });

  test('what this backend cannot honour is refused, naming it; what asks for nothing is taken', async () => {
    const refused = async (extra: Record<string, unknown>) =>
      client.chat.completions
        .create({ model: 'local', messages: hi, ...extra } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming)
        .then(
          () => assert.fail(`${JSON.stringify(extra)} was taken`),
          (error: unknown) => error as InstanceType<typeof OpenAI.BadRequestError>,
        );
    for (const [extra, param, code] of [
      [{ stop: ['\n'] }, 'stop', 'unsupported_parameter'],
      [{ logprobs: true }, 'logprobs', 'unsupported_parameter'],
      [{ presence_penalty: 0.5 }, 'presence_penalty', 'unsupported_parameter'],
      [{ n: 2 }, 'n', 'unsupported_parameter'],
      [{ fuzz: 1 }, 'fuzz', 'unknown_parameter'],
      [{ messages: [] }, 'messages', 'empty_array'],
      [{ messages: [{ role: 'function', name: 'f', content: 'x' }] }, 'messages[0].role', 'invalid_value'],
      // A call it is told to make but cannot: no tools, or none of that name.
      [{ tool_choice: 'required' }, 'tool_choice', 'invalid_value'],
      [
        {
          tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
          tool_choice: { type: 'function', function: { name: 'g' } },
        },
        'tool_choice',
        'invalid_value',
      ],
    ] as const) {
      const error = await refused(extra);
      assert.ok(error instanceof OpenAI.BadRequestError, `${JSON.stringify(extra)}: ${String(error)}`);
      assert.equal(error.param, param, JSON.stringify(extra));
      assert.equal(error.code, code, JSON.stringify(extra));
    }
    const taken = await client.chat.completions.create({
      model: 'local',
      messages: hi,
      stop: [],
      logprobs: false,
      presence_penalty: 0,
      n: 1,
      seed: 3,
      user: 'u1',
      store: false,
    });
    assert.equal(taken.choices[0]!.message.content, 'Hello there');
  });
});

/** A backend that writes what it is given and records what it was asked. */
class ScriptedProvider implements ModelProvider {
  readonly contextWindow = 8192;
  readonly requests: ChatRequest[] = [];
  constructor(private readonly script: Array<ChatEvent | Error>) {}
  async *stream(request: ChatRequest): AsyncIterable<ChatEvent> {
    this.requests.push(request);
    for (const step of this.script) {
      if (step instanceof Error) throw step;
      yield step;
    }
  }
}

describe('chat completions from backend events: tool calls, the messages given, failures', () => {
  let app: FastifyInstance;
  let provider: ScriptedProvider;
  let client: OpenAI;

  before(async () => {
    app = Fastify();
    app.setErrorHandler((error, _request, reply) =>
      sendError(reply, error instanceof ApiError ? error : new ApiError(500, String(error), { type: 'server_error' })),
    );
    app.post('/v1/chat/completions', (request, reply) =>
      completeInProcess(provider, request.body, reply, untilClientGone(reply)),
    );
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => app?.close());

  const calls: ChatEvent[] = [
    { type: 'tool_call', index: 0, id: 'call_weather', name: 'get_weather', arguments: '' },
    { type: 'tool_call', index: 0, arguments: '{"city":' },
    { type: 'tool_call', index: 0, arguments: '"Paris"}' },
    { type: 'tool_call', index: 1, name: 'ping', arguments: '{}' },
    { type: 'usage', usage: { prompt_tokens: 20, completion_tokens: 7 } },
    { type: 'finish', reason: 'tool_calls' },
  ];

  test('tool calls, whole and streamed: ids (made when the backend gives none), names and arguments', async () => {
    provider = new ScriptedProvider(calls);
    const answer = await client.chat.completions.create({ model: 'local', messages: hi });
    const made = answer.choices[0]!.message.tool_calls!;
    assert.match(made[1]!.id, /^call_/);
    assert.deepEqual(answer.choices[0]!.message, {
      role: 'assistant',
      content: null,
      refusal: null,
      tool_calls: [
        { id: 'call_weather', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
        { id: made[1]!.id, type: 'function', function: { name: 'ping', arguments: '{}' } },
      ],
    });
    assert.equal(answer.choices[0]!.finish_reason, 'tool_calls');
    assert.deepEqual(answer.usage, { prompt_tokens: 20, completion_tokens: 7, total_tokens: 27 });

    provider = new ScriptedProvider(calls);
    const final = await client.chat.completions.stream({ model: 'local', messages: hi }).finalChatCompletion();
    const streamed = final.choices[0]!.message.tool_calls!;
    assert.deepEqual(
      streamed.map((call) => call.type === 'function' && [call.function.name, call.function.arguments]),
      [
        ['get_weather', '{"city":"Paris"}'],
        ['ping', '{}'],
      ],
    );
    assert.equal(streamed[0]!.id, 'call_weather');
    assert.equal(final.choices[0]!.finish_reason, 'tool_calls');
  });

  test("the request's messages reach the backend as its own: developer as system, parts, calls and their outputs", async () => {
    provider = new ScriptedProvider([
      { type: 'text', text: 'ok' },
      { type: 'finish', reason: 'stop' },
    ]);
    // Given as they are: a user's parts, an assistant's calls, a tool's output, and the settings the backend takes.
    const unchanged = [
      {
        role: 'user' as const,
        content: [
          { type: 'text' as const, text: 'What is here?' },
          { type: 'image_url' as const, image_url: { url: 'data:image/png;base64,AAAA', detail: 'low' as const } },
        ],
      },
      {
        role: 'assistant' as const,
        content: null,
        tool_calls: [{ id: 'call_1', type: 'function' as const, function: { name: 'look', arguments: '{}' } }],
      },
      { role: 'tool' as const, tool_call_id: 'call_1', content: 'a lighthouse' },
    ];
    const settings = {
      tools: [
        { type: 'function' as const, function: { name: 'look', parameters: { type: 'object', properties: {} } } },
      ],
      tool_choice: 'auto' as const,
      temperature: 0.2,
      max_tokens: 50,
      response_format: { type: 'json_object' as const },
    };
    await client.chat.completions.create({
      model: 'local',
      messages: [{ role: 'developer', content: [{ type: 'text', text: 'Be brief.' }] }, ...unchanged],
      ...settings,
    });
    assert.deepEqual(provider.requests[0], {
      model: 'local',
      messages: [{ role: 'system', content: 'Be brief.' }, ...unchanged],
      ...settings,
    });
  });

  test('a backend that refuses the prompt is a 400; one that fails in the middle of a stream, an error the SDK raises', async () => {
    provider = new ScriptedProvider([
      new ProviderError('invalid_prompt', 'The prompt is longer than the context window.', { retryable: false }),
    ]);
    const refused = await client.chat.completions.create({ model: 'local', messages: hi }).catch((e) => e);
    assert.ok(refused instanceof OpenAI.BadRequestError, String(refused));
    assert.equal(refused.code, 'invalid_prompt');
    assert.match(refused.message, /longer than the context window/);

    provider = new ScriptedProvider([
      { type: 'text', text: 'Hel' },
      new ProviderError('server_error', 'The model stopped.', { retryable: true }),
    ]);
    const stream = await client.chat.completions.create({ model: 'local', messages: hi, stream: true });
    const seen: string[] = [];
    const failure = await (async () => {
      for await (const chunk of stream) seen.push(chunk.choices[0]?.delta.content ?? '');
    })().catch((e) => e);
    assert.deepEqual(seen, ['', 'Hel']);
    assert.ok(failure instanceof OpenAI.APIError, String(failure));
    assert.match(failure.message, /The model stopped\./);
  });
});
