/**
 * The upstream fault matrix: every way the model backend can fail, injected by the fake upstream into real runs of
 * a real server (SQLite), each once through a polled run (the SDK's createAndPoll) and once through a streamed one
 * (SSE read frame by frame, every frame checked against the official schema). For each: the run ends in the right
 * status with the right `last_error`, after the right number of upstream attempts (ASSISTD_UPSTREAM_MAX_RETRIES=1:
 * a retryable fault is tried twice); no client ever gets a 5xx, the failure is in the run; and what a stream showed
 * (its messages, steps and run) is exactly what is stored.
 *
 * A fault after output has been streamed is not retried: a retry would show a second answer after the first one's
 * start, so the run fails and keeps what was shown, as an `incomplete` message (streamed = stored).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { FakeUpstream, type Reply, ROLES_MUST_ALTERNATE } from '../support/fake-upstream.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { readSse, type SseEvent } from '../support/sse.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

const UPSTREAM_KEY = 'sk-upstream-secret-0123456789';
const CSRF_TOKEN = 'csrf-4f9a1c7e';

type Message = OpenAI.Beta.Threads.Message;
type Run = OpenAI.Beta.Threads.Run;
type RunStep = OpenAI.Beta.Threads.Runs.RunStep;

const weather = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

/** The kind of each fault reply, to count the faults the upstream actually served. */
const kinds = new Map<Reply, string>();
function fault<R extends Reply>(kind: string, reply: R): R {
  kinds.set(reply, kind);
  return reply;
}

function sseFrames(...payloads: string[]): string[] {
  return payloads.map((payload) => `data: ${payload}\n\n`);
}

function delta(content: string): string {
  return JSON.stringify({
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta: { content }, finish_reason: null }],
  });
}

const LOGIN_PAGE =
  '<!DOCTYPE html><html><head><title>Sign in · Example Corp Gateway</title></head><body><h1>Please sign in</h1>' +
  `<form method="post"><input type="hidden" name="csrf" value="${CSRF_TOKEN}"><input name="user"></form>` +
  `<!-- upstream: Authorization: Bearer ${UPSTREAM_KEY} --></body></html>`;

interface Outcome {
  status: 'completed' | 'failed' | 'requires_action';
  code?: 'server_error' | 'rate_limit_exceeded';
  /** The run's last_error.message. */
  message?: RegExp;
  /** Upstream requests the run made. */
  attempts: number;
  /** The run's one stored message, if it has one. */
  answer?: { text: string; status: 'completed' | 'incomplete' };
  /** The least time between two attempts (a retry-after hint). */
  retriedAfterMs?: number;
}

interface Scenario {
  name: string;
  /** What the upstream answers, one reply per attempt (built afresh for each run). */
  replies: () => Reply[];
  expect: Outcome;
}

const OK = (text = 'recovered') => ({ text: [text.slice(0, 4), text.slice(4)] });

