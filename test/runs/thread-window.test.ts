import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { Message } from '../../src/domain/objects.ts';
import type { TruncationStrategy } from '../../src/domain/runs.ts';
import { buildContext, type ContextInput, type ContextResult, toChatMessage } from '../../src/runs/context.ts';
import { ThreadWindow } from '../../src/runs/thread-window.ts';
import { DEFAULT_SCOPE } from '../../src/storage/store.ts';
import { aMessage, aThread } from '../support/builders.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * A run reads its thread back from the end only as far as the prompt needs (ThreadWindow), instead of whole: the
 * prompt built that way is the very prompt built from the whole thread, whatever the thread's length, the messages'
 * sizes, the budget and the truncation strategy.
 */

const thread = aThread();

/** A thread in memory, read as the store reads it; counts the messages read. */
function memoryThread(messages: Message[]) {
  let read = 0;
  const store = {
    threadMessagesFrom: async (
      _scope: unknown,
      _thread: string,
      end: 'oldest' | 'newest',
      skip: number,
      limit: number,
    ) => {
      const ordered = end === 'oldest' ? messages : [...messages].reverse();
      const page = ordered.slice(skip, skip + limit);
      read += page.length;
      return page;
    },
  };
  return { store, read: () => read };
}

/** `count` messages of varied lengths (a seeded generator), the user's and the assistant's in turn, ending with the user's. */
function conversation(count: number, seed: number): Message[] {
  let state = seed;
  const next = () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
  return Array.from({ length: count }, (_, i) =>
    aMessage(thread.id, `message ${i}: ${'word '.repeat(1 + Math.floor(next() * 60))}`, {
      role: (count - 1 - i) % 2 === 0 ? 'user' : 'assistant',
    }),
  );
}

function input(overrides: Partial<ContextInput>): ContextInput {
  return {
    instructions: 'Be brief.',
    threadMessages: [],
    toolRounds: [],
    truncation: { type: 'auto', last_messages: null },
    contextWindow: 128_000,
    maxPromptTokens: null,
    reservedCompletionTokens: 1_000,
    ...overrides,
  };
}

/** What the executor does: build from the window, reading older messages while the build asks for them. */
async function buildFromWindow(window: ThreadWindow, overrides: Partial<ContextInput>): Promise<ContextResult> {
  for (;;) {
    const result = await buildContext(
      input({ ...overrides, threadMessages: window.messages, olderUnread: window.olderUnread }),
    );
    if (result.ok || result.reason !== 'unread') return result;
    await window.readOlder();
  }
}

function promptOf(result: ContextResult): unknown {
  return result.ok ? result.messages : result;
}

