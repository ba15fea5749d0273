/**
 * Requests that used to reach a 500 or one of Fastify's or Node's own error bodies: JSON nested deeper than any
 * request needs, path parameters longer than Fastify's default limit, paths that are not valid percent-encoding,
 * request lines longer than Node's header limit. Each is answered with an OpenAI-shaped error and the right status.
 */
import assert from 'node:assert/strict';
import { request as httpRequest, maxHeaderSize } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { MAX_JSON_DEPTH, MAX_JSON_VALUES } from '../../src/api/app.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { type ApiResponse, startTestServer, type TestServer } from '../support/server.ts';

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

function errorOf(response: ApiResponse): ErrorBody['error'] {
  return (response.body as unknown as ErrorBody).error;
}

/** `{"a":{"a":…{"type":"object"}…}}`: `levels` objects inside each other. */
function nestedObjects(levels: number): string {
  return `${'{"a":'.repeat(levels - 1)}{"type":"object"}${'}'.repeat(levels - 1)}`;
}

/** An assistant whose one function's `parameters` make the whole body exactly `depth` levels deep. */
function assistantBodyOfDepth(depth: number): string {
  // body → tools[] → tool → function → parameters: the parameters object is the 5th level.
  return `{"model":"m","tools":[{"type":"function","function":{"name":"f","parameters":${nestedObjects(depth - 4)}}}]}`;
}

function postRaw(server: TestServer, url: string, raw: string): Promise<ApiResponse> {
  return server.api.request('POST', url, undefined, { raw, headers: { 'content-type': 'application/json' } });
}

function assertTooDeep(response: ApiResponse): void {
  assert.equal(response.status, 400, JSON.stringify(response.body));
  const error = errorOf(response);
  assert.equal(error.type, 'invalid_request_error');
  assert.equal(error.code, 'json_too_deeply_nested');
  assert.equal(error.param, null);
  assert.match(error.message, new RegExp(`at most ${MAX_JSON_DEPTH} levels`));
}

