import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { EmbeddingError } from '../../src/providers/embedder.ts';
import { OpenAICompatibleEmbedder } from '../../src/providers/openai-compatible/openai-compatible-embedder.ts';
import { reciprocalRankFusion } from '../../src/retrieval/rank-fusion.ts';
import { allocateMatrix, MIN_WASM_MATRIX_BYTES } from '../../src/storage/sql/scoring-matrix.ts';
import { MAX_CACHED_STORES, VectorMatrixCache } from '../../src/storage/sql/vector-matrix-cache.ts';
import { FakeUpstream, llamaCppError } from '../support/fake-upstream.ts';

describe('OpenAICompatibleEmbedder against a fake /v1/embeddings', () => {
  let upstream: FakeUpstream;
  before(async () => {
    upstream = await FakeUpstream.start();
  });
  after(() => upstream.close());

  const embedder = (options: Partial<ConstructorParameters<typeof OpenAICompatibleEmbedder>[0]> = {}) =>
    new OpenAICompatibleEmbedder({
      baseURL: upstream.baseUrl,
      apiKey: 'sk-embed',
      model: 'concepts',
      timeoutMs: 2000,
      maxRetries: 2,
      ...options,
    });

  test('sends {model, input} with the key, in batches, and returns one vector per text in order', async () => {
    const start = upstream.embeddingRequests.length;
    const e = embedder({ batchSize: 2 });
    assert.equal(e.dimensions, undefined);
    const vectors = await e.embed(['car', 'pizza', 'rain', 'nothing'], AbortSignal.timeout(5000));
    assert.deepEqual(
      vectors.map((v) => [...v]),
      [upstream.embed('car'), upstream.embed('pizza'), upstream.embed('rain'), upstream.embed('nothing')],
    );
    assert.equal(e.dimensions, 5);
    const sent = upstream.embeddingRequests.slice(start);
    assert.deepEqual(
      sent.map((r) => r.body),
      [
        { model: 'concepts', input: ['car', 'pizza'] },
        { model: 'concepts', input: ['rain', 'nothing'] },
      ],
    );
    assert.equal(sent[0]!.headers.authorization, 'Bearer sk-embed');
    await e.close();
  });

  test('retries a 429 (after its retry-after) and a 5xx, then succeeds; a 400 is not retried', async () => {
    const e = embedder();
    upstream.enqueueEmbeddingErrors({ status: 429, headers: { 'retry-after-ms': '10' } }, { status: 502 });
    const start = upstream.embeddingRequests.length;
    assert.equal((await e.embed(['car'], AbortSignal.timeout(10_000))).length, 1);
    assert.equal(upstream.embeddingRequests.length - start, 3);
    // Gemini's hint is in the body only.
    upstream.enqueueEmbeddingErrors({
      status: 429,
      body: [{ error: { code: 429, message: 'Quota exceeded.', details: [{ retryDelay: '0.01s' }] } }],
    });
    assert.equal((await e.embed(['car'], AbortSignal.timeout(10_000))).length, 1);

    upstream.enqueueEmbeddingErrors({
      status: 400,
      body: { error: { message: 'input too long', type: 'invalid_request_error' } },
    });
    await assert.rejects(e.embed(['car'], AbortSignal.timeout(5000)), (error: unknown) => {
      assert.ok(error instanceof EmbeddingError);
      assert.equal(error.retryable, false);
      assert.match(error.message, /embeddings returned 400: input too long/);
      return true;
    });
    upstream.enqueueEmbeddingErrors({ status: 500 }, { status: 500 }, { status: 500 });
    await assert.rejects(e.embed(['car'], AbortSignal.timeout(10_000)), /returned 500/);
    await e.close();
  });

  test('an endpoint that takes fewer inputs per request (TEI, Mistral) gets smaller batches from then on', async () => {
    const e = embedder({ batchSize: 4 });
    upstream.enqueueEmbeddingErrors({
      status: 422,
      body: { message: 'batch size 4 > maximum allowed batch size 2', code: 422, type: 'Validation' },
    });
    const start = upstream.embeddingRequests.length;
    const texts = ['car', 'pizza', 'rain', 'nothing', 'auto'];
    const vectors = await e.embed(texts, AbortSignal.timeout(5000));
    assert.deepEqual(
      vectors.map((v) => [...v]),
      texts.map((text) => upstream.embed(text)),
    );
    await e.embed(texts, AbortSignal.timeout(5000));
    assert.deepEqual(
      upstream.embeddingRequests.slice(start).map((r) => (r.body.input as string[]).length),
      [4, 2, 2, 1, 2, 2, 1],
    );
    // Without a number in the refusal, the batch is halved.
    const halving = embedder({ batchSize: 4, maxRetries: 0 });
    upstream.enqueueEmbeddingErrors({
      status: 400,
      body: { object: 'error', message: 'Too many tokens overall, split into more batches.', code: '3210' },
    });
    const before = upstream.embeddingRequests.length;
    assert.equal((await halving.embed(texts.slice(0, 4), AbortSignal.timeout(5000))).length, 4);
    assert.deepEqual(
      upstream.embeddingRequests.slice(before).map((r) => (r.body.input as string[]).length),
      [4, 2, 2],
    );
    await Promise.all([e.close(), halving.close()]);
  });

  for (const [server, refusal] of [
    ['Ollama', { status: 400, body: { error: 'the input length exceeds the context length' } }],
    [
      'llama.cpp',
      llamaCppError(
        500,
        'input (992 tokens) is too large to process. increase the physical batch size (current batch size: 512)',
      ),
    ],
  ] as const)
    test(`an input longer than the model takes (${server}) is embedded by its start, from then on`, async () => {
      const e = embedder({ maxRetries: 0 });
      upstream.enqueueEmbeddingErrors(refusal);
      const long = 'car '.repeat(500); // 2,000 characters
      const start = upstream.embeddingRequests.length;
      const vectors = await e.embed([long, 'pizza'], AbortSignal.timeout(5000));
      assert.equal(vectors.length, 2);
      await e.embed([long], AbortSignal.timeout(5000));
      assert.deepEqual(
        upstream.embeddingRequests.slice(start).map((r) => (r.body.input as string[]).map((text) => text.length)),
        [[2000, 5], [1000, 5], [1000]],
      );
      assert.deepEqual([...vectors[1]!], upstream.embed('pizza'));
      await e.close();
    });

  // A base URL's user and password are refused with the settings (test/config/models-config.test.ts).
  test('an upstream that echoes the key never puts it in the error', async () => {
    const key = 'sk-embed-secret-0123456789';
    const e = embedder({ apiKey: key });
    upstream.enqueueEmbeddingErrors({
      status: 401,
      body: { error: { message: `Incorrect API key provided: ${key}.`, type: 'invalid_request_error' } },
    });
    await assert.rejects(e.embed(['car'], AbortSignal.timeout(5000)), (error: unknown) => {
      assert.ok(error instanceof EmbeddingError);
      assert.match(error.message, /returned 401: Incorrect API key provided: \[api key\]\.$/);
      assert.ok(!error.message.includes(key), error.message);
      return true;
    });
    upstream.enqueueEmbeddingErrors({ status: 500, body: `upstream failed for Bearer ${key}` });
    await assert.rejects(
      embedder({ apiKey: key, maxRetries: 0 }).embed(['car'], AbortSignal.timeout(5000)),
      (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.match(error.message, /returned 500: upstream failed for Bearer \[api key\]$/);
        return true;
      },
    );
    await e.close();
  });

  test("requests let go of the caller's signal: nothing of them stays on a signal that lives long", async () => {
    // The ingestion worker's signal lives as long as the server. AbortSignal.any would keep each request's
    // combination with it for as long (Node's #55351); listeners are removed once the request is over.
    const any = AbortSignal.any;
    let combined = 0;
    AbortSignal.any = (signals) => {
      combined++;
      return any(signals);
    };
    const lifetime = new AbortController();
    const e = embedder({ batchSize: 1 });
    try {
      assert.equal((await e.embed(['car', 'pizza', 'rain'], lifetime.signal)).length, 3);
    } finally {
      AbortSignal.any = any;
      await e.close();
    }
    assert.equal(combined, 0);
    assert.equal(getEventListeners(lifetime.signal, 'abort').length, 0);
  });

  test('an unreachable endpoint and an aborted call fail clearly', async () => {
    const closed = new OpenAICompatibleEmbedder({
      baseURL: 'http://127.0.0.1:9/v1',
      model: 'm',
      timeoutMs: 1000,
      maxRetries: 0,
    });
    await assert.rejects(closed.embed(['x'], AbortSignal.timeout(5000)), /could not be reached/);
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    await assert.rejects(embedder().embed(['x'], controller.signal), /stop/);
  });
});

