import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * A route of the models file with `reasoning_opened: true` serves a model whose chat template opens its reasoning
 * in the prompt (DeepSeek-R1 distills, QwQ behind a server without a reasoning parser): what it streams up to
 * `</think>` is reasoning, kept out of the answer; the same stream on a route without it is all answer.
 */
describe('reasoning_opened, through a run', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let client: OpenAI;
  let dir: string;

  before(async () => {
    upstream = await FakeUpstream.start();
    dir = mkdtempSync(path.join(tmpdir(), 'assistd-reasoning-opened-'));
    const models = {
      models: {
        r1: { type: 'openai-compatible', base_url: upstream.baseUrl, reasoning_opened: true },
        plain: { type: 'openai-compatible', base_url: upstream.baseUrl },
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

  async function answerOn(model: string): Promise<string> {
    upstream.enqueue({ text: ['The user asks 2+2.', ' That is 4.\n</', 'think>\n\n', 'The answer is 4.'] });
    const assistant = await client.beta.assistants.create({ model });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: '2+2?' }] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const [message] = (await client.beta.threads.messages.list(thread.id, { run_id: run.id })).data;
    const [part] = message!.content;
    return part?.type === 'text' ? part.text.value : '';
  }

  test('on a route with it, the reasoning before </think> is not part of the answer', async () => {
    assert.equal((await answerOn('r1')).trim(), 'The answer is 4.');
  });

  test('on a route without it, the same stream is the answer as written', async () => {
    assert.match(await answerOn('plain'), /^The user asks 2\+2\. That is 4\.\n<\/think>/);
  });
});