describe('ThreadWindow', () => {
  it('a thread shorter than the first read is read whole at once, and is the whole thread', async () => {
    const messages = conversation(5, 1);
    const memory = memoryThread(messages);
    const window = await ThreadWindow.open(memory.store, DEFAULT_SCOPE, thread.id, 8);
    assert.equal(window.olderUnread, false);
    assert.deepEqual(window.messages, messages);
    assert.equal(memory.read(), 5);
  });

  it('a long thread: its first message and its most recent; older ones read as asked, until the whole thread', async () => {
    const messages = conversation(100, 2);
    const memory = memoryThread(messages);
    const window = await ThreadWindow.open(memory.store, DEFAULT_SCOPE, thread.id, 8);
    assert.equal(window.olderUnread, true);
    assert.deepEqual(window.messages, [messages[0], ...messages.slice(-8)]);
    await window.readOlder();
    assert.deepEqual(window.messages, [messages[0], ...messages.slice(-32)]);
    await window.readOlder();
    assert.equal(window.olderUnread, false);
    assert.deepEqual(window.messages, messages);
    // A message the run stores joins the end.
    const answer = aMessage(thread.id, 'the answer', { role: 'assistant' });
    window.add([answer]);
    assert.deepEqual(window.messages, [...messages, answer]);
  });

  it('a thread of exactly the first read, or one more, is whole after at most one more read', async () => {
    for (const count of [8, 9]) {
      const messages = conversation(count, 3);
      const window = await ThreadWindow.open(memoryThread(messages).store, DEFAULT_SCOPE, thread.id, 8);
      await window.readOlder();
      assert.equal(window.olderUnread, false, `${count}`);
      assert.deepEqual(window.messages, messages, `${count}`);
    }
  });

  it('messages deleted while a run reads: the first message is still read, and none twice', async () => {
    const messages = conversation(20, 10);
    const window = await ThreadWindow.open(memoryThread(messages).store, DEFAULT_SCOPE, thread.id, 16);
    assert.deepEqual(window.messages, [messages[0], ...messages.slice(-16)]);
    // Four of the recent ones deleted: reading by position from the end now starts past the start of the thread (the
    // three between the first and the recent ones are missed by this run, not the first).
    messages.splice(10, 4);
    await window.readOlder();
    assert.equal(window.olderUnread, false);
    const read = window.messages.map((m) => m.id);
    assert.equal(read[0], messages[0]!.id, 'the first message is kept');
    assert.equal(new Set(read).size, read.length, 'no message twice');
  });

  it("the prompt built from the window is the whole thread's, and a long thread is not read whole", async () => {
    const strategies: TruncationStrategy[] = [
      { type: 'auto', last_messages: null },
      { type: 'last_messages', last_messages: 1 },
      { type: 'last_messages', last_messages: 7 },
      { type: 'last_messages', last_messages: 40 },
      { type: 'last_messages', last_messages: 1_000 },
    ];
    const budgets: Array<Partial<ContextInput>> = [
      { contextWindow: 128_000 },
      { contextWindow: 3_000 },
      { contextWindow: 1_600 },
      { maxPromptTokens: 900 },
      { maxPromptTokens: 40 },
    ];
    let cases = 0;
    for (const [seed, count] of [
      [4, 1],
      [5, 6],
      [6, 30],
      [7, 300],
    ] as const) {
      const messages = conversation(count, seed);
      for (const truncation of strategies)
        for (const budget of budgets) {
          const whole = await buildContext(input({ ...budget, truncation, threadMessages: messages }));
          const memory = memoryThread(messages);
          const window = await ThreadWindow.open(memory.store, DEFAULT_SCOPE, thread.id, 4);
          const built = await buildFromWindow(window, { ...budget, truncation });
          const what = `${count} messages, ${JSON.stringify(truncation)}, ${JSON.stringify(budget)}`;
          assert.deepEqual(promptOf(built), promptOf(whole), what);
          if (built.ok && whole.ok) assert.equal(built.promptTokens, whole.promptTokens, what);
          cases += 1;
        }
    }
    assert.equal(cases, 100);

    // 3,000 messages and a window of 3,000 tokens: a few dozen fit, and a few hundred are read, not the thread.
    const long = conversation(3_000, 8);
    const memory = memoryThread(long);
    const window = await ThreadWindow.open(memory.store, DEFAULT_SCOPE, thread.id, 4);
    const built = await buildFromWindow(window, { contextWindow: 3_000 });
    assert.deepEqual(
      promptOf(built),
      promptOf(await buildContext(input({ contextWindow: 3_000, threadMessages: long }))),
    );
    assert.ok(memory.read() < 300, `${memory.read()} messages read`);
  });
});

describe('runs on a long thread of the real server', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let client: OpenAI;

  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer({
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_UPSTREAM_MAX_RETRIES: '0',
      ASSISTD_CONTEXT_WINDOW: '16000',
    });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0 });
  });
  after(async () => {
    await server?.close();
    await upstream?.close();
  });

  it('a run on a 20,000-message thread reads its end and its first message, not the thread, and sends them in order', async () => {
    upstream.setDefault({ text: 'Noted.' });
    const assistant = await client.beta.assistants.create({ model: 'gpt-test', instructions: 'Be brief.' });
    const messages = conversation(20_000, 9); // of `thread`
    const { store } = server.server;
    await store.createThread(DEFAULT_SCOPE, thread, messages);
    // What the runs read of the thread.
    let read = 0;
    const readFrom = store.threadMessagesFrom.bind(store);
    store.threadMessagesFrom = async (...args) => {
      const page = await readFrom(...args);
      read += page.length;
      return page;
    };
    try {
      const texts = messages.map((m) => toChatMessage(m).content);
      for (const round of [1, 2]) {
        const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
        assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
        const sent = upstream.requests.at(-1)!.body.messages;
        const kept = sent.length - 2; // after the instructions and the first message
        assert.ok(kept > 50 && kept < 1_000, `${kept} recent messages sent`);
        assert.deepEqual(sent[0], { role: 'system', content: 'Be brief.' });
        assert.deepEqual(sent[1], toChatMessage(messages[0]!));
        assert.deepEqual(
          sent.slice(2).map((m) => m['content']),
          texts.slice(-kept),
          `run ${round}: the most recent messages, in order`,
        );
        await client.beta.threads.messages.create(thread.id, { role: 'user', content: 'Again.' });
        texts.push('Noted.', 'Again.');
      }
      assert.ok(read > 0 && read < 4_000, `${read} messages read in two runs`);
    } finally {
      store.threadMessagesFrom = readFrom;
    }
  });
});
