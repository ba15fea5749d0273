import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import OpenAI from 'openai';
import type { Message } from '../../src/domain/objects.ts';
import type { TruncationStrategy } from '../../src/domain/runs.ts';
import { buildContext, type ContextInput, type ContextResult, toChatMessage } from '../../src/runs/context.ts';
import { LruCache, O200K, TokenCounter } from '../../src/runs/tokens.ts';
import { DEFAULT_SCOPE } from '../../src/storage/store.ts';
import { aMessage, aThread } from '../support/builders.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

const AUTO: TruncationStrategy = { type: 'auto', last_messages: null };
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };
const o200k = (text: string) => countTokens(text, PLAIN_TEXT);

/** `count` messages, the user's and the assistant's in turn, ending with the user's (the model answers it). */
function conversation(threadId: string, count: number): Message[] {
  return Array.from({ length: count }, (_, i) =>
    aMessage(threadId, `message ${i}: some words to make every message a little longer than a few tokens`, {
      role: (count - 1 - i) % 2 === 0 ? 'user' : 'assistant',
    }),
  );
}

/** What a store returns on every read: new objects (parsed from stored JSON) with the same ids and content. */
function reread(messages: readonly Message[]): Message[] {
  return messages.map((m) => JSON.parse(JSON.stringify(m)) as Message);
}

function input(threadMessages: Message[], tokens: TokenCounter, overrides: Partial<ContextInput> = {}): ContextInput {
  return {
    instructions: 'Be brief.',
    threadMessages,
    toolRounds: [],
    truncation: AUTO,
    contextWindow: 10_000_000,
    maxPromptTokens: null,
    reservedCompletionTokens: 4_096,
    tokens,
    ...overrides,
  };
}

function ok(result: ContextResult): Extract<ContextResult, { ok: true }> {
  assert.ok(result.ok, `expected ok, got ${JSON.stringify(result)}`);
  return result;
}

/** How many texts `build` made `counter` tokenise. */
async function tokenizedBy<T>(
  counter: TokenCounter,
  build: () => Promise<T>,
): Promise<{ result: T; tokenized: number }> {
  const before = counter.tokenized;
  const result = await build();
  return { result, tokenized: counter.tokenized - before };
}

// Roles are tokenised once per counter; a thread of user and assistant messages under instructions has three.
const ROLES = 3;