describe('OpenAICompatibleEmbedder against answers that are not embeddings', () => {
  let server: Server;
  let answer: unknown = {};
  let baseURL = '';
  before(async () => {
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(typeof answer === 'string' ? answer : JSON.stringify(answer));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  test('one embedding for a list of inputs (FastFlowLM, older llama-box): one input per request from then on', async () => {
    const inputs: unknown[] = [];
    const one = createServer(async (req, res) => {
      let text = '';
      for await (const piece of req) text += piece;
      const { input } = JSON.parse(text) as { input: string[] };
      inputs.push(input);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ data: [{ index: 0, embedding: [input[0]!.length, 1] }] }));
    });
    await new Promise<void>((resolve) => one.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(one.address() as AddressInfo).port}/v1`;
    const e = new OpenAICompatibleEmbedder({ baseURL: url, model: 'm', timeoutMs: 1000, maxRetries: 0 });
    try {
      assert.deepEqual(
        (await e.embed(['a', 'bb', 'ccc'], AbortSignal.timeout(5000))).map((v) => [...v]),
        [
          [1, 1],
          [2, 1],
          [3, 1],
        ],
      );
      await e.embed(['dd', 'e'], AbortSignal.timeout(5000));
      assert.deepEqual(inputs, [['a', 'bb', 'ccc'], ['a'], ['bb'], ['ccc'], ['dd'], ['e']]);
    } finally {
      await e.close();
      one.closeAllConnections();
      await new Promise((resolve) => one.close(resolve));
    }
  });

  test("an asymmetric model that must be told what it embeds (NVIDIA NIM's input_type) is told: passage or query", async () => {
    const told: unknown[] = [];
    const nim = createServer(async (req, res) => {
      let text = '';
      for await (const piece of req) text += piece;
      const { input, input_type } = JSON.parse(text) as { input: string[]; input_type?: string };
      told.push(input_type);
      if (input_type === undefined) {
        res.writeHead(400, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify({ detail: "'input_type' parameter is required for asymmetric models" }));
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ data: input.map((_, index) => ({ index, embedding: [1, 0] })) }));
    });
    await new Promise<void>((resolve) => nim.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(nim.address() as AddressInfo).port}/v1`;
    const e = new OpenAICompatibleEmbedder({
      baseURL: url,
      model: 'nvidia/nv-embedqa-e5-v5',
      timeoutMs: 1000,
      maxRetries: 0,
    });
    try {
      assert.equal((await e.embed(['a chunk', 'another'], AbortSignal.timeout(5000))).length, 2);
      assert.equal((await e.embed(['a question'], AbortSignal.timeout(5000), 'query')).length, 1);
      assert.deepEqual(told, [undefined, 'passage', 'query']);
    } finally {
      await e.close();
      nim.closeAllConnections();
      await new Promise((resolve) => nim.close(resolve));
    }
  });

  test('each is refused with what is wrong', async () => {
    const e = new OpenAICompatibleEmbedder({ baseURL, model: 'm', timeoutMs: 1000, maxRetries: 0 });
    for (const [body, why] of [
      [{}, /no `data` list/],
      [{ data: [] }, /0 embeddings for 2 inputs/],
      [{ data: [{ embedding: 'AAAA' }, { embedding: [1] }] }, /not a list of numbers/],
      [{ data: [{ embedding: [1, 2] }, { embedding: [1] }] }, /different lengths/],
      [
        {
          data: [
            { index: 0, embedding: [1] },
            { index: 0, embedding: [2] },
          ],
        },
        /duplicate or out-of-range index/,
      ],
      ['not json', /other than JSON/],
    ] as const) {
      answer = body;
      await assert.rejects(e.embed(['a', 'b'], AbortSignal.timeout(5000)), why);
    }
    answer = {
      data: [
        { index: 1, embedding: [0, 1] },
        { index: 0, embedding: [1, 0] },
      ],
    };
    assert.deepEqual(
      (await e.embed(['a', 'b'], AbortSignal.timeout(5000))).map((v) => [...v]),
      [
        [1, 0],
        [0, 1],
      ],
      'ordered by index',
    );
    await e.close();
  });
});

