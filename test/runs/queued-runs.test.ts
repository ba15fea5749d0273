import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream, type RecordedRequest } from '../support/fake-upstream.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { createValidatingFetch } from '../support/validating-fetch.ts';

/**
 * Queued runs (README "Queued runs"), on SQLite and PostgreSQL: with `x-assistd-queue: true`, runs created on a busy
 * thread wait `queued` and run one at a time in creation order; a message added during a run is stored and read by
 * the next run; a waiting run can be cancelled; without the header the official 400s stay.
 */

interface RunJson {
  id: string;
  status: string;
  created_at: number;
  started_at: number | null;
  completed_at: number | null;
  instructions: string;
}

interface ErrorJson {
  error: { message: string; type: string; param: string | null; code: string | null };
}

const QUEUE = { 'x-assistd-queue': 'true' };
const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'expired', 'incomplete']);
const lookup = { type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } };

/** The marker a run's instructions carry, found again in the upstream request it made. */
const marker = (i: number) => `<queued run ${String(i).padStart(2, '0')}>`;

/** The marker of the run that made an upstream request. */
function markerOf(request: RecordedRequest): string | undefined {
  return JSON.stringify(request.body.messages).match(/<queued run \d\d>/)?.[0];
}

function queuedRunsSuite(
  name: string,
  backend: () => Promise<{ env: Record<string, string>; cleanup(): Promise<void> }>,
) {
  describe(`queued runs on ${name}`, () => {
    let upstream: FakeUpstream;
    let server: TestServer;
    let cleanup: () => Promise<void>;
    let assistantId: string;

    before(async () => {
      const { env, cleanup: drop } = await backend();
      cleanup = drop;
      upstream = await FakeUpstream.start();
      // Each answer takes a few chunks' time, so that runs started together would overlap at the upstream.
      upstream.setDefault({ text: ['An', ' answer', '.'], chunkDelayMs: 15 });
      server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ...env });
      const assistant = await server.api.post('/v1/assistants', { model: 'm', tools: [lookup] });
      assistantId = assistant.body.id as string;
    });
    after(async () => {
      await server?.close();
      await upstream?.close();
      await cleanup?.();
    });

    const newThread = async () =>
      (await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] })).body.id as string;

    const createRun = (threadId: string, body: Record<string, unknown>, headers: Record<string, string> = QUEUE) =>
      server.api.request<RunJson & ErrorJson>(
        'POST',
        `/v1/threads/${threadId}/runs`,
        { assistant_id: assistantId, ...body },
        { headers },
      );

    const getRun = async (threadId: string, runId: string) =>
      (await server.api.get<RunJson>(`/v1/threads/${threadId}/runs/${runId}`)).body;

    const ended = (threadId: string, runId: string) =>
      eventually(`run ${runId} to end`, 20_000, async () => {
        const run = await getRun(threadId, runId);
        return TERMINAL.has(run.status) ? run : undefined;
      });

    /** A run on a new thread paused in requires_action (it holds the thread until its outputs come). */
    async function busyThread(): Promise<{ threadId: string; runId: string; callId: string }> {
      const threadId = await newThread();
      upstream.enqueue({ toolCalls: [{ name: 'lookup', arguments: '{}' }] });
      const created = await createRun(threadId, {}, {});
      assert.equal(created.status, 200);
      const paused = await eventually('the run to ask for tool outputs', 10_000, async () => {
        const run = (await server.api.get(`/v1/threads/${threadId}/runs/${created.body.id}`)).body;
        return run.status === 'requires_action' ? run : undefined;
      });
      const action = paused.required_action as { submit_tool_outputs: { tool_calls: Array<{ id: string }> } };
      return { threadId, runId: created.body.id, callId: action.submit_tool_outputs.tool_calls[0]!.id };
    }

    const submitOutputs = async (threadId: string, runId: string, callId: string) => {
      const submitted = await server.api.post(`/v1/threads/${threadId}/runs/${runId}/submit_tool_outputs`, {
        tool_outputs: [{ tool_call_id: callId, output: '42' }],
      });
      assert.equal(submitted.status, 200);
    };

    test('10 runs created at once on one thread all complete, one at a time, in creation order', async () => {
      const threadId = await newThread();
      const before = upstream.requests.length;
      const created = await Promise.all(
        Array.from({ length: 10 }, (_, i) => createRun(threadId, { instructions: marker(i) })),
      );
      for (const response of created) {
        assert.equal(response.status, 200, JSON.stringify(response.body));
        assert.equal(response.body.status, 'queued');
      }
      const runs = await Promise.all(created.map((response) => ended(threadId, response.body.id)));
      for (const run of runs) assert.equal(run.status, 'completed');

      // Creation order, as the runs list (created_at, then the order of insertion) has it.
      const listed = await server.api.get<{ data: RunJson[] }>(`/v1/threads/${threadId}/runs?order=asc&limit=100`);
      const inCreationOrder = listed.body.data;
      assert.equal(inCreationOrder.length, 10);
      for (let i = 1; i < inCreationOrder.length; i++) {
        const previous = inCreationOrder[i - 1]!;
        const run = inCreationOrder[i]!;
        assert.ok(run.started_at! >= previous.completed_at!, `${run.id} started before ${previous.id} completed`);
      }
      // Start order, to the millisecond: the upstream got one run's request after the previous one's answer was out.
      const requests = upstream.requests.slice(before);
      assert.equal(requests.length, 10);
      assert.deepEqual(
        requests.map(markerOf),
        inCreationOrder.map((run) => run.instructions),
      );
      for (let i = 1; i < requests.length; i++) {
        assert.ok(requests[i]!.receivedAt >= requests[i - 1]!.finishedAt!, `request ${i} overlapped the one before`);
        // Each run read the answers of all the runs before it.
        const answers = requests[i]!.body.messages.filter((m) => m.role === 'assistant').length;
        assert.equal(answers, i);
      }
      const messages = await server.api.get<{ data: Array<{ role: string; run_id: string | null }> }>(
        `/v1/threads/${threadId}/messages?limit=100`,
      );
      const answers = messages.body.data.filter((m) => m.role === 'assistant');
      assert.equal(answers.length, 10);
      assert.deepEqual(new Set(answers.map((m) => m.run_id)), new Set(runs.map((run) => run.id)));
    });

    test('without the header, a run or a message on a busy thread is refused as upstream refuses it', async () => {
      const { threadId, runId, callId } = await busyThread();
      for (const headers of [{}, { 'x-assistd-queue': 'false' }] as Array<Record<string, string>>) {
        const run = await createRun(threadId, {}, headers);
        assert.equal(run.status, 400);
        assert.equal(run.body.error.message, `Thread ${threadId} already has an active run ${runId}.`);
        const message = await server.api.request<ErrorJson>(
          'POST',
          `/v1/threads/${threadId}/messages`,
          { role: 'user', content: 'refused' },
          { headers },
        );
        assert.equal(message.status, 400);
        assert.equal(message.body.error.message, `Can't add messages to ${threadId} while a run ${runId} is active.`);
      }
      await submitOutputs(threadId, runId, callId);
      assert.equal((await ended(threadId, runId)).status, 'completed');
    });

    test('a message added during a run joins the thread after its answer; that run does not read it, the next does', async () => {
      const { threadId, runId, callId } = await busyThread();
      const message = await server.api.request(
        'POST',
        `/v1/threads/${threadId}/messages`,
        { role: 'user', content: 'added while busy' },
        { headers: QUEUE },
      );
      assert.equal(message.status, 200);
      const listed = await server.api.get<{ data: Array<{ id: string }> }>(`/v1/threads/${threadId}/messages`);
      assert.ok(listed.body.data.some((m) => m.id === message.body.id));

      const next = await createRun(threadId, {
        instructions: marker(99),
        additional_messages: [{ role: 'user', content: 'brought by the next run' }],
      });
      assert.equal(next.status, 200);
      assert.equal((await getRun(threadId, next.body.id)).status, 'queued');
      const seen = upstream.requests.length;
      await submitOutputs(threadId, runId, callId);
      assert.equal((await ended(threadId, runId)).status, 'completed');
      assert.equal((await ended(threadId, next.body.id)).status, 'completed');
      const going = upstream.requests.slice(seen).find((r) => markerOf(r) !== marker(99));
      assert.ok(going, 'the busy run asked the model again after its tool outputs');
      assert.ok(!JSON.stringify(going.body.messages).includes('added while busy'), 'not read by the run it came after');
      const request = upstream.requests.find((r) => markerOf(r) === marker(99));
      assert.ok(request, 'the next run called the upstream');
      const said = (m: Record<string, unknown>) => `${String(m['role'])}: ${String(m['content'])}`;
      assert.deepEqual(
        request.body.messages
          .filter((m) => m['role'] === 'user' || (m['role'] === 'assistant' && !m['tool_calls']))
          .map(said),
        ['user: hi', 'assistant: An answer.', 'user: added while busy', 'user: brought by the next run'],
      );
      const thread = await server.api.get<{
        data: Array<{ role: string; content: Array<{ text: { value: string } }> }>;
      }>(`/v1/threads/${threadId}/messages?order=asc`);
      assert.deepEqual(
        thread.body.data.map((m) => `${m.role}: ${m.content[0]!.text.value}`),
        [
          'user: hi',
          'assistant: An answer.',
          'user: added while busy',
          'user: brought by the next run',
          'assistant: An answer.',
        ],
      );
    });

    test('a waiting run that is cancelled ends cancelled without running, and the one behind it still runs', async () => {
      const { threadId, runId, callId } = await busyThread();
      const cancelledRun = await createRun(threadId, { instructions: marker(97) });
      const nextRun = await createRun(threadId, { instructions: marker(98) });
      const cancel = await server.api.post(`/v1/threads/${threadId}/runs/${cancelledRun.body.id}/cancel`);
      assert.equal(cancel.status, 200);
      assert.equal((await ended(threadId, cancelledRun.body.id)).status, 'cancelled');
      assert.equal((await getRun(threadId, nextRun.body.id)).status, 'queued');
      await submitOutputs(threadId, runId, callId);
      assert.equal((await ended(threadId, nextRun.body.id)).status, 'completed');
      assert.ok(upstream.requests.some((r) => markerOf(r) === marker(98)));
      assert.ok(!upstream.requests.some((r) => markerOf(r) === marker(97)), 'the cancelled run never ran');
    });

    test('messages waiting behind a waiting run that is cancelled keep waiting behind the run going before it', async () => {
      const { threadId, runId, callId } = await busyThread();
      const cancelled = await createRun(threadId, {
        instructions: marker(96),
        additional_messages: [{ role: 'user', content: 'brought by the cancelled run' }],
      });
      const later = await server.api.request(
        'POST',
        `/v1/threads/${threadId}/messages`,
        { role: 'user', content: 'asked after both runs' },
        { headers: QUEUE },
      );
      assert.equal(later.status, 200);
      const cancel = await server.api.post(`/v1/threads/${threadId}/runs/${cancelled.body.id}/cancel`);
      assert.equal(cancel.status, 200);
      assert.equal((await ended(threadId, cancelled.body.id)).status, 'cancelled');
      const seen = upstream.requests.length;
      await submitOutputs(threadId, runId, callId);
      assert.equal((await ended(threadId, runId)).status, 'completed');
      const going = upstream.requests.slice(seen).at(-1);
      assert.ok(going, 'the busy run asked the model again after its tool outputs');
      assert.ok(!JSON.stringify(going.body.messages).includes('asked after both runs'), 'not read by the run going');
      const thread = await server.api.get<{
        data: Array<{ role: string; content: Array<{ text: { value: string } }> }>;
      }>(`/v1/threads/${threadId}/messages?order=asc`);
      assert.deepEqual(
        thread.body.data.map((m) => `${m.role}: ${m.content[0]!.text.value}`),
        ['user: hi', 'assistant: An answer.', 'user: brought by the cancelled run', 'user: asked after both runs'],
      );
    });

    test('x-assistd-queue takes true or false: anything else is a 400', async () => {
      const threadId = await newThread();
      for (const url of [`/v1/threads/${threadId}/runs`, `/v1/threads/${threadId}/messages`]) {
        const response = await server.api.request<ErrorJson>(
          'POST',
          url,
          { assistant_id: assistantId, role: 'user', content: 'x' },
          { headers: { 'x-assistd-queue': 'yes' } },
        );
        assert.equal(response.status, 400);
        assert.equal(response.body.error.type, 'invalid_request_error');
        assert.equal(response.body.error.param, null);
        assert.equal(response.body.error.code, 'invalid_header');
      }
    });

    test('the official SDK queues a run with the header in its request options (createAndPoll)', async () => {
      const { threadId, runId, callId } = await busyThread();
      const recorder = createValidatingFetch();
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
      const polled = client.beta.threads.runs.createAndPoll(
        threadId,
        { assistant_id: assistantId },
        { headers: QUEUE, pollIntervalMs: 50 },
      );
      // It waits behind the paused run until that one has its outputs.
      await eventually('the SDK run to be created', 10_000, async () => {
        const list = await server.api.get<{ data: RunJson[] }>(`/v1/threads/${threadId}/runs`);
        return list.body.data.length === 2 ? true : undefined;
      });
      await submitOutputs(threadId, runId, callId);
      const run = await polled;
      assert.equal(run.status, 'completed');
      recorder.assertNoViolations({ all: true });
    });
  });
}

