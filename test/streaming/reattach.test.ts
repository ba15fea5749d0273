import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { AssistantStream } from 'openai/lib/AssistantStream';
import pg from 'pg';
import type { Store } from '../../src/storage/store.ts';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { eventNames, readSse, type SseEvent } from '../support/sse.ts';
import { addCall, addTool } from '../support/test-tools.ts';

/**
 * Re-attaching to a run (GET …/runs/{run_id}/events) at the awkward moments: while deltas are published during the
 * route's read of the run, between a tool step's end and the next turn's first words, and after its client left.
 */

const lookup = { type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } };

/** The events as the SDK's AssistantStream reads them (it throws on any order the API would never send). */
function sdkStream(events: SseEvent[]): AssistantStream {
  const lines = events
    .filter((e) => e.event !== 'done')
    .map((e) => `${JSON.stringify({ event: e.event, data: e.data })}\n`)
    .join('');
  return AssistantStream.fromReadableStream(new Response(lines).body!);
}

/**
 * Makes the store's next read of a run wait for `until` (then reads it, and puts the store back): the /events route
 * reads its run after it subscribed, so what is published meanwhile comes both in the stream and, if it were taken
 * late, in its snapshot. `read` resolves once that read has returned.
 */
function holdNextGetRun(store: Store, until: () => Promise<unknown>): { read: Promise<void> } {
  const getRun = store.getRun;
  let returned!: () => void;
  const read = new Promise<void>((resolve) => {
    returned = resolve;
  });
  store.getRun = async (...args) => {
    store.getRun = getRun;
    await until();
    try {
      return await getRun.apply(store, args);
    } finally {
      setImmediate(returned); // once the caller has gone on with what it read
    }
  };
  return { read };
}