const SCENARIOS: Scenario[] = [
  {
    name: '429 with retry-after, then an answer: retried after the delay',
    replies: () => [
      fault('429', {
        status: 429,
        headers: { 'retry-after': '1' },
        body: { error: { message: 'Rate limit reached' } },
      }),
      OK(),
    ],
    expect: {
      status: 'completed',
      attempts: 2,
      answer: { text: 'recovered', status: 'completed' },
      retriedAfterMs: 950,
    },
  },
  {
    name: '429 on every attempt: rate_limit_exceeded',
    replies: () => [
      fault('429', {
        status: 429,
        headers: { 'retry-after': '0' },
        body: { error: { message: 'Rate limit reached' } },
      }),
      fault('429', {
        status: 429,
        headers: { 'retry-after': '0' },
        body: { error: { message: 'Rate limit reached' } },
      }),
    ],
    expect: { status: 'failed', code: 'rate_limit_exceeded', message: /^Rate limit reached$/, attempts: 2 },
  },
  {
    name: '5xx, then an answer',
    replies: () => [fault('5xx', { status: 503 }), OK()],
    expect: { status: 'completed', attempts: 2, answer: { text: 'recovered', status: 'completed' } },
  },
  {
    name: '5xx on every attempt: server_error',
    replies: () => [
      fault('5xx', { status: 500 }),
      fault('5xx', { status: 502, body: '<html><body>Bad gateway</body></html>' }),
    ],
    expect: { status: 'failed', code: 'server_error', message: /^The model backend answered 502$/, attempts: 2 },
  },
  {
    name: 'no first byte within the timeout, then an answer',
    replies: () => [fault('timeout', { hang: true }), OK()],
    expect: { status: 'completed', attempts: 2, answer: { text: 'recovered', status: 'completed' } },
  },
  {
    name: 'timeouts on every attempt (no headers, then a stalled stream): server_error',
    replies: () => [fault('timeout', { hang: true }), fault('timeout', { hang: true, sendHeaders: true })],
    expect: {
      status: 'failed',
      code: 'server_error',
      message: /^The model backend timed out after 1000 ms waiting for the next chunk of its stream$/,
      attempts: 2,
    },
  },
  {
    name: 'connection reset before any output, then an answer: retried unseen',
    replies: () => [fault('reset', { resetAfterChunks: 0, text: ['never'] }), OK()],
    expect: { status: 'completed', attempts: 2, answer: { text: 'recovered', status: 'completed' } },
  },
  {
    name: 'connection reset after deltas: not retried, the shown text kept incomplete',
    replies: () => [fault('reset', { resetAfterChunks: 2, text: ['Half ', 'an answer', ' never sent'] })],
    expect: {
      status: 'failed',
      code: 'server_error',
      message: /^The connection to the model backend (broke mid-stream|closed before its stream ended)/,
      attempts: 1,
      answer: { text: 'Half an answer', status: 'incomplete' },
    },
  },
  {
    name: 'a 200 HTML login page, then an answer',
    replies: () => [fault('html-200', { raw: LOGIN_PAGE, contentType: 'text/html; charset=utf-8' }), OK()],
    expect: { status: 'completed', attempts: 2, answer: { text: 'recovered', status: 'completed' } },
  },
  {
    name: 'a 200 HTML login page on every attempt: server_error naming it, never an empty answer',
    replies: () => [
      fault('html-200', { raw: LOGIN_PAGE, contentType: 'text/html; charset=utf-8' }),
      fault('html-200', { raw: LOGIN_PAGE, contentType: 'text/html' }),
    ],
    expect: {
      status: 'failed',
      code: 'server_error',
      message:
        /^The model backend answered 200 with text\/html instead of an event stream: a page titled "Sign in · Example Corp Gateway"$/,
      attempts: 2,
    },
  },
  {
    name: 'chunks that are not JSON on every attempt: server_error',
    replies: () => [
      fault('invalid-json', {
        raw: sseFrames('{"choices":[{"index":0,"delta":{"content":"Hi"'),
        contentType: 'text/event-stream',
      }),
      fault('invalid-json', { raw: sseFrames('<html>oops</html>'), contentType: 'text/event-stream' }),
    ],
    expect: {
      status: 'failed',
      code: 'server_error',
      message: /^The model backend sent a stream chunk that is not JSON: "<html>oops<\/html>"$/,
      attempts: 2,
    },
  },
  {
    name: 'a chunk that is not JSON after deltas: not retried, the shown text kept incomplete',
    replies: () => [
      fault('invalid-json', {
        raw: sseFrames(delta('Good '), delta('start'), '{"truncated":'),
        contentType: 'text/event-stream',
      }),
    ],
    expect: {
      status: 'failed',
      code: 'server_error',
      message: /not JSON: "\{"truncated":"$/,
      attempts: 1,
      answer: { text: 'Good start', status: 'incomplete' },
    },
  },
  {
    name: 'an empty event stream, then an answer',
    replies: () => [fault('empty-stream', { raw: '', contentType: 'text/event-stream' }), OK()],
    expect: { status: 'completed', attempts: 2, answer: { text: 'recovered', status: 'completed' } },
  },
  {
    name: 'empty event streams (nothing; [DONE] alone) on every attempt: server_error',
    replies: () => [
      fault('empty-stream', { raw: '', contentType: 'text/event-stream' }),
      fault('empty-stream', { raw: sseFrames('[DONE]'), contentType: 'text/event-stream' }),
    ],
    expect: {
      status: 'failed',
      code: 'server_error',
      message: /^The model backend answered with an empty event stream \(no chunks\)$/,
      attempts: 2,
    },
  },
  {
    name: 'a stream that ends without a finish_reason or [DONE]: not retried, the shown text kept incomplete',
    replies: () => [fault('no-finish-reason', { text: ['Cut ', 'short'], finishReason: null, done: false })],
    expect: {
      status: 'failed',
      code: 'server_error',
      message: /^The model backend's stream ended without a finish_reason/,
      attempts: 1,
      answer: { text: 'Cut short', status: 'incomplete' },
    },
  },
  {
    name: 'a function call whose arguments are not JSON: requires_action with the arguments as the model sent them',
    replies: () => [fault('invalid-tool-json', { toolCalls: [{ name: 'get_weather', arguments: '{"city": "Par' }] })],
    expect: { status: 'requires_action', attempts: 1 },
  },
];

