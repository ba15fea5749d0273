import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * A lone surrogate (`\ud800`, half of a character cut in two, as a program that slices text by UTF-16 units makes)
 * is legal in JSON text but not in Unicode: PostgreSQL refuses it in its JSON functions, SQLite stores bytes that
 * come back as three replacement characters. Both databases keep what the body is read as — the broken half
 * replaced by U+FFFD — and nothing fails.
 */
function unicodeSuite(name: string, env: () => Promise<{ env: Record<string, string>; cleanup(): Promise<void> }>) {
  describe(`lone surrogates in request bodies on ${name}`, () => {
    let upstream: FakeUpstream;
    let server: TestServer;
    let cleanup: () => Promise<void>;

    before(async () => {
      const backend = await env();
      cleanup = backend.cleanup;
      upstream = await FakeUpstream.start();
      server = await startTestServer({ ...backend.env, ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl });
    });
    after(async () => {
      await server.close();
      await upstream.close();
      await cleanup();
    });

    test('a lone surrogate becomes U+FFFD, as sent back at once and as stored; a whole pair is kept', async () => {
      const created = await server.api.post('/v1/assistants', { model: 'm', name: 'n\ud800', description: '😀\udc00' });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      assert.equal(created.body.name, 'n\ufffd');
      assert.equal(created.body.description, '😀\ufffd');
      const read = await server.api.get(`/v1/assistants/${created.body.id}`);
      assert.equal(read.body.name, 'n\ufffd');
      assert.equal(read.body.description, '😀\ufffd');
    });

    test('a thread whose metadata holds one leaves listing by metadata working', async () => {
      const thread = await server.api.post('/v1/threads', { metadata: { k: 'a\ud800b', ['\udbff']: 'x' } });
      assert.equal(thread.status, 200, JSON.stringify(thread.body));
      assert.deepEqual(thread.body.metadata, { k: 'a\ufffdb', '\ufffd': 'x' });
      const listed = await server.api.get<{ data: Array<{ id: string }> }>('/v1/threads?metadata[k]=a%EF%BF%BDb');
      assert.equal(listed.status, 200, JSON.stringify(listed.body));
      assert.deepEqual(
        listed.body.data.map((t) => t.id),
        [thread.body.id],
      );
    });

    test("a run's instructions with one are taken", async () => {
      upstream.enqueue({ text: ['ok'] });
      const assistant = await server.api.post('/v1/assistants', { model: 'm' });
      const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
      const run = await server.api.post(`/v1/threads/${thread.body.id}/runs`, {
        assistant_id: assistant.body.id,
        instructions: 'run\ud800',
        additional_instructions: 'more\udfff',
      });
      assert.equal(run.status, 200, JSON.stringify(run.body));
      assert.equal(run.body.instructions, 'run\ufffd\n\nmore\ufffd');
    });
  });
}

unicodeSuite('SQLite', async () => ({ env: {}, cleanup: async () => {} }));

const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined)
  test('lone surrogates in request bodies on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  unicodeSuite('PostgreSQL', async () => {
    const database = await createTestDatabase(postgresUrl);
    return { env: { ASSISTD_DATABASE_URL: database.url }, cleanup: () => database.drop() };
  });
