import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { duration, RequestBuckets, tokenWindowFreesInMs, tokenWindowStart } from '../../src/api/rate-limits.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { createTestDatabase, postgresUrlOrSkip, type TestDatabase } from '../support/postgres.ts';
import { ApiClient, startTestServer, type TestServer } from '../support/server.ts';

const ADMIN_KEY = 'sk-rate-limit-admin-0001';
const SINGLE_KEY = 'sk-rate-limit-single-0002';

type Json = Record<string, unknown>;

test("the tokens window's oldest run leaves it within a minute, never later (the SDK ignores a Retry-After past 60 s)", () => {
  for (let now = 1_700_000_000_000; now < 1_700_000_003_000; now += 125)
    for (let oldest = tokenWindowStart(now); oldest <= Math.floor(now / 1000); oldest++) {
      const wait = tokenWindowFreesInMs(oldest, now);
      assert.ok(wait > 0 && wait <= 60_000, `${wait} ms`);
      assert.ok(tokenWindowStart(now + wait) > oldest, 'gone when said');
      assert.ok(tokenWindowStart(now + wait - 1) <= oldest, 'not before');
    }
});

describe('request buckets', () => {
  test('a key has a minute of requests, refilled continuously; other keys are apart', () => {
    let now = 1_000_000;
    const buckets = new RequestBuckets(3, () => now);
    assert.deepEqual(
      [1, 2, 3].map(() => buckets.take('a').remaining),
      [2, 1, 0],
    );
    const refused = buckets.take('a');
    assert.equal(refused.admitted, false);
    assert.equal(refused.retryMs, 20_000);
    assert.equal(refused.untilFullMs, 60_000);
    assert.equal(buckets.take('b').admitted, true);
    now += 19_999;
    assert.equal(buckets.take('a').admitted, false);
    now += 1;
    assert.equal(buckets.take('a').admitted, true);
    now += 60_000;
    assert.equal(buckets.take('a').remaining, 2);
  });

  test('memory stays bounded: buckets that filled up again make room', () => {
    let now = 0;
    const buckets = new RequestBuckets(2, () => now);
    for (let i = 0; i < 10_000; i++) buckets.take(`key ${i}`);
    assert.equal(buckets.size, 10_000);
    now += 30_000; // each bucket is full again after 30 s (one request of two, refilled at 2 a minute)
    buckets.take('another');
    assert.equal(buckets.size, 1);
  });

  test("OpenAI's duration format", () => {
    assert.deepEqual([0, 120, 1000, 1500, 59_900, 60_000, 360_000].map(duration), [
      '0s',
      '120ms',
      '1s',
      '1.5s',
      '59.9s',
      '1m0s',
      '6m0s',
    ]);
  });
});

async function projectKeys(server: TestServer, count: number): Promise<string[]> {
  const admin = new ApiClient(server.url, { authorization: `Bearer ${ADMIN_KEY}` });
  const project = await admin.post('/v1/organization/projects', { name: 'limited' });
  const keys: string[] = [];
  for (let i = 0; i < count; i++) {
    const key = await admin.post(`/v1/organization/projects/${project.body['id']}/api_keys`, { name: `k${i}` });
    keys.push(key.body['value'] as string);
  }
  return keys;
}

describe('requests per minute', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({
      ASSISTD_ADMIN_KEY: ADMIN_KEY,
      ASSISTD_API_KEY: SINGLE_KEY,
      ASSISTD_RATE_LIMIT_RPM: '3',
    });
  });
  after(() => server.close());

  test('the request past the limit is a 429 with the error shape and every header; each key has its own', async () => {
    const [first, second] = await projectKeys(server, 2);
    const api = new ApiClient(server.url, { authorization: `Bearer ${first}` });
    for (const remaining of ['2', '1', '0']) {
      const ok = await api.get('/v1/assistants');
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get('x-ratelimit-limit-requests'), '3');
      assert.equal(ok.headers.get('x-ratelimit-remaining-requests'), remaining);
      assert.match(ok.headers.get('x-ratelimit-reset-requests')!, /^(\d+m)?\d+(\.\d)?s$|^\d+ms$/);
    }
    const limited = await api.get<{ error: Json }>('/v1/assistants');
    assert.equal(limited.status, 429);
    assert.equal(limited.body.error['type'], 'requests');
    assert.equal(limited.body.error['code'], 'rate_limit_exceeded');
    assert.equal(limited.body.error['param'], null);
    assert.match(
      limited.body.error['message'] as string,
      /^Rate limit reached for requests per min \(RPM\) of API key key_\w+: Limit 3, Used 3, Requested 1\. Please try again in (1\d\.\d|20)s\.$/,
    );
    const retryMs = Number(limited.headers.get('retry-after-ms'));
    assert.ok(retryMs > 19_000 && retryMs <= 20_000, String(retryMs));
    assert.equal(limited.headers.get('retry-after'), '20');
    assert.equal(limited.headers.get('x-ratelimit-remaining-requests'), '0');

    assert.equal(
      (await new ApiClient(server.url, { authorization: `Bearer ${second}` }).get('/v1/assistants')).status,
      200,
    );
    assert.equal(
      (await new ApiClient(server.url, { authorization: `Bearer ${SINGLE_KEY}` }).get('/v1/assistants')).status,
      200,
    );
    // The admin API and /healthz are not limited.
    const admin = new ApiClient(server.url, { authorization: `Bearer ${ADMIN_KEY}` });
    for (let i = 0; i < 5; i++) assert.equal((await admin.get('/v1/organization/projects')).status, 200);
  });
});

