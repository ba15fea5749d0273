import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { RunEventBus } from '../../src/runs/run-event-bus.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { readSse, type SseEvent } from '../support/sse.ts';

/**
 * A poll the SDK's helpers make (`X-Stainless-Poll-Helper`) is held until the run changes; a client that says its
 * timeout is answered before that timeout runs out, the run still moving, and polls again.
 */
describe('held polls and the client timeout', () => {
  let upstream: FakeUpstream;
  let server: TestServer;

  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl });
  });
  after(async () => {
    await server.close();
    await upstream.close();
  });

  /** A run whose model answers only when `release` is called; resolves once the model has been called. */
  async function heldRun(): Promise<{ threadId: string; runId: string; release: () => void }> {
    let release = () => {};
    const holdLast = new Promise<void>((resolve) => {
      release = resolve;
    });
    upstream.enqueue({ text: ['Hel', 'lo'], holdLast });
    const seen = upstream.requests.length;
    const assistant = await server.api.post('/v1/assistants', { model: 'm' });
    const run = await server.api.post('/v1/threads/runs', {
      assistant_id: assistant.body.id,
      thread: { messages: [{ role: 'user', content: 'hello' }] },
    });
    await upstream.waitForRequests(seen + 1);
    return { threadId: run.body.thread_id as string, runId: run.body.id as string, release };
  }

  test("the node SDK's createAndPoll with a timeout shorter than a hold completes the run", async () => {
    const assistant = await server.api.post('/v1/assistants', { model: 'm' });
    const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hello' }] });
    let release = () => {};
    upstream.enqueue({ text: ['Hel', 'lo'], holdLast: new Promise<void>((resolve) => (release = resolve)) });
    // The SDK gives up on each request after 3 s (it sends `X-Stainless-Timeout: 3`), and does not retry.
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0 });
    const polled = client.beta.threads.runs.createAndPoll(
      thread.body.id as string,
      { assistant_id: assistant.body.id as string },
      { timeout: 3000 },
    );
    // The model answers after more than one timeout has passed: a poll held until then would have timed out.
    await new Promise((resolve) => setTimeout(resolve, 4000));
    release();
    const run = await polled;
    assert.equal(run.status, 'completed');
  });

  test("a poll with the Python SDK's read timeout is answered within it, the run still in progress", async () => {
    const { threadId, runId, release } = await heldRun();
    try {
      const response = await fetch(`${server.url}/v1/threads/${threadId}/runs/${runId}`, {
        headers: { 'x-stainless-poll-helper': 'true', 'x-stainless-read-timeout': '4.0' },
        signal: AbortSignal.timeout(4000), // what httpx does at its read timeout
      });
      assert.equal(response.status, 200);
      assert.equal(((await response.json()) as { status: string }).status, 'in_progress');
      assert.equal(response.headers.get('openai-poll-after-ms'), '0', 'the client polls again at once');
    } finally {
      release();
    }
  });

  test('a timeout under a second (node sends 0) is answered at once; a timeout that is not a number is ignored', async () => {
    const { threadId, runId, release } = await heldRun();
    try {
      const poll = (headers: Record<string, string>, signal?: AbortSignal) =>
        fetch(`${server.url}/v1/threads/${threadId}/runs/${runId}`, {
          headers: { 'x-stainless-poll-helper': 'true', ...headers },
          signal,
        });
      const atOnce = await poll({ 'x-stainless-timeout': '0' }, AbortSignal.timeout(2000));
      assert.equal(((await atOnce.json()) as { status: string }).status, 'in_progress');
      // Held as without the header: the model's answer ends it, well within the hold of a client that says none.
      const held = poll({ 'x-stainless-timeout': 'soon' });
      const first = await Promise.race([held.then(() => 'answered'), new Promise((r) => setTimeout(r, 500, 'held'))]);
      assert.equal(first, 'held');
      release();
      assert.equal(((await (await held).json()) as { status: string }).status, 'completed');
    } finally {
      release();
    }
  });

  test('a run modified while its model answers ends with the new metadata, in held polls and streams alike', async () => {
    // The run the executor holds was read before the modification; what it publishes when the run ends is what a
    // held poll and a stream answer with, so that must be the run as stored, not the executor's copy.
    const { threadId, runId, release } = await heldRun();
    const events: SseEvent[] = [];
    const streamed = fetch(`${server.url}/v1/threads/${threadId}/runs/${runId}/events`).then((response) =>
      readSse(response, (event) => void events.push(event)),
    );
    const polled = fetch(`${server.url}/v1/threads/${threadId}/runs/${runId}`, {
      headers: { 'x-stainless-poll-helper': 'true' },
    });
    const modified = await server.api.post(`/v1/threads/${threadId}/runs/${runId}`, { metadata: { step: 'two' } });
    assert.equal(modified.status, 200);
    release();
    const answered = (await (await polled).json()) as { status: string; metadata: unknown };
    assert.equal(answered.status, 'completed');
    assert.deepEqual(answered.metadata, { step: 'two' });
    await streamed;
    const completed = events.find((e) => e.event === 'thread.run.completed');
    assert.deepEqual(completed?.data.metadata, { step: 'two' });
  });

  test('held polls leave nothing on the server: no signal combined with its shutdown signal', async () => {
    // AbortSignal.any keeps every signal combined with a long-lived one for as long as that one lives (Node's
    // #55351): one held poll at a time, 81 bytes each, never freed.
    const any = AbortSignal.any;
    let combined = 0;
    AbortSignal.any = (signals) => {
      combined++;
      return any(signals);
    };
    const { threadId, runId, release } = await heldRun();
    try {
      for (let i = 0; i < 3; i++) {
        const response = await fetch(`${server.url}/v1/threads/${threadId}/runs/${runId}`, {
          headers: { 'x-stainless-poll-helper': 'true', 'x-stainless-timeout': '2' },
        });
        assert.equal(((await response.json()) as { status: string }).status, 'in_progress');
      }
    } finally {
      AbortSignal.any = any;
      release();
    }
    assert.equal(combined, 0);
  });

  test('a hold shorter than a second waits no longer than the hold, not until the next re-read', async () => {
    const { threadId, runId, release } = await heldRun();
    // How long each wait of the poll for a change may last.
    const waits: number[] = [];
    const nextChange = RunEventBus.prototype.nextChange;
    RunEventBus.prototype.nextChange = function (this: RunEventBus, ...args) {
      waits.push(args[1]);
      return nextChange.apply(this, args);
    };
    try {
      // Half the stated timeout: a hold of 0.25 s (the re-read comes every second).
      const response = await fetch(`${server.url}/v1/threads/${threadId}/runs/${runId}`, {
        headers: { 'x-stainless-poll-helper': 'true', 'x-stainless-read-timeout': '0.5' },
      });
      assert.equal(((await response.json()) as { status: string }).status, 'in_progress');
    } finally {
      RunEventBus.prototype.nextChange = nextChange;
      release();
    }
    assert.ok(waits.length > 0);
    for (const wait of waits) assert.ok(wait <= 250, `a wait of ${wait} ms`);
  });

  test('a client that says no timeout, or says it in milliseconds, is answered within it', async () => {
    // The Python SDK before 1.62 says none, and its README of then read with a 5 s timeout; the node SDK from 4.83 to
    // 4.91 said its timeout in milliseconds (`600000` by default). Both were held 5 s: past a 5 s timeout or a
    // request's own `timeout: 4000`, each poll failed, was retried into another hold, and the run's polling failed.
    const { threadId, runId, release } = await heldRun();
    try {
      for (const headers of [{}, { 'x-stainless-timeout': '4000' }] as Array<Record<string, string>>) {
        const response = await fetch(`${server.url}/v1/threads/${threadId}/runs/${runId}`, {
          headers: { 'x-stainless-poll-helper': 'true', ...headers },
          signal: AbortSignal.timeout(4000),
        });
        assert.equal(((await response.json()) as { status: string }).status, 'in_progress', JSON.stringify(headers));
        assert.equal(response.headers.get('openai-poll-after-ms'), '0', 'the client polls again at once');
      }
    } finally {
      release();
    }
  });
});
