import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { buildApp } from '../../src/api/app.ts';
import type { FileService } from '../../src/files/file-service.ts';
import { RunEventBus } from '../../src/runs/run-event-bus.ts';
import { RunService } from '../../src/runs/run-service.ts';
import type { Store } from '../../src/storage/store.ts';
import { ToolRegistry } from '../../src/tools/tool.ts';
import type { VectorStoreService } from '../../src/vector-stores/vector-store-service.ts';
import { type ApiResponse, startTestServer, type TestServer } from '../support/server.ts';

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

function assertError(
  response: ApiResponse,
  status: number,
  expected: { param: string | null; code: string | null; type?: string; message?: string | RegExp },
): void {
  const { error } = response.body as unknown as ErrorBody;
  assert.equal(response.status, status, JSON.stringify(response.body));
  assert.equal(error.type, expected.type ?? 'invalid_request_error');
  assert.equal(error.param, expected.param);
  assert.equal(error.code, expected.code);
  if (typeof expected.message === 'string') assert.equal(error.message, expected.message);
  else if (expected.message) assert.match(error.message, expected.message);
}

describe('errors', () => {
  let server: TestServer;
  let threadId: string;
  before(async () => {
    server = await startTestServer();
    threadId = (await server.api.post('/v1/threads', {})).body.id as string;
  });
  after(async () => server.close());

  describe('unknown ids → 404', () => {
    test('assistant', async () => {
      const r = await server.api.get('/v1/assistants/asst_x');
      assertError(r, 404, { param: null, code: null, message: "No assistant found with id 'asst_x'." });
      assertError(await server.api.post('/v1/assistants/asst_x', { name: 'n' }), 404, { param: null, code: null });
      assertError(await server.api.delete('/v1/assistants/asst_x'), 404, { param: null, code: null });
    });

    test('thread', async () => {
      const message = "No thread found with id 'thread_x'.";
      assertError(await server.api.get('/v1/threads/thread_x'), 404, { param: null, code: null, message });
      assertError(await server.api.post('/v1/threads/thread_x', {}), 404, { param: null, code: null, message });
      assertError(await server.api.delete('/v1/threads/thread_x'), 404, { param: null, code: null, message });
      assertError(await server.api.get('/v1/threads/thread_x/messages'), 404, { param: null, code: null, message });
      assertError(await server.api.post('/v1/threads/thread_x/messages', { role: 'user', content: 'hi' }), 404, {
        param: null,
        code: null,
        message,
      });
      assertError(await server.api.get('/v1/threads/thread_x/messages/msg_x'), 404, {
        param: null,
        code: null,
        message,
      });
    });

    test('message', async () => {
      const message = "No message found with id 'msg_x'.";
      const base = `/v1/threads/${threadId}/messages/msg_x`;
      assertError(await server.api.get(base), 404, { param: null, code: null, message });
      assertError(await server.api.post(base, { metadata: {} }), 404, { param: null, code: null, message });
      assertError(await server.api.delete(base), 404, { param: null, code: null, message });
    });

    test('an id with the wrong prefix is a 400 naming the path parameter', async () => {
      assertError(await server.api.get('/v1/threads/undefined'), 400, {
        param: 'thread_id',
        code: 'invalid_value',
        message: "Invalid 'thread_id': 'undefined'. Expected an ID that begins with 'thread'.",
      });
      assertError(await server.api.get('/v1/assistants/thread_1'), 400, {
        param: 'assistant_id',
        code: 'invalid_value',
      });
    });
  });

  describe('malformed requests → 400', () => {
    test('malformed JSON', async () => {
      const r = await server.api.request('POST', '/v1/assistants', undefined, {
        raw: '{"model": "gpt-4o",',
        headers: { 'content-type': 'application/json' },
      });
      assertError(r, 400, { param: null, code: null, message: /could not parse the JSON body/ });
    });

    test('a body that is not UTF-8 is refused, not stored with its bytes replaced', async () => {
      const post = (bytes: Buffer, contentType = 'application/json') =>
        fetch(`${server.url}/v1/assistants`, { method: 'POST', headers: { 'content-type': contentType }, body: bytes });
      for (const [bytes, contentType] of [
        [Buffer.concat([Buffer.from('{"model":"m","name":"'), Buffer.from([0xff, 0xfe, 0xc0]), Buffer.from('"}')])],
        [Buffer.from('{"model":"m","name":"caf\xe9"}', 'latin1'), 'application/json; charset=latin1'],
        [Buffer.concat([Buffer.from('{"model":"m","name":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')])],
      ] as const) {
        const response = await post(bytes, contentType);
        assert.equal(response.status, 400);
        assert.deepEqual(await response.json(), {
          error: {
            message:
              'We could not parse the JSON body of your request. The server expects a JSON payload, but what was sent was not UTF-8 text, as JSON is.',
            type: 'invalid_request_error',
            param: null,
            code: null,
          },
        });
      }
      // Characters of every length are fine.
      const name = 'café 🚀 中文';
      const ok = await post(Buffer.from(JSON.stringify({ model: 'm', name })));
      assert.equal(ok.status, 200);
      assert.equal(((await ok.json()) as { name: string }).name, name);
    });

    test('a Content-Type that names no media type is a 415 saying what to send', async () => {
      for (const contentType of [';;;', ''])
        assertError(
          await server.api.request('POST', '/v1/assistants', undefined, {
            raw: '{"model":"m"}',
            headers: { 'content-type': contentType },
          }),
          415,
          {
            param: null,
            code: 'unsupported_media_type',
            message:
              'Invalid Content-Type header: it names no media type. Send the JSON body with Content-Type: application/json.',
          },
        );
    });

    test("a key '__proto__' is refused where it would be lost", async () => {
      const raw = (path: string, body: string) =>
        server.api.request('POST', path, undefined, { raw: body, headers: { 'content-type': 'application/json' } });
      assertError(await raw('/v1/assistants', '{"model":"m","metadata":{"__proto__":"v","a":"b"}}'), 400, {
        param: 'metadata.__proto__',
        code: 'invalid_value',
        message: "Invalid 'metadata.__proto__': '__proto__' cannot be used as a key.",
      });
      // Escaped, and deep inside an array.
      assertError(
        await raw('/v1/threads', '{"messages":[{"role":"user","content":"x","metadata":{"\\u005f_proto__":"v"}}]}'),
        400,
        { param: 'messages[0].metadata.__proto__', code: 'invalid_value' },
      );
      // As a value, or a longer key, it is only text.
      const ok = await raw('/v1/assistants', '{"model":"m","metadata":{"k":"__proto__","__proto__x":"v"}}');
      assert.equal(ok.status, 200);
      assert.deepEqual(ok.body.metadata, { k: '__proto__', __proto__x: 'v' });
    });

    test('a body that is not a JSON object', async () => {
      assertError(await server.api.post('/v1/assistants', ['gpt-4o']), 400, { param: null, code: 'invalid_type' });
      assertError(await server.api.post('/v1/assistants', 'gpt-4o'), 400, { param: null, code: 'invalid_type' });
    });

    test('an empty list is no parameters: openai-php sends `threads()->create([])` as `[]`', async () => {
      const thread = await server.api.post('/v1/threads', []);
      assert.equal(thread.status, 200, JSON.stringify(thread.body));
      assert.equal(thread.body.object, 'thread');
      const store = await server.api.post('/v1/vector_stores', []);
      assert.equal(store.status, 200, JSON.stringify(store.body));
      assertError(await server.api.post('/v1/assistants', []), 400, {
        param: 'model',
        code: 'missing_required_parameter',
      });
    });

    test('unknown body fields name the field', async () => {
      assertError(await server.api.post('/v1/assistants', { model: 'm', foo: 1 }), 400, {
        param: 'foo',
        code: 'unknown_parameter',
        message: "Unknown parameter: 'foo'.",
      });
      assertError(await server.api.post('/v1/threads', { messages: [], bar: true }), 400, {
        param: 'bar',
        code: 'unknown_parameter',
      });
      assertError(await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'x', extra: 1 }] }), 400, {
        param: 'messages[0].extra',
        code: 'unknown_parameter',
      });
      assertError(await server.api.post(`/v1/threads/${threadId}/messages/msg_x`, { content: 'x' }), 400, {
        param: 'content',
        code: 'unknown_parameter',
      });
    });

    test('unknown fields of nested objects name the field, as upstream did, instead of being dropped', async () => {
      // openai-scala-client writes a thread-and-run's tool resources with its own field names: dropped, the run went
      // ahead without the vector store it named.
      const cases: Array<[string, Record<string, unknown>, string]> = [
        [
          '/v1/threads/runs',
          { assistant_id: 'asst_x', tool_resources: { file_search_resources: { vectorStoreIds: ['vs_x'] } } },
          'tool_resources.file_search_resources',
        ],
        [
          '/v1/threads/runs',
          { assistant_id: 'asst_x', tool_resources: { file_search: { vectorStoreIds: ['vs_x'] } } },
          'tool_resources.file_search.vectorStoreIds',
        ],
        [
          `/v1/threads/${threadId}/runs`,
          { assistant_id: 'asst_x', truncation_strategy: { type: 'last_messages', lastMessages: 5 } },
          'truncation_strategy.lastMessages',
        ],
        [
          `/v1/threads/${threadId}/runs`,
          { assistant_id: 'asst_x', tool_choice: { type: 'function', function: { name: 'f', arguments: '{}' } } },
          'tool_choice.function.arguments',
        ],
        [
          '/v1/assistants',
          { model: 'm', tools: [{ type: 'function', function: { name: 'f' }, strict: true }] },
          'tools[0].strict',
        ],
        [
          '/v1/assistants',
          { model: 'm', tools: [{ type: 'file_search', file_search: { max_results: 5 } }] },
          'tools[0].file_search.max_results',
        ],
        [
          '/v1/assistants',
          { model: 'm', response_format: { type: 'json_schema', json_schema: { name: 'n', schemaa: {} } } },
          'response_format.json_schema.schemaa',
        ],
        [
          '/v1/assistants',
          { model: 'm', tool_resources: { code_interpreter: { file_ids: [], files: [] } } },
          'tool_resources.code_interpreter.files',
        ],
        [
          '/v1/threads',
          { tool_resources: { file_search: { vector_stores: [{ file_ids: [], name: 'docs' }] } } },
          'tool_resources.file_search.vector_stores[0].name',
        ],
        [
          `/v1/threads/${threadId}/messages`,
          {
            role: 'user',
            content: 'x',
            attachments: [{ file_id: 'file_x', tools: [{ type: 'file_search' }], name: 'a' }],
          },
          'attachments[0].name',
        ],
        [
          `/v1/threads/${threadId}/messages`,
          { role: 'user', content: [{ type: 'image_file', image_file: { file_id: 'file_x', url: 'u' } }] },
          'content[0].image_file.url',
        ],
        [
          `/v1/threads/${threadId}/messages`,
          { role: 'user', content: [{ type: 'text', text: 'x', annotations: [] }] },
          'content[0].annotations',
        ],
      ];
      for (const [url, body, param] of cases)
        assertError(await server.api.post(url, body), 400, {
          param,
          code: 'unknown_parameter',
          message: `Unknown parameter: '${param}'.`,
        });
    });

    test('missing required fields', async () => {
      assertError(await server.api.post('/v1/assistants', { name: 'no model' }), 400, {
        param: 'model',
        code: 'missing_required_parameter',
        message: "Missing required parameter: 'model'.",
      });
      assertError(await server.api.post(`/v1/threads/${threadId}/messages`, { role: 'user' }), 400, {
        param: 'content',
        code: 'missing_required_parameter',
      });
      // A missing enum is missing, not an invalid value.
      assertError(await server.api.post(`/v1/threads/${threadId}/messages`, { content: 'x' }), 400, {
        param: 'role',
        code: 'missing_required_parameter',
        message: "Missing required parameter: 'role'.",
      });
      assertError(await server.api.post('/v1/threads', { messages: [{ content: 'x' }] }), 400, {
        param: 'messages[0].role',
        code: 'missing_required_parameter',
      });
    });

    test('tool_choice: the problem inside the object, not the string values', async () => {
      const run = (tool_choice: unknown) =>
        server.api.post(`/v1/threads/${threadId}/runs`, { assistant_id: 'asst_x', tool_choice });
      assertError(await run({ type: 'function' }), 400, {
        param: 'tool_choice.function',
        code: 'missing_required_parameter',
        message: "Missing required parameter: 'tool_choice.function'.",
      });
      assertError(await run({ type: 'bogus' }), 400, {
        param: 'tool_choice.type',
        code: 'invalid_value',
        message: "Invalid value: 'bogus'. Supported values are: 'function', 'code_interpreter', and 'file_search'.",
      });
      assertError(await run('bogus'), 400, {
        param: 'tool_choice',
        code: 'invalid_value',
        message: "Invalid value: 'bogus'. Supported values are: 'none', 'auto', and 'required'.",
      });
    });

    test('wrong types name the field', async () => {
      assertError(await server.api.post('/v1/assistants', { model: 42 }), 400, {
        param: 'model',
        code: 'invalid_type',
        message: "Invalid type for 'model': expected a string, but got an integer instead.",
      });
      assertError(await server.api.post('/v1/assistants', { model: 'm', temperature: 'hot' }), 400, {
        param: 'temperature',
        code: 'invalid_type',
        message: "Invalid type for 'temperature': expected a decimal, but got a string instead.",
      });
      // Integer parameters say so, whatever was sent.
      for (const [value, got] of [
        ['5', 'a string'],
        [5.5, 'a decimal'],
      ] as const)
        assertError(
          await server.api.post(`/v1/threads/${threadId}/runs`, { assistant_id: 'a', max_completion_tokens: value }),
          400,
          {
            param: 'max_completion_tokens',
            code: 'invalid_type',
            message: `Invalid type for 'max_completion_tokens': expected an integer, but got ${got} instead.`,
          },
        );
      const huge = await server.api.request('POST', '/v1/assistants', undefined, {
        raw: '{"model": "m", "temperature": 1e400}',
        headers: { 'content-type': 'application/json' },
      });
      assertError(huge, 400, {
        param: 'temperature',
        code: 'invalid_type',
        message: "Invalid type for 'temperature': expected a decimal, but got a number too large instead.",
      });
      assertError(await server.api.post('/v1/assistants', { model: 'm', tools: {} }), 400, {
        param: 'tools',
        code: 'invalid_type',
      });
      assertError(await server.api.post('/v1/assistants', { model: 'm', metadata: { k: 1 } }), 400, {
        param: 'metadata.k',
        code: 'invalid_type',
      });
      assertError(await server.api.post(`/v1/threads/${threadId}/messages`, { role: 'user', content: 7 }), 400, {
        param: 'content',
        code: 'invalid_type',
        message: "Invalid type for 'content': expected one of a string or an array, but got an integer instead.",
      });
    });

    test('model must be a non-empty string', async () => {
      assertError(await server.api.post('/v1/assistants', { model: '' }), 400, {
        param: 'model',
        code: 'empty_string',
      });
    });

    test('metadata: at most 16 pairs, keys ≤ 64 characters, values ≤ 512', async () => {
      const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
      assertError(await server.api.post('/v1/threads', { metadata: many }), 400, {
        param: 'metadata',
        code: 'object_above_max_properties',
      });
      assertError(await server.api.post('/v1/threads', { metadata: { ['k'.repeat(65)]: 'v' } }), 400, {
        param: 'metadata',
        code: 'string_above_max_length',
      });
      assertError(await server.api.post('/v1/threads', { metadata: { k: 'v'.repeat(513) } }), 400, {
        param: 'metadata.k',
        code: 'string_above_max_length',
      });
      const exact = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`${i}`.padEnd(64, 'k'), 'v'.repeat(512)]));
      assert.equal((await server.api.post('/v1/threads', { metadata: exact })).status, 200);
      // Characters are code points, as upstream (Python) counts them and as every other limit here does: 64 emoji
      // are 128 UTF-16 units.
      const emoji = { ['😀'.repeat(64)]: '😀'.repeat(512) };
      assert.equal((await server.api.post('/v1/threads', { metadata: emoji })).status, 200);
      assertError(await server.api.post('/v1/threads', { metadata: { k: '😀'.repeat(513) } }), 400, {
        param: 'metadata.k',
        code: 'string_above_max_length',
        message:
          "Invalid 'metadata.k': string too long. Expected a string with maximum length 512, but got a string with length 513 instead.",
      });
      // The other strings' limits count the same, and say so.
      assertError(await server.api.post('/v1/assistants', { model: 'm', name: '😀'.repeat(257) }), 400, {
        param: 'name',
        code: 'string_above_max_length',
        message:
          "Invalid 'name': string too long. Expected a string with maximum length 256, but got a string with length 257 instead.",
      });
      // A lone surrogate (JSON's \udc00) is a character of its own.
      assertError(await server.api.post('/v1/threads', { metadata: { k: '\udc00'.repeat(513) } }), 400, {
        param: 'metadata.k',
        code: 'string_above_max_length',
      });
      // So are the keys of a vector store file's attributes: this one passes, and the unknown file is what is wrong.
      const store = await server.api.post<{ id: string }>('/v1/vector_stores', {});
      assertError(
        await server.api.post(`/v1/vector_stores/${store.body.id}/files`, {
          file_id: 'file-missing',
          attributes: { ['😀'.repeat(64)]: 'v' },
        }),
        404,
        { param: null, code: null },
      );
    });

    test('temperature 0–2 and top_p 0–1', async () => {
      assertError(await server.api.post('/v1/assistants', { model: 'm', temperature: 2.5 }), 400, {
        param: 'temperature',
        code: 'decimal_above_max_value',
        message: "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 2.5 instead.",
      });
      assertError(await server.api.post('/v1/assistants', { model: 'm', temperature: -1 }), 400, {
        param: 'temperature',
        code: 'decimal_below_min_value',
      });
      assertError(await server.api.post('/v1/assistants', { model: 'm', top_p: 1.01 }), 400, {
        param: 'top_p',
        code: 'decimal_above_max_value',
      });
      const edge = await server.api.post('/v1/assistants', { model: 'm', temperature: 2, top_p: 0 });
      assert.equal(edge.status, 200);
    });

    test('tools: known types, at most 128, function names and parameters', async () => {
      assertError(await server.api.post('/v1/assistants', { model: 'm', tools: [{ type: 'browser' }] }), 400, {
        param: 'tools[0].type',
        code: 'invalid_value',
        message: "Invalid value: 'browser'. Supported values are: 'code_interpreter', 'file_search', and 'function'.",
      });
      const tooMany = Array.from({ length: 129 }, () => ({ type: 'code_interpreter' }));
      assertError(await server.api.post('/v1/assistants', { model: 'm', tools: tooMany }), 400, {
        param: 'tools',
        code: 'array_above_max_length',
      });
      const badName = [{ type: 'function', function: { name: 'get weather' } }];
      assertError(await server.api.post('/v1/assistants', { model: 'm', tools: badName }), 400, {
        param: 'tools[0].function.name',
        code: 'invalid_value',
        message:
          "Invalid 'tools[0].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
      });
      const longName = [{ type: 'function', function: { name: 'f'.repeat(65) } }];
      assertError(await server.api.post('/v1/assistants', { model: 'm', tools: longName }), 400, {
        param: 'tools[0].function.name',
        code: 'invalid_value',
      });
      const stringSchema = [{ type: 'function', function: { name: 'f', parameters: { type: 'string' } } }];
      assertError(await server.api.post('/v1/assistants', { model: 'm', tools: stringSchema }), 400, {
        param: 'tools[0].function.parameters',
        code: 'invalid_function_parameters',
      });
      const notObject = [{ type: 'function', function: { name: 'f', parameters: 'x' } }];
      assertError(await server.api.post('/v1/assistants', { model: 'm', tools: notObject }), 400, {
        param: 'tools[0].function.parameters',
        code: 'invalid_type',
      });
      assertError(await server.api.post('/v1/assistants', { model: 'm', tools: [{ type: 'function' }] }), 400, {
        param: 'tools[0].function',
        code: 'missing_required_parameter',
      });
      const fileSearch = [{ type: 'file_search', file_search: { max_num_results: 51 } }];
      assertError(await server.api.post('/v1/assistants', { model: 'm', tools: fileSearch }), 400, {
        param: 'tools[0].file_search.max_num_results',
        code: 'integer_above_max_value',
      });
      const ok = Array.from({ length: 128 }, (_, i) => ({ type: 'function', function: { name: `f_${i}` } }));
      const assistant = await server.api.post('/v1/assistants', { model: 'm', tools: ok });
      assert.equal(assistant.status, 200);
      // A run takes as many (Semantic Kernel sends every function of its kernel with each run), not the spec's 20.
      const run = await server.api.post('/v1/threads/runs', { assistant_id: assistant.body.id, tools: ok });
      assert.equal(run.status, 200, JSON.stringify(run.body));
      assert.equal((run.body.tools as unknown[]).length, 128);
      assertError(
        await server.api.post('/v1/threads/runs', {
          assistant_id: assistant.body.id,
          tools: [...ok, { type: 'code_interpreter' }],
        }),
        400,
        { param: 'tools', code: 'array_above_max_length' },
      );
    });

    test('response_format: auto, text, json_object or json_schema', async () => {
      for (const format of [
        'auto',
        { type: 'text' },
        { type: 'json_object' },
        { type: 'json_schema', json_schema: { name: 'answer', schema: { type: 'object' }, strict: true } },
      ]) {
        const r = await server.api.post('/v1/assistants', { model: 'm', response_format: format });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.deepEqual(r.body.response_format, format);
      }
      assertError(await server.api.post('/v1/assistants', { model: 'm', response_format: { type: 'xml' } }), 400, {
        param: 'response_format.type',
        code: 'invalid_value',
      });
      assertError(await server.api.post('/v1/assistants', { model: 'm', response_format: 'json' }), 400, {
        param: 'response_format',
        code: 'invalid_value',
      });
      const noName = { type: 'json_schema', json_schema: { schema: {} } };
      assertError(await server.api.post('/v1/assistants', { model: 'm', response_format: noName }), 400, {
        param: 'response_format.json_schema.name',
        code: 'missing_required_parameter',
      });
    });

    test('message content and role', async () => {
      const url = `/v1/threads/${threadId}/messages`;
      assertError(await server.api.post(url, { role: 'system', content: 'x' }), 400, {
        param: 'role',
        code: 'invalid_value',
        message: "Invalid value: 'system'. Supported values are: 'user' and 'assistant'.",
      });
      assertError(await server.api.post(url, { role: 'user', content: [] }), 400, {
        param: 'content',
        code: 'empty_array',
      });
      assertError(await server.api.post(url, { role: 'user', content: [{ type: 'audio' }] }), 400, {
        param: 'content[0].type',
        code: 'invalid_value',
      });
      assertError(await server.api.post(url, { role: 'user', content: [{ type: 'image_url', image_url: {} }] }), 400, {
        param: 'content[0].image_url.url',
        code: 'missing_required_parameter',
      });
      for (const address of ['javascript:alert(1)', 'ftp://example.com/a.png', 'file:///etc/passwd', 'assistd-file:f'])
        assertError(
          await server.api.post(url, { role: 'user', content: [{ type: 'image_url', image_url: { url: address } }] }),
          400,
          { param: 'content[0].image_url.url', code: 'invalid_value' },
        );
      assertError(
        await server.api.post(url, { role: 'user', content: 'x', attachments: [{ file_id: 'file-1' }] }),
        400,
        {
          param: 'attachments[0].tools',
          code: 'missing_required_parameter',
        },
      );
    });

    test('tool_resources.file_search: the vector_stores helper only on create, alone, and one store at most', async () => {
      const helper = { vector_stores: [{ file_ids: [] }] };
      assertError(
        await server.api.post('/v1/threads', { tool_resources: { file_search: { ...helper, vector_store_ids: [] } } }),
        400,
        { param: 'tool_resources.file_search.vector_stores', code: 'invalid_value' },
      );
      assertError(
        await server.api.post('/v1/threads', {
          tool_resources: { file_search: { vector_stores: [{ file_ids: [] }, { file_ids: [] }] } },
        }),
        400,
        { param: 'tool_resources.file_search.vector_stores', code: 'array_above_max_length' },
      );
      const { body: thread } = await server.api.post('/v1/threads');
      assertError(await server.api.post(`/v1/threads/${thread.id}`, { tool_resources: { file_search: helper } }), 400, {
        param: 'tool_resources.file_search.vector_stores',
        code: 'unsupported_parameter',
      });
      const tooMany = { tool_resources: { file_search: { vector_store_ids: ['vs_1', 'vs_2'] } } };
      assertError(await server.api.post('/v1/threads', tooMany), 400, {
        param: 'tool_resources.file_search.vector_store_ids',
        code: 'array_above_max_length',
      });
    });

    test('list parameters: limit 1–100, order asc|desc, cursors of the list', async () => {
      assertError(await server.api.get('/v1/assistants?limit=0'), 400, {
        param: 'limit',
        code: 'integer_below_min_value',
      });
      assertError(await server.api.get('/v1/assistants?limit=101'), 400, {
        param: 'limit',
        code: 'integer_above_max_value',
      });
      assertError(await server.api.get('/v1/assistants?limit=ten'), 400, { param: 'limit', code: 'invalid_type' });
      assertError(await server.api.get('/v1/assistants?order=up'), 400, { param: 'order', code: 'invalid_value' });
      assertError(await server.api.get('/v1/assistants?after=asst_nope'), 400, {
        param: 'after',
        code: 'invalid_value',
      });
      assertError(await server.api.get(`/v1/threads/${threadId}/messages?before=msg_nope`), 400, {
        param: 'before',
        code: 'invalid_value',
      });
    });
  });

  describe('routing and transport', () => {
    test('an unknown route → 404', async () => {
      assertError(await server.api.get('/v1/nope'), 404, {
        param: null,
        code: null,
        message: 'Invalid URL (GET /v1/nope)',
      });
      assertError(await server.api.post('/v1/threads/thread_1/nope', {}), 404, { param: null, code: null });
    });

    test('a wrong method → 405 with Allow', async () => {
      const r = await server.api.request('PUT', '/v1/assistants', { model: 'm' });
      assertError(r, 405, { param: null, code: 'method_not_allowed' });
      assert.match(r.headers.get('allow') ?? '', /GET/);
      assert.match(r.headers.get('allow') ?? '', /POST/);
      assertError(await server.api.request('PATCH', `/v1/threads/${threadId}`, {}), 405, {
        param: null,
        code: 'method_not_allowed',
      });
    });

    test('an oversized body → 413', async () => {
      const r = await server.api.post('/v1/assistants', { model: 'm', instructions: 'x'.repeat(9 * 1024 * 1024) });
      assertError(r, 413, { param: null, code: 'request_too_large' });
    });

    test('the OpenAI-Beta header is accepted but not required', async () => {
      const without = await server.api.post('/v1/assistants', { model: 'm' });
      const withHeader = await server.api.request(
        'POST',
        '/v1/assistants',
        { model: 'm' },
        {
          headers: { 'OpenAI-Beta': 'assistants=v2' },
        },
      );
      assert.equal(without.status, 200);
      assert.equal(withHeader.status, 200);
    });

    test('every response carries x-request-id, and nosniff', async () => {
      const ok = await server.api.get('/healthz');
      const bad = await server.api.get('/v1/assistants/asst_x');
      assert.match(ok.headers.get('x-request-id') ?? '', /^req_/);
      assert.match(bad.headers.get('x-request-id') ?? '', /^req_/);
      for (const response of [ok, bad]) assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
    });
  });
});

