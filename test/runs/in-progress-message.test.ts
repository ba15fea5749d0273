import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { createTestDatabase, postgresUrlOrSkip, type TestDatabase } from '../support/postgres.ts';
import { ApiClient, type ServerProcess, spawnServer, startTestServer, tempDir } from '../support/server.ts';
import { postSse, type SseEvent } from '../support/sse.ts';

/**
 * The message a run is writing, and its message_creation step, can be read (in_progress) as soon as a stream has
 * announced them, as on OpenAI's API: polling UIs list them, and programs fetch the message named by
 * `thread.message.created`. Whatever ends the run (or the process executing it), none is left in_progress, and
 * none shows twice.
 */

type Body = Record<string, unknown>;
const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'expired', 'incomplete', 'requires_action']);
const lookup = { type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } };

interface Storage {
  name: string;
  /** Settings for a server on a fresh database of this kind; `drop` deletes it. */
  open(): Promise<{ env: Record<string, string>; drop(): Promise<void> }>;
}

const storages: Storage[] = [
  {
    name: 'SQLite',
    open: async () => {
      const dir = tempDir();
      return { env: { ASSISTD_DATA_DIR: dir }, drop: async () => rmSync(dir, { recursive: true, force: true }) };
    },
  },
];
const postgresUrl = postgresUrlOrSkip();
if (postgresUrl !== undefined)
  storages.push({
    name: 'PostgreSQL',
    open: async () => {
      const database: TestDatabase = await createTestDatabase(postgresUrl);
      return { env: { ASSISTD_DATABASE_URL: database.url }, drop: () => database.drop() };
    },
  });

async function messagesOf(api: ApiClient, threadId: string): Promise<Body[]> {
  return (await api.get<{ data: Body[] }>(`/v1/threads/${threadId}/messages?order=asc&limit=100`)).body.data.filter(
    (m) => m.role === 'assistant',
  );
}

async function stepsOf(api: ApiClient, threadId: string, runId: string): Promise<Body[]> {
  return (await api.get<{ data: Body[] }>(`/v1/threads/${threadId}/runs/${runId}/steps?order=asc`)).body.data;
}

async function runEnded(api: ApiClient, threadId: string, runId: string, timeoutMs = 20_000): Promise<Body> {
  return eventually(`run ${runId} to end`, timeoutMs, async () => {
    const run = (await api.get(`/v1/threads/${threadId}/runs/${runId}`)).body;
    return TERMINAL.has(run.status as string) ? run : undefined;
  });
}

/** No message and no step of the run is left in progress: the run's answer (if any) and its steps, each once. */
async function nothingInProgress(api: ApiClient, threadId: string, runId: string): Promise<void> {
  const messages = await messagesOf(api, threadId);
  const steps = await stepsOf(api, threadId, runId);
  for (const m of messages) assert.notEqual(m.status, 'in_progress', `message ${m.id} left in_progress`);
  for (const s of steps) assert.notEqual(s.status, 'in_progress', `step ${s.id} left in_progress`);
  assert.equal(new Set(messages.map((m) => m.id)).size, messages.length, 'a message listed twice');
  const created = steps.flatMap((s) =>
    (s.step_details as { type: string }).type === 'message_creation'
      ? [(s.step_details as { message_creation: { message_id: string } }).message_creation.message_id]
      : [],
  );
  assert.deepEqual(created.sort(), messages.map((m) => m.id as string).sort(), 'each message has its one step');
}

/** An assistant and a thread with one user message. */
async function thread(api: ApiClient, tools: unknown[] = []): Promise<{ assistantId: string; threadId: string }> {
  const assistant = await api.post('/v1/assistants', { model: 'm', tools });
  const created = await api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
  return { assistantId: assistant.body.id as string, threadId: created.body.id as string };
}

