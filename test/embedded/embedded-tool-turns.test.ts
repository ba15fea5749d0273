import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type OpenAI from 'openai';
import type { Run } from 'openai/resources/beta/threads/runs/runs';
import type { FakeUpstream } from '../support/fake-upstream.ts';
import { END, scriptedGguf } from '../support/gguf.ts';
import { TOOL_CALL_TEMPLATE, withChatTemplate } from '../support/gguf-chat-template.ts';
import { messageText, startScriptedModels, WEATHER_TOOL } from '../support/gguf-server.ts';
import { type TestServer, tempDir } from '../support/server.ts';
import type { ValidatingFetch } from '../support/validating-fetch.ts';

/**
 * Tool turns on the embedded backend as an Assistants API client expects them: a tool_choice that forces a call gets
 * one, a model's batch of calls comes back as requires_action however long the model goes on calling, and a turn
 * cut by the context window ends as an upstream's cut does.
 */

const TIME_TOOL = {
  type: 'function' as const,
  function: {
    name: 'get_time',
    description: 'The time in a time zone',
    parameters: { type: 'object', properties: { zone: { type: 'string', enum: ['UTC', 'CET'] } }, required: ['zone'] },
  },
};
const PING_TOOL = {
  type: 'function' as const,
  function: { name: 'ping', description: 'Checks the connection', parameters: { type: 'object', properties: {} } },
};

