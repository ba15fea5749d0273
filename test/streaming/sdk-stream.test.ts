import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { assertMatchesSchema } from '../support/openapi.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

const lookup = {
  type: 'function' as const,
  function: { name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } },
};

describe('streaming through the official SDK (AssistantStream)', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let client: OpenAI;
  let recorder: ValidatingFetch;

  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl });
    recorder = createValidatingFetch();
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
  });
  after(async () => {
    await server.close();
    await upstream.close();
    recorder.assertNoViolations({ all: true });
  });

  test('runs.stream: textDelta, messageDone, runStepDone, end; finalRun, finalMessages, finalRunSteps', async () => {
    upstream.enqueue({ text: ['The ', 'answer ', 'is ', '42.'] });
    const assistant = await client.beta.assistants.create({ model: 'm' });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Question?' }] });
    let text = '';
    const seen: string[] = [];
    const stream = client.beta.threads.runs
      .stream(thread.id, { assistant_id: assistant.id })
      .on('textCreated', () => seen.push('textCreated'))
      .on('textDelta', (delta) => {
        text += delta.value ?? '';
      })
      .on('messageDone', () => seen.push('messageDone'))
      .on('runStepDone', () => seen.push('runStepDone'))
      .on('end', () => seen.push('end'));
    const run = await stream.finalRun();
    const messages = await stream.finalMessages();
    const steps = await stream.finalRunSteps();
    assert.equal(run.status, 'completed');
    assert.equal(text, 'The answer is 42.');
    assert.deepEqual(seen, ['textCreated', 'messageDone', 'runStepDone', 'end']);
    assert.equal(messages.length, 1);
    const stored = await client.beta.threads.messages.retrieve(messages[0]!.id, { thread_id: thread.id });
    assert.deepEqual(messages[0], stored);
    assert.equal((stored.content[0] as OpenAI.Beta.Threads.TextContentBlock).text.value, text);
    assert.deepEqual(
      steps.map((s) => [s.type, s.status]),
      [['message_creation', 'completed']],
    );
  });

  test('createAndRunStream creates the thread and streams the run', async () => {
    upstream.enqueue({ text: ['Hello ', 'world'] });
    const assistant = await client.beta.assistants.create({ model: 'm' });
    const stream = client.beta.threads.createAndRunStream({
      assistant_id: assistant.id,
      thread: { messages: [{ role: 'user', content: 'Hi' }] },
    });
    const run = await stream.finalRun();
    assert.equal(run.status, 'completed');
    const [message] = await stream.finalMessages();
    assert.equal((message!.content[0] as OpenAI.Beta.Threads.TextContentBlock).text.value, 'Hello world');
    assert.equal(message!.thread_id, run.thread_id);
  });

  test('a two-round function-calling run, fully streamed with submitToolOutputsStream', async () => {
    upstream.enqueue(
      { toolCalls: [{ name: 'lookup', arguments: '{"q":"one"}' }] },
      {
        toolCalls: [
          { name: 'lookup', arguments: '{"q":"two"}' },
          { name: 'lookup', arguments: '{"q":"three"}' },
        ],
      },
      { text: ['Done: ', 'one, two, three.'] },
    );
    const assistant = await client.beta.assistants.create({ model: 'm', tools: [lookup] });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Look things up' }] });

    const created: string[] = [];
    const argumentsById = new Map<string, string>();
    const follow = (stream: ReturnType<typeof client.beta.threads.runs.stream>) =>
      stream
        .on('toolCallCreated', (call) => {
          created.push(call.id);
          argumentsById.set(call.id, '');
        })
        .on('toolCallDelta', (delta, snapshot) => {
          const fn = (delta as OpenAI.Beta.Threads.Runs.FunctionToolCallDelta).function;
          if (fn?.arguments) argumentsById.set(snapshot.id, (argumentsById.get(snapshot.id) ?? '') + fn.arguments);
        });

    let run = await follow(client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id })).finalRun();
    for (let round = 1; round <= 2; round++) {
      assert.equal(run.status, 'requires_action', `round ${round}`);
      const calls = run.required_action!.submit_tool_outputs.tool_calls;
      assert.equal(calls.length, round);
      for (const call of calls) assert.equal(argumentsById.get(call.id), call.function.arguments);
      const next = follow(
        client.beta.threads.runs.submitToolOutputsStream(run.id, {
          thread_id: thread.id,
          tool_outputs: calls.map((c) => ({ tool_call_id: c.id, output: JSON.parse(c.function.arguments).q })),
        }),
      );
      run = await next.finalRun();
      if (round === 2) {
        const [message] = await next.finalMessages();
        assert.equal(
          (message!.content[0] as OpenAI.Beta.Threads.TextContentBlock).text.value,
          'Done: one, two, three.',
        );
      }
    }
    assert.equal(run.status, 'completed');
    assert.equal(created.length, 3);
    const steps = (await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id, order: 'asc' })).data;
    assert.deepEqual(
      steps.map((s) => s.type),
      ['tool_calls', 'tool_calls', 'message_creation'],
    );
  });

  test('a failed run: finalRun() gives it, failed with last_error; the stream raises no error', async () => {
    upstream.enqueue({ status: 400, body: { error: { message: 'prompt rejected' } } });
    const assistant = await client.beta.assistants.create({ model: 'm' });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Hi' }] });
    const errors: unknown[] = [];
    const stream = client.beta.threads.runs
      .stream(thread.id, { assistant_id: assistant.id })
      .on('error', (error) => errors.push(error));
    const run = await stream.finalRun();
    assert.equal(run.status, 'failed');
    assert.equal(run.last_error?.code, 'invalid_prompt');
    assert.match(run.last_error?.message ?? '', /prompt rejected/);
    assert.deepEqual(errors, []);
    const [listed] = (await client.beta.threads.runs.list(thread.id)).data;
    assert.deepEqual(listed, run);
  });

  /** A streamed answer that refuses, in pieces, as OpenAI streams it: `delta.refusal`, `content` null. */
  function refusing(...pieces: string[]) {
    const chunk = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'gpt-4o', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    return {
      raw: [
        chunk({ role: 'assistant', content: null, refusal: '' }),
        ...pieces.map((refusal) => chunk({ refusal })),
        chunk({}, 'stop'),
        'data: [DONE]\n\n',
      ],
      contentType: 'text/event-stream',
    };
  }

  test("a model's refusal (OpenAI's structured outputs) is a refusal part, streamed as refusal deltas, sent back next turn", async () => {
    const assistant = await client.beta.assistants.create({
      model: 'gpt-4o',
      response_format: {
        type: 'json_schema',
        json_schema: { name: 'plan', schema: { type: 'object', properties: { steps: { type: 'array' } } } },
      },
    });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Plan a bank robbery.' }] });
    upstream.enqueue(refusing("I'm sorry, ", "I can't help with that."));
    const stream = client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id });
    const deltas: unknown[] = [];
    stream.on('event', (event) => {
      if (event.event === 'thread.message.delta') deltas.push(event.data);
    });
    const run = await stream.finalRun();
    assert.equal(run.status, 'completed');
    const [shown] = await stream.finalMessages();
    const stored = await client.beta.threads.messages.retrieve(shown!.id, { thread_id: thread.id });
    assert.deepEqual(stored.content, [{ type: 'refusal', refusal: "I'm sorry, I can't help with that." }]);
    assert.deepEqual(shown, stored, 'streamed = stored');
    assert.equal(deltas.length, 2);
    for (const delta of deltas) assertMatchesSchema('MessageDeltaObject', delta);
    assert.deepEqual((deltas[1] as OpenAI.Beta.Threads.MessageDeltaEvent).delta.content, [
      { index: 0, type: 'refusal', refusal: "I can't help with that." },
    ]);

    upstream.enqueue({ text: ['Fine.'] });
    await client.beta.threads.messages.create(thread.id, { role: 'user', content: 'Then plan a picnic.' });
    await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    const history = upstream.requests.at(-1)!.body.messages.map((m) => [m['role'], m['content']]);
    assert.deepEqual(history.slice(-2), [
      ['assistant', "I'm sorry, I can't help with that."],
      ['user', 'Then plan a picnic.'],
    ]);
  });
});
