import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import OpenAI, { toFile } from 'openai';
import type { StoredFile } from '../../src/domain/files.ts';
import type { ChatMessage } from '../../src/providers/provider.ts';
import { imageFileUrl, type ReadFile, resolveImageFiles } from '../../src/runs/image-files.ts';
import { aStoredFile } from '../support/builders.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { onePixelPng } from '../support/images.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

/**
 * An image_file part of a user message reaches the model as an image_url part carrying the file's bytes as a data
 * URL, with the part's detail; a file deleted since the message was written fails the run with invalid_prompt.
 */

function storedFile(id: string, mime_type: string | null): StoredFile {
  return aStoredFile({ id, bytes: 4, filename: 'f', purpose: 'vision', mime_type });
}

describe('resolveImageFiles', () => {
  const png = onePixelPng();
  const files = new Map([
    ['file-png', { file: storedFile('file-png', 'image/png'), bytes: png }],
    ['file-txt', { file: storedFile('file-txt', 'text/plain'), bytes: Buffer.from('text') }],
  ]);

  function counting(): { read: ReadFile; reads: string[] } {
    const reads: string[] = [];
    return {
      reads,
      read: async (id) => {
        reads.push(id);
        return files.get(id);
      },
    };
  }

  test('replaces placeholders by data URLs in new objects, reading each file once, and shares everything else', async () => {
    const system: ChatMessage = { role: 'system', content: 'Be brief.' };
    const plain: ChatMessage = { role: 'user', content: 'hello' };
    const withImages: ChatMessage = {
      role: 'user',
      content: [
        { type: 'text', text: 'these' },
        { type: 'image_url', image_url: { url: imageFileUrl('file-png'), detail: 'high' } },
        { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
        { type: 'image_url', image_url: { url: imageFileUrl('file-png'), detail: 'low' } },
      ],
    };
    const again: ChatMessage = {
      role: 'user',
      content: [{ type: 'image_url', image_url: { url: imageFileUrl('file-png'), detail: 'auto' } }],
    };
    const input = [system, plain, withImages, again];
    const snapshot = structuredClone(input);
    const { read, reads } = counting();

    const resolved = await resolveImageFiles(input, read);
    assert.ok(resolved.ok);
    const dataUrl = `data:image/png;base64,${png.toString('base64')}`;
    assert.deepEqual(resolved.messages, [
      system,
      plain,
      {
        role: 'user',
        content: [
          { type: 'text', text: 'these' },
          { type: 'image_url', image_url: { url: dataUrl, detail: 'high' } },
          { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
          { type: 'image_url', image_url: { url: dataUrl, detail: 'low' } },
        ],
      },
      { role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl, detail: 'auto' } }] },
    ]);
    assert.deepEqual(reads, ['file-png']);
    assert.deepEqual(input, snapshot, 'the messages given were changed');
    assert.equal(resolved.messages[0], system);
    assert.equal(resolved.messages[1], plain);
    assert.notEqual(resolved.messages[2], withImages);
  });

  test('a prompt without placeholders reads nothing', async () => {
    const { read, reads } = counting();
    const input: ChatMessage[] = [{ role: 'user', content: 'hello' }];
    assert.deepEqual(await resolveImageFiles(input, read), { ok: true, messages: input });
    assert.deepEqual(reads, []);
  });

  test('names the first file that no longer exists', async () => {
    const { read } = counting();
    const input: ChatMessage[] = [
      {
        role: 'user',
        content: [
          { type: 'image_url', image_url: { url: imageFileUrl('file-png'), detail: 'auto' } },
          { type: 'image_url', image_url: { url: imageFileUrl('file-gone'), detail: 'auto' } },
          { type: 'image_url', image_url: { url: imageFileUrl('file-also-gone'), detail: 'auto' } },
        ],
      },
    ];
    assert.deepEqual(await resolveImageFiles(input, read), { ok: false, missingFileId: 'file-gone' });
  });

  test('a file that is not an image (a message stored before ids were checked) stays a text note', async () => {
    const { read } = counting();
    const input: ChatMessage[] = [
      { role: 'user', content: [{ type: 'image_url', image_url: { url: imageFileUrl('file-txt'), detail: 'auto' } }] },
    ];
    const resolved = await resolveImageFiles(input, read);
    assert.deepEqual(resolved, {
      ok: true,
      messages: [{ role: 'user', content: [{ type: 'text', text: '[image file file-txt]' }] }],
    });
  });
});

