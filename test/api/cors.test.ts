import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { loadConfig } from '../../src/config.ts';
import { launchBrowser } from '../support/browser.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * CORS (ASSISTD_CORS_ORIGINS): a page on an allowed origin calls the API from a real browser (Debian's Chromium) as
 * `new OpenAI({ baseURL, dangerouslyAllowBrowser: true })` does — a JSON POST with the key and the SDK's own
 * headers, which makes the browser send a preflight first — and reads the answers, errors and streams included; a
 * page on any other origin reads nothing.
 */

const KEY = 'sk-cors-test-0123456789';

/** A page server on 127.0.0.1: its origin. */
async function pageServer(): Promise<{ server: Server; origin: string }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>app</title>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** A fetch's status, x-request-id and body, or the browser's error (a CORS refusal is a TypeError). */
interface Fetched {
  status?: number;
  requestId?: string | null;
  body?: string;
  error?: string;
}

/**
 * The page's calls, as the SDK makes them: plain JavaScript, sent as text (a function from this file would carry
 * the test runner's transpiled helpers into the page).
 */
const PAGE_SCRIPT = `async ({ api, key }) => {
  const sdkHeaders = {
    'content-type': 'application/json',
    authorization: 'Bearer ' + key,
    'openai-beta': 'assistants=v2',
    'x-stainless-lang': 'js',
    'x-stainless-retry-count': '0',
  };
  async function attempt(url, init) {
    try {
      const response = await fetch(url, init);
      return { status: response.status, requestId: response.headers.get('x-request-id'), body: await response.text() };
    } catch (error) {
      return { error: String(error) };
    }
  }
  const created = await attempt(api + '/v1/assistants', {
    method: 'POST',
    headers: sdkHeaders,
    body: JSON.stringify({ model: 'gpt-test' }),
  });
  const assistantId = created.body ? JSON.parse(created.body).id : undefined;
  const unauthorized = await attempt(api + '/v1/assistants', { headers: { ...sdkHeaders, authorization: 'Bearer wrong' } });
  const streamed = await attempt(api + '/v1/threads/runs', {
    method: 'POST',
    headers: sdkHeaders,
    body: JSON.stringify({ assistant_id: assistantId, stream: true }),
  });
  return { created, unauthorized, streamed };
}`;

/** What the page's fetches of the API got. */
async function callFromPage(page: Page, api: string, key: string) {
  const result = await page.evaluate(`(${PAGE_SCRIPT})(${JSON.stringify({ api, key })})`);
  return result as { created: Fetched; unauthorized: Fetched; streamed: Fetched };
}

describe('CORS: pages on the allowed origins call the API from a browser', () => {
  let browser: Browser;
  let api: TestServer;
  let allowed: { server: Server; origin: string };
  let other: { server: Server; origin: string };

  before(async () => {
    allowed = await pageServer();
    other = await pageServer();
    api = await startTestServer({
      ASSISTD_API_KEY: KEY,
      ASSISTD_CORS_ORIGINS: `https://app.example.com,${allowed.origin}`,
    });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await api?.close();
    allowed?.server.close();
    other?.server.close();
  });

  test('an allowed origin: the preflight passes, and JSON, errors and streams are readable', async () => {
    const page = await browser.newPage();
    await page.goto(allowed.origin);
    const { created, unauthorized, streamed } = await callFromPage(page, api.url, KEY);
    assert.equal(created.error, undefined, 'the POST was refused in the browser');
    assert.equal(created.status, 200, created.body);
    assert.match(created.body ?? '', /"object":"assistant"/);
    assert.ok(created.requestId, 'x-request-id is exposed to the page');
    assert.equal(unauthorized.error, undefined, 'the 401 was not readable');
    assert.equal(unauthorized.status, 401);
    assert.match(unauthorized.body ?? '', /"error":\{"message":"Incorrect API key provided/);
    assert.equal(streamed.error, undefined, 'the stream was not readable');
    assert.equal(streamed.status, 200);
    assert.match(streamed.body ?? '', /^event: thread\.created$/m);
    assert.match(streamed.body ?? '', /^event: thread\.run\.created$/m);
    await page.close();
  });

  test('another origin reads nothing, and its preflight is not answered as allowed', async () => {
    const page = await browser.newPage();
    await page.goto(other.origin);
    const { created, unauthorized, streamed } = await callFromPage(page, api.url, KEY);
    for (const result of [created, unauthorized, streamed]) assert.match(result.error ?? '', /TypeError/);
    await page.close();

    const preflight = await fetch(`${api.url}/v1/assistants`, {
      method: 'OPTIONS',
      headers: { origin: other.origin, 'access-control-request-method': 'POST' },
    });
    assert.equal(preflight.headers.get('access-control-allow-origin'), null);
    assert.notEqual(preflight.status, 204);
  });

  test('the preflight: 204, the origin, the methods and the headers asked for, with no key', async () => {
    const preflight = await fetch(`${api.url}/v1/threads/thread_x/runs`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example.com',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type,openai-beta,x-stainless-os',
      },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example.com');
    assert.equal(
      preflight.headers.get('access-control-allow-headers'),
      'authorization,content-type,openai-beta,x-stainless-os',
    );
    assert.match(preflight.headers.get('access-control-allow-methods') ?? '', /POST/);
    assert.match(preflight.headers.get('vary') ?? '', /origin/i);
    assert.match(preflight.headers.get('x-request-id') ?? '', /^req_/, 'a preflight is a request like any other');
  });
});

describe('CORS: off unless set', () => {
  let api: TestServer;
  before(async () => {
    api = await startTestServer({});
  });
  after(() => api?.close());

  test('no origin is allowed by default', async () => {
    const response = await fetch(`${api.url}/v1/assistants`, { headers: { origin: 'https://app.example.com' } });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('access-control-allow-origin'), null);
  });

  test('ASSISTD_CORS_ORIGINS takes * or origins; anything else stops startup naming the setting', () => {
    const load = (value: string) => loadConfig({ ASSISTD_CORS_ORIGINS: value }).corsOrigins;
    assert.equal(load('*'), '*');
    assert.deepEqual(load(' https://a.example.com , http://localhost:3000 '), [
      'https://a.example.com',
      'http://localhost:3000',
    ]);
    for (const bad of ['https://a.example.com/', 'a.example.com', 'ftp://a.example.com', 'https://a.example.com,*'])
      assert.throws(() => load(bad), /^ConfigError: ASSISTD_CORS_ORIGINS: '.*' is not an origin/);
  });
});
