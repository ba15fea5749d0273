import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import OpenAI, { toFile } from 'openai';
import type { Browser, Locator, Page, Request } from 'playwright-core';
import { buildPlaygroundOnce, launchBrowser, openPage } from '../support/browser.ts';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream, type ToolCallsReply } from '../support/fake-upstream.ts';
import { COFFEE, fileSearchCall } from '../support/file-search.ts';
import { toolMessages } from '../support/sdk-harness.ts';
import { ROOT, startTestServer, type TestServer } from '../support/server.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

/**
 * The playground (issue #18) in Debian's Chromium, driven by playwright-core, against a real server and the fake
 * model: every element is found by its role and accessible name (the UI contract), never by a CSS class, so these
 * tests say what a keyboard or screen-reader user can reach. A machine without Chromium fails them (launchBrowser
 * throws in `before`), never skips them. Along the way they take the screenshots the README shows, written to
 * docs/screenshots/ when ASSISTD_UPDATE_SCREENSHOTS=1 (to a temporary directory otherwise, so a test run leaves the
 * committed images alone), and check that the page asks no other origin for anything and never puts the key in a URL.
 *
 * One server, one browser and (per layout) one page for the file: the tests of a describe run in order and build on
 * each other (the chat's thread is the one whose run asks for tool outputs, whose timeline is opened next).
 */

const KEY = 'sk-playground-test';
const UPDATE_SCREENSHOTS = process.env.ASSISTD_UPDATE_SCREENSHOTS === '1';
const SCREENSHOTS = UPDATE_SCREENSHOTS
  ? path.join(ROOT, 'docs', 'screenshots')
  : mkdtempSync(path.join(tmpdir(), 'assistd-screenshots-'));
/** How long the page gets to show something: generous for a loaded machine, short of the test runner's patience. */
const WAIT_MS = 10_000;

const WEATHER_SCHEMA = {
  type: 'object',
  properties: { city: { type: 'string', description: 'The city' } },
  required: ['city'],
};

/** A slowly streamed answer: 8 chunks 150 ms apart, so the page is seen showing part of it. */
const STREAMED = ['Streaming ', 'arrives ', 'one ', 'token ', 'at ', 'a ', 'time ', 'here.'];

let upstream: FakeUpstream;
let server: TestServer;
let browser: Browser;
let recorder: ValidatingFetch;
/** The official SDK with the project's key: what the tests set up and check behind the page's back. */
let sdk: OpenAI;

/** A vector store named `name` holding coffee.txt (COFFEE), indexed. */
async function coffeeStore(name: string): Promise<OpenAI.VectorStores.VectorStore> {
  const store = await sdk.vectorStores.create({ name });
  const file = await sdk.vectorStores.files.uploadAndPoll(store.id, await toFile(Buffer.from(COFFEE), 'coffee.txt'), {
    pollIntervalMs: 20,
  });
  assert.equal(file.status, 'completed', JSON.stringify(file.last_error));
  return store;
}

before(async () => {
  browser = await launchBrowser();
  await buildPlaygroundOnce();
  upstream = await FakeUpstream.start();
  server = await startTestServer({
    ASSISTD_API_KEY: KEY,
    ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
    ASSISTD_UPSTREAM_MAX_RETRIES: '0',
    ASSISTD_CODE_INTERPRETER: 'on',
    ASSISTD_SANDBOX_CELL_TIMEOUT_S: '20',
  });
  recorder = createValidatingFetch();
  sdk = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, fetch: recorder.fetch, maxRetries: 0 });
  mkdirSync(SCREENSHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await server?.close();
  await upstream?.close();
  if (!UPDATE_SCREENSHOTS) rmSync(SCREENSHOTS, { recursive: true, force: true });
  recorder?.assertNoViolations({ all: true });
});

/** A page of its own browser context on the playground, recording every request it makes. */
class Playground {
  readonly requests: Request[] = [];
  /** Uncaught errors of the page, shown when a wait times out. */
  readonly errors: string[] = [];

  private constructor(
    readonly page: Page,
    readonly foreign: string[],
  ) {
    page.setDefaultTimeout(WAIT_MS);
    page.on('request', (request) => this.requests.push(request));
    page.on('pageerror', (error) => this.errors.push(error.message));
  }

  static async open(viewport: { width: number; height: number }): Promise<Playground> {
    const { page, foreign } = await openPage(browser, server.url, viewport);
    const playground = new Playground(page, foreign);
    await page.goto(`${server.url}/playground/`);
    return playground;
  }

  /**
   * Opens a view by its hash route, as a bookmark would; reloads it when it is the one shown, so that it shows what
   * the tests made through the API meanwhile.
   */
  async go(route: string): Promise<void> {
    const url = `${server.url}/playground/#${route}`;
    if (this.page.url() === url) await this.page.reload();
    else await this.page.goto(url);
  }

  async enterKey(key: string): Promise<void> {
    await this.page.getByLabel('API key', { exact: true }).fill(key);
    await this.page.getByRole('button', { name: 'Save key', exact: true }).click();
  }