/** The app alone over `store` (often a Proxy standing for a database in a given state): no server, no workers. */
function bareApp(
  store: Store,
  logger: pino.Logger,
  models: Parameters<typeof buildApp>[0]['models'] = {
    list: () => [],
    defaultModels: async () => [],
    find: () => undefined,
  },
) {
  const bus = new RunEventBus();
  return buildApp({
    store,
    runs: new RunService({ store, bus, tools: new ToolRegistry(), expiresAfterSeconds: 600 }),
    bus,
    models,
    files: {} as FileService,
    vectorStores: {} as VectorStoreService,
    closing: new AbortController().signal,
    apiKey: undefined,
    logger,
  });
}

describe('an unexpected error', () => {
  test('is a logged 500 with no internals in the body', async () => {
    const logged: string[] = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => logged.push(line) });
    const failing = new Proxy({} as Store, {
      get: () => () => Promise.reject(new Error('disk on fire at /secret/path')),
    });
    const app = bareApp(failing, logger);
    const response = await app.inject({ method: 'GET', url: '/v1/assistants/asst_1' });
    await app.close();
    assert.equal(response.statusCode, 500);
    const body = response.json() as ErrorBody;
    assert.equal(body.error.type, 'server_error');
    assert.equal(body.error.param, null);
    assert.equal(body.error.code, null);
    assert.doesNotMatch(response.body, /secret|fire/);
    assert.ok(
      logged.some((line) => line.includes('disk on fire')),
      'the error is logged',
    );
  });
});

