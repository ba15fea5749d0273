import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encode } from 'gpt-tokenizer/encoding/o200k_base';
import type { ChatMessage } from '../../src/providers/provider.ts';
import {
  countMessageTokens,
  countPromptTokens,
  countTextTokens,
  IMAGE_TOKENS_DEFAULT,
  IMAGE_TOKENS_LOW_DETAIL,
  REPLY_PRIMING_TOKENS,
  TOKENS_PER_MESSAGE,
} from '../../src/runs/tokens.ts';

describe('countTextTokens', () => {
  it('counts with the o200k_base BPE', () => {
    assert.equal(countTextTokens('hello world'), 2);
    assert.deepEqual(encode('hello world'), [24912, 2375]);
    assert.equal(countTextTokens('Hello, world!'), 4);
    assert.equal(countTextTokens('You are a helpful assistant.'), 6);
    assert.equal(countTextTokens(''), 0);
    const long = 'The quick brown fox jumps over the lazy dog. '.repeat(50);
    assert.equal(countTextTokens(long), encode(long).length);
  });

  it('counts special-token strings as plain text instead of throwing', () => {
    assert.equal(countTextTokens('a <|endoftext|> b'), 9);
  });
});

describe('countMessageTokens', () => {
  it('is the per-message overhead + role + content', () => {
    assert.equal(TOKENS_PER_MESSAGE, 3);
    for (const role of ['system', 'user', 'assistant', 'tool']) assert.equal(countTextTokens(role), 1);
    assert.equal(countMessageTokens({ role: 'user', content: 'hello world' }), 3 + 1 + 2);
    assert.equal(countMessageTokens({ role: 'system', content: 'You are a helpful assistant.' }), 3 + 1 + 6);
    assert.equal(countMessageTokens({ role: 'assistant', content: 'Hello, world!' }), 3 + 1 + 4);
    assert.equal(countMessageTokens({ role: 'assistant', content: null }), 3 + 1);
    assert.equal(countMessageTokens({ role: 'tool', tool_call_id: 'call_1', content: 'hello world' }), 3 + 1 + 2);
  });

  it('counts tool calls by name and arguments', () => {
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
    assert.equal(countMessageTokens(message), 3 + 1 + 2 * (1 + 5));
  });

  it('counts images at a fixed estimate by detail', () => {
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
    assert.equal(countMessageTokens(message), 3 + 1 + 2 + 85 + 3 * 765);
  });

  it('gives the same result when memoized and for an equal fresh object', () => {
    const message: ChatMessage = { role: 'user', content: 'The quick brown fox jumps over the lazy dog.' };
    const first = countMessageTokens(message);
    assert.equal(countMessageTokens(message), first);
    assert.equal(countMessageTokens({ role: 'user', content: 'The quick brown fox jumps over the lazy dog.' }), first);
    assert.equal(first, 3 + 1 + 10);
  });
});

describe('countPromptTokens', () => {
  it('is the sum of the messages + the reply priming', () => {
    assert.equal(REPLY_PRIMING_TOKENS, 3);
    const messages: ChatMessage[] = [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: 'hello world' },
    ];
    assert.equal(countPromptTokens(messages), 10 + 6 + 3);
    assert.equal(countPromptTokens(messages), 19);
    assert.equal(countPromptTokens([]), 3);
  });
});