  heading(name: string | RegExp): Locator {
    return this.page.getByRole('heading', { name, exact: typeof name === 'string' });
  }

  /** An alert (role=alert) showing `text`. */
  async alert(text: string): Promise<Locator> {
    const alert = this.page.getByRole('alert').filter({ hasText: text }).first();
    await alert.waitFor({ state: 'visible' }).catch((error: unknown) => this.fail(`an alert saying “${text}”`, error));
    return alert;
  }

  navLink(name: string): Locator {
    return this.page.getByRole('navigation', { name: 'Main', exact: true }).getByRole('link', { name, exact: true });
  }

  get messages(): Locator {
    return this.page.getByRole('log', { name: 'Messages', exact: true });
  }

  /** The last assistant message of the thread shown. */
  get answer(): Locator {
    return this.messages.getByRole('article', { name: 'assistant message', exact: true }).last();
  }

  /** The id in the heading of the thread view, once it shows one. */
  async threadId(): Promise<string> {
    const heading = this.heading(/^Thread thread_/);
    await heading.waitFor().catch((error: unknown) => this.fail('the heading “Thread thread_…”', error));
    return (await heading.innerText()).trim().slice('Thread '.length);
  }

  /** Waits until `locator`'s text matches; its text. */
  async untilText(locator: Locator, expected: string | RegExp, what = String(locator)): Promise<string> {
    let shown = '';
    const matches = (text: string) => (typeof expected === 'string' ? text.includes(expected) : expected.test(text));
    try {
      return await eventually(`${what} to show ${expected}`, WAIT_MS, async () => {
        shown = await locator.innerText({ timeout: 200 }).catch(() => '');
        return matches(shown) ? shown : undefined;
      });
    } catch (error) {
      return this.fail(`${what} to show ${expected} (it showed ${JSON.stringify(shown)})`, error);
    }
  }

  /** A new thread opened in the chat view, with `assistantId` chosen in the composer; the thread's id. */
  async openChat(assistantId: string): Promise<string> {
    const thread = await sdk.beta.threads.create();
    await this.go(`/threads/${thread.id}`);
    await this.page.getByLabel('Assistant', { exact: true }).selectOption(assistantId);
    return thread.id;
  }

  /** Types `text` into the composer and sends it. */
  async send(text: string): Promise<void> {
    await this.page.getByRole('textbox', { name: 'Message', exact: true }).fill(text);
    await this.page.getByRole('button', { name: 'Send', exact: true }).click();
  }

  /** The POSTs the page made to this API path, with their JSON bodies. */
  posts(pathname: string): unknown[] {
    return this.requests
      .filter((r) => r.method() === 'POST' && new URL(r.url()).pathname === pathname)
      .map((r) => r.postDataJSON() as unknown);
  }

  async isFocused(locator: Locator): Promise<boolean> {
    return locator.evaluate((element) => element === (globalThis as unknown as DomWindow).document.activeElement);
  }

  /** A PNG for the README, of the window, or of the whole page when what matters lies below it. */
  async screenshot(name: string, fullPage = false): Promise<void> {
    await this.page.screenshot({ path: path.join(SCREENSHOTS, name), fullPage });
  }

  /** What the page never does: ask another origin for anything, or carry the key in a URL (logs, history). */
  assertPrivate(): void {
    assert.deepEqual(this.foreign, [], 'requests to other origins');
    const leaking = this.requests.map((r) => r.url()).filter((url) => url.includes(KEY));
    assert.deepEqual(leaking, [], 'URLs carrying the API key');
  }

  async close(): Promise<void> {
    await this.page.context().close();
  }

  private fail(what: string, cause: unknown): never {
    const errors = this.errors.length > 0 ? `; errors in the page: ${this.errors.join(' | ')}` : '';
    throw new Error(`the playground did not show ${what} at ${this.page.url()}${errors}`, { cause });
  }
}

/** The few DOM properties the tests read in the page (the tests' tsconfig has no DOM library). */
interface DomWindow {
  document: {
    activeElement: unknown;
    documentElement: { scrollWidth: number; clientWidth: number };
  };
  sessionStorage: { getItem(key: string): string | null };
}

/** The model's turn calling code_interpreter's `python` function with this code. */
function python(code: string): ToolCallsReply {
  return { toolCalls: [{ name: 'python', arguments: JSON.stringify({ code }) }] };
}

async function latestRun(threadId: string): Promise<OpenAI.Beta.Threads.Run> {
  const [run] = (await sdk.beta.threads.runs.list(threadId, { limit: 1, order: 'desc' })).data;
  assert.ok(run, `${threadId} has a run`);
  return run;
}

/** Waits for the thread's latest run to end; it. */
function settledRun(threadId: string): Promise<OpenAI.Beta.Threads.Run> {
  return eventually(`the run of ${threadId} to end`, WAIT_MS, async () => {
    const run = await latestRun(threadId);
    return ['completed', 'failed', 'cancelled', 'expired', 'incomplete'].includes(run.status) ? run : undefined;
  });
}

