import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * Objects as OpenAI's own responses had them, where they differ from its schema or fill in what the request left out
 * (responses recorded from api.openai.com by the official .NET SDK's tests, 2025, and ruby-openai's, 2024–2025).
 * Programs read these fields directly.
 */
describe('objects as OpenAI sent them', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => server.close());

  test('tools are echoed with the defaults OpenAI filled in, by the assistant and by its runs', async () => {
    const tools = [
      { type: 'function', function: { name: 'lookup', description: 'Looks it up.' } },
      { type: 'function', function: { name: 'strict_one', parameters: { type: 'object' }, strict: true } },
      { type: 'function', function: { name: 'dumped', parameters: { type: 'object', properties: {} }, strict: null } },
      { type: 'file_search', file_search: {} },
      { type: 'file_search', file_search: { max_num_results: 2, ranking_options: { score_threshold: 0.5 } } },
      { type: 'code_interpreter' },
    ];
    const expected = [
      {
        type: 'function',
        function: {
          name: 'lookup',
          description: 'Looks it up.',
          parameters: { type: 'object', properties: {} },
          strict: false,
        },
      },
      { type: 'function', function: { name: 'strict_one', parameters: { type: 'object' }, strict: true } },
      { type: 'function', function: { name: 'dumped', parameters: { type: 'object', properties: {} }, strict: false } },
      { type: 'file_search', file_search: { ranking_options: { ranker: 'default_2024_08_21', score_threshold: 0 } } },
      {
        type: 'file_search',
        file_search: { max_num_results: 2, ranking_options: { ranker: 'default_2024_08_21', score_threshold: 0.5 } },
      },
      { type: 'code_interpreter' },
    ];
    const assistant = await server.api.post('/v1/assistants', { model: 'm', tools });
    assert.equal(assistant.status, 200, JSON.stringify(assistant.body));
    assert.deepEqual(assistant.body.tools, expected);
    assert.deepEqual((await server.api.get(`/v1/assistants/${assistant.body.id}`)).body.tools, expected);
    const run = await server.api.post('/v1/threads/runs', { assistant_id: assistant.body.id });
    assert.deepEqual(run.body.tools, expected);
  });

  test('an assistant with code_interpreter or file_search and no resources for it has an empty list for it', async () => {
    const assistant = await server.api.post('/v1/assistants', { model: 'm', tools: [{ type: 'code_interpreter' }] });
    assert.deepEqual(assistant.body.tool_resources, { code_interpreter: { file_ids: [] } });
    // As recorded from api.openai.com (July 2024): `"tool_resources": {"file_search": {"vector_store_ids": []}}`.
    const search = await server.api.post('/v1/assistants', { model: 'm', tools: [{ type: 'file_search' }] });
    assert.deepEqual(search.body.tool_resources, { file_search: { vector_store_ids: [] } });
    const both = await server.api.post('/v1/assistants', {
      model: 'm',
      tools: [{ type: 'code_interpreter' }, { type: 'file_search' }],
      tool_resources: { code_interpreter: { file_ids: [] } },
    });
    assert.deepEqual((await server.api.get(`/v1/assistants/${both.body.id}`)).body.tool_resources, {
      code_interpreter: { file_ids: [] },
      file_search: { vector_store_ids: [] },
    });
    const plain = await server.api.post('/v1/assistants', { model: 'm' });
    assert.deepEqual(plain.body.tool_resources, {});
  });

  test('a vector store shows its description, null when it has none', async () => {
    const described = await server.api.post('/v1/vector_stores', { name: 'docs', description: 'The handbook.' });
    assert.equal(described.body.description, 'The handbook.');
    assert.equal((await server.api.get(`/v1/vector_stores/${described.body.id}`)).body.description, 'The handbook.');
    const bare = await server.api.post('/v1/vector_stores', {});
    assert.equal(bare.body.description, null);
  });

  test('a file has expires_at and status_details, null when they have no value', async () => {
    const file = await server.api.upload('hello', 'hello.txt');
    assert.equal(file.expires_at, null);
    assert.equal(file.status_details, null);
    const store = await server.api.post('/v1/vector_stores', {});
    const batch = await server.api.post(`/v1/vector_stores/${store.body.id}/file_batches`, { file_ids: [file.id] });
    assert.equal(batch.body.object, 'vector_store.file_batch');
  });

  test('the Files API answers an unknown file in its own words, whatever the form of its id', async () => {
    for (const id of ['fake_id', 'file-nope']) {
      const expected = {
        message: `No such File object: ${id}`,
        type: 'invalid_request_error',
        param: 'id',
        code: null,
      };
      for (const [method, path] of [
        ['GET', `/v1/files/${id}`],
        ['GET', `/v1/files/${id}/content`],
        ['DELETE', `/v1/files/${id}`],
      ] as const) {
        const response = await fetch(`${server.url}${path}`, { method });
        assert.equal(response.status, 404, `${method} ${path}`);
        assert.deepEqual(((await response.json()) as { error: unknown }).error, expected);
      }
    }
  });
});