queuedRunsSuite('SQLite', async () => ({ env: {}, cleanup: async () => {} }));

const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined) test('queued runs on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  queuedRunsSuite('PostgreSQL', async () => {
    const database = await createTestDatabase(postgresUrl);
    return { env: { ASSISTD_DATABASE_URL: database.url }, cleanup: () => database.drop() };
  });

describe('ASSISTD_QUEUE_RUNS=on', () => {
  test('runs queue without the header; x-assistd-queue: false asks for the official 400', async () => {
    const upstream = await FakeUpstream.start();
    const server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_QUEUE_RUNS: 'on' });
    try {
      upstream.enqueue({ toolCalls: [{ name: 'lookup', arguments: '{}' }] });
      const assistant = await server.api.post('/v1/assistants', { model: 'm', tools: [lookup] });
      const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
      const url = `/v1/threads/${thread.body.id}/runs`;
      const first = await server.api.post<RunJson>(url, { assistant_id: assistant.body.id });
      await eventually('the first run to pause', 10_000, async () => {
        const run = await server.api.get<RunJson>(`${url}/${first.body.id}`);
        return run.body.status === 'requires_action' ? true : undefined;
      });
      const queued = await server.api.post<RunJson>(url, { assistant_id: assistant.body.id });
      assert.equal(queued.status, 200);
      assert.equal(queued.body.status, 'queued');
      const refused = await server.api.request(
        'POST',
        url,
        { assistant_id: assistant.body.id },
        {
          headers: { 'x-assistd-queue': 'false' },
        },
      );
      assert.equal(refused.status, 400);
    } finally {
      await server.close();
      await upstream.close();
    }
  });
});
