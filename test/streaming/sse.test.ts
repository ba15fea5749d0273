import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyReply } from 'fastify';
import pg from 'pg';
import { openSse } from '../../src/api/sse.ts';
import { DEFAULT_SCOPE } from '../../src/storage/store.ts';
import { FakeUpstream, type TextReply } from '../support/fake-upstream.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { ANSWERED, eventNames, MESSAGE_TURN, postSse, readSse, type SseEvent } from '../support/sse.ts';

const tool = { type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } };

function textOf(events: SseEvent[]): string {
  return events
    .filter((e) => e.event === 'thread.message.delta')
    .map((e) => e.data.delta.content[0].text.value)
    .join('');
}

describe('streaming (raw SSE)', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let assistantId: string;
  let toolAssistantId: string;

  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_UPSTREAM_MAX_RETRIES: '0' });
    assistantId = (await server.api.post('/v1/assistants', { model: 'm', instructions: 'Hi.' })).body.id as string;
    toolAssistantId = (await server.api.post('/v1/assistants', { model: 'm', tools: [tool] })).body.id as string;
  });
  after(async () => {
    await server.close();
    await upstream.close();
  });

  async function newThread(): Promise<string> {
    return (await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hello' }] })).body.id as string;
  }

  /** A run of the plain assistant on the thread, streamed. */
  function streamRun(threadId: string): Promise<SseEvent[]> {
    return postSse(`${server.url}/v1/threads/${threadId}/runs`, { assistant_id: assistantId, stream: true });
  }

  test('a simple run: the exact sequence, deltas that add up to the stored message', async () => {
    upstream.enqueue({ text: ['Hel', 'lo', ' there', '!'] });
    const threadId = await newThread();
    const events = await streamRun(threadId);
    assert.deepEqual(eventNames(events), ANSWERED);
    assert.equal(events.at(-1)!.data, '[DONE]');
    const created = events.find((e) => e.event === 'thread.message.created')!.data;
    assert.equal(created.status, 'in_progress');
    assert.deepEqual(created.content, []);
    const deltas = events.filter((e) => e.event === 'thread.message.delta');
    assert.deepEqual(deltas[0]!.data.delta.content, [
      { index: 0, type: 'text', text: { value: 'Hel', annotations: [] } },
    ]);
    assert.deepEqual(deltas[1]!.data.delta.content, [{ index: 0, type: 'text', text: { value: 'lo' } }]);
    assert.ok(deltas.every((d) => d.data.id === created.id && !('id' in d.data.delta)));
    const stored = await server.api.get(`/v1/threads/${threadId}/messages/${created.id}`);
    assert.equal((stored.body.content as Array<{ text: { value: string } }>)[0]!.text.value, textOf(events));
    assert.equal(textOf(events), 'Hello there!');
    const completed = events.find((e) => e.event === 'thread.message.completed')!.data;
    assert.deepEqual(completed, stored.body);
    const run = events.find((e) => e.event === 'thread.run.completed')!.data;
    assert.ok(run.usage);
    const step = events.find((e) => e.event === 'thread.run.step.completed')!.data;
    assert.deepEqual(step.step_details, { type: 'message_creation', message_creation: { message_id: created.id } });
  });

  test('a request that says Connection: close has its connection closed once the stream is done', async () => {
    // PHP's http stream wrapper (openai-php through Guzzle) sends it, then reads until the connection ends.
    upstream.enqueue({ text: ['Hel', 'lo'] });
    const threadId = await newThread();
    const body = JSON.stringify({ assistant_id: assistantId, stream: true });
    const { port } = new URL(server.url);
    const socket = connect(Number(port), '127.0.0.1');
    socket.write(
      `POST /v1/threads/${threadId}/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer test\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    let received = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      received += chunk;
    });
    // Ended by the server: before, it kept the connection for its idle timeout (72 s), and this waited for it.
    const ended = once(socket, 'end').then(() => 'ended');
    const later = sleep(10_000, 'still open', { ref: false });
    assert.equal(await Promise.race([ended, later]), 'ended');
    socket.destroy();
    const [head] = received.split('\r\n\r\n');
    assert.match(head!, /^HTTP\/1\.1 200/);
    assert.match(head!, /\r\nconnection: close\r\n/i);
    assert.match(received, /event: done\r?\ndata: \[DONE\]/);

    // Without it, the connection is kept for the next request.
    upstream.enqueue({ text: 'again' });
    const kept = await fetch(`${server.url}/v1/threads/${await newThread()}/runs`, {
      method: 'POST',
      headers: { authorization: 'Bearer test', 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: assistantId, stream: true }),
    });
    assert.equal(kept.headers.get('connection'), 'keep-alive');
    await kept.text();
  });

  test('a model that says nothing: the answer is one empty text part, streamed as stored', async () => {
    upstream.enqueue({ text: '' });
    const threadId = await newThread();
    const events = await streamRun(threadId);
    assert.deepEqual(eventNames(events), ANSWERED);
    const deltas = events.filter((e) => e.event === 'thread.message.delta');
    assert.deepEqual(
      deltas.map((d) => d.data.delta.content),
      [[{ index: 0, type: 'text', text: { value: '', annotations: [] } }]],
    );
    const completed = events.find((e) => e.event === 'thread.message.completed')!.data;
    assert.deepEqual(completed.content, [{ type: 'text', text: { value: '', annotations: [] } }]);
    assert.deepEqual((await server.api.get(`/v1/threads/${threadId}/messages/${completed.id}`)).body, completed);
  });

  test('create thread and run starts with thread.created', async () => {
    upstream.enqueue({ text: ['Hi'] });
    const events = await postSse(`${server.url}/v1/threads/runs`, {
      assistant_id: assistantId,
      stream: true,
      thread: { messages: [{ role: 'user', content: 'hey' }] },
    });
    assert.deepEqual(eventNames(events).slice(0, 4), [
      'thread.created',
      'thread.run.created',
      'thread.run.queued',
      'thread.run.in_progress',
    ]);
    assert.equal(events[1]!.data.thread_id, events[0]!.data.id);
    assert.deepEqual(eventNames(events).slice(-2), ['thread.run.completed', 'done']);
  });

  test('requires_action: tool-call step deltas, then the continuation after submit_tool_outputs', async () => {
    upstream.enqueue({
      toolCalls: [
        { name: 'lookup', arguments: '{"q":"first"}' },
        { name: 'lookup', arguments: '{"q":"second"}' },
      ],
    });
    const threadId = await newThread();
    const events = await postSse(`${server.url}/v1/threads/${threadId}/runs`, {
      assistant_id: toolAssistantId,
      stream: true,
    });
    assert.deepEqual(eventNames(events), [
      'thread.run.created',
      'thread.run.queued',
      'thread.run.in_progress',
      'thread.run.step.created',
      'thread.run.step.in_progress',
      'thread.run.step.delta*',
      'thread.run.requires_action',
      'done',
    ]);
    const created = events.find((e) => e.event === 'thread.run.step.created')!.data;
    assert.deepEqual(created.step_details, { type: 'tool_calls', tool_calls: [] });
    const deltas = events
      .filter((e) => e.event === 'thread.run.step.delta')
      .map((e) => e.data.delta.step_details.tool_calls[0]);
    const run = events.find((e) => e.event === 'thread.run.requires_action')!.data;
    const calls = run.required_action.submit_tool_outputs.tool_calls;
    for (const [index, call] of calls.entries()) {
      const mine = deltas.filter((d) => d.index === index);
      assert.deepEqual(mine[0], {
        index,
        id: call.id,
        type: 'function',
        function: { name: 'lookup', arguments: '', output: null },
      });
      assert.ok(
        mine
          .slice(1)
          .every(
            (d) => Object.keys(d).join() === 'index,type,function' && Object.keys(d.function).join() === 'arguments',
          ),
      );
      assert.equal(mine.map((d) => d.function.arguments).join(''), call.function.arguments);
    }

    upstream.enqueue({ text: ['Found ', 'both.'] });
    const continuation = await postSse(`${server.url}/v1/threads/${threadId}/runs/${run.id}/submit_tool_outputs`, {
      stream: true,
      tool_outputs: calls.map((c: { id: string }) => ({ tool_call_id: c.id, output: 'ok' })),
    });
    assert.deepEqual(eventNames(continuation), [
      'thread.run.step.completed',
      'thread.run.queued',
      'thread.run.in_progress',
      ...MESSAGE_TURN,
      'thread.run.completed',
      'done',
    ]);
    // Each run event carries the run as that event says it is.
    for (const { event, data } of continuation)
      if (event.startsWith('thread.run.') && !event.startsWith('thread.run.step.'))
        assert.equal(`thread.run.${data.status}`, event);
    const toolStep = continuation[0]!.data;
    assert.equal(toolStep.id, created.id);
    assert.deepEqual(
      toolStep.step_details.tool_calls.map((c: { function: { output: string } }) => c.function.output),
      ['ok', 'ok'],
    );
  });

  test('incomplete: max_completion_tokens reached', async () => {
    upstream.enqueue({
      text: ['So ', 'much'],
      finishReason: 'length',
      usage: { prompt_tokens: 5, completion_tokens: 256 },
    });
    const threadId = await newThread();
    const events = await postSse(`${server.url}/v1/threads/${threadId}/runs`, {
      assistant_id: assistantId,
      stream: true,
      max_completion_tokens: 256,
    });
    assert.deepEqual(eventNames(events).slice(-5), [
      'thread.message.delta*',
      'thread.message.incomplete',
      'thread.run.step.completed',
      'thread.run.incomplete',
      'done',
    ]);
    assert.deepEqual(events.at(-2)!.data.incomplete_details, { reason: 'max_completion_tokens' });
  });

  test('failed: the terminal run event, with last_error, then done (no error event: the SDK would throw)', async () => {
    upstream.enqueue({ status: 500, body: { error: { message: 'upstream exploded' } } });
    const threadId = await newThread();
    const events = await postSse(`${server.url}/v1/threads/${threadId}/runs`, {
      assistant_id: assistantId,
      stream: true,
    });
    assert.deepEqual(eventNames(events), [
      'thread.run.created',
      'thread.run.queued',
      'thread.run.in_progress',
      'thread.run.failed',
      'done',
    ]);
    assert.equal(events[3]!.data.last_error.code, 'server_error');
    assert.match(events[3]!.data.last_error.message, /upstream exploded/);
  });

  test('failed mid-message: the partial message ends incomplete and its step failed', async () => {
    upstream.enqueue({ resetAfterChunks: 2, text: ['part', 'ial', 'never'] });
    const threadId = await newThread();
    const events = await postSse(`${server.url}/v1/threads/${threadId}/runs`, {
      assistant_id: assistantId,
      stream: true,
    });
    assert.deepEqual(eventNames(events).slice(-5), [
      'thread.message.delta*',
      'thread.message.incomplete',
      'thread.run.step.failed',
      'thread.run.failed',
      'done',
    ]);
    const message = events.find((e) => e.event === 'thread.message.incomplete')!.data;
    assert.deepEqual(message.incomplete_details, { reason: 'run_failed' });
    assert.equal(message.content[0].text.value, textOf(events));
  });

  test('cancel during a stream: cancelling, the partial message incomplete, cancelled, done', async () => {
    upstream.enqueue({ text: ['a ', 'b ', 'c ', 'd ', 'e ', 'f '], chunkDelayMs: 150 });
    const threadId = await newThread();
    let runId: string | undefined;
    let cancelled = false;
    const events = await postSse(
      `${server.url}/v1/threads/${threadId}/runs`,
      { assistant_id: assistantId, stream: true },
      async (event) => {
        if (event.event === 'thread.run.created') runId = event.data.id;
        if (event.event === 'thread.message.delta' && !cancelled) {
          cancelled = true;
          await server.api.post(`/v1/threads/${threadId}/runs/${runId}/cancel`);
        }
      },
    );
    assert.deepEqual(eventNames(events).slice(-6), [
      'thread.message.delta*',
      'thread.run.cancelling',
      'thread.message.incomplete',
      'thread.run.step.cancelled',
      'thread.run.cancelled',
      'done',
    ]);
    const message = events.find((e) => e.event === 'thread.message.incomplete')!.data;
    assert.deepEqual(message.incomplete_details, { reason: 'run_cancelled' });
  });

  /** The `error` a stream of run `runId` ends with when its thread is deleted. */
  function deletedError(threadId: string, runId: string) {
    return {
      message: `Thread ${threadId} was deleted, and run ${runId} with it.`,
      type: 'invalid_request_error',
      param: null,
      code: null,
    };
  }

  test('deleting the thread mid-stream: the stream and an /events follower get an error and end; the model is let go', {
    timeout: 15_000,
  }, async () => {
    upstream.enqueue({ text: ['a ', 'b ', 'c ', 'd ', 'e ', 'f ', 'g ', 'h '], chunkDelayMs: 200 });
    const threadId = await newThread();
    let runId = '';
    let follower: Promise<SseEvent[]> | undefined;
    let deleted: Promise<unknown> | undefined;
    const events = await postSse(
      `${server.url}/v1/threads/${threadId}/runs`,
      { assistant_id: assistantId, stream: true },
      async (event) => {
        if (event.event === 'thread.run.created') runId = event.data.id;
        if (event.event !== 'thread.message.delta' || follower) return;
        const attached = await fetch(`${server.url}/v1/threads/${threadId}/runs/${runId}/events`);
        follower = readSse(attached);
        deleted = server.api.delete(`/v1/threads/${threadId}`);
      },
    );
    assert.equal(((await deleted) as { status: number }).status, 200);
    const error = deletedError(threadId, runId);
    assert.deepEqual(eventNames(events).slice(-3), ['thread.message.delta*', 'error', 'done']);
    // The error, and again under `error` (the Python SDK's stream helpers raise only for data with that field).
    assert.deepEqual(events.at(-2)!.data, { ...error, error });
    const followed = await follower!;
    assert.deepEqual(eventNames(followed).slice(-2), ['error', 'done']);
    assert.deepEqual(followed.at(-2)!.data, { ...error, error });
    // The model's request is abandoned, not read to its end.
    const request = upstream.requests.at(-1)!;
    for (let i = 0; i < 40 && request.abortedAt === undefined; i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(request.abortedAt !== undefined && request.finishedAt === undefined, 'the model request was abandoned');
    assert.equal((await server.api.get(`/v1/threads/${threadId}`)).status, 404);
  });

  /**
   * A thread deleted in the store directly, as by another process whose signal has not reached this one (it may
   * never: a listener reconnecting), at the run's first delta: its stream's end.
   */
  async function deletedElsewhere(on: TestServer, assistant: string) {
    const thread = await on.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
    const threadId = thread.body.id as string;
    let runId = '';
    let deleted: Promise<unknown> | undefined;
    const events = await postSse(
      `${on.url}/v1/threads/${threadId}/runs`,
      { assistant_id: assistant, stream: true },
      (event) => {
        if (event.event === 'thread.run.created') runId = event.data.id;
        if (event.event === 'thread.message.delta') deleted ??= on.server.store.deleteThread(DEFAULT_SCOPE, threadId);
      },
    );
    assert.deepEqual(await deleted, [runId]);
    const error = deletedError(threadId, runId);
    assert.deepEqual(eventNames(events).slice(-3), ['thread.message.delta*', 'error', 'done']);
    assert.deepEqual(events.at(-2)!.data, { ...error, error });
    assert.equal((await on.api.get(`/v1/threads/${threadId}`)).status, 404);
  }

  test("a thread deleted elsewhere before its word arrives: the run's stream says so when its turn ends", async () => {
    upstream.enqueue({ text: ['a ', 'b ', 'c '], chunkDelayMs: 100 });
    await deletedElsewhere(server, assistantId);
  });

  test("a thread deleted elsewhere before its word arrives: the run's stream says so when its lease renewal finds the run gone", async () => {
    // A lease of a second is renewed every third of it: the renewal finds the run gone long before the turn ends.
    const short = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_WORKER_LEASE_S: '1' });
    try {
      upstream.enqueue({ text: Array.from({ length: 12 }, (_, i) => `w${i} `), chunkDelayMs: 250 });
      const assistant = await short.api.post('/v1/assistants', { model: 'gpt-test' });
      await deletedElsewhere(short, assistant.body.id as string);
    } finally {
      await short.close();
    }
  });

  test('many streams open at once: no listener-leak warning from the server', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const streams = [];
      for (let i = 0; i < 15; i++) {
        upstream.enqueue({ text: ['a ', 'b ', 'c'], chunkDelayMs: 100 });
        streams.push(
          postSse(`${server.url}/v1/threads/${await newThread()}/runs`, { assistant_id: assistantId, stream: true }),
        );
      }
      for (const events of await Promise.all(streams)) assert.equal(eventNames(events).at(-1), 'done');
    } finally {
      process.off('warning', onWarning);
    }
    const fromServer = warnings.filter(
      (w) => w.name === 'MaxListenersExceededWarning' && /\/src\//.test(w.stack ?? ''),
    );
    assert.deepEqual(fromServer, []);
  });

  test('a client that disconnects mid-stream does not cancel the run', async () => {
    upstream.enqueue({ text: ['one ', 'two ', 'three ', 'four'], chunkDelayMs: 100 });
    const threadId = await newThread();
    const controller = new AbortController();
    const response = await fetch(`${server.url}/v1/threads/${threadId}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: assistantId, stream: true }),
      signal: controller.signal,
    });
    await readSse(response, (event) => {
      if (event.event === 'thread.message.delta') controller.abort();
    }).catch(() => undefined);
    const runId = ((await server.api.get(`/v1/threads/${threadId}/runs`)).body as { data: Array<{ id: string }> })
      .data[0]!.id;
    let run: Record<string, unknown> = {};
    for (let i = 0; i < 40 && run.status !== 'completed'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      run = (await server.api.get(`/v1/threads/${threadId}/runs/${runId}`)).body;
    }
    assert.equal(run.status, 'completed');
    const messages = await server.api.get<{
      data: Array<{ content: Array<{ text: { value: string } }>; status: string }>;
    }>(`/v1/threads/${threadId}/messages?run_id=${runId}`);
    assert.equal(messages.body.data[0]!.status, 'completed');
    assert.equal(messages.body.data[0]!.content[0]!.text.value, 'one two three four');
  });

  test('/events re-attaches to a running run: a snapshot with the text so far, then the rest, then done', async () => {
    upstream.enqueue({ text: ['alpha ', 'beta ', 'gamma ', 'delta'], chunkDelayMs: 120 });
    const threadId = await newThread();
    const run = await server.api.post(`/v1/threads/${threadId}/runs`, { assistant_id: assistantId });
    await new Promise((r) => setTimeout(r, 300)); // a couple of chunks in
    const response = await fetch(`${server.url}/v1/threads/${threadId}/runs/${run.body.id}/events`);
    const events = await readSse(response);
    assert.equal(events[0]!.event, 'thread.run.in_progress');
    assert.deepEqual(eventNames(events).slice(1, 3), ['thread.run.step.created', 'thread.message.created']);
    const snapshot = events[2]!.data.content[0]?.text.value ?? '';
    assert.ok(snapshot.length > 0, 'the snapshot carries the text so far');
    assert.deepEqual(eventNames(events).slice(-3), ['thread.run.step.completed', 'thread.run.completed', 'done']);
    const final = events.find((e) => e.event === 'thread.message.completed')!.data;
    assert.equal(snapshot + textOf(events), final.content[0].text.value);
    assert.equal(final.content[0].text.value, 'alpha beta gamma delta');

    const after = await readSse(await fetch(`${server.url}/v1/threads/${threadId}/runs/${run.body.id}/events`));
    assert.deepEqual(eventNames(after), ['thread.run.completed', 'done']);
  });

  test('a streaming request that fails validation is an ordinary JSON error', async () => {
    const threadId = await newThread();
    const response = await server.api.post(`/v1/threads/${threadId}/runs`, {
      assistant_id: 'asst_missing',
      stream: true,
    });
    assert.equal(response.status, 404);
  });
});

