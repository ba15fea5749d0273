import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * `null` for an optional field is taken as leaving it out, where the field gives `null` no meaning of its own. Each
 * body here is what a real program sends through the Python SDK (which sends a `None` it is given as `null`), and
 * each was a 400 before.
 */
describe('null for an optional field', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => server.close());

  const upload = async () => (await server.api.upload('print(1)\n', 'script.py')).id as string;

  test("AutoGen's upload for code_interpreter: a thread's tool_resources dumped with file_search: null", async () => {
    const file = await upload();
    const thread = await server.api.post('/v1/threads', {});
    // _openai_assistant_agent.py: `ToolResources(...).model_dump()` keeps the None of the tool it did not set.
    const { status, body } = await server.api.post(`/v1/threads/${thread.body.id}`, {
      tool_resources: { code_interpreter: { file_ids: [file] }, file_search: null },
    });
    assert.equal(status, 200, JSON.stringify(body));
    assert.deepEqual(body.tool_resources, { code_interpreter: { file_ids: [file] } });
  });

  test("streamlit-openai's assistant: tools: None and name: None", async () => {
    const { status, body } = await server.api.post('/v1/assistants', {
      model: 'm',
      instructions: 'x',
      name: null,
      temperature: 1.0,
      tool_resources: {},
      tools: null,
    });
    assert.equal(status, 200, JSON.stringify(body));
    assert.deepEqual(body.tools, []);
    assert.equal(body.name, null);
  });

  test("agency-swarm's update: the assistant's tool_resources dumped back, both tools null", async () => {
    const created = await server.api.post('/v1/assistants', {
      model: 'm',
      tools: [{ type: 'code_interpreter' }],
      tool_resources: { code_interpreter: { file_ids: [await upload()] } },
    });
    const { status, body } = await server.api.post(`/v1/assistants/${created.body.id}`, {
      tool_resources: { code_interpreter: null, file_search: null },
      tools: [],
    });
    assert.equal(status, 200, JSON.stringify(body));
    assert.deepEqual(body.tool_resources, {});
    assert.deepEqual(body.tools, []);
  });

  test("an assistant's tools sent back as the SDK dumps them: the options it left out are null", async () => {
    const created = await server.api.post('/v1/assistants', {
      model: 'm',
      tools: [{ type: 'file_search' }, { type: 'function', function: { name: 'lookup' } }],
    });
    const { status, body } = await server.api.post(`/v1/assistants/${created.body.id}`, {
      tools: [
        { type: 'file_search', file_search: null },
        { type: 'function', function: { name: 'lookup', description: null, parameters: null, strict: null } },
      ],
    });
    assert.equal(status, 200, JSON.stringify(body));
    const tools = body.tools as Array<Record<string, unknown>>;
    assert.deepEqual(
      tools.map((t) => t.type),
      ['file_search', 'function'],
    );
    assert.equal((tools[1]!.function as { name: string }).name, 'lookup');
    assert.equal('description' in (tools[1]!.function as object), false);
  });

  test('a run created with None for parallel_tool_calls and a thread with None for its messages', async () => {
    const assistant = await server.api.post('/v1/assistants', { model: 'm' });
    const thread = await server.api.post('/v1/threads', { messages: null, metadata: null });
    assert.equal(thread.status, 200, JSON.stringify(thread.body));
    const run = await server.api.post(`/v1/threads/${thread.body.id}/runs`, {
      assistant_id: assistant.body.id,
      parallel_tool_calls: null,
      tools: null,
      truncation_strategy: null,
    });
    assert.equal(run.status, 200, JSON.stringify(run.body));
    assert.equal(run.body.parallel_tool_calls, true);
    const both = await server.api.post('/v1/threads/runs', { assistant_id: assistant.body.id, thread: null });
    assert.equal(both.status, 200, JSON.stringify(both.body));
  });

  test("an image part's detail and a file batch's other list may be null", async () => {
    const thread = await server.api.post('/v1/threads', {});
    const message = await server.api.post(`/v1/threads/${thread.body.id}/messages`, {
      role: 'user',
      content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png', detail: null } }],
    });
    assert.equal(message.status, 200, JSON.stringify(message.body));
    const store = await server.api.post('/v1/vector_stores', {});
    const batch = await server.api.post(`/v1/vector_stores/${store.body.id}/file_batches`, {
      file_ids: [await upload()],
      files: null,
      chunking_strategy: null,
      attributes: null,
    });
    assert.equal(batch.status, 200, JSON.stringify(batch.body));
  });

  test('a null keeps its meaning where it has one, and a required field may not be null', async () => {
    const created = await server.api.post('/v1/assistants', { model: 'm', instructions: 'Be brief.' });
    const cleared = await server.api.post(`/v1/assistants/${created.body.id}`, { instructions: null, model: null });
    assert.equal(cleared.status, 200, JSON.stringify(cleared.body));
    assert.equal(cleared.body.instructions, null);
    assert.equal(cleared.body.model, 'm'); // optional here: as if left out

    const refused = await server.api.post('/v1/assistants', { model: null });
    assert.equal(refused.status, 400);
    assert.equal((refused.body.error as { param: string }).param, 'model');
    const thread = await server.api.post('/v1/threads', {});
    const noContent = await server.api.post(`/v1/threads/${thread.body.id}/messages`, { role: 'user', content: null });
    assert.equal(noContent.status, 400);
  });

  describe("go-openai's requests: its fields without omitempty are sent when a program leaves them unset", () => {
    test('a modification with metadata null keeps the metadata; {} empties it', async () => {
      const meta = { user: 'u1', session: 's9' };
      const store = await server.api.post('/v1/vector_stores', {});
      // ModifyThreadRequest{ToolResources: …}: {"metadata":null,"tool_resources":{…}}.
      const thread = await server.api.post('/v1/threads', { metadata: meta });
      const modified = await server.api.post(`/v1/threads/${thread.body.id}`, {
        metadata: null,
        tool_resources: { file_search: { vector_store_ids: [store.body.id] } },
      });
      assert.equal(modified.status, 200, JSON.stringify(modified.body));
      assert.deepEqual(modified.body.metadata, meta);
      assert.deepEqual((await server.api.get(`/v1/threads/${thread.body.id}`)).body.metadata, meta);

      const assistant = await server.api.post('/v1/assistants', { model: 'm', metadata: meta });
      const message = await server.api.post(`/v1/threads/${thread.body.id}/messages`, {
        role: 'user',
        content: 'hi',
        metadata: meta,
      });
      const tagged = await server.api.post('/v1/vector_stores', { metadata: meta });
      for (const path of [
        `/v1/assistants/${assistant.body.id}`,
        `/v1/threads/${thread.body.id}/messages/${message.body.id}`,
        `/v1/vector_stores/${tagged.body.id}`,
        `/v1/threads/${thread.body.id}`,
      ]) {
        const kept = await server.api.post(path, { metadata: null });
        assert.equal(kept.status, 200, `${path}: ${JSON.stringify(kept.body)}`);
        assert.deepEqual(kept.body.metadata, meta, path);
        const emptied = await server.api.post(path, { metadata: {} });
        assert.deepEqual([emptied.status, emptied.body.metadata], [200, {}], path);
      }
    });

    test('a built-in tool named as the tool choice, with the empty function go-openai sends beside it', async () => {
      const tools = [{ type: 'file_search' }, { type: 'code_interpreter' }];
      const assistant = await server.api.post('/v1/assistants', { model: 'm', tools });
      for (const { type } of tools) {
        const thread = await server.api.post('/v1/threads', {});
        const run = await server.api.post(`/v1/threads/${thread.body.id}/runs`, {
          assistant_id: assistant.body.id,
          tool_choice: { type, function: { name: '' } },
        });
        assert.equal(run.status, 200, JSON.stringify(run.body));
        assert.deepEqual(run.body.tool_choice, { type });
        // The Python SDK's AssistantToolChoice dumped back: {"type": "file_search", "function": None}.
        const dumped = await server.api.post('/v1/threads/runs', {
          assistant_id: assistant.body.id,
          tool_choice: { type, function: null },
        });
        assert.equal(dumped.status, 200, JSON.stringify(dumped.body));
        assert.deepEqual(dumped.body.tool_choice, { type });
      }
    });

    test("an assistant modified without a model: go-openai's AssistantRequest sends model as an empty string", async () => {
      const assistant = await server.api.post('/v1/assistants', { model: 'm', name: 'before' });
      const modified = await server.api.post(`/v1/assistants/${assistant.body.id}`, { model: '', name: 'after' });
      assert.equal(modified.status, 200, JSON.stringify(modified.body));
      assert.deepEqual([modified.body.model, modified.body.name], ['m', 'after']);
      const created = await server.api.post('/v1/assistants', { model: '' });
      assert.equal(created.status, 400); // a new assistant needs one
    });
  });
});
