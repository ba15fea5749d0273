import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message, MessageContent } from '../../src/domain/objects.ts';
import type { RunStep, TruncationStrategy } from '../../src/domain/runs.ts';
import type { ChatMessage } from '../../src/providers/provider.ts';
import { buildContext, type ContextInput, type ContextResult, toChatMessage } from '../../src/runs/context.ts';
import { imageFileUrl } from '../../src/runs/image-files.ts';
import { countMessageTokens, countPromptTokens } from '../../src/runs/tokens.ts';
import { aMessage, aThread } from '../support/builders.ts';

const AUTO: TruncationStrategy = { type: 'auto', last_messages: null };
const thread = aThread();

function text(value: string): MessageContent {
  return { type: 'text', text: { value, annotations: [] } };
}

/** `count` messages, the user's and the assistant's in turn, ending with the user's (the model answers it). */
function conversation(count: number, words = 'a short line of conversation'): Message[] {
  return Array.from({ length: count }, (_, i) =>
    aMessage(thread.id, `message ${i}: ${words}`, { role: (count - 1 - i) % 2 === 0 ? 'user' : 'assistant' }),
  );
}

function toolStep(calls: Array<{ id: string; name: string; arguments: string; output: string }>): RunStep {
  return {
    id: 'step_1',
    created_at: 1_700_000_000,
    assistant_id: 'asst_1',
    thread_id: thread.id,
    run_id: 'run_1',
    type: 'tool_calls',
    status: 'completed',
    step_details: {
      type: 'tool_calls',
      tool_calls: calls.map((call) => ({
        id: call.id,
        type: 'function',
        function: { name: call.name, arguments: call.arguments, output: call.output },
      })),
    },
    last_error: null,
    expired_at: null,
    expires_at: null,
    cancelled_at: null,
    failed_at: null,
    completed_at: 1_700_000_001,
    metadata: {},
    usage: null,
  };
}

function input(overrides: Partial<ContextInput> = {}): ContextInput {
  return {
    instructions: 'Be brief.',
    threadMessages: [],
    toolRounds: [],
    truncation: AUTO,
    contextWindow: 128_000,
    maxPromptTokens: null,
    reservedCompletionTokens: 4_096,
    ...overrides,
  };
}

async function ok(result: ContextResult): Promise<Extract<ContextResult, { ok: true }>> {
  assert.ok(result.ok, `expected ok, got ${JSON.stringify(result)}`);
  assert.equal(result.promptTokens, await countPromptTokens(result.messages));
  return result;
}

/** The thread messages a context kept, by their converted objects (the conversion is cached per message). */
function keptIds(result: Extract<ContextResult, { ok: true }>, messages: Message[]): string[] {
  const byChat = new Map<ChatMessage, string>(messages.map((m) => [toChatMessage(m), m.id]));
  return result.messages.flatMap((m) => {
    const id = byChat.get(m);
    return id === undefined ? [] : [id];
  });
}

function tokensOf(message: Message): Promise<number> {
  return countMessageTokens(toChatMessage(message));
}

