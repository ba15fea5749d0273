import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI, { AzureOpenAI, toFile } from 'openai';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { listRoutes } from '../support/route-table.ts';
import { type ApiResponse, startTestServer, type TestServer } from '../support/server.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

/**
 * Azure OpenAI clients (`new AzureOpenAI({ endpoint, apiKey, apiVersion })`) send every /v1 path with /openai in
 * its place, `?api-version=…` first in the query, and the key as `api-key: <key>` with no Authorization header.
 */

const KEY = 'k';
const API_VERSION = '2024-05-01-preview';

const lookup = {
  type: 'function' as const,
  function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } },
};

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

function errorOf(response: ApiResponse): ErrorBody['error'] {
  return (response.body as unknown as ErrorBody).error;
}

test('the validating fetch checks /openai responses against the spec as it does /v1 ones', async () => {
  const invalid = { id: 'asst_1', object: 'assistant' }; // most required fields missing
  const fake = createValidatingFetch(async () => Response.json(invalid), { quiet: true });
  await fake.fetch(`http://x/openai/assistants/asst_1?api-version=${API_VERSION}`);
  assert.equal(fake.violations.length, 1);
  assert.match(fake.violations[0]!.problem, /GET \/openai\/assistants\/asst_1 → 200 response does not match Assistant/);
});

describe('the official AzureOpenAI client, unchanged', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let recorder: ValidatingFetch;
  let client: AzureOpenAI;
  /** The headers of every request the client sent to the server. */
  const sentHeaders: Headers[] = [];

  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer({
      ASSISTD_API_KEY: KEY,
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_UPSTREAM_MAX_RETRIES: '0',
    });
    recorder = createValidatingFetch((input, init) => {
      if (String(input).startsWith(server.url)) sentHeaders.push(new Headers(init?.headers));
      return fetch(input, init);
    });
    client = new AzureOpenAI({
      endpoint: server.url,
      apiKey: KEY,
      apiVersion: API_VERSION,
      fetch: recorder.fetch,
      maxRetries: 0,
    });
  });
  after(async () => {
    await server?.close();
    await upstream?.close();
    recorder?.assertNoViolations({ all: true });
  });

  test('a function tool: createAndPoll → requires_action → submitToolOutputsAndPoll → completed', async () => {
    upstream.enqueue({ toolCalls: [{ name: 'lookup', arguments: '{"q":"weather"}' }] }, { text: 'It is sunny.' });
    const assistant = await client.beta.assistants.create({ model: 'm', tools: [lookup] });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Weather?' }] });

    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'requires_action');
    const [call] = run.required_action!.submit_tool_outputs.tool_calls;
    assert.equal(call!.function.name, 'lookup');
    assert.equal(call!.function.arguments, '{"q":"weather"}');

    const done = await client.beta.threads.runs.submitToolOutputsAndPoll(run.id, {
      thread_id: thread.id,
      tool_outputs: [{ tool_call_id: call!.id, output: 'sunny' }],
    });
    assert.equal(done.status, 'completed');
    const messages = await client.beta.threads.messages.list(thread.id, { order: 'desc', limit: 1 });
    const content = messages.data[0]!.content[0];
    assert.equal(content?.type === 'text' ? content.text.value : undefined, 'It is sunny.');
    recorder.assertNoViolations();
  });

  test('a streamed run: runs.stream … finalRun', async () => {
    upstream.enqueue({ text: ['Streamed ', 'through ', '/openai.'] });
    const assistant = await client.beta.assistants.create({ model: 'm' });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Hi' }] });
    let text = '';
    const stream = client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id }).on('textDelta', (d) => {
      text += d.value ?? '';
    });
    const run = await stream.finalRun();
    assert.equal(run.status, 'completed');
    assert.equal(text, 'Streamed through /openai.');
    recorder.assertNoViolations();
  });

  test('message listing auto-paginates over several pages (api-version first, then after=…)', async () => {
    const thread = await client.beta.threads.create();
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) {
      const message = await client.beta.threads.messages.create(thread.id, { role: 'user', content: `m${i}` });
      sent.push(message.id);
    }
    const pagesBefore = recorder.requests.length;
    const seen: string[] = [];
    for await (const message of client.beta.threads.messages.list(thread.id, { order: 'asc', limit: 2 }))
      seen.push(message.id);
    assert.deepEqual(seen, sent);
    const pages = recorder.requests.slice(pagesBefore);
    assert.equal(pages.length, 3);
    assert.match(pages[1]!.search, new RegExp(`^\\?api-version=${API_VERSION}&.*after=${sent[1]}`));
    recorder.assertNoViolations();
  });

  test('files and vector stores', async () => {
    const file = await client.files.create({
      file: await toFile(Buffer.from('Azure clients upload through /openai/files.'), 'note.txt'),
      purpose: 'assistants',
    });
    assert.equal(file.filename, 'note.txt');
    const store = await client.vectorStores.create({ name: 'docs', file_ids: [file.id] });
    const files = await client.vectorStores.files.list(store.id);
    assert.deepEqual(
      files.data.map((f) => f.id),
      [file.id],
    );
    assert.equal((await client.files.delete(file.id)).deleted, true);
    recorder.assertNoViolations();
  });

  test('every request went to /openai, api-version first, with the api-key header and no Authorization', () => {
    // Before its first upload the SDK tries a custom fetch on `data:,` (whose path is `,`): not a server request.
    const requests = recorder.requests.filter((r) => r.path !== ',');
    assert.ok(requests.length > 20);
    assert.equal(sentHeaders.length, requests.length);
    for (const request of requests) {
      assert.match(request.path, /^\/openai\//);
      assert.ok(request.search.startsWith(`?api-version=${API_VERSION}`), request.search);
      assert.ok(request.status < 400, `${request.method} ${request.path} → ${request.status}`);
    }
    for (const headers of sentHeaders) {
      assert.equal(headers.get('api-key'), KEY);
      assert.equal(headers.get('authorization'), null);
    }
  });
});