describe('the official SDK retries a 429 and succeeds', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ ASSISTD_API_KEY: SINGLE_KEY, ASSISTD_RATE_LIMIT_RPM: '60' });
  });
  after(() => server.close());

  test('with retry-after-ms of about a second', async () => {
    const statuses: number[] = [];
    const client = new OpenAI({
      baseURL: `${server.url}/v1`,
      apiKey: SINGLE_KEY,
      fetch: async (url: Parameters<typeof fetch>[0], init?: RequestInit) => {
        const response = await fetch(url, init);
        statuses.push(response.status);
        return response;
      },
    });
    // The minute's 60 requests, at once; then the SDK's call finds the bucket empty.
    const burst = await Promise.all(
      Array.from({ length: 60 }, () =>
        fetch(`${server.url}/v1/assistants`, { headers: { authorization: `Bearer ${SINGLE_KEY}` } }),
      ),
    );
    assert.ok(burst.every((r) => r.status === 200));
    const created = await client.beta.assistants.create({ model: 'gpt-4o-mini', name: 'after a wait' });
    assert.equal(created.name, 'after a wait');
    assert.equal(statuses[0], 429);
    assert.equal(statuses.at(-1), 200);
  });
});

for (const database of ['sqlite', 'postgres'] as const) {
  describe(`tokens per minute (${database})`, () => {
    const adminUrl = database === 'postgres' ? postgresUrlOrSkip() : undefined;
    const skip = database === 'postgres' && !adminUrl;
    let upstream: FakeUpstream;
    let server: TestServer;
    let testDatabase: TestDatabase | undefined;

    before(async () => {
      if (skip) return;
      upstream = await FakeUpstream.start();
      upstream.setDefault({ text: 'An answer.', usage: { prompt_tokens: 30, completion_tokens: 20 } });
      testDatabase = adminUrl ? await createTestDatabase(adminUrl) : undefined;
      server = await startTestServer({
        ASSISTD_ADMIN_KEY: ADMIN_KEY,
        ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
        ASSISTD_RATE_LIMIT_TPM: '120',
        ASSISTD_RATE_LIMIT_RPM: '1000',
        // Off by default with a tokens limit; on, the passed-on endpoints are refused with the runs.
        ASSISTD_PASS_THROUGH: 'on',
        ...(testDatabase ? { ASSISTD_DATABASE_URL: testDatabase.url } : {}),
      });
    });
    after(async () => {
      if (skip) return;
      await server.close();
      await upstream.close();
      await testDatabase?.drop();
    });

    test("a key whose runs of the last minute used its tokens gets a 429 'tokens'; another key does not", {
      skip,
    }, async () => {
      const [first, second] = await projectKeys(server, 2);
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: first!, maxRetries: 0 });
      const assistant = await client.beta.assistants.create({ model: 'gpt-4o-mini' });
      const thread = await client.beta.threads.create();
      // 50 tokens a run: the third run finds 100 of 120 used and may start; the fourth finds 150.
      for (let i = 0; i < 3; i++) {
        const { data: run, response } = await client.beta.threads.runs
          .create(thread.id, { assistant_id: assistant.id })
          .withResponse();
        assert.equal(response.headers.get('x-ratelimit-limit-tokens'), '120');
        assert.equal(response.headers.get('x-ratelimit-remaining-tokens'), String(120 - 50 * i));
        await client.beta.threads.runs.poll(run.id, { thread_id: thread.id }, { pollIntervalMs: 20 });
      }
      const api = new ApiClient(server.url, { authorization: `Bearer ${first}` });
      const refused = await api.post<{ error: Json }>(`/v1/threads/${thread.id}/runs`, { assistant_id: assistant.id });
      assert.equal(refused.status, 429);
      assert.equal(refused.body.error['type'], 'tokens');
      assert.equal(refused.body.error['code'], 'rate_limit_exceeded');
      assert.match(refused.body.error['message'] as string, /tokens per min \(TPM\).*Limit 120, Used 150/);
      assert.equal(refused.headers.get('x-ratelimit-remaining-tokens'), '0');
      assert.equal(refused.headers.get('x-ratelimit-limit-requests'), '1000', 'the requests headers too');
      assert.ok(Number(refused.headers.get('retry-after')) >= 1);
      assert.ok(Number(refused.headers.get('retry-after-ms')) <= 60_000);
      const completion = await api.post<{ error: Json }>('/v1/chat/completions', {
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'A title?' }],
      });
      assert.equal(completion.status, 429, 'a passed-on endpoint is refused once the runs used the tokens');
      assert.equal(completion.body.error['type'], 'tokens');
      // Nothing was created; reading is not limited by tokens; another key of the project still runs.
      assert.equal((await client.beta.threads.runs.list(thread.id)).data.length, 3);
      const other = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: second!, maxRetries: 0 });
      const run = await other.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
      assert.equal(run.status, 'completed');
    });
  });
}
