import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Run } from '../../src/domain/runs.ts';
import type { RunCommit } from '../../src/storage/store.ts';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import {
  ApiClient,
  type ServerProcess,
  spawnServer,
  startTestServer,
  type TestServer,
  tempDir,
} from '../support/server.ts';
import { readSse } from '../support/sse.ts';
import { addCall, addTool } from '../support/test-tools.ts';

/**
 * The message a run's model is writing, and its step (message_creation or tool_calls), exist from the moment their
 * events announce them: retrieved and listed (in progress) while the model writes, not only once it has finished.
 * Until it is complete, only its run changes the message. What a turn begun by an execution that died stored is
 * deleted when the run is taken over or ended, never left in progress.
 */

const lookup = { type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } };

interface Obj {
  id: string;
  status: string;
  type: string;
  role: string;
  run_id: string | null;
  content: Array<{ type: string; text: { value: string } }>;
  step_details: { message_creation: { message_id: string } };
  data: Obj[];
  error: { message: string; type: string };
}

/**
 * Starts a streamed run of `assistantId` on a new thread, and resolves once its message has been announced (or, with
 * `step`, its first step), the stream read on in the background (`ended`).
 */
async function streamUntilMessage(api: ApiClient, assistantId: string, until = 'thread.message.created') {
  const thread = await api.post<Obj>('/v1/threads', { messages: [{ role: 'user', content: 'hello' }] });
  const threadId = thread.body.id;
  let announced!: (ids: { messageId: string; stepId: string; runId: string }) => void;
  const message = new Promise<{ messageId: string; stepId: string; runId: string }>((resolve) => {
    announced = resolve;
  });
  let runId = '';
  let stepId = '';
  const response = await fetch(`${api.baseUrl}/v1/threads/${threadId}/runs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ assistant_id: assistantId, stream: true }),
  });
  const ended = readSse(response, (event) => {
    if (event.event === 'thread.run.created') runId = event.data.id;
    if (event.event === 'thread.run.step.created') stepId = event.data.id;
    if (event.event === until) announced({ messageId: event.data.id, stepId, runId });
  }).catch(() => []); // a server killed under it
  return { threadId, ended, ...(await message) };
}

/**
 * The message, read as soon as it is announced: its write is not waited for by the stream, but a read in the process
 * that announced it waits for it (every server here is one process).
 */
async function storedMessage(api: ApiClient, threadId: string, messageId: string): Promise<Obj> {
  const response = await api.get<Obj>(`/v1/threads/${threadId}/messages/${messageId}`);
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body;
}

async function runSteps(api: ApiClient, threadId: string, runId: string): Promise<Obj[]> {
  const steps = await api.get<Obj>(`/v1/threads/${threadId}/runs/${runId}/steps?order=asc`);
  assert.equal(steps.status, 200);
  return steps.body.data;
}

async function runStatus(api: ApiClient, threadId: string, runId: string, statuses: string[]): Promise<Obj> {
  return eventually(`run ${runId} ${statuses.join(' or ')}`, 30_000, async () => {
    const run = await api.get<Obj>(`/v1/threads/${threadId}/runs/${runId}`);
    return statuses.includes(run.body.status) ? run.body : undefined;
  });
}

function suite(name: string, database: () => Promise<{ env: Record<string, string>; drop(): Promise<void> }>) {
  describe(`a run's message while it is written (${name})`, () => {
    let upstream: FakeUpstream;
    let server: TestServer;
    let db: { env: Record<string, string>; drop(): Promise<void> };
    let assistantId: string;
    let functionAssistantId: string;
    let addAssistantId: string;

    before(async () => {
      db = await database();
      upstream = await FakeUpstream.start();
      server = await startTestServer(
        { ...db.env, ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl },
        { tools: [addTool()] },
      );
      assistantId = (await server.api.post<Obj>('/v1/assistants', { model: 'm' })).body.id;
      functionAssistantId = (await server.api.post<Obj>('/v1/assistants', { model: 'm', tools: [lookup] })).body.id;
      const add = { model: 'm', tools: [{ type: 'code_interpreter' }] }; // the test tool `add` takes its place
      addAssistantId = (await server.api.post<Obj>('/v1/assistants', add)).body.id;
    });
    after(async () => {
      await server.close();
      await upstream.close();
      await db.drop();
    });

    test('retrieved and listed in progress, with its step; changed by its run alone until it is complete', async () => {
      let release!: () => void;
      upstream.enqueue({ text: ['Hello', ' there', '.'], holdLast: new Promise<void>((r) => (release = r)) });
      const { api } = server;
      const { threadId, runId, messageId, stepId, ended } = await streamUntilMessage(api, assistantId);

      const message = await storedMessage(api, threadId, messageId);
      assert.equal(message.status, 'in_progress');
      assert.equal(message.role, 'assistant');
      assert.equal(message.run_id, runId);
      const listed = await api.get<Obj>(`/v1/threads/${threadId}/messages?run_id=${runId}`);
      assert.deepEqual(
        listed.body.data.map((m) => [m.id, m.status]),
        [[messageId, 'in_progress']],
      );
      const steps = await runSteps(api, threadId, runId);
      assert.deepEqual(
        steps.map((s) => [s.id, s.type, s.status, s.step_details.message_creation.message_id]),
        [[stepId, 'message_creation', 'in_progress', messageId]],
      );
      const step = await api.get<Obj>(`/v1/threads/${threadId}/runs/${runId}/steps/${stepId}`);
      assert.equal(step.status, 200);
      assert.equal(step.body.status, 'in_progress');

      // Its run would undo a change, or bring it back: refused, and nothing changes.
      const modified = await api.post<Obj>(`/v1/threads/${threadId}/messages/${messageId}`, {
        metadata: { seen: 'yes' },
      });
      assert.equal(modified.status, 400);
      assert.equal(modified.body.error.type, 'invalid_request_error');
      assert.match(modified.body.error.message, /in progress/);
      const deleted = await api.delete<Obj>(`/v1/threads/${threadId}/messages/${messageId}`);
      assert.equal(deleted.status, 400);

      release();
      await ended;
      const done = await api.get<Obj>(`/v1/threads/${threadId}/messages/${messageId}`);
      assert.equal(done.body.status, 'completed');
      assert.equal(done.body.content[0]?.text.value, 'Hello there.');
      const after = await runSteps(api, threadId, runId);
      assert.deepEqual(
        after.map((s) => [s.id, s.status]),
        [[stepId, 'completed']],
      );
      const all = await api.get<Obj>(`/v1/threads/${threadId}/messages`);
      assert.deepEqual(
        all.body.data.map((m) => m.role),
        ['assistant', 'user'],
      );
      const now = await api.post<Obj>(`/v1/threads/${threadId}/messages/${messageId}`, { metadata: { seen: 'yes' } });
      assert.equal(now.status, 200);
    });

    test('a tool_calls step is retrieved and listed while the model writes its calls', async () => {
      upstream.enqueue({ toolCalls: [{ name: 'lookup', arguments: '{"q":"abc"}' }], chunkDelayMs: 300 });
      const { api } = server;
      const { threadId, runId, stepId, ended } = await streamUntilMessage(
        api,
        functionAssistantId,
        'thread.run.step.created',
      );
      const retrieved = await api.get<Obj>(`/v1/threads/${threadId}/runs/${runId}/steps/${stepId}`);
      assert.equal(retrieved.status, 200, 'read as soon as announced');
      const step = retrieved.body;
      assert.equal(step.type, 'tool_calls');
      assert.equal(step.status, 'in_progress');
      assert.deepEqual(
        (await runSteps(api, threadId, runId)).map((s) => s.id),
        [stepId],
      );
      await ended;
      const paused = await runStatus(api, threadId, runId, ['requires_action']);
      assert.ok(paused);
      const [written] = await runSteps(api, threadId, runId);
      assert.equal(written!.id, stepId);
      const calls = (written!.step_details as unknown as { tool_calls: Array<{ function: { arguments: string } }> })
        .tool_calls;
      assert.deepEqual(
        calls.map((c) => c.function.arguments),
        ['{"q":"abc"}'],
      );
    });

    test('text before tool calls: its message completed as its event says, its metadata kept by the turn', async () => {
      const { api } = server;
      upstream.enqueue({
        textBefore: ['Let me', ' look.'],
        toolCalls: [{ name: 'lookup', arguments: '{"q":"abcdef"}' }],
        chunkDelayMs: 150,
      });
      const { threadId, runId, messageId, ended } = await streamUntilMessage(
        api,
        functionAssistantId,
        'thread.message.completed',
      );
      // The model writes its calls meanwhile.
      const message = await storedMessage(api, threadId, messageId);
      assert.equal(message.status, 'completed');
      assert.equal(message.content[0]?.text.value, 'Let me look.');
      const tagged = await api.post<Obj>(`/v1/threads/${threadId}/messages/${messageId}`, {
        metadata: { rated: 'good' },
      });
      assert.equal(tagged.status, 200);
      await ended;
      await runStatus(api, threadId, runId, ['requires_action']);
      const after = await api.get<Obj & { metadata: Record<string, string> }>(
        `/v1/threads/${threadId}/messages/${messageId}`,
      );
      assert.deepEqual([after.body.status, after.body.metadata], ['completed', { rated: 'good' }]);
      assert.deepEqual(
        (await runSteps(api, threadId, runId)).map((s) => [s.type, s.status]),
        [
          ['message_creation', 'completed'],
          ['tool_calls', 'in_progress'],
        ],
      );
      // Cancelled at its pause: the calls' step cancelled, the message before them kept.
      assert.equal((await api.post(`/v1/threads/${threadId}/runs/${runId}/cancel`)).status, 200);
      await runStatus(api, threadId, runId, ['cancelled']);
      const kept = await api.get<Obj & { metadata: Record<string, string> }>(
        `/v1/threads/${threadId}/messages/${messageId}`,
      );
      assert.deepEqual([kept.status, kept.body.status, kept.body.metadata], [200, 'completed', { rated: 'good' }]);
      assert.deepEqual(
        (await runSteps(api, threadId, runId)).map((s) => [s.type, s.status]),
        [
          ['message_creation', 'completed'],
          ['tool_calls', 'cancelled'],
        ],
      );
    });

    test('cancelled while written: the message stored once, incomplete, and its one step cancelled', async () => {
      upstream.enqueue({ text: ['Hello', ' there', '.'], holdLast: new Promise(() => {}) });
      const { api } = server;
      const { threadId, runId, messageId, stepId, ended } = await streamUntilMessage(api, assistantId);
      await storedMessage(api, threadId, messageId);
      const cancel = await api.post<Obj>(`/v1/threads/${threadId}/runs/${runId}/cancel`);
      assert.equal(cancel.status, 200);
      await ended;
      await runStatus(api, threadId, runId, ['cancelled']);
      const message = await api.get<Obj>(`/v1/threads/${threadId}/messages/${messageId}`);
      assert.equal(message.body.status, 'incomplete');
      assert.equal(message.body.content[0]?.text.value, 'Hello there');
      assert.deepEqual(
        (await runSteps(api, threadId, runId)).map((s) => [s.id, s.status]),
        [[stepId, 'cancelled']],
      );
    });

    /**
     * Runs `body` with servers it spawns (`spawn`, with more settings) on a database and data directory of their own
     * (the suite's server would take their runs over), a lease of 1 s; stops them and removes both after.
     */
    async function withOwnData(
      settings: Record<string, string>,
      body: (spawn: (more?: Record<string, string>) => Promise<ServerProcess>) => Promise<void>,
    ): Promise<void> {
      const own = await database();
      const dataDir = tempDir();
      const env = {
        ...own.env,
        ASSISTD_DATA_DIR: dataDir,
        ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
        ASSISTD_WORKER_LEASE_S: '1',
        ...settings,
      };
      const spawned: ServerProcess[] = [];
      try {
        await body(async (more = {}) => {
          const started = await spawnServer({ ...env, ...more });
          spawned.push(started);
          return started;
        });
      } finally {
        for (const started of spawned) await started.stop();
        await own.drop();
        rmSync(dataDir, { recursive: true, force: true });
      }
    }

    /** Runs `during` with the server's commits going through `wrap` (given the store's own commitRun). */
    async function withCommits(
      wrap: (commit: RunCommit, original: (commit: RunCommit) => Promise<Run | undefined>) => Promise<Run | undefined>,
      during: () => Promise<void>,
    ): Promise<void> {
      const { store } = server.server;
      const commitRun = store.commitRun;
      store.commitRun = (scope, commit) => wrap(commit, (c) => commitRun.call(store, scope, c));
      try {
        await during();
      } finally {
        store.commitRun = commitRun;
      }
    }

    test('a failure whose ending a cancel beat to the run: the message kept, incomplete, its step cancelled', async () => {
      const { api } = server;
      let raced = false;
      await withCommits(
        async (commit, original) => {
          if (!raced && commit.run.status === 'failed') {
            raced = true; // the cancel's commit comes first, and the failure's fence fails
            const cancelling: Run = { ...commit.run, status: 'cancelling', failed_at: null, last_error: null };
            assert.ok(await original({ run: cancelling, expect: { status: 'in_progress' } }));
          }
          return original(commit);
        },
        async () => {
          // The upstream's stream breaks off after the text: the run fails.
          upstream.enqueue({ text: ['Hello', ' there'], finishReason: null, done: false, chunkDelayMs: 100 });
          const { threadId, runId, messageId, stepId, ended } = await streamUntilMessage(api, assistantId);
          await ended;
          await runStatus(api, threadId, runId, ['cancelled']);
          assert.ok(raced);
          const message = await api.get<Obj>(`/v1/threads/${threadId}/messages/${messageId}`);
          assert.equal(message.status, 200);
          assert.equal(message.body.status, 'incomplete');
          assert.equal(message.body.content[0]?.text.value, 'Hello there');
          assert.deepEqual(
            (await runSteps(api, threadId, runId)).map((s) => [s.id, s.status]),
            [[stepId, 'cancelled']],
          );
        },
      );
    });

    test('text before tool calls: the message it finished and the step of the calls that ended it are one write', async () => {
      const { api } = server;
      const written: string[][] = [];
      await withCommits(
        (commit, original) => {
          const steps = (commit.steps ?? []).map((step) => {
            const details = step.step_details;
            return `${step.type}:${step.status}${details.type === 'tool_calls' ? `:${details.tool_calls.length}` : ''}`;
          });
          written.push([commit.run.status, ...steps, ...(commit.messages ?? []).map((m) => `message:${m.status}`)]);
          return original(commit);
        },
        async () => {
          upstream.enqueue({ textBefore: ['Let me', ' look.'], toolCalls: [{ name: 'lookup', arguments: '{}' }] });
          const { threadId, runId, ended } = await streamUntilMessage(api, functionAssistantId);
          await ended;
          await runStatus(api, threadId, runId, ['requires_action']);
        },
      );
      // (The run was created started, and its pause writes the calls with the step of the message before them.)
      assert.deepEqual(written, [
        ['in_progress', 'message_creation:in_progress', 'message:in_progress'],
        ['in_progress', 'message_creation:completed', 'tool_calls:in_progress:0', 'message:completed'],
        ['requires_action', 'message_creation:completed', 'tool_calls:in_progress:1'],
      ]);
    });

    test('a step stored as it began, its write landing late, never undoes what the turn stored after it', async () => {
      const { api } = server;
      await withCommits(
        async (commit, original) => {
          if (commit.steps?.some((step) => step.status === 'in_progress' && step.type === 'tool_calls'))
            if (
              commit.steps[0]?.step_details.type === 'tool_calls' &&
              commit.steps[0].step_details.tool_calls.length === 0
            )
              await new Promise((resolve) => setTimeout(resolve, 300)); // the tool_calls step as it opened
          return original(commit);
        },
        async () => {
          // The call executes and its step completes at once; the answer takes longer than the late write.
          let answer!: () => void;
          upstream.enqueue(addCall(2, 3), {
            text: ['The sum', ' is 5.'],
            holdLast: new Promise<void>((resolve) => (answer = resolve)),
          });
          const { threadId, runId, ended } = await streamUntilMessage(api, addAssistantId);
          await new Promise((resolve) => setTimeout(resolve, 600));
          answer();
          await ended;
          await runStatus(api, threadId, runId, ['completed']);
          const steps = await runSteps(api, threadId, runId);
          assert.deepEqual(
            steps.map((s) => [s.type, s.status]),
            [
              ['tool_calls', 'completed'],
              ['message_creation', 'completed'],
            ],
          );
          const calls = (steps[0]!.step_details as unknown as { tool_calls: unknown[] }).tool_calls;
          assert.equal(calls.length, 1);
        },
      );
    });

    test('begun by a server that died, its run expired by the sweep: deleted with the expiry', async () => {
      await withOwnData({ ASSISTD_RUN_EXPIRES_AFTER_S: '3' }, async (spawn) => {
        let process = await spawn();
        const api = new ApiClient(process.url);
        const id = (await api.post<Obj>('/v1/assistants', { model: 'm' })).body.id;
        upstream.enqueue({ text: ['Never', ' finished'], holdLast: new Promise(() => {}) });
        const { threadId, runId, messageId } = await streamUntilMessage(api, id);
        await storedMessage(api, threadId, messageId);
        await process.stop('SIGKILL');
        // A server that executes nothing: only its sweep, which expires the run with what is stored.
        process = await spawn({ ASSISTD_WORKER_CONCURRENCY: '0' });
        const sweeping = new ApiClient(process.url);
        await runStatus(sweeping, threadId, runId, ['expired']);
        assert.equal((await sweeping.get(`/v1/threads/${threadId}/messages/${messageId}`)).status, 404);
        assert.deepEqual(await runSteps(sweeping, threadId, runId), []);
      });
    });

    test('begun by a server that died: deleted when the run is ended (cancel) or taken over (a new answer)', async () => {
      await withOwnData({}, async (spawn) => {
        let process = await spawn();
        const api = new ApiClient(process.url);
        const id = (await api.post<Obj>('/v1/assistants', { model: 'm' })).body.id;
        const withFunction = (await api.post<Obj>('/v1/assistants', { model: 'm', tools: [lookup] })).body.id;
        upstream.enqueue(
          { text: ['Never', ' finished'], holdLast: new Promise(() => {}) },
          { text: ['Never', ' finished'], holdLast: new Promise(() => {}) },
          { toolCalls: [{ name: 'lookup', arguments: '{"q":"abc"}' }], holdLast: new Promise(() => {}) },
          {
            textBefore: ['Before', ' calls.'],
            toolCalls: [{ name: 'lookup', arguments: '{"q":"abc"}' }],
            holdLast: new Promise(() => {}),
          },
          { toolCalls: [{ name: 'lookup', arguments: '{"q":"abc"}' }] },
          { text: ['Never', ' finished'], holdLast: new Promise(() => {}) },
        );
        const resumed = await streamUntilMessage(api, id);
        const cancelled = await streamUntilMessage(api, id);
        // A turn killed as it began to write a call: its tool_calls step stored as it opened, with no call yet.
        const called = await streamUntilMessage(api, withFunction, 'thread.run.step.created');
        // One killed as it wrote its calls after a message, stored completed as the stream said.
        const early = await streamUntilMessage(api, withFunction, 'thread.message.completed');
        // And one killed as it answered after a round of calls, its outputs submitted.
        const rounds = await streamUntilMessage(api, withFunction, 'thread.run.requires_action');
        await rounds.ended;
        const paused = await api.get<Obj & { required_action: { submit_tool_outputs: { tool_calls: Obj[] } } }>(
          `/v1/threads/${rounds.threadId}/runs/${rounds.runId}`,
        );
        const callId = paused.body.required_action.submit_tool_outputs.tool_calls[0]!.id;
        const submitted = await fetch(
          `${api.baseUrl}/v1/threads/${rounds.threadId}/runs/${rounds.runId}/submit_tool_outputs`,
          {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ tool_outputs: [{ tool_call_id: callId, output: 'found' }], stream: true }),
          },
        );
        let answering!: (id: string) => void;
        const answer = new Promise<string>((resolve) => (answering = resolve));
        readSse(submitted, (event) => {
          if (event.event === 'thread.message.created') answering(event.data.id);
        }).catch(() => []);
        const roundsMessage = await answer;
        assert.equal((await storedMessage(api, rounds.threadId, roundsMessage)).status, 'in_progress');
        await storedMessage(api, resumed.threadId, resumed.messageId);
        await storedMessage(api, cancelled.threadId, cancelled.messageId);
        assert.equal((await runSteps(api, called.threadId, called.runId)).length, 1);
        assert.equal((await storedMessage(api, early.threadId, early.messageId)).status, 'completed');
        await process.stop('SIGKILL');

        // A server that executes nothing: the run's lease lapses, and its cancel ends it here.
        process = await spawn({ ASSISTD_WORKER_CONCURRENCY: '0' });
        const idle = new ApiClient(process.url);
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const { threadId, runId, messageId } = cancelled;
        const cancel = await idle.post<Obj>(`/v1/threads/${threadId}/runs/${runId}/cancel`);
        assert.equal(cancel.status, 200, JSON.stringify(cancel.body));
        await runStatus(idle, threadId, runId, ['cancelled']);
        assert.equal((await idle.get(`/v1/threads/${threadId}/messages/${messageId}`)).status, 404);
        assert.deepEqual(await runSteps(idle, threadId, runId), []);
        await process.stop();

        upstream.enqueue(
          { text: 'Answered again.' },
          { text: 'Answered again.' },
          { text: 'Answered again.' },
          { text: 'Answered again.' },
        );
        process = await spawn();
        const again = new ApiClient(process.url);
        await runStatus(again, resumed.threadId, resumed.runId, ['completed']);
        await runStatus(again, called.threadId, called.runId, ['completed']);
        await runStatus(again, early.threadId, early.runId, ['completed']);
        await runStatus(again, rounds.threadId, rounds.runId, ['completed']);
        assert.equal((await again.get(`/v1/threads/${rounds.threadId}/messages/${roundsMessage}`)).status, 404);
        assert.deepEqual(
          (await runSteps(again, rounds.threadId, rounds.runId)).map((s) => [s.type, s.status]),
          [
            ['tool_calls', 'completed'],
            ['message_creation', 'completed'],
          ],
        );
        // The killed turn is asked again whole: its message is not kept beside the new answer.
        assert.equal((await again.get(`/v1/threads/${early.threadId}/messages/${early.messageId}`)).status, 404);
        const answers = await again.get<Obj>(`/v1/threads/${early.threadId}/messages?run_id=${early.runId}`);
        assert.deepEqual(
          answers.body.data.map((m) => m.content[0]?.text.value),
          ['Answered again.'],
        );
        assert.deepEqual(
          (await runSteps(again, called.threadId, called.runId)).map((s) => [s.type, s.status]),
          [['message_creation', 'completed']],
        );
        assert.equal((await again.get(`/v1/threads/${resumed.threadId}/messages/${resumed.messageId}`)).status, 404);
        const messages = await again.get<Obj>(`/v1/threads/${resumed.threadId}/messages?run_id=${resumed.runId}`);
        assert.deepEqual(
          messages.body.data.map((m) => [m.status, m.content[0]?.text.value]),
          [['completed', 'Answered again.']],
        );
        const steps = await runSteps(again, resumed.threadId, resumed.runId);
        assert.deepEqual(
          steps.map((s) => [s.type, s.status, s.step_details.message_creation.message_id]),
          [['message_creation', 'completed', messages.body.data[0]!.id]],
        );
      });
    });
  });
}

suite('SQLite', async () => ({ env: {}, drop: async () => {} }));

const postgresUrl = postgresUrlOrSkip();
describe('PostgreSQL', { skip: postgresUrl === undefined && POSTGRES_SKIP_REASON }, () => {
  suite('PostgreSQL', async () => {
    const database = await createTestDatabase(postgresUrl!);
    return { env: { ASSISTD_DATABASE_URL: database.url }, drop: () => database.drop() };
  });
});