/**
 * What a stream showed: the run, each message as last announced and the text its deltas added up to, each step as
 * last announced with the function calls its deltas added since (a step paused for `requires_action` is never
 * announced again: a client knows its calls from the deltas alone).
 */
interface Shown {
  run: Run | undefined;
  messages: Map<string, Message>;
  texts: Map<string, string>;
  steps: Map<string, RunStep>;
}

function shownBy(events: SseEvent[]): Shown {
  const shown: Shown = { run: undefined, messages: new Map(), texts: new Map(), steps: new Map() };
  for (const { event, data } of events) {
    if (event.startsWith('thread.run.step.')) {
      if (event !== 'thread.run.step.delta') shown.steps.set(data.id, data);
      else {
        const details = shown.steps.get(data.id)!.step_details as OpenAI.Beta.Threads.Runs.ToolCallsStepDetails;
        // The first delta of a call carries its whole shape, later ones its arguments' next fragment.
        for (const { index, ...call } of data.delta.step_details?.tool_calls ?? []) {
          const known = details.tool_calls[index] as OpenAI.Beta.Threads.Runs.FunctionToolCall | undefined;
          if (!known) details.tool_calls[index] = call;
          else known.function.arguments += call.function?.arguments ?? '';
        }
      }
    } else if (event.startsWith('thread.message.')) {
      if (event === 'thread.message.delta') {
        for (const part of data.delta.content ?? [])
          if (part.type === 'text') shown.texts.set(data.id, (shown.texts.get(data.id) ?? '') + part.text.value);
      } else shown.messages.set(data.id, data);
    } else if (event.startsWith('thread.run.')) shown.run = data;
  }
  return shown;
}

function textOf(message: Message): string {
  return message.content.map((part) => (part.type === 'text' ? part.text.value : '')).join('');
}

