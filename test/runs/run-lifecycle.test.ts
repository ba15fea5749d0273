import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { ApiClient, type ServerProcess, spawnServer, startTestServer, tempDir } from '../support/server.ts';
import { eventNames, postSse } from '../support/sse.ts';

type Body = Record<string, unknown>;

/** Polls a run (plain GETs, no held polls) until `done` holds or `timeoutMs` passes; returns the last state. */
async function waitForRun(
  api: ApiClient,
  threadId: string,
  runId: string,
  done: (run: Body) => boolean,
  timeoutMs: number,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await api.get(`/v1/threads/${threadId}/runs/${runId}`);
    if (done(body) || Date.now() > deadline) return body;
    await new Promise((r) => setTimeout(r, 50));
  }
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'expired', 'incomplete']);

/** An assistant on `model`, a thread with one message, a run of it; resolves with the run once it has ended. */
async function runToEnd(api: ApiClient, model: string, timeoutMs: number): Promise<Body> {
  const assistant = await api.post('/v1/assistants', { model });
  const thread = await api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
  const run = await api.post(`/v1/threads/${thread.body.id}/runs`, { assistant_id: assistant.body.id });
  const threadId = thread.body.id as string;
  return waitForRun(api, threadId, run.body.id as string, (r) => TERMINAL.has(r.status as string), timeoutMs);
}
const tool = { type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } };

describe('run lifecycle', () => {
  let upstream: FakeUpstream;
  before(async () => {
    upstream = await FakeUpstream.start();
  });
  after(async () => upstream.close());

  test('a run left in requires_action expires once its expires_at passes (ASSISTD_RUN_EXPIRES_AFTER_S=2), with its step', async () => {
    const server = await startTestServer({
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_RUN_EXPIRES_AFTER_S: '2',
    });
    try {
      upstream.enqueue({ toolCalls: [{ name: 'lookup', arguments: '{}' }] });
      const assistant = await server.api.post('/v1/assistants', { model: 'm', tools: [tool] });
      const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
      const run = await server.api.post(`/v1/threads/${thread.body.id}/runs`, { assistant_id: assistant.body.id });
      assert.equal(run.body.expires_at, (run.body.created_at as number) + 2);
      const paused = await waitForRun(
        server.api,
        thread.body.id as string,
        run.body.id as string,
        (r) => r.status !== 'queued' && r.status !== 'in_progress',
        2000,
      );
      assert.equal(paused.status, 'requires_action');
      const expired = await waitForRun(
        server.api,
        thread.body.id as string,
        run.body.id as string,
        (r) => r.status === 'expired',
        10_000,
      );
      assert.equal(expired.status, 'expired');
      assert.equal(expired.required_action, null);
      assert.equal(expired.expires_at, null);
      const steps = await server.api.get<{ data: Body[] }>(`/v1/threads/${thread.body.id}/runs/${run.body.id}/steps`);
      assert.equal(steps.body.data[0]!.status, 'expired');
      // Not before its time: the step expired when the run did, at or after the run's expires_at.
      assert.ok((steps.body.data[0]!.expired_at as number) >= (run.body.expires_at as number));
      const late = await server.api.post(`/v1/threads/${thread.body.id}/runs/${run.body.id}/submit_tool_outputs`, {
        tool_outputs: [],
      });
      assert.equal(late.status, 400);
    } finally {
      await server.close();
    }
  });

  test('a streamed run that expires mid-answer keeps the message it streamed, incomplete with run_expired', async () => {
    const server = await startTestServer({
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_RUN_EXPIRES_AFTER_S: '2',
    });
    try {
      // Twenty pieces 400 ms apart: the answer is still being written when the run expires, 2 s in.
      upstream.enqueue({ text: Array.from({ length: 20 }, (_, i) => `piece ${i}. `), chunkDelayMs: 400 });
      const assistant = await server.api.post('/v1/assistants', { model: 'm' });
      const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
      const threadId = thread.body.id as string;
      const events = await postSse(`${server.url}/v1/threads/${threadId}/runs`, {
        assistant_id: assistant.body.id,
        stream: true,
      });
      const names = eventNames(events);
      assert.deepEqual(names.slice(-5), [
        'thread.message.delta*',
        'thread.message.incomplete',
        'thread.run.step.expired',
        'thread.run.expired',
        'done',
      ]);
      const streamed = events
        .filter((e) => e.event === 'thread.message.delta')
        .map((e) => e.data.delta.content[0].text.value)
        .join('');
      assert.match(streamed, /^piece 0\. piece 1\. /);
      assert.ok(!streamed.includes('piece 19'), 'the answer was cut short');

      // What was streamed is what is stored.
      const run = events.find((e) => e.event === 'thread.run.expired')!.data;
      const messages = await server.api.get<{ data: Body[] }>(`/v1/threads/${threadId}/messages?run_id=${run.id}`);
      assert.equal(messages.body.data.length, 1);
      const message = messages.body.data[0]!;
      assert.equal(message.status, 'incomplete');
      assert.deepEqual(message.incomplete_details, { reason: 'run_expired' });
      const [part] = message.content as Array<{ text: { value: string } }>;
      assert.equal(part!.text.value, streamed);
      const steps = await server.api.get<{ data: Body[] }>(`/v1/threads/${threadId}/runs/${run.id}/steps`);
      assert.deepEqual(
        steps.body.data.map((s) => s.status),
        ['expired'],
      );
      const stored = await server.api.get(`/v1/threads/${threadId}/runs/${run.id}`);
      assert.equal(stored.body.status, 'expired');
    } finally {
      await server.close();
    }
  });

  test('an upstream that hangs times out and the run fails with server_error', async () => {
    const server = await startTestServer({
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_UPSTREAM_TIMEOUT_S: '1',
      ASSISTD_UPSTREAM_MAX_RETRIES: '0',
    });
    try {
      upstream.enqueue({ hang: true });
      const final = await runToEnd(server.api, 'm', 5000);
      assert.equal(final.status, 'failed');
      assert.equal((final.last_error as Body).code, 'server_error');
      assert.match((final.last_error as Body).message as string, /timed out/);
    } finally {
      await server.close();
    }
  });

  test('a run whose model has no backend fails with a clear last_error', async () => {
    const server = await startTestServer();
    try {
      const final = await runToEnd(server.api, 'nowhere-model', 3000);
      assert.equal(final.status, 'failed');
      assert.match(
        (final.last_error as Body).message as string,
        /No model backend is configured for model 'nowhere-model'/,
      );
    } finally {
      await server.close();
    }
  });

  test('SIGKILL while one run is in progress and one is queued: after restart both end, each with one answer', async () => {
    const dir = tempDir();
    const env = {
      ASSISTD_DATA_DIR: dir,
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_WORKER_CONCURRENCY: '1',
      ASSISTD_WORKER_LEASE_S: '2',
    };
    let server: ServerProcess | undefined = await spawnServer(env);
    try {
      const api = new ApiClient(server.url);
      const assistant = await api.post('/v1/assistants', { model: 'm' });
      const threads = [];
      for (let i = 0; i < 2; i++)
        threads.push(
          (await api.post('/v1/threads', { messages: [{ role: 'user', content: `q${i}` }] })).body.id as string,
        );
      // The first run streams slowly; with one worker slot the second stays queued.
      upstream.enqueue({ text: ['slow ', 'slow ', 'slow ', 'slow ', 'slow '], chunkDelayMs: 400 });
      upstream.setDefault({ text: 'answer' });
      const seen = upstream.requests.length;
      const inProgress = await api.post(`/v1/threads/${threads[0]}/runs`, { assistant_id: assistant.body.id });
      await upstream.waitForRequests(seen + 1);
      const queued = await api.post(`/v1/threads/${threads[1]}/runs`, { assistant_id: assistant.body.id });
      await new Promise((r) => setTimeout(r, 500));
      assert.equal((await api.get(`/v1/threads/${threads[0]}/runs/${inProgress.body.id}`)).body.status, 'in_progress');
      assert.equal((await api.get(`/v1/threads/${threads[1]}/runs/${queued.body.id}`)).body.status, 'queued');
      await server.stop('SIGKILL');

      server = await spawnServer(env);
      const again = new ApiClient(server.url);
      const runs: Array<[string, string]> = [
        [threads[0]!, inProgress.body.id as string],
        [threads[1]!, queued.body.id as string],
      ];
      for (const [threadId, runId] of runs) {
        const final = await waitForRun(again, threadId, runId, (r) => TERMINAL.has(r.status as string), 10_000);
        assert.equal(final.status, 'completed', `${runId} ended ${String(final.status)}`);
        const messages = await again.get<{ data: Body[] }>(`/v1/threads/${threadId}/messages`);
        assert.equal(messages.body.data.filter((m) => m.role === 'assistant').length, 1);
        const steps = await again.get<{ data: Body[] }>(`/v1/threads/${threadId}/runs/${runId}/steps`);
        assert.equal(steps.body.data.length, 1);
      }
    } finally {
      await server?.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