describe('hardening', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => server.close());

  describe('deeply nested JSON → 400', () => {
    test('5,000 levels where a message role goes (was a stack overflow writing the validation error)', async () => {
      const role = `${'['.repeat(5000)}1${']'.repeat(5000)}`;
      assertTooDeep(await postRaw(server, '/v1/threads', `{"messages":[{"role":${role},"content":"x"}]}`));
    });

    test("6,000 levels in a function's parameters or a json_schema (was a stack overflow storing them)", async () => {
      assertTooDeep(await postRaw(server, '/v1/assistants', assistantBodyOfDepth(6000)));
      const schema = nestedObjects(6000);
      assertTooDeep(
        await postRaw(
          server,
          '/v1/assistants',
          `{"model":"m","response_format":{"type":"json_schema","json_schema":{"name":"n","schema":${schema}}}}`,
        ),
      );
      const thread = await server.api.post('/v1/threads', {});
      assertTooDeep(
        await postRaw(
          server,
          `/v1/threads/${thread.body.id}/runs`,
          `{"assistant_id":"asst_x","tools":[{"type":"function","function":{"name":"f","parameters":${schema}}}]}`,
        ),
      );
    });

    test(`exactly ${MAX_JSON_DEPTH} levels are accepted, stored and read back; one more is refused`, async () => {
      const created = await postRaw(server, '/v1/assistants', assistantBodyOfDepth(MAX_JSON_DEPTH));
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const sent = JSON.parse(assistantBodyOfDepth(MAX_JSON_DEPTH)) as { tools: Array<{ function: object }> };
      const read = await server.api.get(`/v1/assistants/${created.body.id}`);
      // As sent, with the default OpenAI echoed (`strict: false`).
      const echoed = sent.tools.map((tool) => ({ ...tool, function: { ...tool.function, strict: false } }));
      assert.deepEqual(read.body.tools, echoed);
      assertTooDeep(await postRaw(server, '/v1/assistants', assistantBodyOfDepth(MAX_JSON_DEPTH + 1)));
    });

    test('brackets and escaped quotes inside strings are not nesting', async () => {
      const instructions = `\\"${'[{'.repeat(3000)}\\\\`;
      const created = await postRaw(server, '/v1/assistants', `{"model":"m","instructions":"${instructions}"}`);
      assert.equal(created.status, 200, JSON.stringify(created.body));
      assert.equal(created.body.instructions, `"${'[{'.repeat(3000)}\\`);
    });
  });

  describe(`JSON of more than ${MAX_JSON_VALUES.toLocaleString('en-US')} values → 400 (JSON.parse held the event loop for seconds)`, () => {
    /** An assistant whose one function takes a string of an enum of `count`: the body holds count + 13 values. */
    const assistantWithEnum = (count: number) =>
      `{"model":"m","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"string","enum":[${Array.from(
        { length: count },
        (_, i) => `"v${i}"`,
      ).join(',')}]}}}}}]}`;

    function assertTooMany(response: ApiResponse): void {
      assert.equal(response.status, 400, JSON.stringify(response.body).slice(0, 500));
      const error = errorOf(response);
      assert.equal(error.type, 'invalid_request_error');
      assert.equal(error.code, 'json_too_many_values');
      assert.equal(error.param, null);
      assert.match(error.message, /too many values: at most 100,000/);
    }

    test('exactly the limit is accepted and stored; one more is refused', async () => {
      const created = await postRaw(server, '/v1/assistants', assistantWithEnum(MAX_JSON_VALUES - 13));
      assert.equal(created.status, 200, JSON.stringify(created.body).slice(0, 500));
      const read = await server.api.get(`/v1/assistants/${created.body.id}`);
      const [tool] = read.body.tools as Array<{ function: { parameters: { properties: { x: { enum: string[] } } } } }>;
      assert.equal(tool!.function.parameters.properties.x.enum.length, MAX_JSON_VALUES - 13);
      assertTooMany(await postRaw(server, '/v1/assistants', assistantWithEnum(MAX_JSON_VALUES - 12)));
    });

    test('600,000 members of one object, or a million empty objects: refused before parsing', async () => {
      const members = `{${Array.from({ length: 600_000 }, (_, i) => `"k${i}":1`).join(',')}}`;
      assertTooMany(await postRaw(server, '/v1/threads', `{"metadata":${members}}`));
      const empties = `[${Array(1_000_000).fill('{}').join(',')}]`;
      assertTooMany(await postRaw(server, '/v1/threads', `{"messages":[{"role":"user","content":${empties}}]}`));
      // Commas and brackets inside strings are text, not values.
      const text = ',[{'.repeat(200_000);
      const created = await postRaw(
        server,
        '/v1/assistants',
        `{"model":"m","instructions":"${text.slice(0, 250_000)}"}`,
      );
      assert.equal(created.status, 200, JSON.stringify(created.body).slice(0, 500));
    });
  });

  describe('a NUL character anywhere → 400 (was a 500 on PostgreSQL, stored as sent in SQLite)', () => {
    function assertNul(response: ApiResponse, where: RegExp): void {
      assert.equal(response.status, 400, JSON.stringify(response.body));
      const error = errorOf(response);
      assert.equal(error.type, 'invalid_request_error');
      assert.equal(error.code, 'invalid_value');
      assert.match(error.message, where);
      assert.match(error.message, /contains a NUL character/);
    }

    test('in a path id or a query parameter', async () => {
      assertNul(await server.api.get('/v1/threads/thread_%00'), /URL \(GET \/v1\/threads\/thread_%00\)/);
      assertNul(await server.api.delete('/v1/assistants/asst_a%00b'), /URL/);
      assertNul(await server.api.get('/v1/assistants?after=asst_%00'), /URL/);
    });

    test('in a JSON body, however deep; an escaped backslash before `u0000` is no NUL', async () => {
      assertNul(
        await postRaw(server, '/v1/assistants', String.raw`{"model":"m","metadata":{"k":"a\u0000b"}}`),
        /JSON body/,
      );
      assertNul(
        await postRaw(server, '/v1/threads', String.raw`{"messages":[{"role":"user","content":"\\\u0000"}]}`),
        /JSON body/,
      );
      const created = await postRaw(server, '/v1/assistants', String.raw`{"model":"m","name":"\\u0000"}`);
      assert.equal(created.status, 200, JSON.stringify(created.body));
      assert.equal(created.body.name, String.raw`\u0000`);
    });

    test("in an uploaded file's name", async () => {
      const form = new FormData();
      form.append('file', new Blob(['text']), 'a\u0000b.txt');
      form.append('purpose', 'assistants');
      const response = await fetch(`${server.url}/v1/files`, { method: 'POST', body: form });
      const body = (await response.json()) as ErrorBody;
      assert.equal(response.status, 400, JSON.stringify(body));
      assert.equal(body.error.param, 'file');
      assert.match(body.error.message, /NUL character/);
    });
  });

  describe("the router's and Node's refusals are OpenAI-shaped", () => {
    test('an id longer than 100 characters is an unknown id: 404 (was Fastify 414 FST_ERR_MAX_PARAM_LENGTH)', async () => {
      const threadId = `thread_${'a'.repeat(200)}`;
      for (const method of ['GET', 'POST', 'DELETE']) {
        const response = await server.api.request(
          method,
          `/v1/threads/${threadId}`,
          method === 'POST' ? {} : undefined,
        );
        assert.equal(response.status, 404, JSON.stringify(response.body));
        assert.deepEqual(errorOf(response), {
          message: `No thread found with id '${threadId}'.`,
          type: 'invalid_request_error',
          param: null,
          code: null,
        });
      }
      const thread = await server.api.post('/v1/threads', {});
      const messageId = `msg_${'b'.repeat(500)}`;
      const response = await server.api.get(`/v1/threads/${thread.body.id}/messages/${messageId}`);
      assert.equal(response.status, 404);
      assert.equal(errorOf(response).message, `No message found with id '${messageId}'.`);
    });

    test('a path that is not valid percent-encoding: 400 invalid_url (was Fastify FST_ERR_BAD_URL)', async () => {
      for (const path of [
        '/v1/threads/thread_%FF',
        '/v1/assistants/asst_%E0%A4%A',
        '/v1/threads/thread_1/messages/%C0',
        // Named as sent, not as served (/v1/…).
        '/openai/threads/thread_%FF',
        '/threads/thread_%FF',
      ]) {
        const response = await server.api.get(path);
        assert.equal(response.status, 400, JSON.stringify(response.body));
        const error = errorOf(response);
        assert.equal(error.type, 'invalid_request_error');
        assert.equal(error.code, 'invalid_url');
        assert.equal(error.param, null);
        assert.equal(error.message, `Invalid URL (GET ${path}): the path is not valid percent-encoded UTF-8.`);
        assert.ok(response.headers.get('x-request-id'));
        assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
      }
    });

    test("a request line over Node's header limit: 431, OpenAI-shaped, and the connection closed", async () => {
      const url = new URL(server.url);
      const response = await new Promise<{ status: number; headers: Record<string, unknown>; body: string }>(
        (resolve, reject) => {
          const req = httpRequest(
            { host: url.hostname, port: url.port, method: 'GET', path: `/v1/threads/thread_${'a'.repeat(20_000)}` },
            (res) => {
              let body = '';
              res.setEncoding('utf8');
              res.on('data', (chunk: string) => (body += chunk));
              res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
            },
          );
          req.on('error', reject);
          req.end();
        },
      );
      assert.equal(response.status, 431);
      assert.equal(response.headers['connection'], 'close');
      assert.equal(response.headers['content-type'], 'application/json');
      assert.match(String(response.headers['x-request-id']), /^req_/, 'a request id, as every answer has');
      assert.equal(response.headers['x-content-type-options'], 'nosniff');
      assert.deepEqual(JSON.parse(response.body), {
        error: {
          message: `Request header fields too large: the request line and headers may take at most ${maxHeaderSize} bytes.`,
          type: 'invalid_request_error',
          param: null,
          code: 'request_header_fields_too_large',
        },
      });
      // The server is unharmed.
      assert.equal((await server.api.get('/healthz')).status, 200);
    });

    test('bytes that are not HTTP: 400, OpenAI-shaped', async () => {
      const url = new URL(server.url);
      const raw = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(url.port), url.hostname, () => socket.write('HELLO THERE\r\n\r\n'));
        let text = '';
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => (text += chunk));
        socket.on('close', () => resolve(text));
        socket.on('error', reject);
      });
      const [head, body] = raw.split('\r\n\r\n');
      assert.match(head!, /^HTTP\/1\.1 400 Bad Request\r\n/);
      assert.match(head!, /\r\nConnection: close(\r\n|$)/);
      assert.deepEqual(JSON.parse(body!), {
        error: {
          message: 'The request is not valid HTTP/1.1.',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_http_request',
        },
      });
    });
  });
});