describe('/openai paths and the api-key header', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ ASSISTD_API_KEY: KEY });
  });
  after(async () => server?.close());

  const get = (url: string, headers: Record<string, string> = {}) =>
    server.api.request('GET', url, undefined, { headers });

  test('without a key → 401 invalid_api_key, the same error as /v1', async () => {
    const azure = await get(`/openai/assistants?api-version=${API_VERSION}`);
    const v1 = await get('/v1/assistants');
    assert.equal(azure.status, 401);
    assert.deepEqual(azure.body, v1.body);
    assert.equal(errorOf(azure).code, 'invalid_api_key');
    assert.equal(errorOf(azure).type, 'invalid_request_error');
    assert.equal(errorOf(azure).param, null);
  });

  test('a wrong api-key → 401 invalid_api_key, the key masked, on /openai and /v1', async () => {
    for (const path of [`/openai/assistants?api-version=${API_VERSION}`, '/v1/assistants']) {
      const response = await get(path, { 'api-key': 'sk-wrong-key-123456' });
      assert.equal(response.status, 401, path);
      assert.equal(errorOf(response).code, 'invalid_api_key');
      assert.equal(errorOf(response).message, 'Incorrect API key provided: sk-************3456.');
    }
    const empty = await get(`/openai/assistants?api-version=${API_VERSION}`, { 'api-key': '' });
    assert.equal(empty.status, 401);
    assert.match(errorOf(empty).message, /^You didn't provide an API key/);
  });

  test('the key is taken as api-key or as a Bearer token, on both prefixes', async () => {
    assert.equal(
      (await get(`/openai/threads/thread_missing?api-version=${API_VERSION}`, { 'api-key': KEY })).status,
      404,
    );
    assert.equal((await get('/v1/assistants', { 'api-key': KEY })).status, 200);
    assert.equal(
      (await get(`/openai/assistants?api-version=${API_VERSION}`, { authorization: `Bearer ${KEY}` })).status,
      200,
    );
    // A Bearer token, when there is one, is what is judged: the same answer as before api-key was accepted.
    const both = await get('/v1/assistants', { authorization: 'Bearer wrong', 'api-key': KEY });
    assert.equal(both.status, 401);
  });

  test('an unknown /openai path → the usual 404 `Invalid URL`, a wrong method → the usual 405', async () => {
    const headers = { 'api-key': KEY };
    const unknown = await get(`/openai/unknown?api-version=${API_VERSION}`, headers);
    assert.equal(unknown.status, 404);
    assert.deepEqual(unknown.body, {
      error: { message: 'Invalid URL (GET /openai/unknown)', type: 'invalid_request_error', param: null, code: null },
    });
    assert.deepEqual((await get('/v1/unknown', headers)).body, {
      error: { message: 'Invalid URL (GET /v1/unknown)', type: 'invalid_request_error', param: null, code: null },
    });
    const wrongMethod = await server.api.request('DELETE', `/openai/threads?api-version=${API_VERSION}`, undefined, {
      headers,
    });
    assert.equal(wrongMethod.status, 405);
    assert.equal(
      errorOf(wrongMethod).message,
      'Method DELETE is not allowed for /openai/threads. Allowed: POST, GET, HEAD.',
    );
    assert.equal(wrongMethod.headers.get('allow'), 'POST, GET, HEAD');
    // Only the /openai segment is Azure's: /openaix is not rewritten (and, not being /v1, needs no key).
    const lookalike = await server.api.request('GET', '/openaix/assistants', undefined, { validate: false });
    assert.equal(lookalike.status, 404);
    assert.equal(errorOf(lookalike).message, 'Invalid URL (GET /openaix/assistants)');
  });
});