describe('/healthz', () => {
  test('is a 503 while the database does not answer, and says so in the log, not to the caller', async () => {
    const logged: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => logged.push(line) });
    let down = true;
    const store = new Proxy({} as Store, {
      get: (_target, name) =>
        name === 'ping'
          ? () => (down ? Promise.reject(new Error('connection to db-host:5432 refused')) : Promise.resolve())
          : () => Promise.reject(new Error('not in this test')),
    });
    const app = bareApp(store, logger);
    try {
      const refused = await app.inject({ method: 'GET', url: '/healthz' });
      assert.equal(refused.statusCode, 503);
      assert.deepEqual(refused.json(), { status: 'unavailable', reason: 'the database does not answer' });
      assert.ok(
        logged.some((line) => line.includes('db-host:5432 refused')),
        'the reason is logged',
      );
      down = false;
      const back = await app.inject({ method: 'GET', url: '/healthz' });
      assert.equal(back.statusCode, 200);
      assert.deepEqual(back.json(), { status: 'ok' });
    } finally {
      await app.close();
    }
  });
});

describe('API key', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ ASSISTD_API_KEY: 'secret' });
  });
  after(async () => server.close());

  test('without the key → 401 invalid_api_key', async () => {
    assertError(await server.api.get('/v1/assistants'), 401, { param: null, code: 'invalid_api_key' });
  });

  test('with a wrong key → 401 invalid_api_key, not echoing the key', async () => {
    const r = await server.api.request('GET', '/v1/assistants', undefined, {
      headers: { authorization: 'Bearer sk-wrong-key-123456' },
    });
    assertError(r, 401, { param: null, code: 'invalid_api_key' });
    assert.doesNotMatch(JSON.stringify(r.body), /wrong-key/);
  });

  test('with the key → 200; /healthz needs no key', async () => {
    const r = await server.api.request('GET', '/v1/assistants', undefined, {
      headers: { authorization: 'Bearer secret' },
    });
    assert.equal(r.status, 200);
    assert.equal((await server.api.get('/healthz')).status, 200);
  });
});