describe('the playground (1280×860)', () => {
  let ui: Playground;
  /** The thread the chat test opens and the requires_action and timeline tests continue. */
  let chatThreadId: string;
  let weatherAssistantId: string;

  before(async () => {
    ui = await Playground.open({ width: 1280, height: 860 });
  });
  after(() => ui?.close());
  afterEach(() => {
    ui.assertPrivate();
    recorder.assertNoViolations();
  });

  test('without a key it asks for one; a wrong key shows the API’s message; the right one opens the app', async () => {
    const { page } = ui;
    await ui.enterKey('sk-wrong-key-4321');
    const alert = await ui.alert('Incorrect API key provided');
    assert.doesNotMatch(await alert.innerText(), /sk-wrong-key-4321/, 'the wrong key is not shown whole');

    await page.getByRole('button', { name: 'Forget key', exact: true }).click();
    await ui.enterKey(KEY);
    await ui.navLink('Assistants').waitFor();
    await ui.heading('Assistants').waitFor();
    const kept = await page.evaluate(() =>
      (globalThis as unknown as DomWindow).sessionStorage.getItem('assistd.apiKey'),
    );
    assert.equal(kept, KEY, 'the key is kept in session storage');
    const authorized = ui.requests.filter((r) => new URL(r.url()).pathname.startsWith('/v1/')).at(-1);
    assert.ok(authorized, 'the app called the API');
    assert.equal((await authorized.allHeaders())['authorization'], `Bearer ${KEY}`, 'the API is called with the key');
  });

  test('a server error shows the API’s error message', async () => {
    await ui.go('/threads/thread_missing');
    await ui.alert("No thread found with id 'thread_missing'.");
  });

  test('creates an assistant with a function tool; its JSON schema is validated before saving', async () => {
    const { page } = ui;
    await ui.navLink('Assistants').click();
    await ui.heading('Assistants').waitFor();
    await page.getByRole('button', { name: 'New assistant', exact: true }).click();
    const form = page.getByRole('form', { name: 'Assistant', exact: true });
    await form.getByLabel('Name', { exact: true }).fill('Forecaster');
    await form.getByLabel('Model', { exact: true }).fill('gpt-test');
    await form.getByLabel('Instructions', { exact: true }).fill('Answer questions about the weather.');
    await form.getByLabel('Temperature', { exact: true }).fill('0.3');
    await form.getByRole('button', { name: 'Add function', exact: true }).click();
    const tool = form.getByRole('group', { name: 'Function 1', exact: true });
    await tool.getByLabel('Function name', { exact: true }).fill('get_forecast');
    await tool.getByLabel('Function description', { exact: true }).fill('The forecast for a city');

    // Not JSON: refused in the page, nothing saved.
    const schema = tool.getByLabel('Parameters (JSON schema)', { exact: true });
    await schema.fill('{"type": "object", "properties": {');
    await form.getByRole('button', { name: 'Save assistant', exact: true }).click();
    await ui.alert('Parameters');
    assert.deepEqual((await sdk.beta.assistants.list()).data, [], 'an invalid schema saves nothing');

    await schema.fill(JSON.stringify(WEATHER_SCHEMA, null, 2));
    await form.getByRole('button', { name: 'Save assistant', exact: true }).click();
    await page.getByRole('listitem').filter({ hasText: 'Forecaster' }).first().waitFor();

    const [saved, ...others] = (await sdk.beta.assistants.list()).data;
    assert.equal(others.length, 0);
    assert.equal(saved?.name, 'Forecaster');
    assert.equal(saved.model, 'gpt-test');
    assert.equal(saved.instructions, 'Answer questions about the weather.');
    assert.equal(saved.temperature, 0.3);
    assert.equal(saved.tools.length, 1);
    const [fn] = saved.tools;
    assert.equal(fn?.type, 'function');
    assert.equal(fn.function.name, 'get_forecast');
    assert.equal(fn.function.description, 'The forecast for a city');
    assert.deepEqual(fn.function.parameters, WEATHER_SCHEMA);
    await ui.screenshot('assistants.png');

    // Edit: the form opens with the saved values; a blank temperature goes back to the default.
    const item = page.getByRole('list', { name: 'Assistants', exact: true }).getByRole('listitem').filter({
      hasText: 'Forecaster',
    });
    await item.getByRole('button', { name: 'Edit', exact: true }).click();
    const editing = page.getByRole('form', { name: 'Assistant', exact: true });
    assert.equal(await editing.getByLabel('Name', { exact: true }).inputValue(), 'Forecaster');
    assert.equal(await editing.getByLabel('Temperature', { exact: true }).inputValue(), '0.3');
    await editing.getByLabel('Name', { exact: true }).fill('Forecaster 2');
    await editing.getByLabel('Temperature', { exact: true }).fill('');
    await editing.getByRole('button', { name: 'Save assistant', exact: true }).click();
    await ui.untilText(item, 'Forecaster 2', 'the edited assistant');
    const edited = await sdk.beta.assistants.retrieve(saved.id);
    assert.equal(edited.name, 'Forecaster 2');
    assert.equal(edited.temperature, 1, 'a cleared temperature is the default again');
    assert.deepEqual(edited.tools, saved.tools, 'what the edit did not touch is kept');

    // Delete, once confirmed.
    page.once('dialog', (dialog) => void dialog.accept());
    await item.getByRole('button', { name: 'Delete', exact: true }).click();
    await item.waitFor({ state: 'detached', timeout: WAIT_MS });
    assert.deepEqual((await sdk.beta.assistants.list()).data, [], 'the assistant is deleted');
  });

  test('editing an assistant keeps the tool settings the form does not show (strict, max_num_results, ranking)', async () => {
    const { page } = ui;
    const created = await sdk.beta.assistants.create({
      name: 'Strict helper',
      model: 'gpt-test',
      tools: [
        { type: 'function', function: { name: 'get_weather', parameters: WEATHER_SCHEMA, strict: true } },
        {
          type: 'file_search',
          file_search: { max_num_results: 7, ranking_options: { ranker: 'auto', score_threshold: 0.4 } },
        },
      ],
    });
    // Through another view: the list is read again when its view opens.
    await ui.navLink('Threads').click();
    await ui.navLink('Assistants').click();
    const item = page.getByRole('list', { name: 'Assistants', exact: true }).getByRole('listitem').filter({
      hasText: 'Strict helper',
    });
    await item.getByRole('button', { name: 'Edit', exact: true }).click();
    const form = page.getByRole('form', { name: 'Assistant', exact: true });
    await form.getByLabel('Name', { exact: true }).fill('Strict helper 2');
    await form.getByRole('button', { name: 'Save assistant', exact: true }).click();
    await ui.untilText(item, 'Strict helper 2', 'the edited assistant');
    const edited = await sdk.beta.assistants.retrieve(created.id);
    assert.equal(edited.name, 'Strict helper 2');
    assert.deepEqual(edited.tools, created.tools, 'the tools are saved as they were');
    await sdk.beta.assistants.delete(created.id);
  });

  test('chats with streaming: the answer grows token by token; Send is reachable by keyboard', async () => {
    const { page } = ui;
    weatherAssistantId = (
      await sdk.beta.assistants.create({
        name: 'Weather helper',
        model: 'gpt-test',
        instructions: 'Use get_weather for the weather.',
        tools: [{ type: 'function', function: { name: 'get_weather', parameters: WEATHER_SCHEMA } }],
      })
    ).id;
    await ui.go('/assistants');
    const item = page.getByRole('listitem').filter({ hasText: 'Weather helper' });
    await item.getByRole('button', { name: 'Chat', exact: true }).click();
    chatThreadId = await ui.threadId();

    upstream.enqueue({ text: STREAMED, chunkDelayMs: 150 });
    const message = page.getByRole('textbox', { name: 'Message', exact: true });
    await message.focus();
    await page.keyboard.type('Hello there');
    await page.keyboard.press('Tab');
    assert.ok(await ui.isFocused(page.getByRole('button', { name: 'Send', exact: true })), 'Tab leads to Send');
    await page.keyboard.press('Enter');

    await ui.untilText(ui.messages.getByRole('article', { name: 'user message', exact: true }).last(), 'Hello there');
    const full = STREAMED.join('');
    await eventually('part of the answer, before all of it', WAIT_MS, async () => {
      const partial = await ui.answer.innerText({ timeout: 100 }).catch(() => '');
      return partial.includes(STREAMED[0]!) && !partial.includes(STREAMED.at(-1)!) ? partial : undefined;
    });
    assert.ok(
      await page.getByRole('button', { name: 'Cancel run', exact: true }).isVisible(),
      'a run in progress can be cancelled',
    );
    await ui.untilText(ui.answer, full, 'the assistant message');

    const run = await settledRun(chatThreadId);
    assert.equal(run.status, 'completed');
    assert.equal(run.assistant_id, weatherAssistantId, 'the run is the chosen assistant’s');
    const started = ui.posts(`/v1/threads/${chatThreadId}/runs`);
    assert.equal(started.length, 1);
    assert.equal((started[0] as { stream?: boolean }).stream, true, 'the run is streamed');
    await ui.screenshot('chat.png');
  });

  test('answers requires_action through the form; the model gets the typed output', async () => {
    const { page } = ui;
    assert.ok(chatThreadId, 'the chat test opened a thread');
    const seen = upstream.requests.length;
    upstream.enqueue(
      {
        toolCalls: [{ name: 'get_weather', arguments: JSON.stringify({ city: 'Oslo' }) }],
        usage: { prompt_tokens: 120, completion_tokens: 15 },
      },
      { text: ['It is sunny ', 'in Oslo, ', '21 °C.'], usage: { prompt_tokens: 150, completion_tokens: 9 } },
    );
    await page.getByRole('textbox', { name: 'Message', exact: true }).fill('What is the weather in Oslo?');
    await page.getByRole('button', { name: 'Send', exact: true }).click();

    const form = page.getByRole('form', { name: 'Tool outputs', exact: true });
    await ui.untilText(form, 'get_weather', 'the form Tool outputs');
    await ui.untilText(form, '"city": "Oslo"', 'the form Tool outputs');
    const output = '{"sky":"sunny","celsius":21}';
    await form.getByLabel('Output for get_weather', { exact: true }).fill(output);
    await ui.screenshot('requires-action.png');
    await form.getByRole('button', { name: 'Submit outputs', exact: true }).click();

    await ui.untilText(ui.answer, 'It is sunny in Oslo, 21 °C.', 'the assistant message');
    const run = await settledRun(chatThreadId);
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const requests = await upstream.waitForRequests(seen + 2);
    assert.equal(requests.length, seen + 2);
    assert.deepEqual(toolMessages(requests[seen + 1]), [output], 'the model was sent the typed output');
    const submitted = ui.posts(`/v1/threads/${chatThreadId}/runs/${run.id}/submit_tool_outputs`);
    assert.equal(submitted.length, 1);
    assert.equal((submitted[0] as { stream?: boolean }).stream, true, 'the outputs are submitted streaming');
  });

  test('the run’s timeline shows its status history, steps and usage', async () => {
    const { page } = ui;
    const run = await latestRun(chatThreadId);
    assert.deepEqual(run.usage, { prompt_tokens: 270, completion_tokens: 24, total_tokens: 294 });
    await page.getByRole('list', { name: 'Runs', exact: true }).getByRole('link', { name: 'Timeline' }).first().click();
    await ui.heading(`Run ${run.id}`).waitFor();
    await page.getByText('Status: completed').waitFor();

    // The wait for the tool output is part of the history: the run asked for it, then went on and completed.
    const history = page.getByRole('list', { name: 'Status history', exact: true }).getByRole('listitem');
    const statuses = ['created', 'in_progress', 'requires_action', 'in_progress', 'completed'];
    await eventually('the whole status history', WAIT_MS, async () =>
      (await history.count()) === statuses.length ? true : undefined,
    );
    assert.deepEqual(
      (await history.allInnerTexts()).map((item) => item.trim().split(/\s+/)[0]),
      statuses,
      'the run waited for its tool output between two in_progress',
    );

    const steps = page.getByRole('list', { name: 'Steps', exact: true }).getByRole('article', { name: /^Step step_/ });
    await eventually('the two steps', WAIT_MS, async () => ((await steps.count()) === 2 ? true : undefined));
    const texts = (await steps.allInnerTexts()).join('\n');
    for (const shown of ['tool_calls', 'message_creation', 'get_weather', 'Oslo', 'sunny'])
      assert.ok(texts.includes(shown), `the steps show ${shown}: ${texts}`);

    const total = page.getByRole('table', { name: 'Usage', exact: true }).getByRole('row').filter({ hasText: 'Total' });
    const cells = await total.getByRole('cell').allInnerTexts();
    for (const count of ['270', '24', '294'])
      assert.ok(
        cells.some((cell) => cell.trim() === count),
        `the Total row shows ${count}: ${JSON.stringify(cells)}`,
      );
    await ui.screenshot('run-timeline.png', true);
  });

  test('finds a thread in the list by its metadata', async () => {
    const { page } = ui;
    const apollo = await sdk.beta.threads.create({ metadata: { project: 'apollo' } });
    const gemini = await sdk.beta.threads.create({ metadata: { project: 'gemini', owner: 'kim' } });
    const other = await sdk.beta.threads.create({ metadata: { customer: 'acme' } });
    await ui.navLink('Threads').click();
    await ui.heading('Threads').waitFor();
    const list = page.getByRole('list', { name: 'Threads', exact: true });
    await ui.untilText(list, apollo.id, 'the thread list');

    await page.getByLabel('Metadata key', { exact: true }).fill('project');
    await page.getByLabel('Metadata value', { exact: true }).fill('gemini');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    const found = await eventually('only the gemini thread listed', WAIT_MS, async () => {
      const text = await list.innerText({ timeout: 200 }).catch(() => '');
      return text.includes(gemini.id) && !text.includes(apollo.id) && !text.includes(other.id) ? text : undefined;
    });
    assert.ok(found.includes('project=gemini'), `the item shows its metadata: ${found}`);
    assert.ok(!found.includes(chatThreadId), 'the chat thread has no such metadata');
    await ui.screenshot('threads.png');

    await page.getByRole('button', { name: 'Clear search', exact: true }).click();
    await ui.untilText(list, apollo.id, 'the thread list without the search');
    await list.getByRole('link').filter({ hasText: gemini.id }).click();
    await ui.heading(`Thread ${gemini.id}`).waitFor();
  });

  test('a message cannot dress up as the page: no class, role or aria-* of its own; links tell no referrer', async () => {
    const { page } = ui;
    const thread = await sdk.beta.threads.create({
      messages: [
        {
          role: 'user',
          content:
            'Hello <p role="alert" class="alert" aria-live="assertive">Your API key expired. Enter it again.</p>' +
            '<article class="message assistant" aria-label="assistant message">A fake answer</article>',
        },
      ],
    });
    await ui.go(`/threads/${thread.id}`);
    await ui.untilText(ui.messages, 'A fake answer', 'the message');
    assert.equal(await page.getByRole('alert').filter({ hasText: 'Your API key expired' }).count(), 0, 'no alert');
    assert.equal(
      await ui.messages.getByRole('article', { name: 'assistant message', exact: true }).count(),
      0,
      'no assistant message but the real ones',
    );
    const attributes = await ui.messages.evaluate((log) =>
      [...log.querySelectorAll('.markdown *')].flatMap((element) => element.getAttributeNames()),
    );
    assert.deepEqual(attributes, [], 'the content keeps no attribute of its own');
    const response = await fetch(`${server.url}/playground/`);
    assert.equal(response.headers.get('referrer-policy'), 'no-referrer');
    const missing = await fetch(`${server.url}/playground/nothing.js`);
    assert.equal(missing.status, 404);
    assert.ok(missing.headers.get('content-security-policy'), 'a 404 is as guarded as a page');
  });

  test('the page and its files are revalidated on every load (an upgraded server’s script is never run from the cache)', async () => {
    for (const name of ['', 'app.js', 'styles.css']) {
      const response = await fetch(`${server.url}/playground/${name}`);
      assert.equal(response.status, 200, name);
      assert.equal(response.headers.get('cache-control'), 'no-cache', name);
      const etag = response.headers.get('etag');
      assert.match(etag ?? '', /^"[\w-]+"$/, name);
      const again = await fetch(`${server.url}/playground/${name}`, { headers: { 'if-none-match': etag! } });
      assert.equal(again.status, 304, name);
      assert.equal(await again.text(), '', name);
      const other = await fetch(`${server.url}/playground/${name}`, { headers: { 'if-none-match': '"other"' } });
      assert.equal(other.status, 200, name);
      // A list, and the weak form a compressing proxy makes of it.
      const listed = await fetch(`${server.url}/playground/${name}`, {
        headers: { 'if-none-match': `"other", W/${etag}` },
      });
      assert.equal(listed.status, 304, name);
    }
  });

  test('uploads a file: it is listed, and the API has it', async () => {
    const { page } = ui;
    const text = 'Meeting notes: the playground ships on Friday.\n';
    await ui.navLink('Files').click();
    await ui.heading('Files').waitFor();
    await page
      .getByLabel('Upload files', { exact: true })
      .setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from(text) });
    const item = page.getByRole('list', { name: 'Files', exact: true }).getByRole('listitem').filter({
      hasText: 'notes.txt',
    });
    const shown = await ui.untilText(item, 'assistants', 'the item of notes.txt');
    assert.ok(shown.includes(String(Buffer.byteLength(text))), `the item shows the size: ${shown}`);

    const files = (await sdk.files.list()).data.filter((f) => f.filename === 'notes.txt');
    assert.equal(files.length, 1);
    assert.equal(files[0]!.purpose, 'assistants');
    assert.equal(files[0]!.bytes, Buffer.byteLength(text));
    await ui.screenshot('files.png');
  });

  test('a file_search answer shows its citation as a numbered link and the cited file under Sources', async () => {
    const { page } = ui;
    const store = await coffeeStore('office');
    const assistant = await sdk.beta.assistants.create({
      name: 'Office helper',
      model: 'gpt-test',
      tools: [{ type: 'file_search' }],
      tool_resources: { file_search: { vector_store_ids: [store.id] } },
    });
    const thread = await sdk.beta.threads.create({
      messages: [{ role: 'user', content: 'When is the espresso machine descaled?' }],
    });
    upstream.enqueue(fileSearchCall('espresso machine descaled'), {
      text: ['The machine is descaled on Fridays', '【0:0†coffee.txt】.'],
    });
    const run = await sdk.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));

    await ui.go(`/threads/${thread.id}`);
    const answer = await ui.untilText(ui.answer, 'descaled on Fridays', 'the assistant message');
    assert.ok(!answer.includes('【'), `the marker is replaced by a link: ${answer}`);
    await ui.answer.getByRole('link', { name: '[1]', exact: true }).waitFor();
    await ui.untilText(page.getByRole('list', { name: 'Sources', exact: true }), 'coffee.txt', 'the Sources list');
  });

  test('a code_interpreter answer shows its plot', async () => {
    const assistant = await sdk.beta.assistants.create({
      name: 'Plotter',
      model: 'gpt-test',
      tools: [{ type: 'code_interpreter' }],
    });
    const thread = await sdk.beta.threads.create({ messages: [{ role: 'user', content: 'Plot the sales.' }] });
    upstream.enqueue(
      python(
        "import matplotlib.pyplot as plt\nplt.bar(['north', 'south', 'east'], [10, 20, 30])\nplt.title('Sales')\n" +
          "open('/mnt/data/sales.csv', 'w').write('region,sales\\nnorth,10\\n')\nprint('plotted')",
      ),
      { text: 'Here is the chart of sales by region, and [the data](sandbox:/mnt/data/sales.csv).' },
    );
    const run = await sdk.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const [answer] = (await sdk.beta.threads.messages.list(thread.id, { run_id: run.id })).data;
    const image = answer?.content.find((part) => part.type === 'image_file');
    assert.ok(image, 'the answer has an image_file part');

    await ui.go(`/threads/${thread.id}`);
    const img = ui.answer.getByRole('img', { name: `Image ${image.image_file.file_id}`, exact: true });
    await img.waitFor();
    const width = await eventually('the plot to load', WAIT_MS, async () => {
      const natural = await img.evaluate((element) => (element as unknown as { naturalWidth: number }).naturalWidth);
      return natural > 0 ? natural : undefined;
    });
    assert.ok(width > 0);
    await ui.untilText(ui.answer, 'Here is the chart of sales by region', 'the assistant message');

    // The `sandbox:` link of the answer downloads the file the cell wrote, fetched with the key.
    const downloaded = ui.page.waitForEvent('download', { timeout: WAIT_MS });
    await ui.answer.getByRole('link', { name: 'the data', exact: true }).click();
    const download = await downloaded;
    assert.equal(download.suggestedFilename(), 'sales.csv');
    const saved = await download.path();
    assert.equal(readFileSync(saved, 'utf8'), 'region,sales\nnorth,10\n');
  });

  test('cancels a run waiting for tool outputs; the thread takes messages again', async () => {
    const { page } = ui;
    const assistant = await sdk.beta.assistants.create({
      name: 'Waiting helper',
      model: 'gpt-test',
      tools: [{ type: 'function', function: { name: 'get_weather', parameters: WEATHER_SCHEMA } }],
    });
    const threadId = await ui.openChat(assistant.id);
    upstream.enqueue({ toolCalls: [{ name: 'get_weather', arguments: JSON.stringify({ city: 'Bergen' }) }] });
    await ui.send('What is the weather in Bergen?');
    const form = page.getByRole('form', { name: 'Tool outputs', exact: true });
    await ui.untilText(form, 'Bergen', 'the form Tool outputs');
    const send = page.getByRole('button', { name: 'Send', exact: true });
    assert.ok(await send.isDisabled(), 'no message while the run waits');

    const cancel = page.getByRole('button', { name: 'Cancel run', exact: true });
    await cancel.click();
    const run = await settledRun(threadId);
    assert.equal(run.status, 'cancelled');
    assert.equal(ui.posts(`/v1/threads/${threadId}/runs/${run.id}/cancel`).length, 1, 'the page asked to cancel');
    await form.waitFor({ state: 'detached' });
    await cancel.waitFor({ state: 'hidden' });
    await ui.untilText(page.getByRole('list', { name: 'Runs', exact: true }), 'cancelled', 'the runs list');
    assert.ok(await send.isEnabled(), 'Send is back once the run is cancelled');
  });

  test('a run that fails shows its error in the chat', async () => {
    const assistant = await sdk.beta.assistants.create({ name: 'Failing helper', model: 'gpt-test' });
    const threadId = await ui.openChat(assistant.id);
    upstream.enqueue({ status: 401 });
    await ui.send('Are you there?');
    const run = await settledRun(threadId);
    assert.equal(run.status, 'failed');
    assert.ok(run.last_error, 'the run says why it failed');
    const alert = await ui.alert(run.last_error.message);
    assert.match(await alert.innerText(), /failed/, 'the alert says the run failed');
  });

  test('a message the thread refuses stays in the composer; Send waits until the message is added', async () => {
    const { page } = ui;
    const assistant = await sdk.beta.assistants.create({ name: 'Patient helper', model: 'gpt-test' });
    const message = page.getByRole('textbox', { name: 'Message', exact: true });
    const send = page.getByRole('button', { name: 'Send', exact: true });

    // The thread deleted behind the page's back: the POST of the message is a 404, and the text is still there.
    const goneId = await ui.openChat(assistant.id);
    await sdk.beta.threads.delete(goneId);
    await ui.send('Keep this text');
    await ui.alert(`No thread found with id '${goneId}'.`);
    assert.equal(await message.inputValue(), 'Keep this text', 'the refused message can be sent again');

    // The POST of the message held: Send is disabled, and a second Enter sends nothing more.
    const threadId = await ui.openChat(assistant.id);
    const messagesPath = `/v1/threads/${threadId}/messages`;
    let arrived = () => {};
    const reached = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const isPost = (url: URL) => url.pathname === messagesPath;
    await page.route(isPost, async (route) => {
      if (route.request().method() === 'POST') {
        arrived();
        await held;
      }
      await route.continue();
    });
    upstream.enqueue({ text: 'Got it.' });
    await message.fill('Only once');
    await message.press('Enter');
    await reached;
    assert.ok(await send.isDisabled(), 'Send waits while the message is added');
    await message.press('Enter');
    release();
    await ui.untilText(ui.answer, 'Got it.', 'the assistant message');
    await page.unroute(isPost);
    assert.equal((await settledRun(threadId)).status, 'completed');
    assert.equal(ui.posts(messagesPath).length, 1, 'the message is sent once');
    assert.equal(ui.posts(`/v1/threads/${threadId}/runs`).length, 1, 'one run');
    assert.equal(await message.inputValue(), '', 'the composer is cleared once the message is added');
  });

  test('a citation and a sandbox: link after an emoji replace their own markers (indices count code points)', async () => {
    const store = await coffeeStore('kitchen');
    const assistant = await sdk.beta.assistants.create({
      name: 'Emoji helper',
      model: 'gpt-test',
      tools: [{ type: 'file_search' }, { type: 'code_interpreter' }],
      tool_resources: { file_search: { vector_store_ids: [store.id] } },
    });
    const thread = await sdk.beta.threads.create({ messages: [{ role: 'user', content: 'When is it descaled?' }] });
    // Each 😀 is one code point but two UTF-16 units: sliced by JavaScript indices, both markers land 2 to 4 late.
    upstream.enqueue(
      fileSearchCall('espresso machine descaled'),
      python("open('/mnt/data/beans.csv', 'w').write('bean,kg\\narabica,3\\n')\nprint('written')"),
      {
        text: [
          '☕😀😀 Descaled on Fridays',
          '【0:0†coffee.txt】 ok, ',
          'see [the beans](sandbox:/mnt/data/beans.csv) 😀.',
        ],
      },
    );
    const run = await sdk.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const [answer] = (await sdk.beta.threads.messages.list(thread.id, { run_id: run.id })).data;
    const part = answer?.content.find((p) => p.type === 'text');
    assert.deepEqual(
      part?.text.annotations.map((a) => a.type),
      ['file_citation', 'file_path'],
      'the server annotated both markers',
    );

    await ui.go(`/threads/${thread.id}`);
    const shown = await ui.untilText(ui.answer, 'ok, see', 'the assistant message');
    assert.ok(shown.includes('☕😀😀 Descaled on Fridays[1] ok, see the beans 😀.'), `each marker replaced: ${shown}`);
    await ui.answer.getByRole('link', { name: '[1]', exact: true }).waitFor();
    const downloaded = ui.page.waitForEvent('download', { timeout: WAIT_MS });
    await ui.answer.getByRole('link', { name: 'the beans', exact: true }).click();
    assert.equal((await downloaded).suggestedFilename(), 'beans.csv');
  });
});