describe('tool turns on the embedded GGUF backend', () => {
  let dir: string;
  let upstream: FakeUpstream;
  let server: TestServer;
  let validating: ValidatingFetch;
  let client: OpenAI;

  before(async () => {
    dir = tempDir('assistd-gguf-tools-');
    // Answers in text, whatever it is offered.
    writeFileSync(path.join(dir, 'text.gguf'), scriptedGguf({ reply: ['Hello', ' there', END] }));
    // With the tool-call template (the Jinja wrapper, parallel calls), a call is written in turns: node-llama-cpp
    // writes `<tool_call>\n{"name":"` into the context once the model has begun it, the model names the function,
    // node-llama-cpp writes `","arguments":`, the model writes the arguments, node-llama-cpp closes the call with
    // `}\n</tool_call>`, and the model's next token ends the batch or begins another call. What the model says
    // after each of those is scripted by the last character written. These models never end the batch.
    const calling = (args: string[]) =>
      withChatTemplate(
        scriptedGguf({
          reply: ['<tool_call>', '\n{"name":"'],
          chains: [
            ['"', 'get_weather'],
            [':', ...args],
            ['>', '<tool_call>'],
          ],
        }),
        TOOL_CALL_TEMPLATE,
      );
    writeFileSync(path.join(dir, 'calls-forever.gguf'), calling(['{"city":', '"Paris"}', '\n']));
    // One call whose argument never ends ("Paris is is is …"): cut by the context window.
    writeFileSync(path.join(dir, 'endless-call.gguf'), calling(['{"city":', '"Paris', ' is', ' is']));
    ({ upstream, server, client, validating } = await startScriptedModels(dir, {
      'scripted-text': 'text.gguf',
      // Filled to the end of their window: a smaller one is filled sooner.
      'calls-forever': { file: 'calls-forever.gguf', contextSize: 2048 },
      'endless-call': { file: 'endless-call.gguf', contextSize: 2048 },
    }));
  });

  after(async () => {
    await server?.close();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function thread(content = 'What time is it?') {
    return client.beta.threads.create({ messages: [{ role: 'user', content }] });
  }

  function calls(run: Run) {
    assert.equal(run.status, 'requires_action', `${run.status} ${JSON.stringify(run.last_error)}`);
    return run.required_action!.submit_tool_outputs.tool_calls.map((call) => ({
      name: call.function.name,
      arguments: JSON.parse(call.function.arguments) as unknown,
    }));
  }

  test('a named tool_choice makes a model that would answer in text call that function', async () => {
    const assistant = await client.beta.assistants.create({
      model: 'scripted-text',
      tools: [WEATHER_TOOL, TIME_TOOL, PING_TOOL],
    });
    const { id: threadId } = await thread();
    const run = await client.beta.threads.runs.createAndPoll(threadId, {
      assistant_id: assistant.id,
      tool_choice: { type: 'function', function: { name: 'get_time' } },
    });
    const made = calls(run);
    assert.equal(made.length, 1);
    assert.equal(made[0]!.name, 'get_time');
    assert.ok(['UTC', 'CET'].includes((made[0]!.arguments as { zone: string }).zone), JSON.stringify(made));

    // The choice forced the first turn only (as upstream is asked): with the output, the model answers.
    const call = run.required_action!.submit_tool_outputs.tool_calls[0]!;
    const done = await client.beta.threads.runs.submitToolOutputsAndPoll(run.id, {
      thread_id: threadId,
      tool_outputs: [{ tool_call_id: call.id, output: '12:00' }],
    });
    assert.equal(done.status, 'completed', JSON.stringify(done.last_error));
    const messages = await client.beta.threads.messages.list(threadId, { order: 'desc', limit: 1 });
    assert.equal(messageText(messages.data[0]!), 'Hello there');
    validating.assertNoViolations();
  });

  test("tool_choice 'required' makes it call one of its functions", async () => {
    const assistant = await client.beta.assistants.create({ model: 'scripted-text', tools: [TIME_TOOL, PING_TOOL] });
    for (const stream of [false, true]) {
      const { id: threadId } = await thread();
      const params = { assistant_id: assistant.id, tool_choice: 'required' as const };
      const run = stream
        ? await client.beta.threads.runs.stream(threadId, params).finalRun()
        : await client.beta.threads.runs.createAndPoll(threadId, params);
      const made = calls(run);
      assert.ok(made.length >= 1);
      for (const call of made) assert.ok(['get_time', 'ping'].includes(call.name), JSON.stringify(made));
    }
    // 'auto' leaves the choice to the model, which answers.
    const { id: threadId } = await thread();
    const free = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistant.id });
    assert.equal(free.status, 'completed');
  });

  test('a model that calls functions without end: its batch of calls comes back as requires_action', async () => {
    const assistant = await client.beta.assistants.create({ model: 'calls-forever', tools: [WEATHER_TOOL] });
    const { id: threadId } = await thread('What is the weather in Paris?');
    const run = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistant.id });
    const made = calls(run);
    // As many as the context window holds (each call rendered again for the next: dozens, not thousands).
    assert.ok(made.length > 10 && made.length < 200, `${made.length} calls`);
    for (const call of made) assert.deepEqual(call, { name: 'get_weather', arguments: { city: 'Paris' } });
    const steps = await client.beta.threads.runs.steps.list(run.id, { thread_id: threadId });
    assert.equal(steps.data.length, 1);
    assert.equal(steps.data[0]!.type, 'tool_calls');
    assert.ok(run.usage === null || run.usage.completion_tokens > 0);
    validating.assertNoViolations();
  });

  test('a turn cut by the context window ends as an upstream turn cut by its length does, not as a failure', async () => {
    const assistant = await client.beta.assistants.create({ model: 'endless-call', tools: [WEATHER_TOOL] });
    const { id: threadId } = await thread('What is the weather in Paris?');
    const run = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistant.id });
    assert.notEqual(run.status, 'failed', JSON.stringify(run.last_error));
    const [message] = (await client.beta.threads.messages.list(threadId, { order: 'desc', limit: 1 })).data;
    assert.equal(message!.role, 'assistant');
    assert.equal(message!.status, 'incomplete');

    // The same cut from the upstream route (finish_reason `length`, no budget of the run's reached): the run and its
    // message end the same way, whatever that is.
    upstream.enqueue({ text: 'It is', finishReason: 'length' });
    const cloud = await client.beta.assistants.create({ model: 'gpt-4o-mini', tools: [WEATHER_TOOL] });
    const other = await thread('What is the weather in Paris?');
    const upstreamRun = await client.beta.threads.runs.createAndPoll(other.id, { assistant_id: cloud.id });
    const [upstreamMessage] = (await client.beta.threads.messages.list(other.id, { order: 'desc', limit: 1 })).data;
    assert.deepEqual(
      { status: run.status, incomplete_details: run.incomplete_details },
      { status: upstreamRun.status, incomplete_details: upstreamRun.incomplete_details },
    );
    assert.deepEqual(
      { status: message!.status, incomplete_details: message!.incomplete_details },
      { status: upstreamMessage!.status, incomplete_details: upstreamMessage!.incomplete_details },
    );
    validating.assertNoViolations();
  });
});
