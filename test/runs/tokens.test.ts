import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encode } from 'gpt-tokenizer/encoding/o200k_base';
import type { ChatMessage } from '../../src/providers/provider.ts';
import { MAX_RUN_CHARS } from '../../src/retrieval/text-pieces.ts';
import {
  countMessageTokens,
  countPromptTokens,
  countTextTokens,
  IMAGE_TOKENS_DEFAULT,
  IMAGE_TOKENS_LOW_DETAIL,
  REPLY_PRIMING_TOKENS,
  SLICE_CHARS,
  TOKENS_PER_MESSAGE,
  TokenCounter,
} from '../../src/runs/tokens.ts';

const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

describe('countTextTokens', () => {
  it('counts with the o200k_base BPE', async () => {
    assert.equal(countTextTokens('hello world'), 2);
    assert.deepEqual(encode('hello world'), [24912, 2375]);
    assert.equal(countTextTokens('Hello, world!'), 4);
    assert.equal(countTextTokens('You are a helpful assistant.'), 6);
    assert.equal(countTextTokens(''), 0);
    const long = 'The quick brown fox jumps over the lazy dog. '.repeat(50);
    assert.equal(countTextTokens(long), encode(long).length);
  });

  it('counts special-token strings as plain text instead of throwing', async () => {
    assert.equal(countTextTokens('a <|endoftext|> b'), 9);
  });
});

describe('countMessageTokens', () => {
  it('is the per-message overhead + role + content', async () => {
    assert.equal(TOKENS_PER_MESSAGE, 3);
    for (const role of ['system', 'user', 'assistant', 'tool']) assert.equal(countTextTokens(role), 1);
    assert.equal(await countMessageTokens({ role: 'user', content: 'hello world' }), 3 + 1 + 2);
    assert.equal(await countMessageTokens({ role: 'system', content: 'You are a helpful assistant.' }), 3 + 1 + 6);
    assert.equal(await countMessageTokens({ role: 'assistant', content: 'Hello, world!' }), 3 + 1 + 4);
    assert.equal(await countMessageTokens({ role: 'assistant', content: null }), 3 + 1);
    assert.equal(await countMessageTokens({ role: 'tool', tool_call_id: 'call_1', content: 'hello world' }), 3 + 1 + 2);
  });

  it('counts tool calls by name and arguments', async () => {
    const message: ChatMessage = {
      role: 'assistant',
      content: null,
      tool_calls: [
        { id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"x"}' } },
        { id: 'call_2', type: 'function', function: { name: 'lookup', arguments: '{"q":"x"}' } },
      ],
    };
    assert.equal(countTextTokens('lookup'), 1);
    assert.equal(countTextTokens('{"q":"x"}'), 5);
    assert.equal(await countMessageTokens(message), 3 + 1 + 2 * (1 + 5));
  });

  it('counts images at a fixed estimate by detail', async () => {
    assert.equal(IMAGE_TOKENS_LOW_DETAIL, 85);
    assert.equal(IMAGE_TOKENS_DEFAULT, 765);
    const message: ChatMessage = {
      role: 'user',
      content: [
        { type: 'text', text: 'hello world' },
        { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
        { type: 'image_url', image_url: { url: 'https://example.com/b.png', detail: 'high' } },
        { type: 'image_url', image_url: { url: 'https://example.com/c.png', detail: 'auto' } },
        { type: 'image_url', image_url: { url: 'https://example.com/d.png' } },
      ],
    };
    assert.equal(await countMessageTokens(message), 3 + 1 + 2 + 85 + 3 * 765);
  });

  it('gives the same result when memoized and for an equal fresh object', async () => {
    const message: ChatMessage = { role: 'user', content: 'The quick brown fox jumps over the lazy dog.' };
    const first = await countMessageTokens(message);
    assert.equal(await countMessageTokens(message), first);
    assert.equal(
      await countMessageTokens({ role: 'user', content: 'The quick brown fox jumps over the lazy dog.' }),
      first,
    );
    assert.equal(first, 3 + 1 + 10);
  });
});

describe('countPromptTokens', () => {
  it('is the sum of the messages + the reply priming', async () => {
    assert.equal(REPLY_PRIMING_TOKENS, 3);
    const messages: ChatMessage[] = [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: 'hello world' },
    ];
    assert.equal(await countPromptTokens(messages), 10 + 6 + 3);
    assert.equal(await countPromptTokens(messages), 19);
    assert.equal(await countPromptTokens([]), 3);
  });
});