describe('reciprocal rank fusion', () => {
  test('sums 1/(60 + rank) over the lists, scaled so that first in every list is 1', () => {
    const fused = reciprocalRankFusion(
      [
        ['a', 'b', 'c'],
        ['b', 'd'],
      ],
      (x) => x,
    );
    const score = (id: string) => fused.find((f) => f.item === id)!.score;
    assert.deepEqual(
      fused.map((f) => f.item),
      ['b', 'a', 'd', 'c'],
    );
    assert.equal(score('b'), (1 / 62 + 1 / 61) / (2 / 61));
    assert.equal(score('a'), 0.5);
    assert.equal(score('d'), 1 / 62 / (2 / 61));
    assert.equal(reciprocalRankFusion([['x'], ['x']], (x) => x)[0]!.score, 1);
    assert.deepEqual(
      reciprocalRankFusion([[], []], (x) => x),
      [],
    );
  });
});

describe('scoring matrix', () => {
  test('WebAssembly SIMD and the JavaScript loop give the same dot products, for any dimension', () => {
    for (const dims of [1, 3, 8, 13, 384]) {
      const stride = Math.ceil(dims / 8) * 8;
      const rows = Math.ceil(MIN_WASM_MATRIX_BYTES / (stride * 4)) + 37;
      const wasm = allocateMatrix(rows, dims);
      const js = allocateMatrix(rows, dims, false);
      assert.deepEqual([wasm.wasm, js.wasm], [true, false]);
      assert.ok(wasm.stride % 8 === 0 && wasm.stride >= dims);
      const query = Float32Array.from({ length: dims }, (_, j) => Math.sin(j + 1));
      for (let r = 0; r < rows; r++)
        for (let j = 0; j < dims; j++) {
          const value = Math.cos(r * 7 + j);
          wasm.data[r * wasm.stride + j] = value;
          js.data[r * js.stride + j] = value;
        }
      const a = [...wasm.scores(query)];
      const b = [...js.scores(query)];
      for (let r = 0; r < rows; r++) assert.ok(Math.abs(a[r]! - b[r]!) < 1e-3, `${dims} dims, row ${r}`);
    }
    assert.equal(allocateMatrix(0, 4).scores(new Float32Array(4)).length, 0);
  });

  test('20,000 small matrices live at once: only large ones take a WebAssembly memory (~10 GiB of address each)', () => {
    // About 13,000 WebAssembly memories exhaust a process's address space, and the next allocation throws.
    const held = Array.from({ length: 20_000 }, () => allocateMatrix(3, 384));
    assert.ok(held.every((matrix) => !matrix.wasm));
    const query = Float32Array.from({ length: 384 }, () => 1);
    held[19_999]!.data.fill(0.5, 0, 384);
    assert.equal(held[19_999]!.scores(query)[0], 192);
  });
});

describe('vector matrix cache', () => {
  test(`holds at most ${MAX_CACHED_STORES} stores, least recently searched dropped first`, async () => {
    const cache = new VectorMatrixCache();
    const source = {
      rows: async () => [{ seq: 1, fileId: 'file-1' }],
      vectors: async () => new Map([[1, Buffer.from(new Float32Array([1, 0, 0, 0]).buffer)]]),
    };
    const stores = MAX_CACHED_STORES + 100;
    for (let i = 0; i < stores; i++) {
      if (i > 0) await cache.matrix('vs-first', 1, 4, source); // searched all along: never the oldest
      await cache.matrix(`vs-${i}`, 1, 4, source);
    }
    assert.equal(cache.size, MAX_CACHED_STORES);
    const read = cache.vectorsRead;
    await cache.matrix('vs-first', 1, 4, source);
    await cache.matrix(`vs-${stores - 1}`, 1, 4, source);
    assert.equal(cache.vectorsRead, read, 'the most recently searched stores are still cached');
    await cache.matrix('vs-1', 1, 4, source);
    assert.equal(cache.vectorsRead, read + 1, 'one of the oldest was dropped and is read again');
  });
});
