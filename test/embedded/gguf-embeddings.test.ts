import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI, { toFile } from 'openai';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import { startServer } from '../../src/main.ts';
import { ModelLoadError } from '../../src/providers/model-router.ts';
import { DEFAULT_SCOPE } from '../../src/storage/store.ts';
import { CONCEPTS } from '../support/fake-upstream.ts';
import { scriptedEmbeddingGguf } from '../support/gguf.ts';
import { startTestServer, type TestServer, tempDir } from '../support/server.ts';
import { createValidatingFetch } from '../support/validating-fetch.ts';

/**
 * A GGUF embedding model run in-process (node-llama-cpp's embedding context), end to end: the scripted model of
 * test/support/gguf.ts embeds a text as its bag of concepts (CONCEPTS: synonyms share a dimension), so a query that
 * shares no word with a document still finds it, through the same hybrid search as an embeddings endpoint.
 */
describe('a GGUF embedding model (ASSISTD_EMBEDDINGS_MODEL_FILE)', () => {
  let dir: string;
  let modelFile: string;
  let server: TestServer;
  let client: OpenAI;
  const recorder = createValidatingFetch();

  before(async () => {
    dir = tempDir('assistd-gguf-embeddings-');
    modelFile = path.join(dir, 'concepts-embed.gguf');
    writeFileSync(modelFile, scriptedEmbeddingGguf(CONCEPTS));
    server = await startTestServer({ ASSISTD_EMBEDDINGS_MODEL_FILE: modelFile, ASSISTD_LLAMA_THREADS: '1' });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'k', fetch: recorder.fetch, maxRetries: 0 });
  });

  after(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    recorder.assertNoViolations({ all: true });
  });

  test('files are embedded by the model, recorded under its file name, and searched hybrid', async () => {
    const store = await client.vectorStores.create({ name: 'gguf' });
    // Longer than the model's 512-token context (bytes are tokens here): cut, not failed.
    const long = `Car servicing on weekdays. ${'Bring the papers along. '.repeat(120)}`;
    for (const [name, text] of [
      ['car.txt', long],
      ['pizza.txt', 'The canteen serves pizza on Fridays.'],
    ]) {
      const file = await client.vectorStores.files.uploadAndPoll(store.id, await toFile(Buffer.from(text!), name!), {
        pollIntervalMs: 20,
      });
      assert.equal(file.status, 'completed', JSON.stringify(file.last_error));
    }
    assert.deepEqual(await server.server.store.vectorStores.storeEmbedding(DEFAULT_SCOPE, store.id), {
      model: 'concepts-embed',
      dimensions: 8,
    });
    const { data, response } = await client.vectorStores
      .search(store.id, { query: 'automobile maintenance' })
      .withResponse();
    assert.equal(response.headers.get('x-assistd-ranking'), 'hybrid');
    assert.deepEqual(
      data.data.map((hit) => hit.filename),
      ['car.txt'],
    );
  });

  test("the model answers the client's own embeddings requests: base64 (the SDK's default) and floats alike", async () => {
    const cosine = (a: number[], b: number[]) => {
      const dot = a.reduce((sum, x, i) => sum + x * b[i]!, 0);
      return dot / Math.hypot(...a) / Math.hypot(...b);
    };
    const result = await client.embeddings.create({ model: 'concepts-embed', input: ['car', 'automobile', 'pizza'] });
    assert.equal(result.model, 'concepts-embed');
    const [car, automobile, pizza] = result.data.map((d) => d.embedding);
    assert.deepEqual(
      result.data.map((d) => [d.index, d.embedding.length]),
      [
        [0, 8],
        [1, 8],
        [2, 8],
      ],
    );
    assert.ok(cosine(car!, automobile!) > 0.99, 'synonyms share a direction');
    assert.ok(cosine(car!, pizza!) < 0.5, 'other concepts do not');
    assert.ok(result.usage.prompt_tokens > 0);
    const floats = await client.embeddings.create({ model: 'concepts-embed', input: 'car', encoding_format: 'float' });
    assert.deepEqual(
      floats.data[0]!.embedding.map((x) => Math.fround(x)),
      car,
    );

    // Asked without the SDK, whose decoding would take floats too: base64 is a string.
    const raw = await fetch(`${server.url}/v1/embeddings`, {
      method: 'POST',
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'concepts-embed', input: 'car', encoding_format: 'base64' }),
    });
    const encoded = ((await raw.json()) as { data: Array<{ embedding: unknown }> }).data[0]!.embedding;
    assert.equal(typeof encoded, 'string');
    assert.deepEqual([...new Float32Array(new Uint8Array(Buffer.from(encoded as string, 'base64')).buffer)], car);

    for (const [extra, param] of [
      [{ dimensions: 4 }, 'dimensions'],
      [{ input: [[1, 2, 3]] }, 'input'],
      [{ input: [] }, 'input'],
    ] as const) {
      const error = await client.embeddings
        .create({ model: 'concepts-embed', input: 'car', ...extra } as OpenAI.EmbeddingCreateParams)
        .catch((e) => e);
      assert.ok(error instanceof OpenAI.BadRequestError, `${JSON.stringify(extra)}: ${String(error)}`);
      assert.equal(error.param, param, JSON.stringify(extra));
    }
  });

  test('a file that is not a GGUF embedding model stops startup, naming the setting', async () => {
    const bad = path.join(dir, 'bad.gguf');
    writeFileSync(bad, 'not a model\n'.repeat(20));
    const dataDir = tempDir();
    const config = loadConfig({
      HOST: '127.0.0.1',
      PORT: '0',
      ASSISTD_DATA_DIR: dataDir,
      ASSISTD_EMBEDDINGS_MODEL_FILE: bad,
    });
    await assert.rejects(startServer(config, pino({ level: 'silent' })), (error: unknown) => {
      assert.ok(error instanceof ModelLoadError);
      assert.equal(error.setting, 'ASSISTD_EMBEDDINGS_MODEL_FILE');
      assert.match(error.message, /bad\.gguf is not a GGUF model file/);
      return true;
    });
    rmSync(dataDir, { recursive: true, force: true });
  });
});
