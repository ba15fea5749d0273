import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from '../support/server.ts';

interface ListBody {
  object: string;
  data: Array<{ id: string; created_at: number }>;
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

const COUNT = 1000;

describe('pagination over 1,000 messages created in the same second', () => {
  let server: TestServer;
  let threadId: string;
  let inserted: string[];

  before(async () => {
    server = await startTestServer();
    // One create-thread request: every message gets the same created_at second.
    const messages = Array.from({ length: COUNT }, (_, i) => ({ role: 'user', content: `message ${i}` }));
    threadId = (await server.api.post('/v1/threads', { messages })).body.id as string;
    const all: ListBody['data'] = [];
    let after: string | undefined;
    do {
      const page = await server.api.get<ListBody>(
        `/v1/threads/${threadId}/messages?order=asc&limit=100${after ? `&after=${after}` : ''}`,
      );
      all.push(...page.body.data);
      after = page.body.has_more ? page.body.last_id! : undefined;
    } while (after);
    inserted = all.map((m) => m.id);
    assert.equal(new Set(all.map((m) => m.created_at)).size, 1, 'all messages share one created_at');
  });
  after(async () => server.close());

  async function walk(order: 'asc' | 'desc', via: 'after' | 'before', limit: number, start?: string) {
    const seen: string[] = [];
    let cursor = start;
    for (;;) {
      const query = `order=${order}&limit=${limit}${cursor ? `&${via}=${cursor}` : ''}`;
      const { body } = await server.api.get<ListBody>(`/v1/threads/${threadId}/messages?${query}`);
      assert.equal(body.object, 'list');
      assert.equal(body.first_id, body.data[0]?.id ?? null);
      assert.equal(body.last_id, body.data.at(-1)?.id ?? null);
      const ids = body.data.map((m) => m.id);
      if (via === 'after') seen.push(...ids);
      else seen.unshift(...ids);
      if (!body.has_more) return seen;
      cursor = via === 'after' ? body.last_id! : body.first_id!;
    }
  }

  test('ascending, then descending, with `after`: each message exactly once, in order', async () => {
    assert.equal(inserted.length, COUNT);
    assert.equal(new Set(inserted).size, COUNT);
    const contents = await Promise.all(
      [0, 499, 999].map(async (i) => {
        const { body } = await server.api.get(`/v1/threads/${threadId}/messages/${inserted[i]}`);
        return (body.content as Array<{ text: { value: string } }>)[0]!.text.value;
      }),
    );
    assert.deepEqual(contents, ['message 0', 'message 499', 'message 999'], 'ascending = insertion order');
    assert.deepEqual(await walk('asc', 'after', 37), inserted);
    assert.deepEqual(await walk('desc', 'after', 37), [...inserted].reverse());
  });

  test('with `before`, walking back from the end of each order', async () => {
    assert.deepEqual(await walk('asc', 'before', 37, inserted.at(-1)), inserted.slice(0, -1));
    const descending = [...inserted].reverse();
    assert.deepEqual(await walk('desc', 'before', 37, descending.at(-1)), descending.slice(0, -1));
  });

  test('the default page is the 20 newest, and an empty page has null first_id/last_id', async () => {
    const { body } = await server.api.get<ListBody>(`/v1/threads/${threadId}/messages`);
    assert.deepEqual(
      body.data.map((m) => m.id),
      [...inserted].reverse().slice(0, 20),
    );
    assert.equal(body.has_more, true);
    const empty = await server.api.get<ListBody>(`/v1/threads/${threadId}/messages?after=${inserted.at(-1)}&order=asc`);
    assert.deepEqual(empty.body, { object: 'list', data: [], first_id: null, last_id: null, has_more: false });
  });
});