describe('a request body that stops arriving', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer({ ASSISTD_BODY_TIMEOUT_S: '1', ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl });
  });
  after(async () => {
    await server?.close();
    await upstream?.close();
  });

  /** Sends `head` and the start of a body, then nothing: what the server answers, and after how long it closed. */
  async function stall(head: string, start: string): Promise<{ status: string; body: string; closedAfterMs: number }> {
    const url = new URL(server.url);
    const began = Date.now();
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(url.port), url.hostname, () => socket.write(`${head}\r\n\r\n${start}`));
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (text += chunk));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
      setTimeout(() => reject(new Error(`still open after 10 s; received: ${text}`)), 10_000).unref();
    });
    const [status, ...rest] = raw.split('\r\n');
    return { status: status!, body: rest.join('\r\n').split('\r\n\r\n')[1] ?? '', closedAfterMs: Date.now() - began };
  }

  test('is answered 408 and its connection closed, a JSON body or an upload; the server holds nothing of it', async () => {
    const host = `Host: 127.0.0.1`;
    const json = await stall(
      `POST /v1/threads HTTP/1.1\r\n${host}\r\ncontent-type: application/json\r\ncontent-length: 100000`,
      '{"metadata": {"a": "',
    );
    const boundary = 'x-boundary';
    const upload = await stall(
      `POST /v1/files HTTP/1.1\r\n${host}\r\ncontent-type: multipart/form-data; boundary=${boundary}\r\ncontent-length: 100000`,
      `--${boundary}\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nassistants\r\n--${boundary}\r\n` +
        `content-disposition: form-data; name="file"; filename="slow.txt"\r\ncontent-type: text/plain\r\n\r\nThe start of`,
    );
    for (const answer of [json, upload]) {
      assert.equal(answer.status, 'HTTP/1.1 408 Request Timeout');
      assert.deepEqual(JSON.parse(answer.body), {
        error: {
          message: 'The request body stopped arriving: nothing came for 1 s.',
          type: 'invalid_request_error',
          param: null,
          code: 'request_timeout',
        },
      });
      assert.ok(answer.closedAfterMs >= 900, `closed after ${answer.closedAfterMs} ms`);
    }
    assert.deepEqual((await server.api.get('/v1/files')).body.data, []);
    assert.deepEqual((await server.api.get('/v1/threads')).body.data, []);
  });

  test('an answer that takes longer than that, once the body is in, is not cut: a stream with slow tokens', async () => {
    upstream.enqueue({ text: ['Slow ', 'but ', 'whole.'], chunkDelayMs: 1_500 });
    const assistant = await server.api.post('/v1/assistants', { model: 'gpt-test' });
    const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'Hi' }] });
    const response = await fetch(`${server.url}/v1/threads/${thread.body.id}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: assistant.body.id, stream: true }),
    });
    const text = await response.text();
    assert.match(text, /event: thread\.run\.completed\n/);
    assert.match(text, /event: done\ndata: \[DONE\]/);
  });
});