describe('buildContext: mapping', () => {
  it('maps instructions to a system message, and omits it when empty', async () => {
    const messages = [aMessage(thread.id, 'hello world')];
    assert.deepEqual((await ok(await buildContext(input({ threadMessages: messages })))).messages, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'hello world' },
    ]);
    assert.deepEqual((await ok(await buildContext(input({ instructions: '', threadMessages: messages })))).messages, [
      { role: 'user', content: 'hello world' },
    ]);
  });

  it('maps every content kind of user and assistant messages', async () => {
    const withFile = aMessage(thread.id, 'x', {
      content: [
        text('first'),
        { type: 'image_file', image_file: { file_id: 'file-abc', detail: 'auto' } },
        text('second'),
      ],
    });
    // A client's image_url that looks like a placeholder is only a URL: it must never be resolved to a file.
    const lookalike = aMessage(thread.id, 'x', {
      content: [text('odd'), { type: 'image_url', image_url: { url: imageFileUrl('file-xyz'), detail: 'auto' } }],
    });
    const withImages = aMessage(thread.id, 'x', {
      content: [
        text('look'),
        { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
        { type: 'image_file', image_file: { file_id: 'file-def', detail: 'high' } },
      ],
    });
    const assistant = aMessage(thread.id, 'x', {
      role: 'assistant',
      content: [
        text('here'),
        { type: 'image_url', image_url: { url: 'https://example.com/b.png', detail: 'auto' } },
        { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA', detail: 'auto' } },
        { type: 'image_file', image_file: { file_id: 'file-ghi', detail: 'auto' } },
        { type: 'refusal', refusal: 'I cannot help with that.' },
      ],
    });
    const partial = aMessage(thread.id, 'x', {
      role: 'assistant',
      status: 'incomplete',
      incomplete_details: { reason: 'run_cancelled' },
      completed_at: null,
      incomplete_at: 1_700_000_000,
      content: [text('The answer is')],
    });
    const result = await ok(
      await buildContext(
        input({ instructions: '', threadMessages: [withFile, withImages, lookalike, assistant, partial] }),
      ),
    );
    assert.deepEqual(result.messages, [
      // An image_file part of a user message is an image_url part whose placeholder URL names the file.
      {
        role: 'user',
        content: [
          { type: 'text', text: 'first' },
          { type: 'image_url', image_url: { url: imageFileUrl('file-abc'), detail: 'auto' } },
          { type: 'text', text: 'second' },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'look' },
          { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
          { type: 'image_url', image_url: { url: imageFileUrl('file-def'), detail: 'high' } },
        ],
      },
      { role: 'user', content: `odd\n[image ${imageFileUrl('file-xyz')}]` },
      {
        role: 'assistant',
        content:
          'here\n[image https://example.com/b.png]\n[image (inline data)]\n[image file file-ghi]\nI cannot help with that.',
      },
      { role: 'assistant', content: 'The answer is' },
      // The thread ends with the assistant's: the model is told there is nothing new (nothingToAnswer).
      { role: 'user', content: '(The user has not written anything since your last message.)' },
    ]);
    assert.equal(result.droppedMessages, 0);
  });

  it('an answer without a word is sent as a note, never as an empty assistant message', async () => {
    // Mistral's, Anthropic's and Gemini's endpoints refuse an empty assistant message: every later run would fail.
    const silent = aMessage(thread.id, 'x', { role: 'assistant', content: [text('')] });
    const blank = aMessage(thread.id, 'x', { role: 'assistant', content: [text(' \n')] });
    const result = await ok(
      await buildContext(
        input({
          threadMessages: [
            aMessage(thread.id, 'hi'),
            silent,
            aMessage(thread.id, 'hello?'),
            blank,
            aMessage(thread.id, 'well?'),
          ],
        }),
      ),
    );
    assert.deepEqual(
      result.messages.slice(1).map((m) => m.content),
      ['hi', '(no answer)', 'hello?', '(no answer)', 'well?'],
    );
  });

  it('a prompt without a user message to answer gets a note in the user’s name, counted', async () => {
    // Qwen's template ("No user query found"), Mistral's ("Expected last role User or Tool") and others refuse a
    // prompt without one; Anthropic's would continue the assistant's last answer.
    const empty = await ok(await buildContext(input({ threadMessages: [] })));
    assert.deepEqual(empty.messages, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: '(The user has not written anything yet.)' },
    ]);
    assert.equal(empty.promptTokens, await countPromptTokens(empty.messages));
    const greeted = [aMessage(thread.id, 'Hi', { role: 'assistant' })];
    const after = await ok(await buildContext(input({ threadMessages: greeted })));
    assert.deepEqual(after.messages.at(-1), {
      role: 'user',
      content: '(The user has not written anything since your last message.)',
    });
    assert.equal(after.promptTokens, await countPromptTokens(after.messages));
    // Not after a tool round: the model answers its outputs.
    const rounds = [toolStep([{ id: 'call_a', name: 'lookup', arguments: '{}', output: 'A' }])];
    const withRound = await ok(await buildContext(input({ threadMessages: greeted, toolRounds: rounds })));
    assert.equal(withRound.messages.at(-1)!.role, 'tool');
  });

  it('appends tool rounds after the thread: the calls, then one tool message per call in order', async () => {
    const rounds = [
      toolStep([
        { id: 'call_a', name: 'lookup', arguments: '{"q":"a"}', output: 'A' },
        { id: 'call_b', name: 'weather', arguments: '{}', output: 'sunny' },
      ]),
      toolStep([{ id: 'call_c', name: 'lookup', arguments: '{"q":"c"}', output: 'C' }]),
    ];
    const result = await ok(
      await buildContext(input({ threadMessages: [aMessage(thread.id, 'hi')], toolRounds: rounds })),
    );
    assert.deepEqual(result.messages, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'hi' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_a', type: 'function', function: { name: 'lookup', arguments: '{"q":"a"}' } },
          { id: 'call_b', type: 'function', function: { name: 'weather', arguments: '{}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_a', content: 'A' },
      { role: 'tool', tool_call_id: 'call_b', content: 'sunny' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'call_c', type: 'function', function: { name: 'lookup', arguments: '{"q":"c"}' } }],
      },
      { role: 'tool', tool_call_id: 'call_c', content: 'C' },
    ]);
  });
});