describe('image files in runs', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let recorder: ValidatingFetch;
  let client: OpenAI;
  let assistantId: string;

  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_UPSTREAM_MAX_RETRIES: '0' });
    recorder = createValidatingFetch();
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
    assistantId = (await client.beta.assistants.create({ model: 'gpt-test' })).id;
  });
  after(async () => {
    await server?.close();
    await upstream?.close();
  });
  afterEach(() => recorder.assertNoViolations());

  async function uploadPng(bytes: Buffer): Promise<string> {
    return (await client.files.create({ file: await toFile(bytes, 'pixel.png'), purpose: 'vision' })).id;
  }

  /** The user messages of the last request the upstream received. */
  function lastUserMessages(): Array<Record<string, unknown>> {
    const last = upstream.requests.at(-1);
    assert.ok(last, 'the upstream received no request');
    return last.body.messages.filter((m) => m['role'] === 'user');
  }

  test('a run whose message has an image_file part of a PNG sends that image to the fake upstream as a data URL', async () => {
    const png = onePixelPng([12, 34, 56]);
    const fileId = await uploadPng(png);
    const thread = await client.beta.threads.create({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What colour is this pixel?' },
            { type: 'image_file', image_file: { file_id: fileId, detail: 'high' } },
          ],
        },
      ],
    });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(run.status, 'completed');
    assert.deepEqual(lastUserMessages(), [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What colour is this pixel?' },
          {
            type: 'image_url',
            image_url: { url: `data:image/png;base64,${png.toString('base64')}`, detail: 'high' },
          },
        ],
      },
    ]);
    // The message itself still names the file.
    const [message] = (await client.beta.threads.messages.list(thread.id, { order: 'asc' })).data;
    assert.deepEqual(message!.content.at(-1), { type: 'image_file', image_file: { file_id: fileId, detail: 'high' } });
  });

  test('a run whose image file was deleted before the run fails with invalid_prompt, without asking the model', async () => {
    const fileId = await uploadPng(onePixelPng([0, 255, 0]));
    const thread = await client.beta.threads.create({
      messages: [{ role: 'user', content: [{ type: 'image_file', image_file: { file_id: fileId } }] }],
    });
    await client.files.delete(fileId);
    const requests = upstream.requests.length;
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(run.status, 'failed');
    assert.deepEqual(run.last_error, { code: 'invalid_prompt', message: `No file found with id '${fileId}'.` });
    assert.equal(upstream.requests.length, requests);
  });

  test('a run whose image has a row but no bytes fails with server_error naming the file', async () => {
    const fileId = await uploadPng(onePixelPng([0, 0, 255]));
    rmSync(path.join(server.dataDir, 'files', 'blobs', fileId)); // deleted behind the server's back
    const thread = await client.beta.threads.create({
      messages: [{ role: 'user', content: [{ type: 'image_file', image_file: { file_id: fileId } }] }],
    });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(run.status, 'failed');
    assert.deepEqual(run.last_error, {
      code: 'server_error',
      message: `The content of file '${fileId}' is missing from storage.`,
    });
  });

  test("a later run of the same thread reads the image again: the first run's prompt kept no bytes", async () => {
    const png = onePixelPng([200, 100, 0]);
    const fileId = await uploadPng(png);
    const thread = await client.beta.threads.create({
      messages: [{ role: 'user', content: [{ type: 'image_file', image_file: { file_id: fileId, detail: 'low' } }] }],
    });
    const first = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(first.status, 'completed');
    const sent = {
      type: 'image_url',
      image_url: { url: `data:image/png;base64,${png.toString('base64')}`, detail: 'low' },
    };
    assert.deepEqual(lastUserMessages(), [{ role: 'user', content: [sent] }]);

    // The thread's finished messages are converted once and shared by later runs: had the data URL been written
    // into that shared message, this run would send it without reading the (now deleted) file.
    await client.files.delete(fileId);
    const requests = upstream.requests.length;
    const second = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(second.status, 'failed');
    assert.deepEqual(second.last_error, { code: 'invalid_prompt', message: `No file found with id '${fileId}'.` });
    assert.equal(upstream.requests.length, requests);
  });
});
