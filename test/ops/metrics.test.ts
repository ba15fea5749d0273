import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { ApiClient, startTestServer, type TestServer } from '../support/server.ts';

const KEY = 'sk-metrics-test-key';
const AUTH = { authorization: `Bearer ${KEY}` };

/** One sample of the Prometheus text: the value of `name{labels}` (labels in any order), 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    const match = line.match(/^([a-z_]+)(?:\{(.*)\})? (\S+)$/);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries(
      [...(match[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!] as const),
    );
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[3]);
  }
  return 0;
}

describe('/metrics', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let api: ApiClient;

  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer({
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_API_KEY: KEY,
      ASSISTD_UPSTREAM_MAX_RETRIES: '1',
    });
    api = new ApiClient(server.url, AUTH);
  });
  after(async () => {
    await server.close();
    await upstream.close();
  });

  async function scrape(): Promise<string> {
    const response = await fetch(`${server.url}/metrics`, { headers: AUTH });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    return response.text();
  }

  async function runToEnd(model: string): Promise<Record<string, unknown>> {
    const assistant = await api.post('/v1/assistants', { model });
    const run = await api.post('/v1/threads/runs', {
      assistant_id: assistant.body.id,
      thread: { messages: [{ role: 'user', content: 'hello' }] },
    });
    const path = `/v1/threads/${run.body.thread_id}/runs/${run.body.id}`;
    return eventually('the run to end', 10_000, async () => {
      const now = await api.get(path);
      return ['queued', 'in_progress'].includes(now.body.status as string) ? undefined : now.body;
    });
  }

  test('is protected by the API key, like /v1', async () => {
    assert.equal((await fetch(`${server.url}/metrics`)).status, 401);
    assert.equal((await fetch(`${server.url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
  });

  test("a run's counters move: runs, their duration and queue wait, the upstream call, its tokens, HTTP", async () => {
    const before = await scrape();
    upstream.enqueue({ text: ['Hel', 'lo'], usage: { prompt_tokens: 11, completion_tokens: 7 } });
    const run = await runToEnd('metrics-model');
    assert.equal(run.status, 'completed');
    const after = await scrape();
    const moved = (name: string, labels: Record<string, string> = {}) =>
      sample(after, name, labels) - sample(before, name, labels);

    assert.equal(moved('assistd_runs_created_total'), 1);
    assert.equal(moved('assistd_runs_finished_total', { status: 'completed' }), 1);
    assert.equal(moved('assistd_run_duration_seconds_count', { status: 'completed' }), 1);
    assert.equal(moved('assistd_run_queue_wait_seconds_count'), 1);
    const model = { model: 'metrics-model' };
    assert.equal(moved('assistd_upstream_request_duration_seconds_count', { ...model, outcome: 'completed' }), 1);
    assert.equal(moved('assistd_upstream_first_event_seconds_count', model), 1);
    assert.equal(moved('assistd_upstream_tokens_total', { ...model, kind: 'prompt' }), 11);
    assert.equal(moved('assistd_upstream_tokens_total', { ...model, kind: 'completion' }), 7);
    // Route templates, never URLs: the run's id is nowhere in the text.
    assert.ok(
      moved('assistd_http_request_duration_seconds_count', {
        method: 'GET',
        route: '/v1/threads/:thread_id/runs/:run_id',
        status_code: '200',
      }) >= 1,
    );
    assert.ok(!after.includes(run.id as string));
    assert.equal(sample(after, 'assistd_runs_active'), 0);
    assert.ok(after.includes('assistd_event_loop_delay_p99_seconds '));
  });

  test("a held poll (the SDK's createAndPoll) is counted by what answered it", async () => {
    const before = await scrape();
    let release = () => {};
    const holdLast = new Promise<void>((resolve) => {
      release = resolve;
    });
    upstream.enqueue({ text: ['Hel', 'lo'], holdLast });
    const seen = upstream.requests.length;
    const assistant = await api.post('/v1/assistants', { model: 'm' });
    const run = await api.post('/v1/threads/runs', {
      assistant_id: assistant.body.id,
      thread: { messages: [{ role: 'user', content: 'hello' }] },
    });
    await upstream.waitForRequests(seen + 1);
    const held = api.request('GET', `/v1/threads/${run.body.thread_id}/runs/${run.body.id}`, undefined, {
      headers: { 'x-stainless-poll-helper': 'true' },
    });
    // The poll is held while the model's answer is: it cannot be answered before the release, only by it.
    await new Promise((resolve) => setTimeout(resolve, 300));
    release();
    assert.equal((await held).body.status, 'completed');
    const after = await scrape();
    const moved = (by: string) =>
      sample(after, 'assistd_held_polls_total', { answered_by: by }) -
      sample(before, 'assistd_held_polls_total', { answered_by: by });
    assert.equal(moved('notified'), 1);
    assert.equal(moved('rechecked'), 0);
    assert.equal(moved('deadline'), 0);
  });

  test('a failed attempt is an upstream error and its retry is counted; a failed run by its status', async () => {
    const before = await scrape();
    upstream.enqueue({ status: 503 }, { status: 503 });
    const run = await runToEnd('failing-model');
    assert.equal(run.status, 'failed');
    const after = await scrape();
    const moved = (name: string, labels: Record<string, string> = {}) =>
      sample(after, name, labels) - sample(before, name, labels);
    assert.equal(moved('assistd_upstream_errors_total', { model: 'failing-model', code: 'server_error' }), 2);
    assert.equal(moved('assistd_upstream_retries_total', { model: 'failing-model' }), 1);
    assert.equal(moved('assistd_runs_finished_total', { status: 'failed' }), 1);
  });

  test("a request Node's parser refuses (431, 400) is counted, under the route 'unparsed'", async () => {
    const before = await scrape();
    const url = new URL(server.url);
    for (const request of [`GET /v1/threads/thread_${'a'.repeat(20_000)} HTTP/1.1\r\n\r\n`, 'NOT HTTP\r\n\r\n']) {
      const socket = connect(Number(url.port), url.hostname);
      socket.end(request);
      await once(socket.resume(), 'close');
    }
    const after = await scrape();
    const moved = (status: string) =>
      sample(after, 'assistd_http_request_duration_seconds_count', { route: 'unparsed', status_code: status }) -
      sample(before, 'assistd_http_request_duration_seconds_count', { route: 'unparsed', status_code: status });
    assert.equal(moved('431'), 1);
    assert.equal(moved('400'), 1);
  });

  test('a stream counts as opened, and as open only while it is', async () => {
    const before = await scrape();
    upstream.enqueue({ text: 'streamed' });
    const assistant = await api.post('/v1/assistants', { model: 'metrics-model' });
    const response = await fetch(`${server.url}/v1/threads/runs`, {
      method: 'POST',
      headers: { ...AUTH, 'content-type': 'application/json' },
      body: JSON.stringify({
        assistant_id: assistant.body.id,
        stream: true,
        thread: { messages: [{ role: 'user', content: 'hello' }] },
      }),
    });
    assert.ok((await response.text()).endsWith('data: [DONE]\n\n'));
    const after = await scrape();
    assert.equal(sample(after, 'assistd_streams_total') - sample(before, 'assistd_streams_total'), 1);
    assert.equal(sample(after, 'assistd_streams_active'), 0);
  });

  test('each server counts its own: a second server in the same process starts from zero', async () => {
    const other = await startTestServer();
    try {
      const text = await (await fetch(`${other.url}/metrics`)).text();
      assert.equal(sample(text, 'assistd_runs_created_total'), 0);
      assert.ok(sample(await scrape(), 'assistd_runs_created_total') >= 2);
    } finally {
      await other.close();
    }
  });
});