describe('streaming: expiry', () => {
  test('a run that expires mid-stream ends the stream with thread.run.expired', async () => {
    const upstream = await FakeUpstream.start();
    const server = await startTestServer({
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_RUN_EXPIRES_AFTER_S: '1',
    });
    try {
      upstream.enqueue({ hang: true });
      const assistant = await server.api.post('/v1/assistants', { model: 'm' });
      const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
      const events = await postSse(`${server.url}/v1/threads/${thread.body.id}/runs`, {
        assistant_id: assistant.body.id,
        stream: true,
      });
      assert.deepEqual(eventNames(events), [
        'thread.run.created',
        'thread.run.queued',
        'thread.run.in_progress',
        'thread.run.expired',
        'done',
      ]);
    } finally {
      await server.close();
      await upstream.close();
    }
  });
});

describe('streaming: shutdown', () => {
  test('shutting down ends open streams at once instead of waiting for their runs', async () => {
    const upstream = await FakeUpstream.start();
    const server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl });
    try {
      upstream.enqueue({ hang: true });
      const assistant = await server.api.post('/v1/assistants', { model: 'm' });
      const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
      const stream = postSse(`${server.url}/v1/threads/${thread.body.id}/runs`, {
        assistant_id: assistant.body.id,
        stream: true,
      });
      const [request] = await upstream.waitForRequests(1);
      await server.close();
      // The stream ended with the shutdown's own events (a stream cut when the close's grace period ran out would end
      // without them), and the upstream request the run was waiting on was closed, not answered.
      const events = await stream;
      assert.equal(await upstream.waitForEnd(request!), 'aborted');
      assert.deepEqual(eventNames(events).slice(-3), ['thread.run.in_progress', 'error', 'done']);
      const runId = events[0]!.data.id;
      const error = {
        message: `The server is shutting down; run ${runId} is not over and goes on when the server is back. Follow it with GET /v1/threads/${thread.body.id}/runs/${runId}/events, or poll it.`,
        type: 'server_error',
        param: null,
        code: 'server_shutting_down',
      };
      // The error, and again under `error`: the Python SDK's stream helpers raise only for data with that field.
      assert.deepEqual(events.at(-2)!.data, { ...error, error });
    } finally {
      await upstream.close();
    }
  });
});

