import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { FastifyReply } from 'fastify';
import OpenAI, { AzureOpenAI, toFile } from 'openai';
import { untilClientGone } from '../../src/api/client-gone.ts';
import { atMost } from '../../src/api/routes/pass-through.ts';
import { loadConfig } from '../../src/config.ts';
import { ApiError } from '../../src/domain/errors.ts';
import { FakeUpstream, ROLES_MUST_ALTERNATE } from '../support/fake-upstream.ts';
import { END, scriptedGguf } from '../support/gguf.ts';
import { startTestServer, type TestServer, tempDir } from '../support/server.ts';

/**
 * A program's one client calls more than the Assistants API: a thread's title from chat.completions, its own
 * embeddings, a moderation. With its base URL changed to assistd's, those calls are passed on, as they are, to the
 * OpenAI-compatible endpoint that serves the model, under that endpoint's key.
 */

const KEY = 'client-key';
const UPSTREAM_KEY = 'sk-upstream-secret-1234';
const hi = [{ role: 'user' as const, content: 'hi' }];

describe('OpenAI endpoints beside the Assistants API, passed on to the model backend', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let client: OpenAI;

  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer({
      ASSISTD_API_KEY: KEY,
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_UPSTREAM_API_KEY: UPSTREAM_KEY,
    });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
  });
  after(async () => {
    await server?.close();
    await upstream?.close();
  });

  test("chat.completions, streamed: the pieces arrive as written; the upstream gets its own key, not the client's", async () => {
    upstream.enqueue({ text: ['Hel', 'lo', ' there'] });
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: hi, stream: true });
    const pieces: string[] = [];
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content;
      if (content) pieces.push(content);
    }
    assert.deepEqual(pieces, ['Hel', 'lo', ' there']);
    const sent = upstream.requests.at(-1)!;
    assert.equal(sent.url, '/v1/chat/completions');
    assert.equal(sent.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.equal(sent.body.model, 'gpt-4o-mini');
    assert.deepEqual(sent.body.messages, hi);
    assert.equal(sent.body.stream, true);
  });

  test('chat.completions, not streamed: the completion as the upstream wrote it, every request field passed on', async () => {
    const completion = {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created: 1_700_000_000,
      model: 'gpt-4o-mini-2024-07-18',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'A short title', refusal: null },
          logprobs: null,
          finish_reason: 'stop',
        },
      ],
      usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
    };
    upstream.enqueue({ raw: JSON.stringify(completion), contentType: 'application/json' });
    const answer = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: hi,
      seed: 7,
      stop: ['\n'],
      logit_bias: { '50256': -100 },
      n: 1,
    });
    assert.deepEqual({ ...answer }, completion);
    const sent = upstream.requests.at(-1)!.body;
    assert.deepEqual(
      [sent['seed'], sent['stop'], sent['logit_bias'], sent['n']],
      [7, ['\n'], { '50256': -100 }, 1],
      'fields assistd has no use for reach the upstream as sent',
    );
  });

  test('embeddings: the vectors of the upstream', async () => {
    const result = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['lighthouse', 'ship'] });
    assert.equal(result.data.length, 2);
    assert.deepEqual(result.data[0]!.embedding, upstream.embed('lighthouse'));
    const sent = upstream.embeddingRequests.at(-1)!;
    assert.equal(sent.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.deepEqual(sent.body.input, ['lighthouse', 'ship']);
  });

  test("an upstream's error reaches the SDK as its own, with its retry-after, and without the upstream's key", async () => {
    upstream.enqueue({
      status: 429,
      body: {
        error: {
          message: `Rate limit reached for key ${UPSTREAM_KEY}.`,
          type: 'requests',
          param: null,
          code: 'rate_limit_exceeded',
        },
      },
      headers: { 'retry-after': '3' },
    });
    const error = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: hi }).catch((e) => e);
    assert.ok(error instanceof OpenAI.RateLimitError, String(error));
    assert.equal(error.code, 'rate_limit_exceeded');
    assert.equal(error.headers?.get('retry-after'), '3');
    assert.match(error.message, /Rate limit reached for key \[api key\]\./);
    assert.ok(!JSON.stringify(error).includes(UPSTREAM_KEY));
  });

  test("an upstream's error in its own shape (vLLM's) is given in OpenAI's", async () => {
    upstream.enqueue(ROLES_MUST_ALTERNATE);
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: hi }),
    });
    assert.equal(response.status, 400);
    assert.deepEqual(await response.json(), {
      error: {
        message: 'Conversation roles must alternate user/assistant/user/assistant/...',
        type: 'invalid_request_error',
        param: null,
        code: null,
      },
    });
  });

  test('a request naming no model goes to the default backend: its path is kept (here the upstream has none)', async () => {
    const error = await client.moderations.create({ input: 'x' }).catch((e) => e);
    assert.ok(error instanceof OpenAI.NotFoundError, String(error));
    assert.match(error.message, /Unknown request URL: POST \/v1\/moderations/);
  });

  test('a client that leaves in the middle of a stream: the upstream request is given up', async () => {
    upstream.enqueue({ text: Array.from({ length: 200 }, (_, i) => `${i} `), chunkDelayMs: 20 });
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: hi, stream: true });
    for await (const chunk of stream) if (chunk.choices[0]?.delta.content) break;
    const sent = upstream.requests.at(-1)!;
    for (let i = 0; i < 200 && sent.abortedAt === undefined; i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(sent.abortedAt !== undefined, 'the upstream saw the request go');
    assert.equal(sent.finishedAt, undefined);
  });

  test("Azure OpenAI's client, unchanged: its deployment paths are served, the deployment the model", async () => {
    const azure = new AzureOpenAI({
      endpoint: server.url,
      apiKey: KEY,
      apiVersion: '2024-10-21',
      deployment: 'gpt-4o-mini',
      maxRetries: 0,
    });
    upstream.enqueue({ text: ['Az', 'ure'] });
    const stream = await azure.chat.completions.create({ model: 'ignored', messages: hi, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    assert.equal(text, 'Azure');
    const sent = upstream.requests.at(-1)!;
    assert.equal(sent.url, '/v1/chat/completions');
    assert.equal(sent.body.model, 'gpt-4o-mini', 'the deployment is the model');
    const vectors = await new AzureOpenAI({
      endpoint: server.url,
      apiKey: KEY,
      apiVersion: '2024-10-21',
    }).embeddings.create({
      model: 'text-embedding-3-small',
      input: 'lighthouse',
    });
    assert.deepEqual(vectors.data[0]!.embedding, upstream.embed('lighthouse'));
    assert.equal(upstream.embeddingRequests.at(-1)!.body.model, 'text-embedding-3-small');
  });

  test("a redirect, or the backend refusing assistd's own key, is the backend's failure: a 502 saying so, not retried", async () => {
    // The SDK retries a 5xx unless told not to: a backend's configuration does not mend in a second.
    const retrying = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 2 });
    const sent = upstream.requests.length;
    upstream.enqueue({ raw: '<a href="https://elsewhere/">Moved</a>', contentType: 'text/html', status: 301 });
    const moved = await retrying.chat.completions.create({ model: 'gpt-4o-mini', messages: hi }).catch((e) => e);
    assert.ok(moved instanceof OpenAI.APIError && moved.status === 502, String(moved));
    assert.equal(moved.code, 'upstream_redirect');
    assert.equal(moved.headers.get('x-should-retry'), 'false');
    assert.equal(upstream.requests.length, sent + 1, 'asked once');
    upstream.enqueue({
      status: 401,
      body: {
        error: {
          message: 'Incorrect API key provided: sk-upst***1234.',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      },
    });
    const refused = await retrying.chat.completions.create({ model: 'gpt-4o-mini', messages: hi }).catch((e) => e);
    assert.ok(refused instanceof OpenAI.APIError && refused.status === 502, String(refused));
    assert.equal(refused.code, 'upstream_auth_failed');
    assert.equal(upstream.requests.length, sent + 2, 'asked once');
    assert.doesNotMatch(refused.message, /sk-upst/);
  });

  test('GET /v1/models lists what the default backend lists, asking it at most once a minute', async () => {
    upstream.models = [
      { id: 'gpt-4o-mini', created: 1_721_172_741, owned_by: 'system' },
      { id: 'text-embedding-3-small' },
    ];
    const listed = [];
    for await (const model of client.models.list()) listed.push(model);
    assert.deepEqual(
      listed.map((model) => [model.id, model.object]),
      [
        ['gpt-4o-mini', 'model'],
        ['text-embedding-3-small', 'model'],
      ],
    );
    assert.equal(listed[0]!.created, 1_721_172_741);
    assert.ok(Number.isInteger(listed[1]!.created), 'a model listed without a date gets one');
    await client.models.list();
    assert.equal(upstream.modelListRequests, 1, 'the list is kept for a minute');
    assert.equal((await client.models.retrieve('gpt-4o-mini')).id, 'gpt-4o-mini');
  });

  test('a base URL without /v1 works too, and the client key is still required', async () => {
    upstream.enqueue({ raw: JSON.stringify({ ok: true }), contentType: 'application/json' });
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: hi });
    const headers = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
    const unversioned = await fetch(`${server.url}/chat/completions`, { method: 'POST', headers, body });
    assert.equal(unversioned.status, 200);
    assert.deepEqual(await unversioned.json(), { ok: true });
    const keyless = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    assert.equal(keyless.status, 401);
  });

  test('bad input is a clear OpenAI-shaped error, and nothing is sent upstream', async () => {
    const before = upstream.requests.length;
    const post = (body: string) =>
      fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body,
      });
    for (const [body, param] of [
      ['[1, 2]', null],
      ['{"model": 4, "messages": []}', 'model'],
      ['{"model": ', null],
    ] as const) {
      const response = await post(body);
      assert.equal(response.status, 400, body);
      const { error } = (await response.json()) as { error: Record<string, unknown> };
      assert.equal(error['type'], 'invalid_request_error', body);
      assert.equal(error['param'], param, body);
      assert.equal(typeof error['message'], 'string');
    }
    assert.equal(upstream.requests.length, before);
  });
});

