import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { eventNames, MESSAGE_TURN, postSse, type SseEvent } from '../support/sse.ts';
import { type AddTool, addCall, addTool } from '../support/test-tools.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

/**
 * Server-side tools, streamed (spec README §3, §10): each tool turn is a tool_calls step whose call gets two deltas —
 * its details before it runs (the code_interpreter input), then the tool's progress (its outputs) — and completes
 * before the next turn; the run stays in_progress throughout. Every SSE frame is checked against the official schema
 * (support/sse.ts), every JSON response too (the SDK's fetch, and ApiClient).
 */

type ChatMessage = { role: string; content?: unknown; tool_calls?: unknown[]; tool_call_id?: string };

const CODE_INTERPRETER = { type: 'code_interpreter' as const };
const lookup = {
  type: 'function' as const,
  function: { name: 'lookup', parameters: { type: 'object', properties: {} } },
};

/** One tool turn of a stream: the step's five events. */
function toolTurn(): string[] {
  return [
    'thread.run.step.created',
    'thread.run.step.in_progress',
    'thread.run.step.delta',
    'thread.run.step.delta',
    'thread.run.step.completed',
  ];
}

/** The events of the answer turn, two text deltas. */
const ANSWER_TURN = [
  'thread.run.step.created',
  'thread.run.step.in_progress',
  'thread.message.created',
  'thread.message.in_progress',
  'thread.message.delta',
  'thread.message.delta',
  'thread.message.completed',
  'thread.run.step.completed',
];

const TWO_TOOL_TURNS = [
  'thread.run.created',
  'thread.run.queued',
  'thread.run.in_progress',
  ...toolTurn(),
  ...toolTurn(),
  ...ANSWER_TURN,
  'thread.run.completed',
  'done',
];

function textOf(events: SseEvent[]): string {
  return events
    .filter((e) => e.event === 'thread.message.delta')
    .map((e) => e.data.delta.content[0].text.value)
    .join('');
}

function toolCallDeltas(event: SseEvent): Array<Record<string, unknown> & { index: number }> {
  assert.equal(event.event, 'thread.run.step.delta');
  assert.equal(event.data.delta.step_details.type, 'tool_calls');
  return event.data.delta.step_details.tool_calls;
}

/**
 * Checks one tool turn's five events (`turn`) for a call `add(a, b)`: the empty step, the call's first delta with
 * its id and input, the outputs delta, the completed step with the final details. Returns the step and call ids.
 */
function checkToolTurn(turn: SseEvent[], a: number, b: number): { stepId: string; callId: string } {
  assert.deepEqual(
    turn.map((e) => e.event),
    toolTurn(),
  );
  const [created, inProgress, first, progress, completed] = turn as [SseEvent, SseEvent, SseEvent, SseEvent, SseEvent];
  const stepId = created.data.id as string;
  assert.match(stepId, /^step_/);
  assert.equal(created.data.type, 'tool_calls');
  assert.equal(created.data.status, 'in_progress');
  assert.equal(created.data.usage, null);
  assert.deepEqual(created.data.step_details, { type: 'tool_calls', tool_calls: [] });
  assert.equal(inProgress.data.id, stepId);
  assert.equal(inProgress.data.status, 'in_progress');

  assert.equal(first.data.id, stepId);
  assert.equal(first.data.object, 'thread.run.step.delta');
  const [call] = toolCallDeltas(first);
  const callId = call?.id as string;
  assert.match(callId, /^call_/);
  assert.deepEqual(toolCallDeltas(first), [
    { index: 0, id: callId, type: 'code_interpreter', code_interpreter: { input: `${a} + ${b}`, outputs: [] } },
  ]);
  assert.equal(progress.data.id, stepId);
  assert.deepEqual(toolCallDeltas(progress), [
    {
      index: 0,
      type: 'code_interpreter',
      code_interpreter: { outputs: [{ index: 0, type: 'logs', logs: String(a + b) }] },
    },
  ]);

  assert.equal(completed.data.id, stepId);
  assert.equal(completed.data.status, 'completed');
  assert.ok(completed.data.completed_at);
  assert.ok(completed.data.usage, 'the completed step has usage');
  assert.deepEqual(completed.data.step_details, {
    type: 'tool_calls',
    tool_calls: [
      {
        id: callId,
        type: 'code_interpreter',
        code_interpreter: { input: `${a} + ${b}`, outputs: [{ type: 'logs', logs: String(a + b) }] },
      },
    ],
  });
  return { stepId, callId };
}

