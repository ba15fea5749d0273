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
});
