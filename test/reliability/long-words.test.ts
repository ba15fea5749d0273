import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { longestStall } from '../support/event-loop.ts';
import { FakeUpstream, type RecordedRequest, type Reply } from '../support/fake-upstream.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * Texts whose token count used to take the event loop for seconds (o200k BPE is quadratic in a word's length): one
 * message of 256,000 letters without a space blocked every request ~29 s when its run started. The server runs in
 * this process, so the loop stalls measured here are the server's.
 *
 * The bound: counting lets the loop go every 4 ms (runs/tokens.ts) and one piece of text costs at most ~5 ms; the
 * rest of a request's work on these bodies (parsing and storing a megabyte of JSON, the garbage collection after,
 * the client's own parsing in this same process) measured 25–75 ms on the 2-core machine (a stall counts the main
 * thread's time on a core in it, at most: watchStalls in test/support/event-loop.ts). 200 ms, as in the fuzz's
 * event-loop guard, is still 150 times below the stall it guards against (29–52 s for one 256,000-letter message).
 */
const MAX_LOOP_DELAY_MS = 200;

/** Letters without a space, in an order that merges badly: the costliest text per character for the BPE but CJK. */
function randomLetters(length: number, seed = 7): string {
  let state = seed;
  let text = '';
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    text += String.fromCharCode(97 + (state % 26));
  }
  return text;
}

const lookup = {
  type: 'function' as const,
  function: { name: 'lookup', parameters: { type: 'object', properties: {} } },
};

/** Asks for `lookup` once, then answers. */
function model(request: RecordedRequest): Reply {
  const last = request.body.messages.at(-1)!;
  if (last.role === 'user' && String(last.content).startsWith('use the tool'))
    return { toolCalls: [{ name: 'lookup', arguments: '{}' }] };
  return { text: ['Done', '.'] };
}

describe('one long word does not stall the server', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let client: OpenAI;

  before(async () => {
    upstream = await FakeUpstream.start();
    upstream.setDefault(model);
    // A window that takes a megabyte of letters, so the runs below complete rather than stop at the window.
    server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_CONTEXT_WINDOW: '2000000' });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0 });
  });
  after(async () => {
    await server.close();
    await upstream.close();
  });

  for (const [name, text] of [
    ['256,000 times the same letter', 'a'.repeat(256_000)],
    ['256,000 random letters', randomLetters(256_000)],
  ] as const) {
    test(`a message of ${name} without a space`, async (t) => {
      const assistant = await client.beta.assistants.create({ model: 'gpt-test', instructions: text });
      const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: text }] });
      const { result: run, stallMs } = await longestStall(() =>
        client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id }, { pollIntervalMs: 20 }),
      );
      t.diagnostic(`${name}: longest event-loop stall ${stallMs.toFixed(1)} ms while the run started and completed`);
      assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
      const sent = upstream.requests.at(-1)!.body.messages;
      assert.deepEqual(
        sent.map((m) => m.content),
        [text, text],
        'the instructions and the message reached the model whole',
      );
      assert.ok(stallMs < MAX_LOOP_DELAY_MS, `the event loop stalled ${stallMs.toFixed(1)} ms`);
    });
  }

  test('a tool output of a megabyte of random letters', async (t) => {
    const output = randomLetters(1_000_000, 11);
    const assistant = await client.beta.assistants.create({ model: 'gpt-test', tools: [lookup] });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'use the tool' }] });
    const paused = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(paused.status, 'requires_action');
    const callId = paused.required_action!.submit_tool_outputs.tool_calls[0]!.id;
    const { result: run, stallMs } = await longestStall(() =>
      client.beta.threads.runs.submitToolOutputsAndPoll(
        paused.id,
        { thread_id: thread.id, tool_outputs: [{ tool_call_id: callId, output }] },
        { pollIntervalMs: 20 },
      ),
    );
    t.diagnostic(`1 MB tool output: longest event-loop stall ${stallMs.toFixed(1)} ms until the run completed`);
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    assert.equal(upstream.requests.at(-1)!.body.messages.at(-1)!.content, output);
    assert.ok(stallMs < MAX_LOOP_DELAY_MS, `the event loop stalled ${stallMs.toFixed(1)} ms`);
  });
});