describe('pass-through: models routed elsewhere, in-process or nowhere', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let client: OpenAI;
  let dir: string;
  let closedPort: number;

  before(async () => {
    upstream = await FakeUpstream.start();
    dir = tempDir();
    writeFileSync(path.join(dir, 'local.gguf'), scriptedGguf({ reply: ['Hello', END] }));
    // A port with nothing listening on it.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    closedPort = (probe.address() as { port: number }).port;
    await new Promise((resolve) => probe.close(resolve));
    const models = {
      models: {
        alias: { type: 'openai-compatible', base_url: upstream.baseUrl, model: 'served-name' },
        local: { type: 'gguf', path: path.join(dir, 'local.gguf') },
        down: { type: 'openai-compatible', base_url: `http://127.0.0.1:${closedPort}/v1` },
        slow: { type: 'openai-compatible', base_url: upstream.baseUrl, timeout_s: 1 },
      },
    };
    writeFileSync(path.join(dir, 'models.json'), JSON.stringify(models));
    server = await startTestServer({ ASSISTD_MODELS_FILE: path.join(dir, 'models.json') });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => {
    await server?.close();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('GET /v1/models lists the routes alone when there is no default backend', async () => {
    const listed = await client.models.list();
    assert.deepEqual(
      listed.data.map((model) => model.id),
      ['alias', 'local', 'down', 'slow'],
    );
  });

  test("a route's upstream name for the model is sent in its place", async () => {
    upstream.enqueue({ text: 'fine' });
    const stream = await client.chat.completions.create({ model: 'alias', messages: hi, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    assert.equal(text, 'fine');
    assert.equal(upstream.requests.at(-1)!.body.model, 'served-name');
  });

  test('a GGUF model answers chat completions itself, and nothing else; a model no route serves and an upstream that cannot be reached are each said plainly', async () => {
    const answer = await client.chat.completions.create({ model: 'local', messages: hi });
    assert.equal(answer.choices[0]!.message.content, 'Hello');
    const local = await client.embeddings.create({ model: 'local', input: 'x' }).catch((e) => e);
    assert.ok(local instanceof OpenAI.BadRequestError, String(local));
    assert.equal(local.code, 'model_not_supported');
    assert.equal(local.param, 'model');
    assert.match(
      local.message,
      /'local' runs inside assistd \(a GGUF file\), which answers runs, chat completions and embeddings only/,
    );

    const unrouted = await client.chat.completions.create({ model: 'nobody', messages: hi }).catch((e) => e);
    assert.ok(unrouted instanceof OpenAI.NotFoundError, String(unrouted));
    assert.equal(unrouted.code, 'model_not_found');
    assert.match(unrouted.message, /No backend serves model 'nobody'/);

    const down = await client.chat.completions.create({ model: 'down', messages: hi }).catch((e) => e);
    assert.ok(down instanceof OpenAI.APIError && down.status === 502, String(down));
    assert.equal(down.code, 'upstream_unavailable');
    assert.match(down.message, /could not be reached \(ECONNREFUSED\)/);

    upstream.enqueue({ hang: true });
    const silent = await client.chat.completions.create({ model: 'slow', messages: hi }).catch((e) => e);
    assert.ok(silent instanceof OpenAI.APIError && silent.status === 504, String(silent));
    assert.equal(silent.code, 'upstream_timeout');
    assert.match(silent.message, /did not answer within 1 s/);
  });
});

test('ASSISTD_PASS_THROUGH=off: none of these endpoints is served, and nothing reaches the backend', async () => {
  const upstream = await FakeUpstream.start();
  const server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_PASS_THROUGH: 'off' });
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const error = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: hi }).catch((e) => e);
    assert.ok(error instanceof OpenAI.NotFoundError, String(error));
    assert.match(error.message, /Invalid URL \(POST \/v1\/chat\/completions\)/);
    assert.equal(upstream.requests.length, 0);
  } finally {
    await server.close();
    await upstream.close();
  }
});

