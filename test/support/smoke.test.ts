import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTestServer } from './server.ts';

test('support smoke', async () => {
  const s = await startTestServer();
  const a = await s.api.post('/v1/assistants', { model: 'gpt-4o' });
  assert.equal(a.status, 200);
  const l = await s.api.get('/v1/assistants');
  assert.equal(l.status, 200);
  const e = await s.api.get('/v1/assistants/asst_nope');
  assert.equal(e.status, 404);
  const t = await s.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
  const m = await s.api.get(`/v1/threads/${t.body.id}/messages`);
  assert.equal((m.body.data as unknown[]).length, 1);
  const empty = await s.api.get(`/v1/threads/${t.body.id}/messages?run_id=run_x`);
  assert.equal((empty.body.data as unknown[]).length, 0);
  await s.close();
});