describe('re-attaching to a run (/events)', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let assistantId: string;
  let functionAssistantId: string;
  let addAssistantId: string;

  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer(
      { ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_UPSTREAM_MAX_RETRIES: '0' },
      { tools: [addTool()] },
    );
    const assistant = (tools: unknown[]) => server.api.post('/v1/assistants', { model: 'm', tools });
    assistantId = (await assistant([])).body.id as string;
    functionAssistantId = (await assistant([lookup])).body.id as string;
    addAssistantId = (await assistant([{ type: 'code_interpreter' }])).body.id as string;
  });
  after(async () => {
    await server.close();
    await upstream.close();
  });

  function eventsUrl(threadId: string, runId: string): string {
    return `${server.url}/v1/threads/${threadId}/runs/${runId}/events`;
  }

  /** A run of `assistant` on a new thread, created without a stream: the model has been asked when it answers. */
  async function startRun(assistant: string): Promise<{ threadId: string; runId: string }> {
    const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hello' }] });
    const threadId = thread.body.id as string;
    const run = await server.api.post(`/v1/threads/${threadId}/runs`, { assistant_id: assistant });
    return { threadId, runId: run.body.id as string };
  }

  /**
   * Re-attaches once the model has begun to write, the route's read of the run lasting until `more` deltas have been
   * published after the read began (as a follower attached before sees them): each of those comes after the route
   * subscribed.
   */
  async function attachWhileDeltasFlow(threadId: string, runId: string, more = 3): Promise<SseEvent[]> {
    let deltas = 0;
    const observed = readSse(await fetch(eventsUrl(threadId, runId)), (event) => {
      if (event.event.endsWith('.delta')) deltas++;
    });
    await eventually('the first delta', 5000, () => (deltas > 0 ? true : undefined));
    holdNextGetRun(server.server.store, () => {
      const from = deltas;
      return eventually(`${more} deltas during the read`, 5000, () => (deltas >= from + more ? true : undefined));
    });
    const events = await readSse(await fetch(eventsUrl(threadId, runId)));
    await observed;
    return events;
  }

  test('text published while the route reads the run: snapshot + deltas = the stored text, nothing twice', async () => {
    const pieces = Array.from({ length: 40 }, (_, i) => `w${i} `);
    upstream.enqueue({ text: pieces, chunkDelayMs: 15 });
    const { threadId, runId } = await startRun(assistantId);
    const events = await attachWhileDeltasFlow(threadId, runId);
    const created = events.find((e) => e.event === 'thread.message.created');
    assert.ok(created, 'the snapshot has the message being written');
    const snapshot: string = created.data.content[0]?.text.value ?? '';
    assert.ok(snapshot !== '', 'the re-attached stream began mid-message');
    const deltas = events
      .filter((e) => e.event === 'thread.message.delta')
      .map((e) => e.data.delta.content[0].text.value)
      .join('');
    const [message] = await sdkStream(events).finalMessages();
    const stored = await server.api.get<{ content: Array<{ text: { value: string } }> }>(
      `/v1/threads/${threadId}/messages/${created.data.id}`,
    );
    assert.equal(stored.body.content[0]!.text.value, pieces.join(''));
    assert.equal(snapshot + deltas, pieces.join(''));
    assert.deepEqual(
      JSON.parse(JSON.stringify(message?.content)),
      stored.body.content,
      'the SDK assembles the stored message',
    );
  });

  test('tool calls written while the route reads the run: the SDK assembles each call once', async () => {
    const calls = Array.from({ length: 6 }, (_, i) => ({
      name: 'lookup',
      arguments: JSON.stringify({ query: `q${i}` }),
    }));
    upstream.enqueue({ toolCalls: calls, chunkDelayMs: 20 });
    const { threadId, runId } = await startRun(functionAssistantId);
    const events = await attachWhileDeltasFlow(threadId, runId);
    const stream = sdkStream(events);
    assert.equal((await stream.finalRun()).status, 'requires_action');
    const steps = await server.api.get<{ data: Array<{ step_details: { tool_calls: unknown[] } }> }>(
      `/v1/threads/${threadId}/runs/${runId}/steps`,
    );
    const [step] = await stream.finalRunSteps();
    // As the SDK's program would print it (its snapshot objects are not plain ones).
    const shown: Array<Record<string, unknown>> = JSON.parse(JSON.stringify(step?.step_details)).tool_calls;
    assert.deepEqual(
      shown.map(({ index: _, ...call }) => call),
      steps.body.data[0]!.step_details.tool_calls,
      'no id, name or arguments added to itself',
    );
    await server.api.post(`/v1/threads/${threadId}/runs/${runId}/cancel`);
  });

  /**
   * Re-attaches after the run's tool step ended, while the next turn waits for the model's first word: the stream
   * must show no step in progress, or the SDK takes the next turn's step for a second one open at once.
   */
  async function attachBetweenTurns(assistant: string, toolTurn: Parameters<FakeUpstream['enqueue']>[0]) {
    let release!: () => void;
    const firstWord = new Promise<void>((resolve) => {
      release = resolve;
    });
    upstream.enqueue(toolTurn, { text: ['Done.'], holdLast: firstWord });
    const requestsBefore = upstream.requests.length;
    const { threadId, runId } = await startRun(assistant);
    await upstream.waitForRequests(requestsBefore + 2); // the tool step is over, and the next turn asked
    const attached = await fetch(eventsUrl(threadId, runId));
    release();
    const events = await readSse(attached);
    assert.deepEqual(
      events.filter((e) => e.event === 'thread.run.step.created').map((e) => `${e.data.type} ${e.data.status}`),
      ['message_creation in_progress'],
      'the ended tool step is not shown as in progress',
    );
    const run = await sdkStream(events).finalRun();
    assert.equal(run.status, 'completed');
  }

  test('between a server-side tool step and the next turn: no tool step in progress, the SDK reads it', async () => {
    await attachBetweenTurns(addAssistantId, addCall(2, 3));
  });

  test('between a turn that called only unknown functions and the next: no tool step in progress', async () => {
    await attachBetweenTurns(assistantId, { toolCalls: [{ name: 'python', arguments: '{"code":"1"}' }] });
  });

  /** Re-attaches to a run in progress: its statuses come once each, in order, and the SDK reads it to its end. */
  async function attachUntilCompleted(threadId: string, runId: string): Promise<void> {
    const events = await readSse(await fetch(eventsUrl(threadId, runId)));
    assert.deepEqual(
      eventNames(events).filter((name) => name.startsWith('thread.run.') && !name.startsWith('thread.run.step.')),
      ['thread.run.in_progress', 'thread.run.completed'],
    );
    assert.equal((await sdkStream(events).finalRun()).status, 'completed');
  }

  test('a run that starts while the route reads it: each of its statuses is sent once, in order', async () => {
    upstream.enqueue({ text: ['The first', ' answer.'], chunkDelayMs: 100 });
    upstream.enqueue({ text: ['The second', ' answer.'], chunkDelayMs: 100 });
    const { threadId } = await startRun(assistantId);
    const waiting = await server.api.request<{ id: string; status: string }>(
      'POST',
      `/v1/threads/${threadId}/runs`,
      { assistant_id: assistantId },
      { headers: { 'x-assistd-queue': 'true' } },
    );
    assert.equal(waiting.body.status, 'queued', 'it waits behind the first run');
    const runId = waiting.body.id;
    // The route subscribes while the run waits, and reads it once it has started: its `in_progress` (and the
    // `created`, `queued` of a run just made, as another process's signal may bring late) came before the read.
    holdNextGetRun(server.server.store, () =>
      eventually('the waiting run started', 5000, async () => {
        const run = await server.api.get<{ status: string }>(`/v1/threads/${threadId}/runs/${runId}`);
        return run.body.status === 'queued' ? undefined : true;
      }),
    );
    await attachUntilCompleted(threadId, runId);
  });

  test('a run that pauses and goes on while the route reads it: the pause before the read does not end the stream', async () => {
    upstream.enqueue(
      { toolCalls: [{ name: 'lookup', arguments: '{}' }], chunkDelayMs: 100 },
      { text: ['Found', ' it', '.'], chunkDelayMs: 100 },
    );
    const { threadId, runId } = await startRun(functionAssistantId);
    const runUrl = `/v1/threads/${threadId}/runs/${runId}`;
    const status = async () => (await server.api.get<{ status: string }>(runUrl)).body.status;
    // Subscribed while the model writes its call; read once the run has paused, had its output and gone on.
    holdNextGetRun(server.server.store, async () => {
      await eventually('the pause', 5000, async () => ((await status()) === 'requires_action' ? true : undefined));
      const run = await server.api.get<{
        required_action: { submit_tool_outputs: { tool_calls: Array<{ id: string }> } };
      }>(runUrl);
      const [call] = run.body.required_action.submit_tool_outputs.tool_calls;
      await server.api.post(`${runUrl}/submit_tool_outputs`, {
        tool_outputs: [{ tool_call_id: call!.id, output: 'x' }],
      });
      await eventually('the run going on', 5000, async () => ((await status()) === 'in_progress' ? true : undefined));
    });
    await attachUntilCompleted(threadId, runId);
  });

  test('a client gone before its stream opens: the stream is closed at once, not left open until its run ends', async () => {
    const scrape = async () => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      return Number(text.match(/^assistd_streams_active (\S+)$/m)?.[1]);
    };
    upstream.enqueue({ hang: true });
    const { threadId, runId } = await startRun(assistantId);
    const openBefore = await scrape();
    // The server's side of the request: its read of the run lasts until the client has gone and its close was seen.
    let response!: (res: ServerResponse) => void;
    const served = new Promise<ServerResponse>((resolve) => {
      response = resolve;
    });
    const http = server.server.app.server;
    const onRequest = (req: { url?: string }, res: ServerResponse) => {
      if (req.url?.endsWith('/events')) response(res);
    };
    http.on('request', onRequest);
    const client = new AbortController();
    const { read } = holdNextGetRun(server.server.store, async () => {
      const res = await served;
      client.abort();
      if (!res.destroyed) await once(res, 'close');
    });
    try {
      await assert.rejects(fetch(eventsUrl(threadId, runId), { signal: client.signal }), { name: 'AbortError' });
      await read;
      assert.equal(await scrape(), openBefore, 'no stream is left open for the client that left');
    } finally {
      http.off('request', onRequest);
      await server.api.post(`/v1/threads/${threadId}/runs/${runId}/cancel`);
    }
  });
});