describe('server-side tools, streamed', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let client: OpenAI;
  let recorder: ValidatingFetch;
  let tool: AddTool;
  let assistantId: string;
  let mixedAssistantId: string;

  before(async () => {
    upstream = await FakeUpstream.start();
    tool = addTool();
    server = await startTestServer(
      { ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_UPSTREAM_MAX_RETRIES: '0' },
      { tools: [tool] },
    );
    recorder = createValidatingFetch();
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
    assistantId = (await client.beta.assistants.create({ model: 'm', tools: [CODE_INTERPRETER] })).id;
    mixedAssistantId = (await client.beta.assistants.create({ model: 'm', tools: [CODE_INTERPRETER, lookup] })).id;
  });
  after(async () => {
    await server?.close();
    await upstream?.close();
    recorder?.assertNoViolations({ all: true });
  });

  async function newThread(content = 'What is 2 + 3, then 4 + 5?'): Promise<string> {
    return (await client.beta.threads.create({ messages: [{ role: 'user', content }] })).id;
  }

  function enqueueTwoCallsThenAnswer(): void {
    upstream.enqueue(addCall(2, 3), addCall(4, 5), { text: ['The ', 'answer'] });
  }

  test('raw SSE: the exact event sequence of two tool turns and the answer, with their payloads', async () => {
    const threadId = await newThread();
    const seen = upstream.requests.length;
    const executed = tool.executions.length;
    enqueueTwoCallsThenAnswer();
    const events = await postSse(`${server.url}/v1/threads/${threadId}/runs`, {
      assistant_id: assistantId,
      stream: true,
    });
    assert.deepEqual(
      events.map((e) => e.event),
      TWO_TOOL_TURNS,
    );
    assert.equal(events.at(-1)!.data, '[DONE]');
    const runId = events[0]!.data.id as string;
    assert.ok(
      events.slice(0, 3).every((e) => e.data.id === runId),
      'the run events are of one run',
    );
    assert.equal(events[2]!.data.status, 'in_progress');

    const one = checkToolTurn(events.slice(3, 8), 2, 3);
    const two = checkToolTurn(events.slice(8, 13), 4, 5);
    assert.notEqual(one.stepId, two.stepId);
    assert.notEqual(one.callId, two.callId);

    const answer = events.slice(13, 21);
    const messageCreated = answer[2]!.data;
    assert.equal(answer[0]!.data.type, 'message_creation');
    assert.deepEqual(answer[0]!.data.step_details, {
      type: 'message_creation',
      message_creation: { message_id: messageCreated.id },
    });
    assert.deepEqual(messageCreated.content, []);
    assert.equal(textOf(events), 'The answer');
    const messageCompleted = answer[6]!.data;
    assert.equal(messageCompleted.content[0].text.value, 'The answer');
    const run = events.at(-2)!.data;
    assert.equal(run.id, runId);
    assert.equal(run.status, 'completed');
    assert.ok(run.usage, 'the completed run has usage');

    // What the stream said is what is stored.
    const stored = await server.api.get<{ data: Array<Record<string, unknown>> }>(
      `/v1/threads/${threadId}/runs/${runId}/steps?order=asc`,
    );
    assert.deepEqual(stored.body.data, [events[7]!.data, events[12]!.data, answer[7]!.data]);
    const message = await server.api.get(`/v1/threads/${threadId}/messages/${messageCreated.id}`);
    assert.deepEqual(message.body, messageCompleted);

    assert.deepEqual(
      tool.executions.slice(executed).map((e) => [e.callId, e.finished]),
      [
        [one.callId, true],
        [two.callId, true],
      ],
    );
    // The call ids of the deltas are the ones the model's history carries.
    const requests = upstream.requests.slice(seen);
    assert.equal(requests.length, 3);
    const turn3 = requests[2]!.body.messages as ChatMessage[];
    assert.deepEqual(
      turn3.slice(-4).map((m) => m.tool_call_id ?? (m.tool_calls as Array<{ id: string }>)[0]!.id),
      [one.callId, one.callId, two.callId, two.callId],
    );
  });

  test('AssistantStream: toolCallCreated/Delta/Done per call with the accumulated input and outputs, textDelta, finals', async () => {
    const threadId = await newThread();
    const executed = tool.executions.length;
    enqueueTwoCallsThenAnswer();
    type Snapshot = OpenAI.Beta.Threads.Runs.ToolCall;
    const created: Snapshot[] = [];
    const deltas: Array<[OpenAI.Beta.Threads.Runs.ToolCallDelta, Snapshot]> = [];
    const done: Snapshot[] = [];
    let text = '';
    let ended = false;
    const stream = client.beta.threads.runs
      .stream(threadId, { assistant_id: assistantId })
      // The SDK hands out live snapshots that later deltas update: copy what each event saw.
      .on('toolCallCreated', (call) => created.push(structuredClone(call)))
      .on('toolCallDelta', (delta, snapshot) => deltas.push([structuredClone(delta), structuredClone(snapshot)]))
      .on('toolCallDone', (call) => done.push(structuredClone(call)))
      .on('textDelta', (delta) => {
        text += delta.value ?? '';
      })
      .on('end', () => {
        ended = true;
      });
    const run = await stream.finalRun();
    const steps = await stream.finalRunSteps();
    const messages = await stream.finalMessages();
    assert.equal(run.status, 'completed');
    assert.ok(ended, 'the stream ended');
    assert.equal(text, 'The answer');

    const ids = tool.executions.slice(executed).map((e) => e.callId);
    assert.equal(ids.length, 2);
    assert.deepEqual(created, [
      { index: 0, id: ids[0], type: 'code_interpreter', code_interpreter: { input: '2 + 3', outputs: [] } },
      { index: 0, id: ids[1], type: 'code_interpreter', code_interpreter: { input: '4 + 5', outputs: [] } },
    ]);
    const accumulated = (id: string, input: string, logs: string) => ({
      index: 0,
      id,
      type: 'code_interpreter',
      code_interpreter: { input, outputs: [{ index: 0, type: 'logs', logs }] },
    });
    assert.deepEqual(deltas, [
      [
        { index: 0, type: 'code_interpreter', code_interpreter: { outputs: [{ index: 0, type: 'logs', logs: '5' }] } },
        accumulated(ids[0]!, '2 + 3', '5'),
      ],
      [
        { index: 0, type: 'code_interpreter', code_interpreter: { outputs: [{ index: 0, type: 'logs', logs: '9' }] } },
        accumulated(ids[1]!, '4 + 5', '9'),
      ],
    ]);
    assert.deepEqual(done, [accumulated(ids[0]!, '2 + 3', '5'), accumulated(ids[1]!, '4 + 5', '9')]);

    assert.deepEqual(
      steps.map((s) => [s.type, s.status]),
      [
        ['tool_calls', 'completed'],
        ['tool_calls', 'completed'],
        ['message_creation', 'completed'],
      ],
    );
    const stored = (await client.beta.threads.runs.steps.list(run.id, { thread_id: threadId, order: 'asc' })).data;
    assert.deepEqual(steps, stored);
    assert.equal(messages.length, 1);
    const message = await client.beta.threads.messages.retrieve(messages[0]!.id, { thread_id: threadId });
    assert.deepEqual(messages[0], message);
    assert.equal((message.content[0] as OpenAI.Beta.Threads.TextContentBlock).text.value, 'The answer');
  });

  test('a mixed turn, streamed: each call’s deltas contiguous, requires_action for the client call, then the continuation', async () => {
    const threadId = await newThread('Add 2 and 3, and look it up.');
    const executed = tool.executions.length;
    upstream.enqueue({
      toolCalls: [
        { name: 'add', arguments: '{"a":2,"b":3}' },
        { name: 'lookup', arguments: '{"q":1}' },
      ],
    });
    const events = await postSse(`${server.url}/v1/threads/${threadId}/runs`, {
      assistant_id: mixedAssistantId,
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
    const step = events[3]!.data;
    assert.deepEqual(step.step_details, { type: 'tool_calls', tool_calls: [] });

    const entries = events.filter((e) => e.event === 'thread.run.step.delta').flatMap(toolCallDeltas);
    // Each call's deltas contiguous, in the order of the calls: the client's call, written after the server-side
    // one, is held until that one has executed, then announced.
    assert.deepEqual(
      entries.map((e) => e.index),
      [0, 0, 1, 1],
    );
    const addDeltas = entries.filter((e) => e.index === 0);
    const addId = addDeltas[0]!.id as string;
    assert.match(addId, /^call_/);
    assert.deepEqual(addDeltas, [
      { index: 0, id: addId, type: 'code_interpreter', code_interpreter: { input: '2 + 3', outputs: [] } },
      { index: 0, type: 'code_interpreter', code_interpreter: { outputs: [{ index: 0, type: 'logs', logs: '5' }] } },
    ]);
    // Announced as the model turn announces a call: its shape with empty arguments, then the arguments (the SDK
    // shows the first delta only as toolCallCreated).
    const lookupDeltas = entries.filter((e) => e.index === 1);
    const lookupId = lookupDeltas[0]!.id as string;
    assert.deepEqual(lookupDeltas, [
      { index: 1, id: lookupId, type: 'function', function: { name: 'lookup', arguments: '', output: null } },
      { index: 1, type: 'function', function: { arguments: '{"q":1}' } },
    ]);

    const paused = events.at(-2)!.data;
    assert.equal(paused.status, 'requires_action');
    assert.deepEqual(paused.required_action.submit_tool_outputs.tool_calls, [
      { id: lookupId, type: 'function', function: { name: 'lookup', arguments: '{"q":1}' } },
    ]);
    assert.deepEqual(
      tool.executions.slice(executed).map((e) => [e.callId, e.finished]),
      [[addId, true]],
    );

    upstream.enqueue({ text: ['Found ', 'it.'] });
    const continuation = await postSse(`${server.url}/v1/threads/${threadId}/runs/${paused.id}/submit_tool_outputs`, {
      stream: true,
      tool_outputs: [{ tool_call_id: lookupId, output: 'found' }],
    });
    assert.deepEqual(eventNames(continuation), [
      'thread.run.step.completed',
      'thread.run.queued',
      'thread.run.in_progress',
      ...MESSAGE_TURN,
      'thread.run.completed',
      'done',
    ]);
    const completedStep = continuation[0]!.data;
    assert.equal(completedStep.id, step.id);
    assert.deepEqual(completedStep.step_details.tool_calls, [
      {
        id: addId,
        type: 'code_interpreter',
        code_interpreter: { input: '2 + 3', outputs: [{ type: 'logs', logs: '5' }] },
      },
      { id: lookupId, type: 'function', function: { name: 'lookup', arguments: '{"q":1}', output: 'found' } },
    ]);
    assert.equal(textOf(continuation), 'Found it.');
    assert.equal(tool.executions.length - executed, 1, 'the server call is not executed again');
  });
});
