import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ChatHistoryItem } from 'node-llama-cpp';
import { toChatHistory } from '../../src/providers/llama-cpp/chat-history.ts';
import type { ChatMessage, ChatToolCall } from '../../src/providers/provider.ts';

function call(id: string, name: string, args: string): ChatToolCall {
  return { id, type: 'function', function: { name, arguments: args } };
}

describe('toChatHistory', () => {
  test('maps system, user and assistant text', () => {
    const history = toChatHistory([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: 'Hi!' },
      { role: 'user', content: 'Bye' },
    ]);
    const expected: ChatHistoryItem[] = [
      { type: 'system', text: 'Be brief.' },
      { type: 'user', text: 'Hello' },
      { type: 'model', response: ['Hi!'] },
      { type: 'user', text: 'Bye' },
    ];
    assert.deepEqual(history, expected);
  });

  test('an empty history stays empty', () => {
    assert.deepEqual(toChatHistory([]), []);
  });

  test('a tool round becomes one model response holding each call with its result', () => {
    const history = toChatHistory([
      { role: 'user', content: 'Weather in Paris and Rome?' },
      {
        role: 'assistant',
        content: 'Let me check.',
        tool_calls: [
          call('call_1', 'get_weather', '{"city":"Paris"}'),
          call('call_2', 'get_weather', '{"city":"Rome"}'),
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp":21,"sky":"clear"}' },
      { role: 'tool', tool_call_id: 'call_2', content: 'service unavailable' },
    ]);
    const expected: ChatHistoryItem[] = [
      { type: 'user', text: 'Weather in Paris and Rome?' },
      {
        type: 'model',
        response: [
          'Let me check.',
          {
            type: 'functionCall',
            name: 'get_weather',
            params: { city: 'Paris' },
            result: { temp: 21, sky: 'clear' },
            startsNewChunk: true,
          },
          {
            type: 'functionCall',
            name: 'get_weather',
            params: { city: 'Rome' },
            result: 'service unavailable',
            startsNewChunk: false,
          },
        ],
      },
    ];
    assert.deepEqual(history, expected);
  });

  test('tool results that arrive out of order still go to their calls', () => {
    const history = toChatHistory([
      { role: 'user', content: 'go' },
      { role: 'assistant', content: null, tool_calls: [call('a', 'f', '{}'), call('b', 'g', '[1,2]')] },
      { role: 'tool', tool_call_id: 'b', content: '2' },
      { role: 'tool', tool_call_id: 'a', content: '"one"' },
    ]);
    assert.deepEqual(history[1], {
      type: 'model',
      response: [
        { type: 'functionCall', name: 'f', params: {}, result: 'one', startsNewChunk: true },
        { type: 'functionCall', name: 'g', params: [1, 2], result: 2, startsNewChunk: false },
      ],
    });
  });

  test('a second tool round stays in the same model response, then a user message starts a new item', () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'sys' },
      { role: 'user', content: 'Plan a trip' },
      { role: 'assistant', content: null, tool_calls: [call('c1', 'search', '{"q":"flights"}')] },
      { role: 'tool', tool_call_id: 'c1', content: '["AF123"]' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [call('c2', 'book', '{"flight":"AF123"}'), call('c3', 'notify', '{"to":"me"}')],
      },
      { role: 'tool', tool_call_id: 'c2', content: '{"ok":true}' },
      { role: 'tool', tool_call_id: 'c3', content: '' },
      { role: 'assistant', content: 'Booked AF123.' },
      { role: 'user', content: 'Thanks' },
    ];
    const expected: ChatHistoryItem[] = [
      { type: 'system', text: 'sys' },
      { type: 'user', text: 'Plan a trip' },
      {
        type: 'model',
        response: [
          {
            type: 'functionCall',
            name: 'search',
            params: { q: 'flights' },
            result: ['AF123'],
            startsNewChunk: true,
          },
          {
            type: 'functionCall',
            name: 'book',
            params: { flight: 'AF123' },
            result: { ok: true },
            startsNewChunk: true,
          },
          {
            type: 'functionCall',
            name: 'notify',
            params: { to: 'me' },
            // An empty output has no value.
            result: undefined,
            startsNewChunk: false,
          },
          'Booked AF123.',
        ],
      },
      { type: 'user', text: 'Thanks' },
    ];
    assert.deepEqual(toChatHistory(messages), expected);
  });

  test('a request that ends with tool results leaves that model response open, to be continued', () => {
    const history = toChatHistory([
      { role: 'user', content: 'time?' },
      { role: 'assistant', content: null, tool_calls: [call('t', 'now', '')] },
      { role: 'tool', tool_call_id: 't', content: '"12:00"' },
    ]);
    assert.deepEqual(history, [
      { type: 'user', text: 'time?' },
      {
        type: 'model',
        response: [{ type: 'functionCall', name: 'now', params: undefined, result: '12:00', startsNewChunk: true }],
      },
    ]);
  });

  test('a request that ends with an assistant message gets an empty response to generate into', () => {
    const history = toChatHistory([
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: 'Hi!' },
    ]);
    assert.deepEqual(history, [
      { type: 'user', text: 'Hello' },
      { type: 'model', response: ['Hi!'] },
      { type: 'model', response: [] },
    ]);
  });

  test('an assistant message that does not follow tool results starts a response of its own', () => {
    const history = toChatHistory([
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: 'First.' },
      { role: 'assistant', content: 'Second.' },
      { role: 'user', content: 'ok' },
    ]);
    assert.deepEqual(history, [
      { type: 'user', text: 'Hello' },
      { type: 'model', response: ['First.'] },
      { type: 'model', response: ['Second.'] },
      { type: 'user', text: 'ok' },
    ]);
  });

  test('arguments that are not JSON stay a string', () => {
    const history = toChatHistory([
      { role: 'assistant', content: null, tool_calls: [call('x', 'shell', 'ls -la')] },
      { role: 'tool', tool_call_id: 'x', content: 'total 0' },
    ]);
    assert.deepEqual(history, [
      {
        type: 'model',
        response: [{ type: 'functionCall', name: 'shell', params: 'ls -la', result: 'total 0', startsNewChunk: true }],
      },
    ]);
  });

  test('a tool message without a matching call is kept as model text', () => {
    const history = toChatHistory([
      { role: 'user', content: 'hi' },
      { role: 'tool', tool_call_id: 'unknown', content: 'orphan output' },
    ]);
    assert.deepEqual(history, [
      { type: 'user', text: 'hi' },
      { type: 'model', response: ['orphan output'] },
    ]);
  });

  test('user content parts: text is joined, images become notes', () => {
    const history = toChatHistory([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is in these?' },
          { type: 'image_url', image_url: { url: 'https://example.com/cat.png', detail: 'low' } },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          { type: 'text', text: 'Thanks.' },
        ],
      },
    ]);
    assert.deepEqual(history, [
      {
        type: 'user',
        text: 'What is in these?\n[image https://example.com/cat.png]\n[image (inline data)]\nThanks.',
      },
    ]);
  });
});