/**
 * Across processes, a process learns of a run's change from another's signal, which can be lost: its LISTEN
 * connection was down when it was sent (a PostgreSQL restart, a network blip), or the process that committed the
 * change died before sending it. A stream following the run must still end with the run's end, not stay open for
 * ever on keep-alives. The run here is ended by a plain UPDATE, as by a process whose signal never came.
 */
const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined)
  test('/events ends even when the signal of the run’s end is lost', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  test('/events ends even when the signal of the run’s end is lost (PostgreSQL)', async () => {
    const database = await createTestDatabase(postgresUrl);
    // An API-only process: nothing here executes the run, as when a worker elsewhere does.
    const server = await startTestServer({ ASSISTD_DATABASE_URL: database.url, ASSISTD_WORKER_CONCURRENCY: '0' });
    const sql = new pg.Client({ connectionString: database.url });
    // The other process, listening as every assistd process does (a process alone on its database re-reads nothing).
    const peer = new pg.Client({ connectionString: database.url });
    try {
      await sql.connect();
      await peer.connect();
      await peer.query('listen assistd_runs');
      // Every re-read, by the ids it reads: one statement serves every stream.
      const { store } = server.server;
      const findRuns = store.findRuns.bind(store);
      const reads: string[][] = [];
      store.findRuns = (ids) => {
        reads.push([...ids]);
        return findRuns(ids);
      };
      const assistant = await server.api.post('/v1/assistants', { model: 'm' });
      const followed: Array<{ runId: string; events: ReturnType<typeof readSse> }> = [];
      for (let i = 0; i < 3; i++) {
        const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
        const run = await server.api.post(`/v1/threads/${thread.body.id}/runs`, { assistant_id: assistant.body.id });
        assert.equal(run.body.status, 'queued');
        const response = await fetch(`${server.url}/v1/threads/${thread.body.id}/runs/${run.body.id}/events`, {
          signal: AbortSignal.timeout(20_000),
        });
        followed.push({ runId: run.body.id as string, events: readSse(response) });
      }
      await new Promise((resolve) => setTimeout(resolve, 300)); // the streams are open, their snapshots sent
      await sql.query(`update runs set status = 'cancelled', cancelled_at = $2 where id = any($1)`, [
        followed.map((f) => f.runId),
        Math.floor(Date.now() / 1000),
      ]);
      for (const { runId, events } of followed) {
        const got = await events;
        assert.deepEqual(eventNames(got), ['thread.run.queued', 'thread.run.cancelled', 'done']);
        assert.equal(got[1]!.data.id, runId);
      }
      assert.ok(reads.length >= 2, 'an end is acted on when a second read still finds it');
      // Once the three streams are open, one read serves them all (the first may come before the last opened).
      assert.deepEqual(reads.at(-1)!.sort(), followed.map((f) => f.runId).sort());
      for (const ids of reads) assert.equal(new Set(ids).size, ids.length, 'each run read once');
    } finally {
      await sql.end().catch(() => {});
      await peer.end().catch(() => {});
      await server.close();
      await database.drop();
    }
  });
