import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { joinedInRows } from '../../src/providers/openai-compatible/alternating-roles.ts';
import type { ChatMessage } from '../../src/providers/provider.ts';

describe('joinedInRows', () => {
  test('messages that alternate are returned as they are', () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 's' },
      { role: 'user', content: 'a' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }],
      },
      { role: 'tool', tool_call_id: 'c', content: '1' },
      { role: 'tool', tool_call_id: 'd', content: '2' },
      { role: 'assistant', content: 'b' },
    ];
    assert.equal(joinedInRows(messages), messages);
  });

  test('user messages with images keep every part in order, their texts joined where they meet', () => {
    const image = { type: 'image_url' as const, image_url: { url: 'https://x/y.png' } };
    const messages: ChatMessage[] = [
      { role: 'user', content: 'Look:' },
      { role: 'user', content: [{ type: 'text', text: 'this one' }, image] },
      { role: 'user', content: [image, { type: 'text', text: 'and this' }] },
      { role: 'user', content: 'Which?' },
    ];
    const before = JSON.stringify(messages);
    assert.deepEqual(joinedInRows(messages), [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Look:\n\nthis one' },
          image,
          image,
          { type: 'text', text: 'and this\n\nWhich?' },
        ],
      },
    ]);
    assert.equal(JSON.stringify(messages), before, 'the messages given are not changed');
  });

  test('a conversation that begins with the assistant gets an empty user turn before it', () => {
    assert.deepEqual(
      joinedInRows([
        { role: 'system', content: 's' },
        { role: 'assistant', content: 'Hi! How can I help?' },
        { role: 'user', content: 'Hello' },
      ]),
      [
        { role: 'system', content: 's' },
        { role: 'user', content: '' },
        { role: 'assistant', content: 'Hi! How can I help?' },
        { role: 'user', content: 'Hello' },
      ],
    );
    assert.deepEqual(
      joinedInRows([
        { role: 'assistant', content: 'Hi!' },
        { role: 'assistant', content: 'Ask me anything.' },
        { role: 'user', content: 'Hello' },
      ]),
      [
        { role: 'user', content: '' },
        { role: 'assistant', content: 'Hi!\n\nAsk me anything.' },
        { role: 'user', content: 'Hello' },
      ],
    );
  });

  test('assistant messages join until one with tool calls, which keeps its calls and reasoning; empty texts add nothing', () => {
    const call = { id: 'c', type: 'function' as const, function: { name: 'f', arguments: '{}' } };
    assert.deepEqual(
      joinedInRows([
        { role: 'user', content: 'Go.' },
        { role: 'assistant', content: 'One.' },
        { role: 'assistant', content: '' },
        { role: 'assistant', content: null, tool_calls: [call], reasoning: { reasoning_content: 'r' } },
        { role: 'tool', tool_call_id: 'c', content: 'x' },
        { role: 'assistant', content: 'Two.' },
        { role: 'assistant', content: 'Three.' },
      ]),
      [
        { role: 'user', content: 'Go.' },
        { role: 'assistant', content: 'One.', tool_calls: [call], reasoning: { reasoning_content: 'r' } },
        { role: 'tool', tool_call_id: 'c', content: 'x' },
        { role: 'assistant', content: 'Two.\n\nThree.' },
      ],
    );
  });
});
