import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { onePixelPng } from '../support/images.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

type Body = Record<string, unknown>;

/** Uploads a file and answers its id: message parts and attachments name real files. */
async function upload(server: TestServer, bytes: Buffer, filename: string): Promise<string> {
  return (await server.api.upload(bytes, filename)).id as string;
}

describe('resources', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => server.close());

  test('an assistant created with only a model has upstream defaults, every field present', async () => {
    const before = Math.floor(Date.now() / 1000);
    const { status, body } = await server.api.post('/v1/assistants', { model: 'gpt-4o-mini' });
    assert.equal(status, 200);
    assert.match(body.id as string, /^asst_[0-9A-Za-z]{24}$/);
    assert.ok((body.created_at as number) >= before && (body.created_at as number) <= before + 2);
    assert.deepEqual(
      { ...body, id: undefined, created_at: undefined },
      {
        id: undefined,
        object: 'assistant',
        created_at: undefined,
        name: null,
        description: null,
        model: 'gpt-4o-mini',
        instructions: null,
        tools: [],
        tool_resources: {},
        metadata: {},
        temperature: 1,
        top_p: 1,
        response_format: 'auto',
        reasoning_effort: null,
      },
    );
  });

  test('modifying an assistant changes only what is sent; null resets to the default', async () => {
    const created = await server.api.post('/v1/assistants', {
      model: 'm',
      name: 'Math tutor',
      instructions: 'Answer with numbers.',
      temperature: 0.2,
      metadata: { a: '1' },
      tools: [{ type: 'code_interpreter' }],
      tool_resources: { code_interpreter: {} },
    });
    assert.deepEqual(created.body.tool_resources, { code_interpreter: { file_ids: [] } });
    const id = created.body.id as string;
    const modified = await server.api.post(`/v1/assistants/${id}`, {
      name: null,
      temperature: null,
      metadata: { b: '2' },
    });
    assert.equal(modified.status, 200);
    assert.equal(modified.body.name, null);
    assert.equal(modified.body.temperature, 1);
    assert.deepEqual(modified.body.metadata, { b: '2' });
    assert.equal(modified.body.instructions, 'Answer with numbers.');
    assert.deepEqual(modified.body.tools, [{ type: 'code_interpreter' }]);
    assert.deepEqual((await server.api.get(`/v1/assistants/${id}`)).body, modified.body);
    const deleted = await server.api.delete(`/v1/assistants/${id}`);
    assert.deepEqual(deleted.body, { id, object: 'assistant.deleted', deleted: true });
  });

  test('a thread with initial messages, modified and deleted with its messages', async () => {
    const image = await upload(server, onePixelPng(), 'pixel.png');
    const { body: store } = await server.api.post('/v1/vector_stores', { name: 'notes' });
    const storeId = store.id as string;
    // An unknown store in tool_resources is refused before anything is created, as an unknown file is.
    const refused = await server.api.post('/v1/threads', {
      messages: [{ role: 'user', content: 'Hello' }],
      tool_resources: { file_search: { vector_store_ids: ['vs_unknown'] } },
    });
    assert.equal(refused.status, 404);
    assert.equal((refused.body.error as { message: string }).message, "No vector store found with id 'vs_unknown'.");
    const { body: thread } = await server.api.post('/v1/threads', {
      messages: [
        { role: 'user', content: 'Hello', metadata: { n: '1' } },
        {
          role: 'assistant',
          content: [
            { type: 'text', text: 'Look:' },
            { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
            { type: 'image_file', image_file: { file_id: image } },
          ],
        },
      ],
      metadata: { topic: 'greeting' },
      tool_resources: { file_search: { vector_store_ids: [storeId] } },
    });
    assert.match(thread.id as string, /^thread_/);
    assert.deepEqual(thread.tool_resources, { file_search: { vector_store_ids: [storeId] } });
    assert.deepEqual(thread.metadata, { topic: 'greeting' });

    const list = await server.api.get<{ data: Body[] }>(`/v1/threads/${thread.id}/messages?order=asc`);
    const [first, second] = list.body.data;
    assert.deepEqual(first!.content, [{ type: 'text', text: { value: 'Hello', annotations: [] } }]);
    assert.equal(first!.role, 'user');
    assert.equal(first!.thread_id, thread.id);
    assert.equal(first!.status, 'completed');
    assert.equal(first!.assistant_id, null);
    assert.equal(first!.run_id, null);
    assert.deepEqual(first!.attachments, []);
    assert.deepEqual(first!.metadata, { n: '1' });
    assert.deepEqual(second!.content, [
      { type: 'text', text: { value: 'Look:', annotations: [] } },
      { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
      { type: 'image_file', image_file: { file_id: image, detail: 'auto' } },
    ]);

    const modified = await server.api.post(`/v1/threads/${thread.id}`, { metadata: { topic: 'other' } });
    assert.deepEqual(modified.body.metadata, { topic: 'other' });
    assert.deepEqual(modified.body.tool_resources, thread.tool_resources);

    const deleted = await server.api.delete(`/v1/threads/${thread.id}`);
    assert.deepEqual(deleted.body, { id: thread.id, object: 'thread.deleted', deleted: true });
    assert.equal((await server.api.get(`/v1/threads/${thread.id}/messages/${first!.id}`)).status, 404);
  });

  test('messages: create with attachments, retrieve, modify metadata, delete', async () => {
    const { body: thread } = await server.api.post('/v1/threads');
    const url = `/v1/threads/${thread.id}/messages`;
    const report = await upload(server, Buffer.from('The report.\n'), 'report.txt');
    const { body: message } = await server.api.post(url, {
      role: 'user',
      content: 'Summarise the report',
      attachments: [{ file_id: report, tools: [{ type: 'file_search' }, { type: 'code_interpreter' }] }],
      metadata: { source: 'test' },
    });
    assert.match(message.id as string, /^msg_/);
    assert.deepEqual(message.attachments, [
      { file_id: report, tools: [{ type: 'file_search' }, { type: 'code_interpreter' }] },
    ]);
    assert.deepEqual((await server.api.get(`${url}/${message.id}`)).body, message);
    const modified = await server.api.post(`${url}/${message.id}`, { metadata: { source: 'edited' } });
    assert.deepEqual(modified.body, { ...message, metadata: { source: 'edited' } });
    assert.deepEqual((await server.api.delete(`${url}/${message.id}`)).body, {
      id: message.id,
      object: 'thread.message.deleted',
      deleted: true,
    });
    assert.equal((await server.api.get(`${url}/${message.id}`)).status, 404);
  });

  test('a message of one thread is not reachable through another thread', async () => {
    const { body: a } = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'in a' }] });
    const { body: b } = await server.api.post('/v1/threads');
    const list = await server.api.get<{ data: Body[] }>(`/v1/threads/${a.id}/messages`);
    const id = list.body.data[0]!.id;
    assert.equal((await server.api.get(`/v1/threads/${b.id}/messages/${id}`)).status, 404);
    assert.equal((await server.api.delete(`/v1/threads/${b.id}/messages/${id}`)).status, 404);
    assert.equal((await server.api.get(`/v1/threads/${b.id}/messages?after=${id}`)).status, 400);
  });

  test('a list under a missing thread or vector store answers 404, even with a cursor', async () => {
    const { body: a } = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'in a' }] });
    const id = (await server.api.get<{ data: Body[] }>(`/v1/threads/${a.id}/messages`)).body.data[0]!.id;
    for (const query of ['', `?after=${id}`, `?before=${id}`, '?after=msg_unknown']) {
      const missing = await server.api.get(`/v1/threads/thread_unknown/messages${query}`);
      assert.equal(missing.status, 404, query);
      assert.match(JSON.stringify(missing.body), /thread_unknown/);
      const store = await server.api.get(`/v1/vector_stores/vs_unknown/files${query}`);
      assert.equal(store.status, 404, query);
    }
  });
});
