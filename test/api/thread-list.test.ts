import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { CursorPage } from 'openai/pagination';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { createValidatingFetch } from '../support/validating-fetch.ts';

/**
 * GET /v1/threads, assistd's thread list (issue 15), on SQLite and PostgreSQL: 1,000 threads paged exactly once
 * each in both orders, with `after` and `before`; the `metadata[key]=value` filter; `order_by=last_active_at`. The
 * test client checks every response against the documented ListThreadsResponse (a list of the official
 * ThreadObject), errors against ErrorResponse.
 */

const THREADS = 1000;

interface ThreadJson {
  id: string;
  created_at: number;
  metadata: Record<string, string>;
}

interface ListJson {
  object: string;
  data: ThreadJson[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

interface ErrorJson {
  error: { message: string; type: string; param: string | null; code: string | null };
}

function threadListSuite(name: string, env: () => Promise<{ env: Record<string, string>; cleanup(): Promise<void> }>) {
  describe(`GET /v1/threads on ${name}`, () => {
    let server: TestServer;
    let cleanup: () => Promise<void>;
    /** The threads' ids in creation order. */
    const ids: string[] = [];
    let lastCreatedAt = 0;

    before(async () => {
      const backend = await env();
      cleanup = backend.cleanup;
      server = await startTestServer(backend.env);
      // One at a time: creation order is then the order of the ids (and of `seq`, which breaks created_at ties).
      for (let i = 0; i < THREADS; i++) {
        const metadata = {
          index: String(i),
          parity: i % 2 === 0 ? 'even' : 'odd',
          tens: String(Math.floor(i / 10) % 10),
        };
        const { status, body } = await server.api.post<ThreadJson>('/v1/threads', { metadata });
        assert.equal(status, 200);
        ids.push(body.id);
        lastCreatedAt = body.created_at;
      }
    });
    after(async () => {
      await server?.close();
      await cleanup?.();
    });

    const list = async (query: string) => {
      const { status, body } = await server.api.get<ListJson>(`/v1/threads${query}`);
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(body.object, 'list');
      assert.equal(body.first_id, body.data[0]?.id ?? null);
      assert.equal(body.last_id, body.data.at(-1)?.id ?? null);
      return body;
    };

    /** Every id of a list, paged with `after` (forwards) or `before` (backwards from `start`). */
    async function walk(query: string, via: 'after' | 'before', start?: string): Promise<string[]> {
      const seen: string[] = [];
      let cursor = start;
      for (;;) {
        const page = await list(`?${query}${cursor === undefined ? '' : `&${via}=${cursor}`}`);
        const pageIds = page.data.map((t) => t.id);
        if (via === 'after') seen.push(...pageIds);
        else seen.unshift(...pageIds);
        if (!page.has_more) return seen;
        assert.ok(pageIds.length > 0, 'has_more with an empty page');
        cursor = via === 'after' ? pageIds.at(-1) : pageIds[0];
      }
    }

    test('the default page: the 20 newest threads, newest first', async () => {
      const page = await list('');
      assert.deepEqual(
        page.data.map((t) => t.id),
        ids.slice(-20).reverse(),
      );
      assert.equal(page.has_more, true);
    });

    for (const limit of [100, 7])
      test(`1,000 threads paged by ${limit}, each exactly once, in both orders, with after and before`, async () => {
        assert.deepEqual(await walk(`limit=${limit}&order=asc`, 'after'), ids);
        assert.deepEqual(await walk(`limit=${limit}&order=desc`, 'after'), [...ids].reverse());
        // `before` walks back from an object: everything that precedes it in the list's order.
        assert.deepEqual(await walk(`limit=${limit}&order=asc`, 'before', ids.at(-1)), ids.slice(0, -1));
        assert.deepEqual(await walk(`limit=${limit}&order=desc`, 'before', ids[0]), [...ids].reverse().slice(0, -1));
        const window = await list(`?order=asc&limit=${limit}&after=${ids[499]}&before=${ids[510]}`);
        assert.deepEqual(
          window.data.map((t) => t.id),
          ids.slice(500, 510).slice(0, limit),
        );
      });

    test('metadata[key]=value filters; several must all match; no match is an empty list', async () => {
      const even = await walk('limit=100&order=asc&metadata[parity]=even', 'after');
      assert.deepEqual(
        even,
        ids.filter((_, i) => i % 2 === 0),
      );
      const both = await list('?order=asc&limit=100&metadata[parity]=odd&metadata[tens]=3');
      assert.deepEqual(
        both.data.map((t) => t.id),
        ids.filter((_, i) => i % 2 === 1 && Math.floor(i / 10) % 10 === 3),
      );
      assert.ok(both.data.every((t) => t.metadata['parity'] === 'odd' && t.metadata['tens'] === '3'));
      assert.deepEqual(
        (await list('?metadata[index]=417')).data.map((t) => t.id),
        [ids[417]],
      );
      // Percent-encoded keys and values are the literal key and value.
      assert.deepEqual(
        (await list(`?metadata%5Bindex%5D=${encodeURIComponent('417')}`)).data.map((t) => t.id),
        [ids[417]],
      );
      const none = await list('?metadata[parity]=odd&metadata[index]=2');
      assert.deepEqual(none, { object: 'list', data: [], first_id: null, last_id: null, has_more: false });
      assert.equal((await list('?metadata[nope]=even')).data.length, 0);
    });

    test('bad parameters are a 400 in the OpenAI shape, naming the parameter', async () => {
      const longKey = 'k'.repeat(65);
      const cases: Array<[string, string | null]> = [
        [`metadata[${longKey}]=x`, `metadata[${longKey}]`],
        [`metadata[parity]=${'v'.repeat(513)}`, 'metadata[parity]'],
        ['metadata[]=x', 'metadata[]'],
        ['metadata[parity]=even&metadata[parity]=odd', 'metadata[parity]'],
        ['metadata=even', 'metadata'],
        [Array.from({ length: 17 }, (_, i) => `metadata[k${i}]=v`).join('&'), 'metadata'],
        ['order_by=updated_at', 'order_by'],
        ['order=sideways', 'order'],
        ['limit=101', 'limit'],
        ['after=thread_nope', 'after'],
      ];
      for (const [query, param] of cases) {
        const { status, body } = await server.api.get<ErrorJson>(`/v1/threads?${query}`);
        assert.equal(status, 400, query);
        assert.equal(body.error.type, 'invalid_request_error', query);
        assert.equal(body.error.param, param, query);
      }
      // At the limits: accepted.
      assert.equal((await list(`?metadata[${'k'.repeat(64)}]=${'v'.repeat(512)}`)).data.length, 0);
    });

    test('order_by=last_active_at: a thread with a new message comes first; pages stay exact', async () => {
      // Activity is kept in seconds, ties in creation order: the message must come in a later second than the
      // newest thread's creation to be the latest activity.
      while (Math.floor(Date.now() / 1000) <= lastCreatedAt) await sleep(50);
      const message = await server.api.post(`/v1/threads/${ids[0]}/messages`, { role: 'user', content: 'still here' });
      assert.equal(message.status, 200);

      const first = await list('?order_by=last_active_at&limit=1');
      assert.deepEqual(
        first.data.map((t) => t.id),
        [ids[0]],
      );
      assert.deepEqual((await list('?limit=1')).data[0]?.id, ids.at(-1), 'by creation, nothing moved');
      const byActivity = [...ids.slice(1), ids[0]!];
      assert.deepEqual(await walk('order_by=last_active_at&order=asc&limit=100', 'after'), byActivity);
      assert.deepEqual(await walk('order_by=last_active_at&limit=7', 'after'), [...byActivity].reverse());
      assert.deepEqual(
        await walk('order_by=last_active_at&order=desc&limit=7', 'before', ids[1]),
        [...byActivity].reverse().slice(0, -1),
      );
      assert.deepEqual(
        (await list('?order_by=last_active_at&metadata[parity]=even&limit=2')).data.map((t) => t.id),
        [ids[0], ids[998]],
      );
    });

    test('the official SDK pages the list with getAPIList', async () => {
      const recorder = createValidatingFetch();
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
      const seen: string[] = [];
      // The SDK has no method for it: getAPIList with the page class of the official lists.
      const threads = client.getAPIList<OpenAI.Beta.Thread, CursorPage<OpenAI.Beta.Thread>>('/threads', CursorPage, {
        query: { limit: 100, order: 'asc', 'metadata[tens]': '5' },
      });
      for await (const thread of threads) seen.push(thread.id);
      assert.deepEqual(
        seen,
        ids.filter((_, i) => Math.floor(i / 10) % 10 === 5),
      );
      assert.equal(recorder.requests.length, 1);
      recorder.assertNoViolations();
    });
  });
}

threadListSuite('SQLite', async () => ({ env: {}, cleanup: async () => {} }));

const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined) test('GET /v1/threads on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  threadListSuite('PostgreSQL', async () => {
    const database = await createTestDatabase(postgresUrl);
    return { env: { ASSISTD_DATABASE_URL: database.url }, cleanup: () => database.drop() };
  });