/** A placeholder for each path parameter: a well-formed id of the right kind that names nothing. */
const PLACEHOLDERS: Record<string, string> = {
  assistant_id: 'asst_missing',
  thread_id: 'thread_missing',
  message_id: 'msg_missing',
  run_id: 'run_missing',
  step_id: 'step_missing',
  file_id: 'file-missing',
  vector_store_id: 'vs_missing',
  batch_id: 'vsfb_missing',
};

describe('every /v1 route is served under /openai, and those of the Assistants API without /v1 too', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ ASSISTD_API_KEY: KEY });
  });
  after(async () => server?.close());

  test('the same answer on /openai?api-version=… with api-key as on /v1 with a Bearer token, never the unknown-route one', async () => {
    const routes = listRoutes(server.server.app).filter((r) => r.url.startsWith('/v1/') && r.method !== 'HEAD');
    // HEAD routes are Fastify's twins of the GETs: no body tells an unknown route from a missing object.
    for (const expected of ['POST /v1/files', 'GET /v1/vector_stores/:vector_store_id/files', 'POST /v1/threads/runs'])
      assert.ok(
        routes.some((r) => `${r.method} ${r.url}` === expected),
        `${expected} is in the route table`,
      );
    assert.ok(routes.length >= 45, `${routes.length} routes`);

    for (const { method, url } of routes) {
      const rest = url
        .slice('/v1'.length)
        .replace(/:([a-z_]+)/g, (_, name: string) => PLACEHOLDERS[name] ?? 'missing')
        .replace('*', 'missing');
      const body = method === 'POST' ? {} : undefined;
      // Not validated against the schema: /v1/models is not in the Assistants spec. The SDK tests above validate.
      const send = (path: string, headers: Record<string, string>) =>
        server.api.request(method, path, body, { headers, validate: false });
      const v1 = await send(`/v1${rest}`, { authorization: `Bearer ${KEY}` });
      const azure = await send(`/openai${rest}?api-version=${API_VERSION}`, { 'api-key': KEY });
      const v1WithVersion = await send(`/v1${rest}?api-version=${API_VERSION}`, { 'api-key': KEY });
      // Azure's "v1 API": `new OpenAI({ baseURL: endpoint + '/openai/v1/' })`, as the SDK's Azure guide has it.
      const azureV1 = await send(`/openai/v1${rest}`, { 'api-key': KEY });
      const what = `${method} ${url}`;
      if (/^\/(assistants|threads|files|vector_stores|models)\b/.test(rest)) {
        const unversioned = await send(rest, { authorization: `Bearer ${KEY}` });
        assert.equal(unversioned.status, v1.status, `${what} without /v1: ${JSON.stringify(unversioned.body)}`);
        if (v1.status >= 400) assert.deepEqual(unversioned.body, v1.body, what);
        assert.equal((await send(rest, {})).status, 401, `${what} without /v1 needs the key`);
      }
      assert.notEqual(v1.status, 405, what);
      assert.ok(
        !(v1.status === 404 && /^Invalid URL/.test(errorOf(v1).message)),
        `${what}: ${JSON.stringify(v1.body)}`,
      );
      assert.equal(azure.status, v1.status, `${what} under /openai: ${JSON.stringify(azure.body)}`);
      assert.equal(v1WithVersion.status, v1.status, `${what} with api-version: ${JSON.stringify(v1WithVersion.body)}`);
      assert.equal(azureV1.status, v1.status, `${what} under /openai/v1: ${JSON.stringify(azureV1.body)}`);
      if (v1.status >= 400) {
        assert.deepEqual(azure.body, v1.body, what);
        assert.deepEqual(azureV1.body, v1.body, what);
        assert.deepEqual(v1WithVersion.body, v1.body, what);
      }
    }
  });

  test('the official client with a base URL lacking /v1 (as LiteLLM passes it on) works; other paths are still unknown', async () => {
    const recorder = createValidatingFetch();
    const client = new OpenAI({ baseURL: server.url, apiKey: KEY, fetch: recorder.fetch, maxRetries: 0 });
    const assistant = await client.beta.assistants.create({ model: 'gpt-4o-mini', name: 'no /v1' });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'hi' }] });
    const messages = await client.beta.threads.messages.list(thread.id);
    assert.equal(messages.data.length, 1);
    assert.equal((await client.beta.assistants.retrieve(assistant.id)).name, 'no /v1');
    const file = await client.files.create({ file: await toFile(Buffer.from('x'), 'x.txt'), purpose: 'assistants' });
    assert.equal((await client.files.retrieve(file.id)).filename, 'x.txt');
    recorder.assertNoViolations({ all: true });

    const bearer = { authorization: `Bearer ${KEY}` };
    for (const path of ['/threadsx', '/organization/projects', '/assistant']) {
      const unknown = await server.api.request('GET', path, undefined, { headers: bearer, validate: false });
      assert.equal(unknown.status, 404, path);
      assert.equal(errorOf(unknown).message, `Invalid URL (GET ${path})`);
    }
    const wrongMethod = await server.api.request('DELETE', '/threads', undefined, { headers: bearer });
    assert.equal(errorOf(wrongMethod).message, 'Method DELETE is not allowed for /threads. Allowed: POST, GET, HEAD.');
  });

  test('slashes doubled in a path are taken as one: a base URL ending in / joined to paths starting with /', async () => {
    // A Google Apps Script bot: `UrlFetchApp.fetch('https://api.openai.com/v1/' + '/threads', …)`, which OpenAI served.
    const bearer = { authorization: `Bearer ${KEY}` };
    const thread = await server.api.request('POST', '/v1//threads', {}, { headers: bearer, validate: false });
    assert.equal(thread.status, 200, JSON.stringify(thread.body));
    const id = thread.body.id as string;
    for (const path of [
      `//v1/threads/${id}`,
      `/v1//threads//${id}?a=b//c`,
      `/openai//threads/${id}`,
      `//threads/${id}`,
    ]) {
      const got = await server.api.request('GET', path, undefined, { headers: bearer, validate: false });
      assert.equal(got.status, 200, `${path}: ${JSON.stringify(got.body)}`);
      assert.equal(got.body.id, id, path);
    }
    const unknown = await server.api.request('GET', '//threadsx', undefined, { headers: bearer, validate: false });
    assert.equal(errorOf(unknown).message, 'Invalid URL (GET //threadsx)');
  });
});