describe('upstream fault matrix', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let client: OpenAI;
  let recorder: ValidatingFetch;
  let assistantId: string;
  const served = new Map<string, number>();

  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer({
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_UPSTREAM_API_KEY: UPSTREAM_KEY,
      ASSISTD_UPSTREAM_MAX_RETRIES: '1',
      ASSISTD_UPSTREAM_TIMEOUT_S: '1',
    });
    recorder = createValidatingFetch();
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
    assistantId = (await client.beta.assistants.create({ model: 'gpt-test', tools: [weather] })).id;
  });

  after(async () => {
    await server?.close();
    await upstream?.close();
    recorder?.assertNoViolations({ all: true });
    const total = [...served.values()].reduce((a, b) => a + b, 0);
    const byKind = [...served].map(([kind, n]) => `${kind} ${n}`).join(', ');
    console.log(`upstream faults injected: ${total} (${byKind})`);
  });

  /** Runs the scenario's run as `mode` and returns it as stored, with what a stream showed of it. */
  async function runThrough(mode: 'polled' | 'streamed', threadId: string): Promise<{ run: Run; shown?: Shown }> {
    if (mode === 'polled') {
      const run = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistantId });
      return { run };
    }
    const response = await fetch(`${server.url}/v1/threads/${threadId}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: assistantId, stream: true }),
    });
    assert.equal(response.status, 200, 'a streamed run is a 200 whatever the upstream did');
    const events = await readSse(response);
    assert.equal(events.at(-1)?.event, 'done');
    const shown = shownBy(events);
    assert.ok(shown.run, 'the stream announced the run');
    // A failed run ends as any run does: its event says why (last_error); an `error` event would make the SDK throw.
    assert.ok(!events.some((e) => e.event === 'error'), 'no error event');
    return { run: await client.beta.threads.runs.retrieve(shown.run.id, { thread_id: threadId }), shown };
  }

  for (const scenario of SCENARIOS)
    for (const mode of ['polled', 'streamed'] as const)
      test(`${scenario.name} (${mode})`, async () => {
        const { expect } = scenario;
        const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Weather in Paris?' }] });
        const clientCalls = recorder.requests.length;
        const before = upstream.requests.length;
        upstream.enqueue(...scenario.replies());

        const { run, shown } = await runThrough(mode, thread.id);

        const attempts = upstream.requests.slice(before);
        for (const { reply } of attempts) {
          const kind = kinds.get(reply);
          if (kind) served.set(kind, (served.get(kind) ?? 0) + 1);
        }
        assert.equal(attempts.length, expect.attempts, 'upstream attempts');
        if (expect.retriedAfterMs !== undefined) {
          const gap = attempts[1]!.receivedAt - attempts[0]!.receivedAt;
          assert.ok(gap >= expect.retriedAfterMs, `retried after ${gap} ms`);
        }
        assert.equal(run.status, expect.status);
        if (expect.code) {
          assert.equal(run.last_error?.code, expect.code);
          assert.match(run.last_error.message, expect.message!);
          assert.ok(run.failed_at);
          for (const secret of [UPSTREAM_KEY, CSRF_TOKEN, '<form'])
            assert.ok(!run.last_error.message.includes(secret), `last_error leaks ${secret}`);
        } else assert.equal(run.last_error, null);

        const messages = (await client.beta.threads.messages.list(thread.id, { run_id: run.id })).data;
        const steps = (await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id, order: 'asc' })).data;
        if (expect.answer) {
          assert.equal(messages.length, 1, 'one answer');
          assert.equal(textOf(messages[0]!), expect.answer.text);
          assert.equal(messages[0]!.status, expect.answer.status);
          if (expect.answer.status === 'incomplete')
            assert.deepEqual(messages[0]!.incomplete_details, { reason: 'run_failed' });
        } else assert.equal(messages.length, 0, 'no message stored for a run that answered nothing');
        if (expect.status === 'completed') assert.ok(run.usage && run.usage.completion_tokens > 0);
        if (expect.status === 'failed')
          assert.ok(
            steps.every((s) => s.status === 'failed' && s.last_error?.code === expect.code),
            'the steps take the run’s fate',
          );

        if (expect.status === 'requires_action') {
          const [call] = run.required_action!.submit_tool_outputs.tool_calls;
          assert.equal(call!.function.name, 'get_weather');
          assert.equal(call!.function.arguments, '{"city": "Par', 'the arguments as the model sent them');
          assert.equal(steps[0]?.status, 'in_progress');
        }

        if (shown) {
          // Streamed = stored: the run, every message and step as last announced, and the text the deltas made.
          assert.deepEqual(shown.run, run);
          assert.deepEqual([...shown.messages.keys()].sort(), messages.map((m) => m.id).sort());
          for (const message of messages) {
            assert.deepEqual(shown.messages.get(message.id), message);
            assert.equal(shown.texts.get(message.id) ?? '', textOf(message));
          }
          assert.deepEqual([...shown.steps.keys()].sort(), steps.map((s) => s.id).sort());
          for (const step of steps) assert.deepEqual(shown.steps.get(step.id), step);
        }

        // The client's own calls (create, poll, retrieve, list) all succeeded: the failure is in the run.
        const statuses = recorder.requests.slice(clientCalls).map((r) => r.status);
        assert.ok(
          statuses.every((s) => s === 200),
          `client saw ${statuses.join(', ')}`,
        );

        if (expect.status === 'requires_action') {
          upstream.enqueue(OK('Sunny, thanks for asking'));
          const call = run.required_action!.submit_tool_outputs.tool_calls[0]!;
          const done = await client.beta.threads.runs.submitToolOutputsAndPoll(run.id, {
            thread_id: thread.id,
            tool_outputs: [{ tool_call_id: call.id, output: 'error: arguments are not valid JSON' }],
          });
          assert.equal(done.status, 'completed');
          const tool = upstream.requests.at(-1)!.body.messages.find((m) => m['role'] === 'tool');
          assert.equal(tool?.['content'], 'error: arguments are not valid JSON');
        }
      });
});

describe('an endpoint whose chat template refuses two messages of one role in a row', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let client: OpenAI;

  before(async () => {
    upstream = await FakeUpstream.start();
    // No retries: the join must not need one of the run's retries.
    server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_UPSTREAM_MAX_RETRIES: '0' });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0 });
  });
  after(async () => {
    await server?.close();
    await upstream?.close();
  });

  test('the run is sent again at once with the rows joined, and so is every later run', async () => {
    const assistant = await client.beta.assistants.create({ model: 'gemma-3-27b-it', instructions: 'Be brief.' });
    const thread = await client.beta.threads.create({
      messages: [
        { role: 'user', content: 'Summarise the note below.' },
        { role: 'user', content: 'Note: the meeting moved to 3 pm.' },
      ],
    });
    const before = upstream.requests.length;
    upstream.enqueue(ROLES_MUST_ALTERNATE, { text: ['Moved to ', '3 pm.'] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const [refused, joined] = upstream.requests.slice(before).map((r) => r.body.messages);
    assert.equal(refused!.length, 3);
    assert.deepEqual(joined, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Summarise the note below.\n\nNote: the meeting moved to 3 pm.' },
    ]);

    await client.beta.threads.messages.create(thread.id, { role: 'assistant', content: 'Anything else?' });
    await client.beta.threads.messages.create(thread.id, { role: 'user', content: 'No, thanks.' });
    const next = upstream.requests.length;
    upstream.enqueue({ text: ['Bye.'] });
    const streamed = await client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id }).finalRun();
    assert.equal(streamed.status, 'completed', JSON.stringify(streamed.last_error));
    const sent = upstream.requests.slice(next);
    assert.equal(sent.length, 1, 'joined from the first attempt');
    assert.deepEqual(
      sent[0]!.body.messages.map((m) => [m['role'], m['content']]),
      [
        ['system', 'Be brief.'],
        ['user', 'Summarise the note below.\n\nNote: the meeting moved to 3 pm.'],
        ['assistant', 'Moved to 3 pm.\n\nAnything else?'],
        ['user', 'No, thanks.'],
      ],
    );
  });

  // The server learnt in the test before that this endpoint wants roles to alternate.
  test("a thread that begins with the assistant's greeting is sent with an empty user turn before it", async () => {
    const assistant = await client.beta.assistants.create({ model: 'gemma-3-27b-it' });
    const thread = await client.beta.threads.create({
      messages: [
        { role: 'assistant', content: 'Hi! How can I help?' },
        { role: 'user', content: 'What time is it in Tokyo?' },
      ],
    });
    const before = upstream.requests.length;
    upstream.enqueue({ text: ['Evening.'] });
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    assert.deepEqual(
      upstream.requests.slice(before).map((r) => r.body.messages.map((m) => [m['role'], m['content']])),
      [
        [
          ['user', ''],
          ['assistant', 'Hi! How can I help?'],
          ['user', 'What time is it in Tokyo?'],
        ],
      ],
    );
  });
});