describe('texts that are costly to encode', () => {
  /** A counter that records the longest run of one character class (space or not) it was handed. */
  function recording(): { counter: TokenCounter; longestRun: () => number; pieces: () => number[] } {
    const lengths: number[] = [];
    let longest = 0;
    const counter = new TokenCounter((text) => {
      lengths.push(text.length);
      for (const run of text.match(/\s+|\S+/g) ?? []) longest = Math.max(longest, run.length);
      return encode(text, PLAIN_TEXT).length;
    });
    return { counter, longestRun: () => longest, pieces: () => lengths };
  }

  function randomText(length: number, alphabet: string, seed: number): string {
    let state = seed;
    let text = '';
    while (text.length < length) {
      state = (state * 1103515245 + 12345) & 0x7fffffff;
      text += alphabet[state % alphabet.length];
    }
    return text;
  }

  const pathological: Array<[string, string]> = [
    ['a million times one letter', 'a'.repeat(1_000_000)],
    ['256,000 random letters', randomText(256_000, 'abcdefghijklmnopqrstuvwxyz', 1)],
    ['digits', randomText(100_000, '0123456789', 2)],
    ['CJK without punctuation', randomText(50_000, '中文字的是不了人我在有他这为之大来以个', 3)],
    ['emoji', '😀🎉👍🏽'.repeat(20_000)],
    ['a million spaces', ' '.repeat(1_000_000)],
  ];

  for (const [name, text] of pathological) {
    it(`never hands the BPE a run longer than ${MAX_RUN_CHARS} characters: ${name}`, async () => {
      const { counter, longestRun } = recording();
      const tokens = await counter.count(text);
      assert.equal(counter.text(text), tokens, 'count and text agree');
      assert.ok(longestRun() <= MAX_RUN_CHARS, `a run of ${longestRun()} characters was encoded`);
      // Never fewer tokens than the text's pieces of MAX_RUN_CHARS, never more than its UTF-8 bytes.
      assert.ok(tokens >= Math.ceil(text.length / MAX_RUN_CHARS) && tokens <= Buffer.byteLength(text));
    });
  }

  it('counts within 1% of a whole encoding where pieces are cut inside a run', () => {
    for (const text of ['a'.repeat(16_000), 'ab'.repeat(8_000), '0123456789'.repeat(1_600), '中文字'.repeat(3_000)]) {
      const whole = encode(text, PLAIN_TEXT).length;
      const counted = countTextTokens(text);
      assert.ok(counted >= whole && counted <= whole * 1.01, `${counted} tokens counted, ${whole} whole`);
    }
  });

  it('counts natural text exactly as a whole encoding, a slice at a time', async () => {
    const paragraph =
      'The run engine reads the thread, counts its tokens and asks the model.\nIt then  waits\tfor tools; ' +
      '"quoted", (bracketed) and 12345678 numbers, an URL https://example.com/a/b?c=d, CJK 中文 文字 and 😀 emoji.\n\n';
    const code = 'function add(a, b) {\n  return a + b; // sum\n}\n\n    indented\r\nline\n';
    const json = JSON.stringify({
      id: 'msg_1',
      content: [{ type: 'text', text: { value: 'Hi there', list: [1, 2] } }],
    });
    for (const text of [
      paragraph.repeat(40),
      code.repeat(60),
      `${json} `.repeat(50),
      `${paragraph}${code}`.repeat(30),
    ]) {
      assert.ok(text.length > SLICE_CHARS * 2);
      const { counter, pieces } = recording();
      assert.equal(await counter.count(text), encode(text, PLAIN_TEXT).length);
      assert.ok(pieces().length > 1, 'counted in slices');
      assert.ok(Math.max(...pieces()) <= SLICE_CHARS * 2, 'slices near SLICE_CHARS');
    }
  });

  it('lets the event loop go while it counts a long text', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    try {
      await new TokenCounter((text) => encode(text, PLAIN_TEXT).length).count(
        randomText(256_000, 'abcdefghijklmnopqrstuvwxyz', 4),
      );
    } finally {
      clearInterval(timer);
    }
    assert.ok(ticks > 0, 'no timer ran while the text was counted');
  });
});