describe('GET /v1/models/{id}', () => {
  test('an id is the path as the router decodes it, once: slashes, an encoded slash, a literal %', async () => {
    const ids = ['meta-llama/Llama-3.1-8B', 'a%41', '%'];
    const found = (id: string) => (ids.includes(id) ? { id, created: 1_700_000_000 } : undefined);
    const app = bareApp({} as Store, pino({ level: 'silent' }), { list: () => [], find: found } as never);
    const get = (path: string) => app.inject({ method: 'GET', url: `/v1/models/${path}` });
    try {
      for (const [path, id] of [
        ['meta-llama/Llama-3.1-8B', 'meta-llama/Llama-3.1-8B'],
        ['meta-llama%2FLlama-3.1-8B', 'meta-llama/Llama-3.1-8B'], // as the SDK sends it (encodeURIComponent)
        ['a%2541', 'a%41'],
        ['%25', '%'],
      ] as const) {
        const response = await get(path);
        assert.equal(response.statusCode, 200, `${path}: ${response.body}`);
        assert.equal(response.json().id, id);
      }
      for (const [path, id] of [
        ['%25ZZ', '%ZZ'],
        ['aA', 'aA'],
      ] as const) {
        const response = await get(path);
        assert.equal(response.statusCode, 404, `${path}: ${response.body}`);
        assert.deepEqual(response.json(), {
          error: {
            message: `The model '${id}' does not exist or you do not have access to it.`,
            type: 'invalid_request_error',
            param: null,
            code: 'model_not_found',
          },
        });
      }
    } finally {
      await app.close();
    }
  });
});
