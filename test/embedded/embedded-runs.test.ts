import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Ajv } from 'ajv';
import OpenAI from 'openai';
import type { Run } from 'openai/resources/beta/threads/runs/runs';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import { END, MARKER, writeScriptedGguf } from '../support/gguf.ts';
import { messageText, startScriptedModels, WEATHER_TOOL } from '../support/gguf-server.ts';
import { type TestServer, tempDir } from '../support/server.ts';
import type { ValidatingFetch } from '../support/validating-fetch.ts';

/**
 * Runs on the embedded backend (GGUF models run in-process by llama.cpp) through the official SDK, with models the
 * tests write themselves (test/support/gguf.ts), routed by a models file next to an OpenAI-compatible route to the
 * fake upstream: one server, four backends.
 */

const TEXT_PIECES = ['Hello', ' from', ' the', ' embedded', ' model'];
const ANSWER_SCHEMA = {
  type: 'object',
  properties: { answer: { type: 'integer' }, unit: { type: 'string', enum: ['cm', 'm'] } },
  required: ['answer', 'unit'],
  additionalProperties: false,
};

describe('the embedded GGUF backend, routed next to an OpenAI-compatible upstream', () => {
  let dir: string;
  let upstream: FakeUpstream;
  let server: TestServer;
  let validating: ValidatingFetch;
  let client: OpenAI;

  before(async () => {
    dir = tempDir('assistd-gguf-');
    writeScriptedGguf(path.join(dir, 'text.gguf'), { reply: [...TEXT_PIECES, END] });
    // A function call in the model's own syntax (node-llama-cpp inserts the `(` itself and ends the parameters
    // with four newlines), then, once the tool's output is in the context, an answer.
    writeScriptedGguf(path.join(dir, 'tools.gguf'), {
      reply: ['||call: ', 'get_weather', '\n'],
      chains: [['(', '{"city":', '"Paris"}', '\n']],
      afterMarker: ['It is', ' sunny', ' in Paris', END],
    });
    writeScriptedGguf(path.join(dir, 'json.gguf'), { reply: ['{"answer":', '42,', '"unit":', '"cm"}', END] });
    // Never ends its turn: tick, tock, tick, … (for budgets and cancellation).
    writeScriptedGguf(path.join(dir, 'loop.gguf'), { reply: ['tick'], chains: [['tick', ' tock', 'tick']] });
    ({ upstream, server, client, validating } = await startScriptedModels(dir, {
      'scripted-text': 'text.gguf',
      'scripted-tools': 'tools.gguf',
      'scripted-json': 'json.gguf',
      'scripted-loop': 'loop.gguf',
    }));
  });

  after(async () => {
    await server?.close();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function thread(content = 'Say hello.') {
    return client.beta.threads.create({ messages: [{ role: 'user', content }] });
  }

  test('streams text through the SDK, stores it, and counts usage with the model tokenizer', async () => {
    const assistant = await client.beta.assistants.create({ model: 'scripted-text', instructions: 'Be brief.' });
    const { id: threadId } = await thread();
    const deltas: string[] = [];
    const stream = client.beta.threads.runs
      .stream(threadId, { assistant_id: assistant.id })
      .on('textDelta', (delta) => deltas.push(delta.value ?? ''));
    const run = await stream.finalRun();
    assert.equal(run.status, 'completed');
    assert.deepEqual(deltas, TEXT_PIECES, 'one delta per generated token');
    const messages = await client.beta.threads.messages.list(threadId, { order: 'desc', limit: 1 });
    assert.equal(messageText(messages.data[0]!), TEXT_PIECES.join(''));
    assert.equal(messages.data[0]!.status, 'completed');
    // The five scripted tokens and the end-of-turn token; the prompt is the ChatML rendering of system + user,
    // about one token per byte with this vocabulary.
    assert.equal(run.usage?.completion_tokens, TEXT_PIECES.length + 1);
    assert.ok(run.usage!.prompt_tokens > 40 && run.usage!.prompt_tokens < 200, `prompt ${run.usage!.prompt_tokens}`);
    validating.assertNoViolations();
  });

  test('a function call → requires_action with a server call id → tool outputs → the model continues', async () => {
    const assistant = await client.beta.assistants.create({ model: 'scripted-tools', tools: [WEATHER_TOOL] });
    const { id: threadId } = await thread('What is the weather in Paris?');
    let run = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistant.id });
    assert.equal(run.status, 'requires_action', JSON.stringify(run.last_error));
    const calls = run.required_action!.submit_tool_outputs.tool_calls;
    assert.equal(calls.length, 1);
    assert.match(calls[0]!.id, /^call_[A-Za-z0-9]{24}$/);
    assert.equal(calls[0]!.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(calls[0]!.function.arguments), { city: 'Paris' });

    run = await client.beta.threads.runs.submitToolOutputsAndPoll(run.id, {
      thread_id: threadId,
      tool_outputs: [{ tool_call_id: calls[0]!.id, output: `${MARKER} sunny, 21 °C` }],
    });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const messages = await client.beta.threads.messages.list(threadId, { order: 'desc', limit: 1 });
    assert.equal(messageText(messages.data[0]!), 'It is sunny in Paris');
    const steps = await client.beta.threads.runs.steps.list(run.id, { thread_id: threadId, order: 'asc' });
    assert.deepEqual(
      steps.data.map((s) => s.type),
      ['tool_calls', 'message_creation'],
    );
    // Both turns are counted: the second prompt holds the first, plus the call and its output.
    assert.ok(run.usage!.prompt_tokens > 2 * 500, `prompt ${run.usage!.prompt_tokens}`);
    validating.assertNoViolations();
  });

  test('streams the same tool flow: tool-call deltas, then the continuation', async () => {
    const assistant = await client.beta.assistants.create({ model: 'scripted-tools', tools: [WEATHER_TOOL] });
    const { id: threadId } = await thread('Weather?');
    const first = client.beta.threads.runs.stream(threadId, { assistant_id: assistant.id });
    const events: string[] = [];
    first.on('event', ({ event }) => events.push(event));
    const paused = await first.finalRun();
    assert.equal(paused.status, 'requires_action');
    assert.ok(events.includes('thread.run.step.delta'), events.join(' '));
    assert.equal(events.at(-1), 'thread.run.requires_action');
    const call = paused.required_action!.submit_tool_outputs.tool_calls[0]!;
    const deltas: string[] = [];
    const second = client.beta.threads.runs
      .submitToolOutputsStream(paused.id, {
        thread_id: threadId,
        tool_outputs: [{ tool_call_id: call.id, output: `${MARKER} sunny` }],
      })
      .on('textDelta', (delta) => deltas.push(delta.value ?? ''));
    const done = await second.finalRun();
    assert.equal(done.status, 'completed');
    assert.equal(deltas.join(''), 'It is sunny in Paris');
  });

  test('response_format json_schema: the message is valid JSON for the schema (grammar-enforced)', async () => {
    const assistant = await client.beta.assistants.create({
      model: 'scripted-json',
      response_format: { type: 'json_schema', json_schema: { name: 'answer', schema: ANSWER_SCHEMA, strict: true } },
    });
    const { id: threadId } = await thread('How long?');
    const run = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const messages = await client.beta.threads.messages.list(threadId, { order: 'desc', limit: 1 });
    const value: unknown = JSON.parse(messageText(messages.data[0]!));
    const validate = new Ajv().compile(ANSWER_SCHEMA);
    assert.ok(validate(value), JSON.stringify(validate.errors));
    assert.deepEqual(value, { answer: 42, unit: 'cm' });
  });

  test('the grammar wins over what the model would say: json_object on a model that answers prose', async () => {
    const { id: threadId } = await thread();
    const run = await client.beta.threads.runs.createAndPoll(threadId, {
      assistant_id: (await client.beta.assistants.create({ model: 'scripted-text' })).id,
      response_format: { type: 'json_object' },
      max_completion_tokens: 256,
    });
    const messages = await client.beta.threads.messages.list(threadId, { order: 'desc', limit: 1 });
    const text = messageText(messages.data[0]!);
    // The scripted prose ("Hello …") is not JSON; the grammar only lets valid JSON through (possibly cut short by
    // the budget, in which case the run says so).
    assert.ok(!text.startsWith('Hello'), text);
    if (run.status === 'completed') assert.doesNotThrow(() => JSON.parse(text), text);
    else assert.equal(run.incomplete_details?.reason, 'max_completion_tokens');
  });

  test('max_completion_tokens ends a run that would go on as incomplete', async () => {
    const assistant = await client.beta.assistants.create({ model: 'scripted-loop' });
    const { id: threadId } = await thread();
    const run = await client.beta.threads.runs.createAndPoll(threadId, {
      assistant_id: assistant.id,
      max_completion_tokens: 16,
    });
    assert.equal(run.status, 'incomplete');
    assert.deepEqual(run.incomplete_details, { reason: 'max_completion_tokens' });
    assert.equal(run.usage?.completion_tokens, 16);
    const messages = await client.beta.threads.messages.list(threadId, { order: 'desc', limit: 1 });
    assert.equal(messageText(messages.data[0]!), 'tick tock'.repeat(8));
    assert.equal(messages.data[0]!.status, 'incomplete');
    assert.deepEqual(messages.data[0]!.incomplete_details, { reason: 'max_tokens' });
  });

  test('cancel stops the generation: cancelled, partial message kept, and the model is free for the next run', async () => {
    const loop = await client.beta.assistants.create({ model: 'scripted-loop' });
    const { id: threadId } = await thread();
    const stream = client.beta.threads.runs.stream(threadId, { assistant_id: loop.id });
    let runId: string | undefined;
    let cancelling: Promise<Run> | undefined;
    stream.on('textDelta', () => {
      if (!cancelling && runId) cancelling = client.beta.threads.runs.cancel(runId, { thread_id: threadId });
    });
    stream.on('event', ({ event, data }) => {
      if (event === 'thread.run.created') runId = (data as Run).id;
    });
    const final = await stream.finalRun();
    assert.ok(cancelling, 'a text delta arrived');
    await cancelling;
    assert.equal(final.status, 'cancelled');
    const messages = await client.beta.threads.messages.list(threadId, { order: 'desc', limit: 1 });
    assert.equal(messages.data[0]!.status, 'incomplete');
    assert.deepEqual(messages.data[0]!.incomplete_details, { reason: 'run_cancelled' });
    assert.match(messageText(messages.data[0]!), /^tick/);

    // The generation really stopped: the same model answers the next run (it generates one request at a time).
    const next = await client.beta.threads.runs.createAndPoll(threadId, {
      assistant_id: loop.id,
      max_completion_tokens: 256,
    });
    assert.equal(next.status, 'incomplete');
  });

  test('truncation uses the model context size: a thread far larger than 4096 tokens still runs', async () => {
    const assistant = await client.beta.assistants.create({ model: 'scripted-text' });
    const filler = 'lorem ipsum dolor sit amet '.repeat(40); // ~1,080 bytes ≈ tokens for this vocabulary
    const { id: threadId } = await client.beta.threads.create({
      messages: Array.from({ length: 10 }, (_, i) => ({ role: 'user' as const, content: `${i}: ${filler}` })),
    });
    const run = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    assert.ok(run.usage!.prompt_tokens <= 4096, `prompt ${run.usage!.prompt_tokens}`);
    assert.ok(run.usage!.prompt_tokens > 2000, `prompt ${run.usage!.prompt_tokens}: truncated too much`);
  });

  test("the functions' documentation counts in the prompt: truncation and max_prompt_tokens leave room for it", async () => {
    // The chat template writes a preamble and each function's description into the prompt: ~1,900 tokens here.
    const tool = {
      type: 'function' as const,
      function: { name: 'lookup', description: 'detail '.repeat(150), parameters: { type: 'object', properties: {} } },
    };
    const assistant = await client.beta.assistants.create({ model: 'scripted-text', tools: [tool] });
    const filler = 'lorem ipsum dolor sit amet '.repeat(40);
    const { id: threadId } = await client.beta.threads.create({
      messages: Array.from({ length: 10 }, (_, i) => ({ role: 'user' as const, content: `${i}: ${filler}` })),
    });
    const run = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    assert.ok(run.usage!.prompt_tokens <= 4096 - 512, `prompt ${run.usage!.prompt_tokens}: the answer's room kept`);

    const small = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Hi' }] });
    const limited = await client.beta.threads.runs.createAndPoll(small.id, {
      assistant_id: assistant.id,
      max_prompt_tokens: 1000,
    });
    assert.equal(limited.status, 'incomplete');
    assert.deepEqual(limited.incomplete_details, { reason: 'max_prompt_tokens' });
  });

  test('routes by model name: the upstream route answers from the fake upstream with its API key', async () => {
    upstream.enqueue({ text: ['Hi ', 'from upstream'] });
    const assistant = await client.beta.assistants.create({ model: 'gpt-4o-mini' });
    const { id: threadId } = await thread();
    const before = upstream.requests.length;
    const run = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed');
    assert.equal(upstream.requests.length, before + 1);
    const request = upstream.requests.at(-1)!;
    assert.equal(request.body.model, 'gpt-4o-mini');
    assert.equal(request.headers.authorization, 'Bearer sk-upstream');
    const messages = await client.beta.threads.messages.list(threadId, { order: 'desc', limit: 1 });
    assert.equal(messageText(messages.data[0]!), 'Hi from upstream');
  });

  test('a model without a route is upstream’s 400 model_not_found where it is named, before anything is written', async () => {
    const refused = async (request: Promise<unknown>) => {
      const error = await request.then(
        () => assert.fail('expected a 400'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof OpenAI.BadRequestError, String(error));
      assert.deepEqual(error.error, {
        message: "The requested model 'no-such-model' does not exist.",
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_found',
      });
    };
    const assistantsBefore = (await client.beta.assistants.list({ limit: 100 })).data.length;
    await refused(client.beta.assistants.create({ model: 'no-such-model' }));
    assert.equal((await client.beta.assistants.list({ limit: 100 })).data.length, assistantsBefore);
    const assistant = await client.beta.assistants.create({ model: 'scripted-text' });
    await refused(client.beta.assistants.update(assistant.id, { model: 'no-such-model', name: 'renamed' }));
    assert.equal(
      (await client.beta.assistants.retrieve(assistant.id)).name,
      null,
      'the refused update changed nothing',
    );
    const { id: threadId } = await thread();
    const before = upstream.requests.length;
    await refused(client.beta.threads.runs.create(threadId, { assistant_id: assistant.id, model: 'no-such-model' }));
    await refused(
      client.beta.threads.createAndRun({
        assistant_id: assistant.id,
        model: 'no-such-model',
        thread: { messages: [{ role: 'user', content: 'hi' }] },
      }),
    );
    assert.deepEqual((await client.beta.threads.runs.list(threadId)).data, []);
    assert.equal(upstream.requests.length, before, 'nothing was sent upstream');
  });

  test('GET /v1/models lists the routes in the official shape; /v1/models/{id} retrieves one', async () => {
    const models = await client.models.list();
    assert.deepEqual(
      models.data.map((m) => m.id),
      ['scripted-text', 'scripted-tools', 'scripted-json', 'scripted-loop', 'gpt-4o-mini'],
    );
    for (const model of models.data) {
      assert.deepEqual(Object.keys(model).sort(), ['created', 'id', 'object', 'owned_by']);
      assert.equal(model.object, 'model');
      assert.ok(Number.isInteger(model.created) && model.created > 1_600_000_000);
      assert.equal(model.owned_by, 'assistd');
    }
    const one = await client.models.retrieve('scripted-json');
    assert.equal(one.id, 'scripted-json');
    const missing = await client.models.retrieve('no-such-model').catch((error: unknown) => error);
    assert.ok(missing instanceof OpenAI.NotFoundError);
    assert.deepEqual(missing.error, {
      message: "The model 'no-such-model' does not exist or you do not have access to it.",
      type: 'invalid_request_error',
      param: null,
      code: 'model_not_found',
    });
  });
});