describe('buildContext: truncation', () => {
  it('keeps everything when it fits', async () => {
    const messages = conversation(10);
    const result = await ok(await buildContext(input({ threadMessages: messages })));
    assert.equal(result.droppedMessages, 0);
    assert.equal(result.messages.length, 11);
    assert.deepEqual(
      keptIds(result, messages),
      messages.map((m) => m.id),
    );
  });

  it('last_messages: 2 keeps the system message and the 2 most recent messages', async () => {
    const messages = conversation(10);
    const result = await ok(
      await buildContext(input({ threadMessages: messages, truncation: { type: 'last_messages', last_messages: 2 } })),
    );
    assert.equal(result.messages.length, 3);
    assert.deepEqual(result.messages[0], { role: 'system', content: 'Be brief.' });
    assert.deepEqual(keptIds(result, messages), [messages[8]!.id, messages[9]!.id]);
    assert.equal(result.droppedMessages, 8);
  });

  it('auto keeps the first and the most recent messages under a tight budget, dropping the middle', async () => {
    const messages = conversation(10);
    const fixed = await countPromptTokens([{ role: 'system', content: 'Be brief.' }]);
    const budget =
      fixed +
      (await tokensOf(messages[0]!)) +
      (await tokensOf(messages[7]!)) +
      (await tokensOf(messages[8]!)) +
      (await tokensOf(messages[9]!));
    // Exactly at the budget, through the context window…
    const byWindow = await ok(
      await buildContext(
        input({ threadMessages: messages, contextWindow: budget + 4_096, reservedCompletionTokens: 4_096 }),
      ),
    );
    assert.deepEqual(
      keptIds(byWindow, messages),
      [0, 7, 8, 9].map((i) => messages[i]!.id),
    );
    assert.equal(byWindow.droppedMessages, 6);
    assert.equal(byWindow.promptTokens, budget);
    // …and through max_prompt_tokens, where one token less drops one more message.
    const byPrompt = await ok(await buildContext(input({ threadMessages: messages, maxPromptTokens: budget - 1 })));
    assert.deepEqual(
      keptIds(byPrompt, messages),
      [0, 8, 9].map((i) => messages[i]!.id),
    );
    assert.equal(byPrompt.droppedMessages, 7);
  });

  it('auto drops the first message when it does not fit, keeping the most recent ones', async () => {
    const messages = conversation(6);
    messages[0] = aMessage(thread.id, 'a long opening message '.repeat(100));
    const fixed = await countPromptTokens([{ role: 'system', content: 'Be brief.' }]);
    const budget =
      fixed + (await tokensOf(messages[3]!)) + (await tokensOf(messages[4]!)) + (await tokensOf(messages[5]!));
    const result = await ok(await buildContext(input({ threadMessages: messages, maxPromptTokens: budget })));
    assert.deepEqual(
      keptIds(result, messages),
      [3, 4, 5].map((i) => messages[i]!.id),
    );
    assert.equal(result.droppedMessages, 3);
  });

  it('applies the budget within last_messages too', async () => {
    const messages = conversation(10);
    const fixed = await countPromptTokens([{ role: 'system', content: 'Be brief.' }]);
    const budget = fixed + (await tokensOf(messages[6]!)) + (await tokensOf(messages[9]!));
    const result = await ok(
      await buildContext(
        input({
          threadMessages: messages,
          truncation: { type: 'last_messages', last_messages: 4 },
          maxPromptTokens: budget,
        }),
      ),
    );
    assert.deepEqual(
      keptIds(result, messages),
      [6, 9].map((i) => messages[i]!.id),
    );
    assert.equal(result.droppedMessages, 8);
  });

  it('always keeps the tool rounds, dropping thread messages instead', async () => {
    const messages = conversation(5);
    const rounds = [
      toolStep([{ id: 'call_a', name: 'lookup', arguments: '{"q":"a"}', output: 'a result '.repeat(20) }]),
    ];
    const full = await ok(await buildContext(input({ threadMessages: messages, toolRounds: rounds })));
    const toolMessages = full.messages.slice(-2);
    const minimal =
      (await countPromptTokens([{ role: 'system', content: 'Be brief.' }, ...toolMessages])) +
      (await tokensOf(messages[4]!));
    const result = await ok(
      await buildContext(input({ threadMessages: messages, toolRounds: rounds, maxPromptTokens: minimal })),
    );
    assert.deepEqual(keptIds(result, messages), [messages[4]!.id]);
    assert.equal(result.droppedMessages, 4);
    assert.deepEqual(result.messages.slice(-2), toolMessages);
    assert.equal(result.promptTokens, minimal);
  });

  it('fails with max_prompt_tokens when even the smallest prompt exceeds max_prompt_tokens', async () => {
    const messages = conversation(3);
    const minimal =
      (await countPromptTokens([{ role: 'system', content: 'Be brief.' }])) + (await tokensOf(messages[2]!));
    assert.deepEqual(await buildContext(input({ threadMessages: messages, maxPromptTokens: minimal - 1 })), {
      ok: false,
      reason: 'max_prompt_tokens',
      promptTokens: minimal,
    });
  });

  it('fails with context_window when the context window is the binding limit', async () => {
    const messages = conversation(3);
    const minimal =
      (await countPromptTokens([{ role: 'system', content: 'Be brief.' }])) + (await tokensOf(messages[2]!));
    assert.deepEqual(
      await buildContext(
        input({
          threadMessages: messages,
          contextWindow: minimal + 99,
          reservedCompletionTokens: 100,
          maxPromptTokens: 10_000,
        }),
      ),
      { ok: false, reason: 'context_window', promptTokens: minimal },
    );
  });

  it('builds the context of a 10,000-message thread', async (t) => {
    const messages = conversation(10_000, 'some words to make every message a little longer than a few tokens');
    const started = performance.now();
    const all = await ok(await buildContext(input({ threadMessages: messages, contextWindow: 1_000_000 })));
    const truncated = await ok(await buildContext(input({ threadMessages: messages })));
    const elapsed = performance.now() - started;
    assert.equal(all.droppedMessages, 0);
    assert.ok(truncated.droppedMessages > 0);
    assert.ok(truncated.promptTokens <= 128_000 - 4_096);
    assert.deepEqual(keptIds(truncated, messages).slice(0, 1), [messages[0]!.id]);
    assert.equal(keptIds(truncated, messages).at(-1), messages[9_999]!.id);
    t.diagnostic(`10,000 messages: two contexts built in ${elapsed.toFixed(0)} ms`);
  });
});