// The run's creation waits on the thread's row here (PostgreSQL: the wait does not hold the event loop), so that the
// shutdown begins before the stream opens.
const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined)
  test('a stream that opens after the shutdown began', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  test('a stream whose run is created after the shutdown began ends at once with the shutdown error', async () => {
    const database = await createTestDatabase(postgresUrl);
    const upstream = await FakeUpstream.start();
    const locker = new pg.Client({ connectionString: database.url });
    try {
      const server = await startTestServer({
        ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
        ASSISTD_DATABASE_URL: database.url,
      });
      upstream.setDefault({ text: ['one ', 'two ', 'three'], chunkDelayMs: 1000 });
      const assistant = await server.api.post('/v1/assistants', { model: 'm' });
      const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
      await locker.connect();
      await locker.query('begin');
      await locker.query('select id from threads where id = $1 for update', [thread.body.id]);
      const stream = postSse(`${server.url}/v1/threads/${thread.body.id}/runs`, {
        assistant_id: assistant.body.id,
        stream: true,
      });
      await new Promise((resolve) => setTimeout(resolve, 300)); // the creation is waiting on the row
      const closed = server.close();
      await new Promise((resolve) => setTimeout(resolve, 200));
      await locker.query('commit');
      const events = await stream;
      await closed;
      // Ended by the shutdown's own events, before the model's first word (a stream waiting for its run would have
      // been cut by the close's grace period, without them).
      assert.equal(events.at(-2)?.event, 'error', eventNames(events).join(' '));
      assert.ok(!eventNames(events).includes('thread.message.delta'), eventNames(events).join(' '));
      assert.equal(events.at(-2)!.data.code, 'server_shutting_down');
      assert.equal(events.at(-1)?.event, 'done');
    } finally {
      await locker.end().catch(() => {});
      await upstream.close();
      await database.drop();
    }
  });

describe('streaming: keep-alive comments (ASSISTD_STREAM_KEEPALIVE_S)', () => {
  /** `check` against a server whose ASSISTD_STREAM_KEEPALIVE_S is `seconds`, closed afterwards. */
  async function withKeepAlive(seconds: string, check: (server: TestServer) => Promise<void>): Promise<void> {
    const server = await startTestServer({
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_STREAM_KEEPALIVE_S: seconds,
    });
    try {
      await check(server);
    } finally {
      await server.close();
    }
  }

  /** A streamed run's whole body as written, comments included, checked to still be the official sequence. */
  async function rawStream(server: TestServer, reply: TextReply): Promise<string> {
    const assistant = await server.api.post('/v1/assistants', { model: 'm' });
    const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
    upstream.enqueue(reply);
    const response = await fetch(`${server.url}/v1/threads/${thread.body.id}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: assistant.body.id, stream: true }),
    });
    const body = await response.text();
    const events = await readSse(new Response(body, { headers: { 'content-type': 'text/event-stream' } }));
    assert.equal(events.at(-2)?.event, 'thread.run.completed', eventNames(events).join(' '));
    return body;
  }

  let upstream: FakeUpstream;
  before(async () => {
    upstream = await FakeUpstream.start();
  });
  after(() => upstream.close());

  test('a silent stream gets a comment, one whose frames flow gets none', async () => {
    await withKeepAlive('1', async (server) => {
      // The model is silent for 2.5 s before its answer: the stream says it is alive meanwhile.
      const silent = await rawStream(server, { text: ['Hello'], chunkDelayMs: 2500 });
      const comment = silent.indexOf(': keep-alive\n\n');
      assert.ok(comment > silent.indexOf('event: thread.run.in_progress'), silent);
      assert.ok(comment < silent.indexOf('event: thread.message.delta'), silent);
      // Tokens every 250 ms for 3 s: never a second of silence, so never a comment (upstream sent none; a few
      // clients' parsers refuse them).
      const flowing = await rawStream(server, { text: Array(12).fill('word '), chunkDelayMs: 250 });
      assert.ok(!flowing.includes(': keep-alive'), flowing);
    });
  });

  test('0 turns them off', async () => {
    await withKeepAlive('0', async (server) => {
      const silent = await rawStream(server, { text: ['Hello'], chunkDelayMs: 1500 });
      assert.ok(!silent.includes(': keep-alive'), silent);
    });
  });
});

describe('streaming: a client gone before its stream opens', () => {
  test('the stream is closed at once, and what waits for its close is told at once', async () => {
    const http = createServer();
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    try {
      const served = once(http, 'request') as Promise<[unknown, ServerResponse]>;
      fetch(`http://127.0.0.1:${(http.address() as AddressInfo).port}/`).catch(() => {}); // cut off below
      const [, res] = await served;
      res.destroy();
      let streamEnded = 0;
      // What openSse uses of its reply: a route's, once the client left while the run was being created or read.
      const reply = {
        raw: res,
        request: { id: 'req-1' },
        server: { metrics: { streamOpened: () => () => streamEnded++ } },
        hijack() {},
        getHeaders: () => ({}),
      } as unknown as FastifyReply;
      const sse = openSse(reply);
      assert.equal(sse.closed, true);
      assert.equal(streamEnded, 1, 'it no longer counts as open');
      let told = 0;
      sse.onClose(() => told++);
      assert.equal(told, 1, 'a listener added after the close is called at once (the follower unsubscribes)');
    } finally {
      http.closeAllConnections();
      http.close();
    }
  });
});
