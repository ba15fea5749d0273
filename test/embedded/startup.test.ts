import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import OpenAI from 'openai';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { END, scriptedGguf } from '../support/gguf.ts';
import { ROOT, runCli, spawnServer, tempDir } from '../support/server.ts';

/**
 * `assistd serve` as its own process: a model file or models file that cannot be used stops startup with a clear
 * message, and node-llama-cpp is loaded only by a server that has a GGUF route.
 */

describe('startup with GGUF models', () => {
  let dir: string;
  let good: string;

  before(() => {
    dir = tempDir('assistd-gguf-startup-');
    good = path.join(dir, 'good.gguf');
    const bytes = scriptedGguf({ reply: ['Hello', ' there', END] });
    writeFileSync(good, bytes);
    writeFileSync(path.join(dir, 'truncated.gguf'), bytes.subarray(0, bytes.length - 4096));
    writeFileSync(path.join(dir, 'not-a-model.gguf'), 'this is a text file, not a model\n'.repeat(20));
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const serve = (env: Record<string, string>) =>
    runCli({ ASSISTD_DATA_DIR: path.join(dir, 'data'), ASSISTD_LLAMA_THREADS: '1', ...env });

  test('a missing ASSISTD_MODEL_FILE stops startup, naming the setting and the path', async () => {
    const missing = path.join(dir, 'missing.gguf');
    const { code, stderr } = await serve({ ASSISTD_MODEL_FILE: missing });
    assert.equal(code, 1);
    assert.equal(
      stderr.trim(),
      `assistd: invalid setting ASSISTD_MODEL_FILE: the GGUF model file ${missing} does not exist.`,
    );
  });

  test('a truncated GGUF stops startup with "cannot be loaded"', async () => {
    const file = path.join(dir, 'truncated.gguf');
    const { code, stderr } = await serve({ ASSISTD_MODEL_FILE: file });
    assert.equal(code, 1);
    assert.match(stderr, /^assistd: cannot load the model of ASSISTD_MODEL_FILE: /);
    assert.match(stderr, new RegExp(`${file.replaceAll('.', '\\.')} cannot be loaded \\(truncated or corrupt\\?\\)`));
    assert.match(stderr, /Failed to load model/);
  });

  test('a file that is not GGUF at all stops startup with what is wrong with it', async () => {
    const file = path.join(dir, 'not-a-model.gguf');
    const { code, stderr } = await serve({ ASSISTD_MODEL_FILE: file });
    assert.equal(code, 1);
    assert.match(stderr, /cannot load the model of ASSISTD_MODEL_FILE: .*not-a-model\.gguf is not a GGUF model file/);
    assert.match(stderr, /Invalid GGUF magic/);
  });

  test('a models file that does not parse stops startup', async () => {
    const file = path.join(dir, 'broken.yaml');
    writeFileSync(file, 'models:\n  qwen: { type: gguf, path: [unclosed\n');
    const { code, stderr } = await serve({ ASSISTD_MODELS_FILE: file });
    assert.equal(code, 1);
    assert.match(stderr, /^assistd: invalid setting ASSISTD_MODELS_FILE: .*broken\.yaml does not parse as YAML/);
  });

  test('a models file naming a missing GGUF stops startup, naming the route', async () => {
    const file = path.join(dir, 'models.yaml');
    writeFileSync(file, 'models:\n  qwen2.5:\n    type: gguf\n    path: ./nowhere/qwen.gguf\n');
    const { code, stderr } = await serve({ ASSISTD_MODELS_FILE: file });
    assert.equal(code, 1);
    assert.equal(
      stderr.trim(),
      `assistd: invalid setting ASSISTD_MODELS_FILE: model 'qwen2.5': the GGUF model file ${path.join(dir, 'nowhere/qwen.gguf')} does not exist.`,
    );
  });

  test('a models file naming a corrupt GGUF stops startup, naming the route', async () => {
    const file = path.join(dir, 'models-corrupt.json');
    writeFileSync(file, JSON.stringify({ models: { local: { type: 'gguf', path: 'truncated.gguf' } } }));
    const { code, stderr } = await serve({ ASSISTD_MODELS_FILE: file });
    assert.equal(code, 1);
    assert.match(stderr, /^assistd: cannot load the model of ASSISTD_MODELS_FILE: model 'local': .*truncated\.gguf/);
  });
});

describe('node-llama-cpp is loaded only where a GGUF route exists', () => {
  let dir: string;
  let upstream: FakeUpstream;

  before(async () => {
    dir = tempDir('assistd-imports-');
    writeFileSync(path.join(dir, 'model.gguf'), scriptedGguf({ reply: ['Hello', ' there', END] }));
    upstream = await FakeUpstream.start();
  });

  after(async () => {
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Serves with the import recorder preloaded, answers one run, stops; returns the node-llama-cpp modules it loaded. */
  async function importsOfOneRun(name: string, env: Record<string, string>): Promise<string[]> {
    const log = path.join(dir, `${name}.imports`);
    const recorder = pathToFileURL(path.join(ROOT, 'test/support/import-recorder.mjs')).href;
    const server = await spawnServer({
      ASSISTD_DATA_DIR: path.join(dir, `${name}-data`),
      NODE_OPTIONS: `--import=${recorder}`,
      ASSISTD_TEST_IMPORT_LOG: log,
      ASSISTD_TEST_IMPORT_MATCH: 'node-llama-cpp',
      ...env,
    });
    try {
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const assistant = await client.beta.assistants.create({ model: 'gpt-4o-mini' });
      const run = await client.beta.threads.createAndRunPoll({
        assistant_id: assistant.id,
        thread: { messages: [{ role: 'user', content: 'Hi' }] },
      });
      assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
      const models = await client.models.list();
      assert.ok(Array.isArray(models.data));
    } finally {
      assert.equal(await server.stop(), 0, server.output());
    }
    return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
  }

  test('a server on an OpenAI-compatible upstream never imports it, even while running and listing models', async () => {
    const imports = await importsOfOneRun('upstream', { ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl });
    assert.deepEqual(imports, []);
  });

  test('a server with ASSISTD_MODEL_FILE does (the recorder sees it: the check above can fail)', async () => {
    const imports = await importsOfOneRun('gguf', {
      ASSISTD_MODEL_FILE: path.join(dir, 'model.gguf'),
      ASSISTD_LLAMA_THREADS: '1',
      ASSISTD_LLAMA_CONTEXT_SIZE: '4096',
    });
    assert.ok(
      imports.some((url) => url.includes('/node_modules/node-llama-cpp/')),
      imports.join('\n'),
    );
  });
});
