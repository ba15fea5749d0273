import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertMatchesSchema, assertValidResponse, findOperation } from './openapi.ts';

// The schema checks guard every other test, so they must be able to fail.

const assistant = {
  id: 'asst_1',
  object: 'assistant',
  created_at: 1,
  name: null,
  description: null,
  model: 'm',
  instructions: null,
  tools: [],
  metadata: {},
};

test('the official schema accepts a valid object and rejects broken ones', () => {
  assertMatchesSchema('AssistantObject', assistant);
  assert.throws(() => assertMatchesSchema('AssistantObject', { ...assistant, description: undefined }), /description/);
  assert.throws(() => assertMatchesSchema('AssistantObject', { ...assistant, object: 'bot' }), /object/);
  assert.throws(() => assertMatchesSchema('AssistantObject', { ...assistant, created_at: 1.5 }));
  assert.throws(() => assertMatchesSchema('AssistantObject', { ...assistant, tools: [{ type: 'browser' }] }));
  assert.throws(
    () => assertMatchesSchema('ErrorResponse', { error: { message: 'x', type: 't', param: null } }),
    /code/,
  );
});

test('responses are matched to their operation', () => {
  assert.equal(findOperation('GET', '/v1/threads/thread_1/messages')?.responseRef, 'ListMessagesResponse');
  assert.equal(findOperation('DELETE', '/v1/threads/thread_1/messages/msg_1')?.responseRef, 'DeleteMessageResponse');
  assert.throws(() => assertValidResponse('GET', '/v1/assistants/asst_1', 200, { ...assistant, metadata: 'x' }));
  assert.throws(() => assertValidResponse('GET', '/v1/assistants/asst_1', 404, { message: 'not wrapped' }));
  // An extension the server documents (src/api/routes/openapi.ts), its items checked against the official schema.
  assert.equal(findOperation('GET', '/v1/threads')?.responseRef, 'ListThreadsResponse');
  const threads = { object: 'list', data: [{ id: 'thread_1' }], first_id: 'thread_1', last_id: 'thread_1' };
  assert.throws(() => assertValidResponse('GET', '/v1/threads', 200, { ...threads, has_more: false }), /created_at/);
});
