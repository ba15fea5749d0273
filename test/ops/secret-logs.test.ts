import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { createLogger, type RunningServer, startServer } from '../../src/main.ts';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { runCli, tempDir } from '../support/server.ts';

const API_KEY = 'sk-assistd-secret-api-key-0001';
const UPSTREAM_KEY = 'sk-upstream-secret-key-0002';
const WRONG_KEY = 'sk-wrong-key-a-client-sent-0003';
const DB_PASSWORD = 'pg-secret-password-0004';
const SECRETS = [API_KEY, UPSTREAM_KEY, WRONG_KEY, DB_PASSWORD];

function assertNoSecret(text: string): void {
  for (const secret of SECRETS) assert.ok(!text.includes(secret), `a log line holds ${secret}:\n${text}`);
}

describe('no secret in any log line', () => {
  let upstream: FakeUpstream;
  let server: RunningServer;
  let dataDir: string;
  const lines: string[] = [];

  before(async () => {
    upstream = await FakeUpstream.start();
    // Every model call fails, quoting what it was sent (a careless proxy): the error paths log what it said.
    upstream.setDefault((request) => ({
      status: 500,
      body: { error: { message: `internal error; request headers were ${JSON.stringify(request.headers)}` } },
    }));
    dataDir = tempDir();
    const config = loadConfig({
      HOST: '127.0.0.1',
      PORT: '0',
      ASSISTD_DATA_DIR: dataDir,
      ASSISTD_CODE_INTERPRETER: 'off',
      ASSISTD_API_KEY: API_KEY,
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_UPSTREAM_API_KEY: UPSTREAM_KEY,
      ASSISTD_UPSTREAM_MAX_RETRIES: '1',
    });
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    // The lowest level: whatever any code path logs at all.
    server = await startServer(config, createLogger({ logLevel: 'trace' }, destination));
  });
  after(async () => {
    await server?.close();
    await upstream.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function call(method: string, path: string, headers: Record<string, string>, body?: string) {
    const response = await fetch(`${server.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...headers },
      body: body ?? null,
    });
    return { status: response.status, id: response.headers.get('x-request-id'), body: await response.text() };
  }

  test('requests with the right key, a wrong one, none, keys in bodies, and a failing upstream', async () => {
    const right = { authorization: `Bearer ${API_KEY}` };
    assert.equal((await call('GET', '/v1/assistants', right)).status, 200);
    assert.equal((await call('GET', '/v1/assistants', { 'api-key': API_KEY })).status, 200);
    assert.equal((await call('GET', '/v1/assistants', { authorization: `Bearer ${WRONG_KEY}` })).status, 401);
    assert.equal((await call('GET', '/v1/assistants', { 'api-key': WRONG_KEY })).status, 401);
    assert.equal((await call('GET', '/v1/assistants', {})).status, 401);
    assert.equal((await call('GET', '/metrics', { authorization: `Bearer ${WRONG_KEY}` })).status, 401);
    // Keys where a body or a URL carries them: unparsable JSON, an unknown route, a message.
    assert.equal((await call('POST', '/v1/assistants', right, `{"model": "${UPSTREAM_KEY}`)).status, 400);
    assert.equal((await call('GET', `/v1/${UPSTREAM_KEY}?key=${API_KEY}`, right)).status, 404);
    const assistant = JSON.parse(
      (await call('POST', '/v1/assistants', right, JSON.stringify({ model: 'm', instructions: API_KEY }))).body,
    );
    const run = JSON.parse(
      (
        await call(
          'POST',
          '/v1/threads/runs',
          right,
          JSON.stringify({
            assistant_id: assistant.id,
            thread: { messages: [{ role: 'user', content: `my upstream key is ${UPSTREAM_KEY}` }] },
          }),
        )
      ).body,
    );
    const runPath = `/v1/threads/${run.thread_id}/runs/${run.id}`;
    const ended = await eventually('the run to fail', 15_000, async () => {
      const now = JSON.parse((await call('GET', runPath, right)).body);
      return now.status === 'failed' ? now : undefined;
    });
    assert.equal(ended.last_error.code, 'server_error');
    // The upstream was sent the key, and failed twice (a retry): the error paths have run.
    assert.equal(upstream.requests.at(-1)?.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.equal(upstream.requests.length, 2);
    const threadRead = await call('GET', `/v1/threads/${run.thread_id}`, right);
    assert.equal(threadRead.status, 200);
    // Uploads: the multipart parser logs the request's headers at trace.
    for (const headers of [right, { 'api-key': API_KEY }]) {
      const form = new FormData();
      form.append('purpose', 'assistants');
      form.append('file', new Blob(['notes']), 'notes.txt');
      const response = await fetch(`${server.url}/v1/files`, { method: 'POST', headers, body: form });
      assert.equal(response.status, 200);
    }
    assert.ok(
      lines.some((line) => line.includes('busboy') && line.includes('[redacted]')),
      'the parser logged the headers, censored',
    );
    // The run's failure is the operator's to see, with the backend's answer and never its key.
    assert.ok(
      lines.some((line) => line.includes('the model backend failed') && line.includes(run.id)),
      'the failure is logged',
    );

    assert.ok(lines.length > 0);
    assertNoSecret(lines.join('\n'));

    // One line per response: its request id, method, route template, status and time.
    const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const line = logged.find((entry) => entry.reqId === threadRead.id);
    assert.ok(line, `no log line for request ${threadRead.id}`);
    assert.equal(line.msg, 'request');
    assert.equal(line.method, 'GET');
    assert.equal(line.route, '/v1/threads/:thread_id');
    assert.equal(line.status, 200);
    assert.equal(typeof line.responseTime, 'number');
    const refused = logged.filter((entry) => entry.msg === 'request' && entry.status === 401);
    assert.equal(refused.length, 4);
  });
});

describe('a request its client gives up on', () => {
  test('is logged and counted too: a stream stopped midway, a held poll abandoned before its answer', async () => {
    const upstream = await FakeUpstream.start();
    const dataDir = tempDir();
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    const config = loadConfig({
      HOST: '127.0.0.1',
      PORT: '0',
      ASSISTD_DATA_DIR: dataDir,
      ASSISTD_CODE_INTERPRETER: 'off',
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
    });
    const server = await startServer(config, createLogger({ logLevel: 'info' }, destination));
    try {
      upstream.setDefault({ text: ['Slow', ' ', 'answer', '.'], chunkDelayMs: 500 });
      const post = (path: string, body: unknown) =>
        fetch(`${server.url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      const assistant = (await (await post('/v1/assistants', { model: 'm' })).json()) as { id: string };
      const thread = (await (await post('/v1/threads', {})).json()) as { id: string };
      const streamed = new AbortController();
      const stream = await fetch(`${server.url}/v1/threads/${thread.id}/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ assistant_id: assistant.id, stream: true }),
        signal: streamed.signal,
      });
      const streamId = stream.headers.get('x-request-id');
      await stream.body!.getReader().read(); // its first events
      streamed.abort();
      const run = await eventually('the run', 10_000, async () => {
        const runs = (await (await fetch(`${server.url}/v1/threads/${thread.id}/runs`)).json()) as {
          data: Array<{ id: string; status: string }>;
        };
        return runs.data[0];
      });
      const held = new AbortController();
      const poll = fetch(`${server.url}/v1/threads/${thread.id}/runs/${run.id}`, {
        headers: { 'x-stainless-poll-helper': 'true' },
        signal: held.signal,
      }).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 300));
      held.abort();
      await poll;

      const logged = await eventually('both lines', 5_000, async () => {
        const entries = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
        const aborted = entries.filter((entry) => entry.msg === 'request' && entry.aborted === true);
        return aborted.length >= 2 ? aborted : undefined;
      });
      const byRoute = Object.fromEntries(logged.map((entry) => [entry.route, entry]));
      const streamLine = byRoute['/v1/threads/:thread_id/runs'];
      assert.ok(streamLine, JSON.stringify(logged));
      assert.equal(streamLine.reqId, streamId);
      assert.equal(streamLine.status, 200, 'the stream had its answer started');
      assert.equal(byRoute['/v1/threads/:thread_id/runs/:run_id']?.status, 499, 'the poll had no answer yet');

      // A request Node's parser refused has its line too, though it never reached a route.
      const url = new URL(server.url);
      const socket = connect(Number(url.port), url.hostname);
      socket.end(`GET /v1/threads/thread_${'a'.repeat(20_000)} HTTP/1.1\r\n\r\n`);
      await once(socket.resume(), 'close');
      await eventually('the refusal logged', 5_000, () =>
        lines
          .map((line) => JSON.parse(line) as Record<string, unknown>)
          .find((entry) => entry.msg === 'request' && entry.route === 'unparsed' && entry.status === 431),
      );
    } finally {
      await server.close();
      await upstream.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('no database password in the startup error', () => {
  test('a PostgreSQL URL with a password that cannot be reached', async () => {
    const url = `postgres://assistd:${DB_PASSWORD}@127.0.0.1:1/assistd`;
    const { code, stdout, stderr } = await runCli({ ASSISTD_DATABASE_URL: url, ASSISTD_DATA_DIR: tempDir() });
    assert.notEqual(code, 0);
    assert.match(stderr, /ASSISTD_DATABASE_URL/);
    assertNoSecret(stdout + stderr);
  });
});