describe('multipart endpoints (a recording to transcribe): the form passed on byte for byte to the default backend', () => {
  let backend: Server;
  let received: Array<{ url: string; headers: IncomingHttpHeaders; body: Buffer }>;
  let server: TestServer;
  let client: OpenAI;

  before(async () => {
    received = [];
    backend = createHttpServer(async (req, res) => {
      const parts: Buffer[] = [];
      for await (const part of req) parts.push(part as Buffer);
      received.push({ url: req.url ?? '', headers: req.headers, body: Buffer.concat(parts) });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ text: 'hello world' }));
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    const { port } = backend.address() as AddressInfo;
    server = await startTestServer({
      ASSISTD_API_KEY: KEY,
      ASSISTD_UPSTREAM_BASE_URL: `http://127.0.0.1:${port}/v1`,
      ASSISTD_UPSTREAM_API_KEY: UPSTREAM_KEY,
    });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
  });
  after(async () => {
    await server?.close();
    await new Promise((resolve) => backend?.close(resolve));
  });

  test('audio.transcriptions: the recording and the fields reach the backend under its key; its answer comes back', async () => {
    const recording = randomBytes(300_000);
    const result = await client.audio.transcriptions.create({
      file: await toFile(recording, 'note.wav'),
      model: 'whisper-1',
      language: 'en',
    });
    assert.deepEqual({ ...result }, { text: 'hello world' });
    const sent = received.at(-1)!;
    assert.equal(sent.url, '/v1/audio/transcriptions');
    assert.equal(sent.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.match(String(sent.headers['content-type']), /^multipart\/form-data; boundary=/);
    assert.ok(sent.body.includes(recording), 'the recording, byte for byte');
    assert.match(sent.body.toString('latin1'), /name="model"\r\n\r\nwhisper-1\r\n/);
    assert.match(sent.body.toString('latin1'), /name="language"\r\n\r\nen\r\n/);
  });

  test("Azure OpenAI's client sends its form under the deployment: passed on the same way", async () => {
    const azure = new AzureOpenAI({ endpoint: server.url, apiKey: KEY, apiVersion: '2024-10-21', maxRetries: 0 });
    const result = await azure.audio.transcriptions.create({
      file: await toFile(Buffer.from('RIFF'), 'note.wav'),
      model: 'whisper-1',
    });
    assert.deepEqual({ ...result }, { text: 'hello world' });
    assert.equal(received.at(-1)!.url, '/v1/audio/transcriptions');
  });

  test('a JSON body is refused with a 415, and nothing is sent', async () => {
    const before = received.length;
    const response = await fetch(`${server.url}/v1/audio/transcriptions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'whisper-1' }),
    });
    assert.equal(response.status, 415);
    const { error } = (await response.json()) as { error: Record<string, unknown> };
    assert.equal(error['code'], 'unsupported_content_type');
    assert.equal(received.length, before);
  });

  test('a form over the limit fails with a 413 once the limit is passed', async () => {
    const limited = atMost(Readable.from([Buffer.alloc(4), Buffer.alloc(4)]), 6);
    await assert.rejects(
      async () => {
        for await (const _ of limited);
      },
      (error: unknown) => error instanceof ApiError && error.status === 413 && error.code === 'request_too_large',
    );
  });
});

test('ASSISTD_PASS_THROUGH is on by default, and off by default with a tokens-per-minute limit (what it uses is not counted)', () => {
  assert.equal(loadConfig({}).passThrough, true);
  assert.equal(loadConfig({ ASSISTD_RATE_LIMIT_TPM: '1000' }).passThrough, false);
  assert.equal(loadConfig({ ASSISTD_RATE_LIMIT_TPM: '1000', ASSISTD_PASS_THROUGH: 'on' }).passThrough, true);
});

test('a client gone before its request reached the handler: the signal is aborted at once', () => {
  const gone = untilClientGone({ raw: { destroyed: true } } as unknown as FastifyReply);
  assert.equal(gone.aborted, true);
  let close: (() => void) | undefined;
  const raw = { destroyed: false, once: (_event: string, listener: () => void) => (close = listener) };
  const here = untilClientGone({ raw } as unknown as FastifyReply);
  assert.equal(here.aborted, false);
  close?.();
  assert.equal(here.aborted, true);
});