describe('token counts cached by message id', () => {
  const thread = aThread();
  const messages = conversation(thread.id, 10_000);

  it('tokenises each finished message once, then only what is new, across fresh message objects', async (t) => {
    const counter = new TokenCounter(o200k);
    const first = await tokenizedBy(counter, async () => ok(await buildContext(input(reread(messages), counter))));
    assert.equal(first.result.droppedMessages, 0);
    assert.equal(first.tokenized, messages.length + 1 + ROLES, 'every message, the instructions and the roles');
    assert.equal(first.result.promptTokens, await new TokenCounter(o200k).prompt(first.result.messages));

    const added = [...messages, aMessage(thread.id, 'and one more question')];
    const second = await tokenizedBy(counter, async () => ok(await buildContext(input(reread(added), counter))));
    assert.equal(second.tokenized, 1, 'only the new message: not the thread, not the instructions');
    assert.equal(second.result.messages.length, 1 + added.length);
    assert.equal(second.result.promptTokens, await new TokenCounter(o200k).prompt(second.result.messages));
    // The same result as a counter that has seen nothing.
    assert.deepEqual(second.result, ok(await buildContext(input(reread(added), new TokenCounter(o200k)))));
    t.diagnostic(`10,000 messages: first build ${first.tokenized} texts tokenised, second ${second.tokenized}`);
  });

  it('truncates exactly as an uncached counter does', async () => {
    const counter = new TokenCounter(o200k);
    ok(await buildContext(input(reread(messages), counter)));
    for (const overrides of [
      { contextWindow: 128_000 },
      { maxPromptTokens: 5_000 },
      { truncation: { type: 'last_messages', last_messages: 50 } as const, maxPromptTokens: 700 },
      { maxPromptTokens: 10 },
    ]) {
      const cold = await buildContext(input(reread(messages), new TokenCounter(o200k), overrides));
      const warm = await tokenizedBy(
        counter,
        async () => await buildContext(input(reread(messages), counter, overrides)),
      );
      assert.deepEqual(warm.result, cold);
      assert.equal(warm.tokenized, 0);
    }
  });

  it('keeps one cache per counter: another tokenizer counts for itself', async () => {
    const o200kCounter = new TokenCounter(o200k);
    const byChars = new TokenCounter((text) => Math.ceil(text.length / 4));
    const small = reread(messages.slice(0, 100));
    const a = ok(await buildContext(input(small, o200kCounter)));
    const b = await tokenizedBy(byChars, async () => ok(await buildContext(input(reread(small), byChars))));
    assert.equal(b.tokenized, small.length + 1 + ROLES);
    assert.equal(
      b.result.promptTokens,
      await new TokenCounter((text) => Math.ceil(text.length / 4)).prompt(b.result.messages),
    );
    assert.notEqual(a.promptTokens, b.result.promptTokens);
  });

  it('counts a message still in progress on every build, and shares the cached conversion', async () => {
    const counter = new TokenCounter(o200k);
    const streaming = aMessage(thread.id, 'The answer is', {
      role: 'assistant',
      status: 'in_progress',
      completed_at: null,
    });
    const thread10 = [...messages.slice(0, 10), streaming];
    ok(await buildContext(input(reread(thread10), counter)));
    assert.equal(
      (await tokenizedBy(counter, async () => await buildContext(input(reread(thread10), counter)))).tokenized,
      1,
    );

    const finished = { ...streaming, status: 'completed' as const, completed_at: 1_700_000_001 };
    // The answer is the thread's last message, followed by the note that the user wrote nothing since (at -1).
    const last = ok(await buildContext(input([...reread(messages.slice(0, 10)), finished], counter))).messages.at(-2);
    assert.equal(toChatMessage(reread([finished])[0]!, counter), last);
    assert.notEqual(toChatMessage(reread([streaming])[0]!, counter), last);
  });

  it('bounds the cache: the least recently used messages are forgotten, then counted again', async () => {
    const counter = new TokenCounter(o200k, { finishedMessages: 100 });
    const a = conversation(thread.id, 60);
    const b = conversation(thread.id, 60);
    ok(await buildContext(input(reread(a), counter)));
    assert.equal((await tokenizedBy(counter, async () => await buildContext(input(reread(a), counter)))).tokenized, 0);
    ok(await buildContext(input(reread(b), counter))); // 60 more: the 20 of a's touched first are forgotten
    assert.equal((await tokenizedBy(counter, async () => await buildContext(input(reread(b), counter)))).tokenized, 0);
    // a's other 40 are now the least recent: counting its 20 forgotten ones again pushes them out in turn.
    assert.equal((await tokenizedBy(counter, async () => await buildContext(input(reread(a), counter)))).tokenized, 60);
  });

  it("counts the tools' definitions once per counter, by their JSON", async () => {
    const counter = new TokenCounter(o200k);
    const tools = [{ type: 'function' as const, function: { name: 'lookup', description: 'Looks a word up.' } }];
    const first = await tokenizedBy(counter, () => counter.tools(tools));
    const again = await tokenizedBy(counter, () => counter.tools(structuredClone(tools)));
    assert.equal(first.tokenized, 1);
    assert.equal(again.tokenized, 0);
    assert.equal(again.result, first.result);
    assert.ok(first.result > 5, `${first.result} tokens`);
  });

  it('LruCache evicts the least recently used entry', async () => {
    const cache = new LruCache<string, number>(2);
    cache.set('a', 1);
    cache.set('b', 2);
    assert.equal(cache.get('a'), 1); // a is now the most recent
    cache.set('c', 3);
    assert.equal(cache.size, 2);
    assert.equal(cache.get('b'), undefined);
    assert.equal(cache.get('a'), 1);
    assert.equal(cache.get('c'), 3);
  });
});

describe('token counts across runs of the real server', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let client: OpenAI;

  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer({
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_UPSTREAM_MAX_RETRIES: '0',
      // Large enough for truncation to keep the whole thread, so that every message is counted.
      ASSISTD_CONTEXT_WINDOW: '10000000',
    });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0 });
  });
  after(async () => {
    await server?.close();
    await upstream?.close();
  });

  it('the second run on a 10,000-message thread tokenises only the new user message and the first answer', async (t) => {
    upstream.setDefault({ text: 'The answer, in a few words.' }); // usage included: the executor counts no completion
    const assistant = await client.beta.assistants.create({ model: 'gpt-test', instructions: 'Be brief.' });
    const thread = aThread();
    const messages = conversation(thread.id, 10_000);
    await server.server.store.createThread(DEFAULT_SCOPE, thread, messages);
    // The server counts with the shared o200k_base counter (an OpenAI-compatible upstream has no tokenizer of its
    // own). Its role counts are remembered once and for all: have them counted now, so that only messages remain.
    for (const role of ['system', 'user', 'assistant'] as const) await O200K.message({ role, content: '' });

    let before = O200K.tokenized;
    const first = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    const firstRun = O200K.tokenized - before;
    assert.equal(first.status, 'completed', JSON.stringify(first.last_error));
    assert.equal(upstream.requests.length, 1);
    assert.equal(upstream.requests[0]!.body.messages.length, 1 + messages.length);
    assert.equal(firstRun, messages.length + 1, 'every thread message and the instructions');

    await client.beta.threads.messages.create(thread.id, { role: 'user', content: 'And one more question.' });
    before = O200K.tokenized;
    const second = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    const secondRun = O200K.tokenized - before;
    assert.equal(second.status, 'completed', JSON.stringify(second.last_error));
    const sent = upstream.requests[1]!.body.messages;
    assert.equal(sent.length, 1 + messages.length + 2);
    assert.deepEqual(sent.slice(-2), [
      { role: 'assistant', content: 'The answer, in a few words.' },
      { role: 'user', content: 'And one more question.' },
    ]);
    assert.equal(secondRun, 2, 'the first run’s answer and the new user message, nothing else');
    t.diagnostic(`tokenizer calls: run 1 ${firstRun}, run 2 ${secondRun}`);
  });
});