describe('the playground on a narrow screen (375×760)', () => {
  let ui: Playground;

  before(async () => {
    ui = await Playground.open({ width: 375, height: 760 });
  });
  after(() => ui?.close());
  afterEach(() => ui.assertPrivate());

  test('chats with streaming without horizontal scrolling', async () => {
    const { page } = ui;
    await sdk.beta.assistants.create({ name: 'Pocket helper', model: 'gpt-test' });
    await ui.enterKey(KEY);
    await ui.go('/assistants');
    await page
      .getByRole('listitem')
      .filter({ hasText: 'Pocket helper' })
      .getByRole('button', { name: 'Chat', exact: true })
      .click();
    const threadId = await ui.threadId();

    upstream.enqueue({ text: ['Small screens ', 'work ', 'too.'], chunkDelayMs: 50 });
    await page.getByRole('textbox', { name: 'Message', exact: true }).fill('Does this fit on a phone?');
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await ui.untilText(ui.answer, 'Small screens work too.', 'the assistant message');
    assert.equal((await settledRun(threadId)).status, 'completed');

    const overflow = await page.evaluate(() => {
      const root = (globalThis as unknown as DomWindow).document.documentElement;
      return root.scrollWidth - root.clientWidth;
    });
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow} px`);
    await ui.screenshot('narrow-chat.png');
  });

  test('cancels a run while its answer streams', async () => {
    const { page } = ui;
    const threadId = await ui.threadId();
    const words = Array.from({ length: 40 }, (_, i) => `word${i} `);
    upstream.enqueue({ text: words, chunkDelayMs: 200 });
    await page.getByRole('textbox', { name: 'Message', exact: true }).fill('Tell me a long story.');
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await eventually('part of the story', WAIT_MS, async () => {
      const partial = await ui.answer.innerText({ timeout: 100 }).catch(() => '');
      return partial.includes('word1 ') ? partial : undefined;
    });

    const cancel = page.getByRole('button', { name: 'Cancel run', exact: true });
    await cancel.click();
    const run = await settledRun(threadId);
    assert.equal(run.status, 'cancelled');
    assert.equal(ui.posts(`/v1/threads/${threadId}/runs/${run.id}/cancel`).length, 1, 'the page asked to cancel');
    await cancel.waitFor({ state: 'hidden', timeout: WAIT_MS });
    await ui.untilText(page.getByRole('list', { name: 'Runs', exact: true }), 'cancelled', 'the runs list');
    const shown = await ui.answer.innerText();
    assert.ok(!shown.includes('word39'), `the answer stopped where the run was cancelled: ${shown}`);
  });
});