for (const storage of storages)
  describe(`the message being written, readable at once (${storage.name})`, () => {
    let upstream: FakeUpstream;
    before(async () => {
      upstream = await FakeUpstream.start();
    });
    after(async () => upstream.close());

    /** A server in this process on a fresh database; closed and dropped after `body`. */
    async function withServer(body: (api: ApiClient, url: string) => Promise<void>, env: Record<string, string> = {}) {
      const database = await storage.open();
      const server = await startTestServer({
        ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
        ASSISTD_UPSTREAM_MAX_RETRIES: '0',
        ...database.env,
        ...env,
      });
      try {
        await body(server.api, server.url);
      } finally {
        await server.close();
        await database.drop();
      }
    }

    test('read through the SDK on thread.message.created and the first delta: in_progress; then completed, once', () =>
      withServer(async (api, url) => {
        upstream.enqueue({ text: ['one ', 'two ', 'three ', 'four'], chunkDelayMs: 150 });
        const { assistantId, threadId } = await thread(api);
        const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0 });
        const stream = client.beta.threads.runs.stream(threadId, { assistant_id: assistantId });
        let announcedStep: OpenAI.Beta.Threads.Runs.RunStep | undefined;
        let announced: OpenAI.Beta.Threads.Message | undefined;
        const reads: string[] = [];
        let firstDelta = true;
        for await (const event of stream) {
          if (event.event === 'thread.run.step.created') announcedStep = event.data;
          const at: string | undefined =
            event.event === 'thread.message.created'
              ? 'created'
              : event.event === 'thread.message.delta' && firstDelta
                ? 'first delta'
                : undefined;
          if (event.event === 'thread.message.created') announced = event.data;
          if (at === undefined) continue;
          if (at === 'first delta') firstDelta = false;
          const runId = stream.currentRun()!.id;
          const message = await client.beta.threads.messages.retrieve(announced!.id, { thread_id: threadId });
          assert.equal(message.status, 'in_progress', at);
          assert.equal(message.created_at, announced!.created_at, at);
          assert.equal(message.run_id, runId, at);
          const listed = (await client.beta.threads.messages.list(threadId)).data.filter((m) => m.id === message.id);
          assert.deepEqual(
            listed.map((m) => m.status),
            ['in_progress'],
            at,
          );
          const steps = (await client.beta.threads.runs.steps.list(runId, { thread_id: threadId })).data;
          assert.deepEqual(
            steps.map((s) => [s.id, s.type, s.status, s.created_at]),
            [[announcedStep!.id, 'message_creation', 'in_progress', announcedStep!.created_at]],
            at,
          );
          reads.push(at);
        }
        assert.deepEqual(reads, ['created', 'first delta']);
        const run = await stream.finalRun();
        assert.equal(run.status, 'completed');
        const [streamed] = await stream.finalMessages();
        const messages = await client.beta.threads.messages.list(threadId, { order: 'asc' });
        const answers = messages.data.filter((m) => m.role === 'assistant');
        assert.equal(answers.length, 1);
        assert.equal(answers[0]!.id, announced!.id);
        assert.equal(answers[0]!.status, 'completed');
        assert.equal(answers[0]!.created_at, announced!.created_at);
        assert.deepEqual(answers[0]!.content, streamed!.content);
        const steps = (await client.beta.threads.runs.steps.list(run.id, { thread_id: threadId })).data;
        assert.deepEqual(
          steps.map((s) => [s.id, s.status, s.created_at]),
          [[announcedStep!.id, 'completed', announcedStep!.created_at]],
        );
      }));

    test('a message in progress is its run’s to write: modify and delete are a 400 until it ends, nothing lost', () =>
      withServer(async (api, url) => {
        upstream.enqueue({ text: ['one ', 'two ', 'three'], chunkDelayMs: 200 });
        const { assistantId, threadId } = await thread(api);
        const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0 });
        const stream = client.beta.threads.runs.stream(threadId, { assistant_id: assistantId });
        let id = '';
        for await (const event of stream) {
          if (event.event !== 'thread.message.created') continue;
          id = event.data.id;
          const refusals = await Promise.all([
            client.beta.threads.messages.update(id, { thread_id: threadId, metadata: { k: 'v' } }).catch((e) => e),
            client.beta.threads.messages.delete(id, { thread_id: threadId }).catch((e) => e),
          ]);
          assert.deepEqual(
            refusals.map((e) => (e instanceof OpenAI.BadRequestError ? e.error : String(e))),
            ['modify', 'delete'].map((action) => ({
              message: `Can't ${action} message ${id} while it is in progress: its run is writing it.`,
              type: 'invalid_request_error',
              param: null,
              code: null,
            })),
          );
        }
        assert.equal((await stream.finalRun()).status, 'completed');
        const answer = await client.beta.threads.messages.retrieve(id, { thread_id: threadId });
        assert.equal(answer.status, 'completed');
        assert.deepEqual(answer.metadata, {});
        const modified = await client.beta.threads.messages.update(id, { thread_id: threadId, metadata: { k: 'v' } });
        assert.deepEqual(modified.metadata, { k: 'v' });
        assert.deepEqual((await client.beta.threads.messages.retrieve(id, { thread_id: threadId })).metadata, {
          k: 'v',
        });
        assert.equal((await client.beta.threads.messages.delete(id, { thread_id: threadId })).deleted, true);
      }));

    test('cancelled mid-answer: the message is incomplete (run_cancelled) and its step cancelled', () =>
      withServer(async (api, url) => {
        upstream.enqueue({ text: ['one ', 'two ', 'three ', 'four ', 'five'], chunkDelayMs: 200 });
        const { assistantId, threadId } = await thread(api);
        let runId = '';
        await postSse(`${url}/v1/threads/${threadId}/runs`, { assistant_id: assistantId, stream: true }, async (e) => {
          if (e.event === 'thread.run.created') runId = e.data.id;
          if (e.event === 'thread.message.delta' && e.data.delta.content[0].text.value === 'two ')
            await api.post(`/v1/threads/${threadId}/runs/${runId}/cancel`);
        });
        assert.equal((await runEnded(api, threadId, runId)).status, 'cancelled');
        const [message] = await messagesOf(api, threadId);
        assert.equal(message?.status, 'incomplete');
        assert.deepEqual(message?.incomplete_details, { reason: 'run_cancelled' });
        assert.equal((await stepsOf(api, threadId, runId))[0]?.status, 'cancelled');
        await nothingInProgress(api, threadId, runId);
      }));

    test('the upstream fails mid-answer: the message is incomplete (run_failed) and its step failed', () =>
      withServer(async (api, url) => {
        upstream.enqueue({ resetAfterChunks: 2, text: ['one ', 'two ', 'three'] });
        const { assistantId, threadId } = await thread(api);
        const events = await postSse(`${url}/v1/threads/${threadId}/runs`, {
          assistant_id: assistantId,
          stream: true,
        });
        const runId = events.find((e) => e.event === 'thread.run.created')!.data.id as string;
        assert.equal((await runEnded(api, threadId, runId)).status, 'failed');
        const [message] = await messagesOf(api, threadId);
        assert.equal(message?.status, 'incomplete');
        assert.deepEqual(message?.incomplete_details, { reason: 'run_failed' });
        assert.equal((await stepsOf(api, threadId, runId))[0]?.status, 'failed');
        await nothingInProgress(api, threadId, runId);
      }));

    test('text before tool calls, then requires_action: the message completed, its step completed', () =>
      withServer(async (api, url) => {
        const { assistantId, threadId } = await thread(api, [lookup]);
        // The fake streams text or calls; this test's reply holds both: text, then the calls, in one stream.
        upstream.enqueue({
          raw: [
            'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Let me look."}}]}\n\n',
            'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"lookup","arguments":""}}]}}]}\n\n',
            'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},"finish_reason":"tool_calls"}]}\n\n',
            'data: [DONE]\n\n',
          ],
          contentType: 'text/event-stream',
        });
        const events = await postSse(`${url}/v1/threads/${threadId}/runs`, {
          assistant_id: assistantId,
          stream: true,
        });
        const runId = events.find((e) => e.event === 'thread.run.created')!.data.id as string;
        assert.equal((await runEnded(api, threadId, runId)).status, 'requires_action');
        const [message] = await messagesOf(api, threadId);
        assert.equal(message?.status, 'completed');
        const steps = await stepsOf(api, threadId, runId);
        assert.deepEqual(
          steps.map((s) => [s.type, s.status]),
          [
            ['message_creation', 'completed'],
            ['tool_calls', 'in_progress'],
          ],
        );
      }));

    test('cut off by the run budget mid-answer: the run and its message incomplete, the step completed', () =>
      withServer(async (api, url) => {
        upstream.enqueue({
          text: ['one ', 'two'],
          finishReason: 'length',
          usage: { prompt_tokens: 5, completion_tokens: 256 },
        });
        const { assistantId, threadId } = await thread(api);
        const events = await postSse(`${url}/v1/threads/${threadId}/runs`, {
          assistant_id: assistantId,
          stream: true,
          max_completion_tokens: 256,
        });
        const runId = events.find((e) => e.event === 'thread.run.created')!.data.id as string;
        assert.equal((await runEnded(api, threadId, runId)).status, 'incomplete');
        const [message] = await messagesOf(api, threadId);
        assert.equal(message?.status, 'incomplete');
        await nothingInProgress(api, threadId, runId);
      }));

    test('a shutdown mid-answer: the next server answers in the same message and step, once', async () => {
      const database = await storage.open();
      const env = { ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_UPSTREAM_MAX_RETRIES: '0', ...database.env };
      try {
        const first = await startTestServer(env);
        upstream.enqueue({ text: ['one ', 'two ', 'three ', 'four'], chunkDelayMs: 300 });
        const { assistantId, threadId } = await thread(first.api);
        let runId = '';
        let opened: Body | undefined;
        const closing: Array<Promise<void>> = [];
        await postSse(`${first.url}/v1/threads/${threadId}/runs`, { assistant_id: assistantId, stream: true }, (e) => {
          if (e.event === 'thread.run.created') runId = e.data.id;
          if (e.event === 'thread.message.created') opened = e.data;
          if (e.event === 'thread.message.delta' && closing.length === 0) closing.push(first.close());
        });
        await Promise.all(closing);
        upstream.setDefault({ text: 'again' });
        const second = await startTestServer(env);
        try {
          assert.equal((await runEnded(second.api, threadId, runId)).status, 'completed');
          const messages = await messagesOf(second.api, threadId);
          assert.deepEqual(
            messages.map((m) => [m.id, m.status, m.created_at]),
            [[opened!.id, 'completed', opened!.created_at]],
          );
          await nothingInProgress(second.api, threadId, runId);
        } finally {
          await second.close();
        }
      } finally {
        await database.drop();
      }
    });

    describe('a server killed mid-answer', () => {
      /**
       * A server (its own process) on a fresh database, a run streaming slowly on it; the server is SIGKILLed once
       * the message has been read in_progress. Resolves with a restarted server on the same database (`env2`
       * added), the run, and the message as the killed server stored it.
       */
      async function killMidAnswer(env2: Record<string, string> = {}) {
        const database = await storage.open();
        const env = {
          ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
          ASSISTD_UPSTREAM_MAX_RETRIES: '0',
          ASSISTD_WORKER_LEASE_S: '1',
          ...database.env,
        };
        let server: ServerProcess | undefined = await spawnServer(env);
        try {
          const api = new ApiClient(server.url);
          const { assistantId, threadId } = await thread(api, [lookup]);
          upstream.enqueue({ text: ['one ', 'two ', 'three ', 'four ', 'five'], chunkDelayMs: 400 });
          let runId = '';
          let stored: Body | undefined;
          let step: Body | undefined;
          const killed = server;
          await postSse(
            `${server.url}/v1/threads/${threadId}/runs`,
            { assistant_id: assistantId, stream: true },
            async (e: SseEvent) => {
              if (e.event === 'thread.run.created') runId = e.data.id;
              if (e.event !== 'thread.message.delta' || stored) return;
              stored = (await api.get(`/v1/threads/${threadId}/messages/${e.data.id}`)).body;
              step = (await stepsOf(api, threadId, runId))[0];
              await killed.stop('SIGKILL');
            },
          ).catch(() => undefined); // the stream is cut by the kill
          assert.equal(stored?.status, 'in_progress');
          assert.equal(step?.status, 'in_progress');
          server = await spawnServer({ ...env, ...env2 });
          return { server, api: new ApiClient(server.url), threadId, runId, stored: stored!, step: step!, database };
        } catch (error) {
          await server?.stop('SIGKILL');
          await database.drop();
          throw error;
        }
      }

      test('the run resumed writes its answer in the message and step the killed server stored', async () => {
        upstream.setDefault({ text: 'The answer again.' });
        const { server, api, threadId, runId, stored, step, database } = await killMidAnswer();
        try {
          assert.equal((await runEnded(api, threadId, runId)).status, 'completed');
          const messages = await messagesOf(api, threadId);
          assert.deepEqual(
            messages.map((m) => [m.id, m.status, m.created_at]),
            [[stored.id, 'completed', stored.created_at]],
          );
          assert.equal(
            (messages[0]!.content as Array<{ text: { value: string } }>)[0]!.text.value,
            'The answer again.',
          );
          assert.deepEqual(
            (await stepsOf(api, threadId, runId)).map((s) => [s.id, s.status, s.created_at]),
            [[step.id, 'completed', step.created_at]],
          );
          await nothingInProgress(api, threadId, runId);
        } finally {
          await server.stop('SIGKILL');
          await database.drop();
        }
      });

      test('the run resumed calls a tool instead: the killed server’s message ends incomplete, its step failed', async () => {
        upstream.setDefault({ toolCalls: [{ name: 'lookup', arguments: '{}' }] });
        const { server, api, threadId, runId, stored, step, database } = await killMidAnswer();
        try {
          assert.equal((await runEnded(api, threadId, runId)).status, 'requires_action');
          const messages = await messagesOf(api, threadId);
          assert.deepEqual(
            messages.map((m) => [m.id, m.status, m.incomplete_details]),
            [[stored.id, 'incomplete', { reason: 'run_failed' }]],
          );
          const steps = await stepsOf(api, threadId, runId);
          assert.deepEqual(
            steps.map((s) => [s.id, s.type, s.status]),
            [
              [step.id, 'message_creation', 'failed'],
              [steps[1]?.id, 'tool_calls', 'in_progress'],
            ],
          );
          // The model is not shown the dead attempt's empty message.
          const last = upstream.requests.at(-1)!;
          assert.deepEqual(
            last.body.messages.map((m) => m.role),
            ['user'],
          );
        } finally {
          await server.stop('SIGKILL');
          await database.drop();
        }
      });

      test('cancelled before any server resumes it: the message incomplete (run_cancelled), its step cancelled', async () => {
        const { server, api, threadId, runId, stored, database } = await killMidAnswer({
          ASSISTD_WORKER_CONCURRENCY: '0',
        });
        try {
          await new Promise((r) => setTimeout(r, 1200)); // the killed server's lease lapses
          await api.post(`/v1/threads/${threadId}/runs/${runId}/cancel`);
          assert.equal((await runEnded(api, threadId, runId)).status, 'cancelled');
          const messages = await messagesOf(api, threadId);
          assert.deepEqual(
            messages.map((m) => [m.id, m.status, m.incomplete_details, m.created_at]),
            [[stored.id, 'incomplete', { reason: 'run_cancelled' }, stored.created_at]],
          );
          assert.equal((await stepsOf(api, threadId, runId))[0]?.status, 'cancelled');
          await nothingInProgress(api, threadId, runId);
        } finally {
          await server.stop('SIGKILL');
          await database.drop();
        }
      });
    });
  });
