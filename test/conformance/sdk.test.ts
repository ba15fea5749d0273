import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, afterEach, before, describe, test } from 'node:test';
import OpenAI, { type APIError, toFile } from 'openai';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { type ServerProcess, spawnServer, tempDir } from '../support/server.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

/**
 * The official `openai` SDK against `assistd serve` running as its own process. Every JSON response the SDK receives
 * is validated against the official schema by the fetch wrapper; any violation fails the test that caused it.
 *
 * The suite runs once per storage backend: SQLite (a temporary data directory) and, when ASSISTD_TEST_DATABASE_URL
 * is set, PostgreSQL (a throwaway database on that server); without it the PostgreSQL half is skipped loudly.
 */

const IMAGE_URL = 'https://example.com/cat.png';

// ── helpers ───────────────────────────────────────────────────────────────────

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function assertCreatedAt(value: unknown): void {
  assert.ok(Number.isInteger(value), `created_at ${String(value)} is not an integer`);
  assert.ok(Math.abs((value as number) - nowSeconds()) <= 5, `created_at ${String(value)} is not close to now`);
}

function assertRequestId(value: unknown): void {
  assert.equal(typeof value, 'string');
  assert.match(value as string, /^req_/);
}

function textContent(value: string) {
  return [{ type: 'text', text: { value, annotations: [] } }];
}

/** Awaits a promise that must reject with the given SDK error class; returns the error. */
async function rejectsWith<E extends APIError>(
  promise: Promise<unknown>,
  kind: abstract new (...args: never[]) => E,
  status: number,
): Promise<E> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof kind, `expected ${kind.name}, got ${String(error)}`);
    assert.equal(error.status, status);
    assertRequestId(error.requestID);
    return error;
  }
  assert.fail(`expected ${kind.name}, but the request succeeded`);
}

async function assertNotFound(promise: Promise<unknown>, kind: string, id: string): Promise<void> {
  const error = await rejectsWith(promise, OpenAI.NotFoundError, 404);
  const message = `No ${kind} found with id '${id}'.`;
  assert.equal(error.message, `404 ${message}`);
  assert.deepEqual(error.error, { message, type: 'invalid_request_error', param: null, code: null });
  assert.equal(error.type, 'invalid_request_error');
}

// ── the fetch wrapper itself ──────────────────────────────────────────────────

describe('validating fetch', () => {
  test('records a schema violation instead of swallowing it, whatever form the SDK passes the request in', async () => {
    const invalid = { id: 'asst_1', object: 'assistant' }; // most required fields missing
    const fake = createValidatingFetch(
      async () =>
        Response.json(invalid, { status: 200, headers: { 'content-type': 'application/json; charset=utf-8' } }),
      { quiet: true },
    );
    await fake.fetch('http://x/v1/assistants/asst_1'); // string url, no init: GET
    await fake.fetch(new URL('http://x/v1/assistants/asst_1?x=1'), { method: 'get' }); // URL, lower-case method
    await fake.fetch(new Request('http://x/v1/assistants', { method: 'POST' })); // Request carrying its method
    assert.deepEqual(
      fake.requests.map((r) => `${r.method} ${r.path}${r.search}`),
      ['GET /v1/assistants/asst_1', 'GET /v1/assistants/asst_1?x=1', 'POST /v1/assistants'],
    );
    assert.equal(fake.violations.length, 3);
    assert.match(fake.violations[0]!.problem, /does not match Assistant/);
    assert.throws(() => fake.assertNoViolations(), /3 response\(s\) violate the official schema/);
    fake.assertNoViolations(); // already reported
    assert.throws(() => fake.assertNoViolations({ all: true }), /3 response\(s\)/);
  });

  test('validates error bodies, flags unparsable JSON and skips non-JSON responses', async () => {
    const bodies = [
      new Response('{"error":{"message":"x","type":"invalid_request_error","param":null,"code":null}}', {
        status: 404,
        headers: { 'content-type': 'application/json' },
      }),
      new Response('{"nope":', { status: 200, headers: { 'content-type': 'application/json' } }),
      new Response('data: {}\n\n', { status: 200, headers: { 'content-type': 'text/event-stream' } }),
    ];
    const fake = createValidatingFetch(async () => bodies.shift()!, { quiet: true });
    const first = await fake.fetch('http://x/v1/threads/thread_1');
    assert.equal(first.status, 404);
    assert.equal(((await first.json()) as { error: { message: string } }).error.message, 'x'); // body still readable
    await fake.fetch('http://x/v1/threads/thread_1');
    await fake.fetch('http://x/v1/threads/thread_1/runs', { method: 'POST' });
    assert.equal(fake.violations.length, 1);
    assert.match(fake.violations[0]!.problem, /invalid JSON body/);
  });
});

// ── the suite, once per storage backend ───────────────────────────────────────

interface Backend {
  /** The environment `assistd serve` gets, and how to remove its storage afterwards. */
  env: Record<string, string>;
  cleanup(): Promise<void>;
}

function conformanceSuite(name: string, provision: () => Promise<Backend>): void {
  describe(`on ${name}`, () => {
    let server: ServerProcess | undefined;
    let backend: Backend | undefined;
    let recorder: ValidatingFetch;
    let client: OpenAI;

    before(
      async () => {
        backend = await provision();
        server = await spawnServer(backend.env);
        recorder = createValidatingFetch();
        // No retries: a failing request must fail its test at once, not be retried into a different outcome.
        client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
      },
      { timeout: 30_000 },
    );

    afterEach(() => recorder?.assertNoViolations());

    after(async () => {
      try {
        recorder?.assertNoViolations({ all: true });
      } finally {
        await server?.stop();
        await backend?.cleanup();
      }
    });

    // ── assistants ────────────────────────────────────────────────────────────────

    describe('assistants through the official SDK', () => {
      const tools: OpenAI.Beta.AssistantTool[] = [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'The current weather in a city.',
            parameters: {
              type: 'object',
              properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['c', 'f'] } },
              required: ['city'],
              additionalProperties: false,
            },
          },
        },
        { type: 'code_interpreter' },
        { type: 'file_search' },
      ];
      // As OpenAI echoed them: with `strict` and file_search's ranking options filled in.
      const echoed = [
        { ...tools[0], function: { ...(tools[0] as OpenAI.Beta.FunctionTool).function, strict: false } },
        { type: 'code_interpreter' },
        { type: 'file_search', file_search: { ranking_options: { ranker: 'default_2024_08_21', score_threshold: 0 } } },
      ];
      const responseFormat: OpenAI.ResponseFormatJSONSchema = {
        type: 'json_schema',
        json_schema: {
          name: 'answer',
          description: 'A short answer.',
          schema: { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'] },
          strict: true,
        },
      };
      let assistantId: string;

      test('create returns the assistant with every field set', async () => {
        const assistant = await client.beta.assistants.create({
          model: 'gpt-4o',
          name: 'Weather bot',
          description: 'Answers weather questions.',
          instructions: 'Be brief.',
          tools,
          metadata: { team: 'conformance', tier: '1' },
          temperature: 0.5,
          top_p: 0.25,
          response_format: responseFormat,
        });
        assistantId = assistant.id;
        assert.match(assistant.id, /^asst_/);
        assertRequestId(assistant._request_id);
        assert.equal(assistant.object, 'assistant');
        assertCreatedAt(assistant.created_at);
        assert.equal(assistant.name, 'Weather bot');
        assert.equal(assistant.description, 'Answers weather questions.');
        assert.equal(assistant.model, 'gpt-4o');
        assert.equal(assistant.instructions, 'Be brief.');
        assert.deepEqual(assistant.tools, echoed);
        assert.deepEqual(assistant.metadata, { team: 'conformance', tier: '1' });
        assert.equal(assistant.temperature, 0.5);
        assert.equal(assistant.top_p, 0.25);
        assert.deepEqual(assistant.response_format, responseFormat);
      });

      test('a minimal assistant gets the documented defaults', async () => {
        const assistant = await client.beta.assistants.create({ model: 'gpt-4o-mini' });
        assert.equal(assistant.name, null);
        assert.equal(assistant.description, null);
        assert.equal(assistant.instructions, null);
        assert.deepEqual(assistant.tools, []);
        assert.deepEqual(assistant.metadata, {});
        assert.equal(assistant.temperature, 1);
        assert.equal(assistant.top_p, 1);
        assert.equal(assistant.response_format, 'auto');
        await client.beta.assistants.delete(assistant.id);
      });

      test('retrieve returns what create returned', async () => {
        const assistant = await client.beta.assistants.retrieve(assistantId);
        assertRequestId(assistant._request_id);
        assert.equal(assistant.id, assistantId);
        assert.equal(assistant.object, 'assistant');
        assert.equal(assistant.name, 'Weather bot');
        assert.deepEqual(assistant.tools, echoed);
        assert.deepEqual(assistant.metadata, { team: 'conformance', tier: '1' });
        assert.deepEqual(assistant.response_format, responseFormat);
      });

      test('update changes the given fields and keeps the others', async () => {
        const updated = await client.beta.assistants.update(assistantId, {
          name: 'Weather bot v2',
          instructions: 'Be very brief.',
          model: 'gpt-4.1',
          temperature: 0.2,
          tools: [{ type: 'code_interpreter' }],
          metadata: { team: 'sdk', version: '2' },
        });
        assert.equal(updated.id, assistantId);
        assert.equal(updated.name, 'Weather bot v2');
        assert.equal(updated.instructions, 'Be very brief.');
        assert.equal(updated.model, 'gpt-4.1');
        assert.equal(updated.temperature, 0.2);
        assert.deepEqual(updated.tools, [{ type: 'code_interpreter' }]);
        assert.deepEqual(updated.metadata, { team: 'sdk', version: '2' });
        // untouched
        assert.equal(updated.description, 'Answers weather questions.');
        assert.equal(updated.top_p, 0.25);
        assert.deepEqual(updated.response_format, responseFormat);

        const retrieved = await client.beta.assistants.retrieve(assistantId);
        assert.deepEqual({ ...retrieved }, { ...updated });
      });

      test('list honours limit and order, and auto-pagination sees every assistant exactly once', async () => {
        const created: string[] = [];
        for (let i = 0; i < 5; i++)
          created.push((await client.beta.assistants.create({ model: 'gpt-4o', name: `paged ${i}` })).id);

        const newest = await client.beta.assistants.list({ limit: 2 });
        assertRequestId((await client.beta.assistants.list({ limit: 2 }).withResponse()).request_id);
        assert.equal(newest.data.length, 2);
        assert.equal(newest.has_more, true);
        assert.deepEqual(
          newest.data.map((a) => a.id),
          [created[4], created[3]],
        );

        const oldest = await client.beta.assistants.list({ limit: 1, order: 'asc' });
        assert.deepEqual(
          oldest.data.map((a) => a.id),
          [assistantId],
        );
        assert.equal(oldest.has_more, true);

        const all = await client.beta.assistants.list({ limit: 100, order: 'asc' });
        assert.equal(all.has_more, false);
        assert.deepEqual(
          all.data.map((a) => a.id),
          [assistantId, ...created],
        );

        const seen: string[] = [];
        for await (const assistant of client.beta.assistants.list({ limit: 2 })) {
          assert.equal(assistant.object, 'assistant');
          seen.push(assistant.id);
        }
        assert.equal(new Set(seen).size, seen.length, `an assistant was seen twice: ${seen.join(', ')}`);
        assert.deepEqual(seen, [...created].reverse().concat(assistantId));

        for (const id of created) await client.beta.assistants.delete(id);
      });

      test('delete, then retrieve, update and delete are 404s', async () => {
        const deleted = await client.beta.assistants.delete(assistantId);
        assertRequestId(deleted._request_id);
        assert.deepEqual({ ...deleted }, { id: assistantId, object: 'assistant.deleted', deleted: true });
        await assertNotFound(client.beta.assistants.retrieve(assistantId), 'assistant', assistantId);
        await assertNotFound(client.beta.assistants.update(assistantId, { name: 'x' }), 'assistant', assistantId);
        await assertNotFound(client.beta.assistants.delete(assistantId), 'assistant', assistantId);
      });

      test('an unknown body field is a BadRequestError naming it', async () => {
        const error = await rejectsWith(
          client.beta.assistants.create({ model: 'm', foo: 1 } as unknown as OpenAI.Beta.AssistantCreateParams),
          OpenAI.BadRequestError,
          400,
        );
        assert.equal(error.param, 'foo');
        assert.equal(error.code, 'unknown_parameter');
        assert.equal(error.type, 'invalid_request_error');
        assert.equal(error.message, "400 Unknown parameter: 'foo'.");
      });

      test('invalid values are BadRequestErrors with the offending param', async () => {
        const missing = await rejectsWith(
          client.beta.assistants.create({} as unknown as OpenAI.Beta.AssistantCreateParams),
          OpenAI.BadRequestError,
          400,
        );
        assert.equal(missing.param, 'model');
        assert.equal(missing.code, 'missing_required_parameter');

        const tooHot = await rejectsWith(
          client.beta.assistants.create({ model: 'm', temperature: 3 }),
          OpenAI.BadRequestError,
          400,
        );
        assert.equal(tooHot.param, 'temperature');
        assert.equal(tooHot.code, 'decimal_above_max_value');

        const badId = await rejectsWith(client.beta.assistants.retrieve('nope'), OpenAI.BadRequestError, 400);
        assert.equal(badId.param, 'assistant_id');
        assert.equal(badId.code, 'invalid_value');
      });
    });

    // ── threads ───────────────────────────────────────────────────────────────────

    describe('threads through the official SDK', () => {
      let threadId: string;

      test('create with initial messages, metadata and tool_resources', async () => {
        const thread = await client.beta.threads.create({
          messages: [
            { role: 'user', content: 'Hello there.', metadata: { n: '1' } },
            {
              role: 'user',
              content: [
                { type: 'text', text: 'What is in this picture?' },
                { type: 'image_url', image_url: { url: IMAGE_URL } },
              ],
            },
          ],
          metadata: { purpose: 'conformance' },
          tool_resources: { code_interpreter: { file_ids: [] } },
        });
        threadId = thread.id;
        assert.match(thread.id, /^thread_/);
        assertRequestId(thread._request_id);
        assert.equal(thread.object, 'thread');
        assertCreatedAt(thread.created_at);
        assert.deepEqual(thread.metadata, { purpose: 'conformance' });
        assert.deepEqual(thread.tool_resources, { code_interpreter: { file_ids: [] } });

        const page = await client.beta.threads.messages.list(threadId, { order: 'asc' });
        assert.equal(page.has_more, false);
        assert.equal(page.data.length, 2);
        const [first, second] = page.data;
        for (const message of page.data) {
          assert.match(message.id, /^msg_/);
          assert.equal(message.object, 'thread.message');
          assert.equal(message.thread_id, threadId);
          assert.equal(message.role, 'user');
          assert.equal(message.assistant_id, null);
          assert.equal(message.run_id, null);
          assert.equal(message.status, 'completed');
          assertCreatedAt(message.created_at);
        }
        assert.deepEqual(first!.content, textContent('Hello there.'));
        assert.deepEqual(first!.metadata, { n: '1' });
        assert.deepEqual(second!.content, [
          { type: 'text', text: { value: 'What is in this picture?', annotations: [] } },
          { type: 'image_url', image_url: { url: IMAGE_URL, detail: 'auto' } },
        ]);
        assert.deepEqual(second!.metadata, {});
      });

      test('create with no body is an empty thread', async () => {
        const thread = await client.beta.threads.create();
        assert.match(thread.id, /^thread_/);
        assert.deepEqual(thread.metadata, {});
        const page = await client.beta.threads.messages.list(thread.id);
        assert.deepEqual(page.data, []);
        assert.equal(page.has_more, false);
        await client.beta.threads.delete(thread.id);
      });

      test('retrieve', async () => {
        const thread = await client.beta.threads.retrieve(threadId);
        assertRequestId(thread._request_id);
        assert.equal(thread.id, threadId);
        assert.equal(thread.object, 'thread');
        assert.deepEqual(thread.metadata, { purpose: 'conformance' });
        assert.deepEqual(thread.tool_resources, { code_interpreter: { file_ids: [] } });
      });

      test('update replaces the metadata', async () => {
        const updated = await client.beta.threads.update(threadId, { metadata: { purpose: 'updated', extra: 'yes' } });
        assert.equal(updated.id, threadId);
        assert.deepEqual(updated.metadata, { purpose: 'updated', extra: 'yes' });
        assert.deepEqual(updated.tool_resources, { code_interpreter: { file_ids: [] } });
        assert.deepEqual((await client.beta.threads.retrieve(threadId)).metadata, { purpose: 'updated', extra: 'yes' });
      });

      test('an unknown body field is a BadRequestError', async () => {
        const error = await rejectsWith(
          client.beta.threads.update(threadId, { colour: 'red' } as unknown as OpenAI.Beta.ThreadUpdateParams),
          OpenAI.BadRequestError,
          400,
        );
        assert.equal(error.param, 'colour');
        assert.equal(error.code, 'unknown_parameter');
      });

      test('delete, then the thread and its messages are 404s', async () => {
        const deleted = await client.beta.threads.delete(threadId);
        assertRequestId(deleted._request_id);
        assert.deepEqual({ ...deleted }, { id: threadId, object: 'thread.deleted', deleted: true });
        await assertNotFound(client.beta.threads.retrieve(threadId), 'thread', threadId);
        await assertNotFound(client.beta.threads.update(threadId, { metadata: {} }), 'thread', threadId);
        await assertNotFound(client.beta.threads.messages.list(threadId), 'thread', threadId);
        await assertNotFound(
          client.beta.threads.messages.create(threadId, { role: 'user', content: 'late' }),
          'thread',
          threadId,
        );
        await assertNotFound(client.beta.threads.delete(threadId), 'thread', threadId);
      });
    });

    // ── messages ──────────────────────────────────────────────────────────────────

    describe('messages through the official SDK', () => {
      let threadId: string;
      let textId: string;
      let partsId: string;
      let fileId: string;

      before(async () => {
        threadId = (await client.beta.threads.create()).id;
        const file = await toFile(Buffer.from('A short report.\n'), 'report.txt');
        fileId = (await client.files.create({ file, purpose: 'assistants' })).id;
      });

      test('create with string content, attachments and metadata', async () => {
        const message = await client.beta.threads.messages.create(threadId, {
          role: 'user',
          content: 'Summarise the attached file.',
          attachments: [{ file_id: fileId, tools: [{ type: 'file_search' }] }],
          metadata: { source: 'sdk' },
        });
        textId = message.id;
        assert.match(message.id, /^msg_/);
        assertRequestId(message._request_id);
        assert.equal(message.object, 'thread.message');
        assertCreatedAt(message.created_at);
        assert.equal(message.thread_id, threadId);
        assert.equal(message.role, 'user');
        assert.equal(message.assistant_id, null);
        assert.equal(message.run_id, null);
        assert.equal(message.status, 'completed');
        assert.deepEqual(message.content, textContent('Summarise the attached file.'));
        assert.deepEqual(message.attachments, [{ file_id: fileId, tools: [{ type: 'file_search' }] }]);
        assert.deepEqual(message.metadata, { source: 'sdk' });
      });

      test('create with text and image_url parts', async () => {
        const message = await client.beta.threads.messages.create(threadId, {
          role: 'assistant',
          content: [
            { type: 'text', text: 'Here it is.' },
            { type: 'image_url', image_url: { url: IMAGE_URL, detail: 'low' } },
          ],
        });
        partsId = message.id;
        assert.equal(message.role, 'assistant');
        assert.equal(message.assistant_id, null);
        assert.equal(message.run_id, null);
        assert.deepEqual(message.content, [
          { type: 'text', text: { value: 'Here it is.', annotations: [] } },
          { type: 'image_url', image_url: { url: IMAGE_URL, detail: 'low' } },
        ]);
        assert.deepEqual(message.attachments, []);
        assert.deepEqual(message.metadata, {});
      });

      test('retrieve', async () => {
        const message = await client.beta.threads.messages.retrieve(textId, { thread_id: threadId });
        assertRequestId(message._request_id);
        assert.equal(message.id, textId);
        assert.equal(message.thread_id, threadId);
        assert.deepEqual(message.content, textContent('Summarise the attached file.'));
        assert.deepEqual(message.metadata, { source: 'sdk' });
      });

      test('update replaces the metadata', async () => {
        const updated = await client.beta.threads.messages.update(textId, {
          thread_id: threadId,
          metadata: { source: 'sdk', reviewed: 'true' },
        });
        assert.equal(updated.id, textId);
        assert.deepEqual(updated.metadata, { source: 'sdk', reviewed: 'true' });
        assert.deepEqual(updated.content, textContent('Summarise the attached file.'));
        const retrieved = await client.beta.threads.messages.retrieve(textId, { thread_id: threadId });
        assert.deepEqual(retrieved.metadata, { source: 'sdk', reviewed: 'true' });
      });

      test('list with order, limit and the run_id filter', async () => {
        const asc = await client.beta.threads.messages.list(threadId, { order: 'asc' });
        assert.deepEqual(
          asc.data.map((m) => m.id),
          [textId, partsId],
        );
        const desc = await client.beta.threads.messages.list(threadId);
        assert.deepEqual(
          desc.data.map((m) => m.id),
          [partsId, textId],
        );
        const one = await client.beta.threads.messages.list(threadId, { limit: 1, order: 'asc' });
        assert.deepEqual(
          one.data.map((m) => m.id),
          [textId],
        );
        assert.equal(one.has_more, true);
        const rest = await client.beta.threads.messages.list(threadId, { limit: 1, order: 'asc', after: textId });
        assert.deepEqual(
          rest.data.map((m) => m.id),
          [partsId],
        );
        assert.equal(rest.has_more, false);

        const byRun = await client.beta.threads.messages.list(threadId, { run_id: 'run_doesnotexist' });
        assert.deepEqual(byRun.data, []);
        assert.equal(byRun.has_more, false);
        let iterated = 0;
        for await (const _ of client.beta.threads.messages.list(threadId, { run_id: 'run_doesnotexist' })) iterated++;
        assert.equal(iterated, 0);
      });

      test('retrieve, update and delete of a message of another thread are 404s', async () => {
        const other = await client.beta.threads.create();
        await assertNotFound(client.beta.threads.messages.retrieve(textId, { thread_id: other.id }), 'message', textId);
        await assertNotFound(
          client.beta.threads.messages.update(textId, { thread_id: other.id, metadata: {} }),
          'message',
          textId,
        );
        await assertNotFound(client.beta.threads.messages.delete(textId, { thread_id: other.id }), 'message', textId);
        await client.beta.threads.delete(other.id);
      });

      test('delete', async () => {
        const deleted = await client.beta.threads.messages.delete(partsId, { thread_id: threadId });
        assertRequestId(deleted._request_id);
        assert.deepEqual({ ...deleted }, { id: partsId, object: 'thread.message.deleted', deleted: true });
        await assertNotFound(
          client.beta.threads.messages.retrieve(partsId, { thread_id: threadId }),
          'message',
          partsId,
        );
        const page = await client.beta.threads.messages.list(threadId);
        assert.deepEqual(
          page.data.map((m) => m.id),
          [textId],
        );
      });

      test('auto-pagination over 25 messages sees each exactly once, newest first', async () => {
        const thread = await client.beta.threads.create();
        const created: string[] = [];
        for (let i = 0; i < 25; i++)
          created.push((await client.beta.threads.messages.create(thread.id, { role: 'user', content: `m${i}` })).id);

        const listPath = `/v1/threads/${thread.id}/messages`;
        const requestsBefore = recorder.requests.length;
        const seen: OpenAI.Beta.Threads.Message[] = [];
        for await (const message of client.beta.threads.messages.list(thread.id, { limit: 7 })) seen.push(message);

        assert.deepEqual(
          seen.map((m) => m.id),
          [...created].reverse(),
        );
        assert.deepEqual(
          seen.map((m) => (m.content[0] as OpenAI.Beta.Threads.TextContentBlock).text.value),
          created.map((_, i) => `m${i}`).reverse(),
        );
        const pages = recorder.requests.slice(requestsBefore).filter((r) => r.method === 'GET' && r.path === listPath);
        assert.equal(pages.length, 4, 'ceil(25 / 7) pages, the last one with has_more false');
        await client.beta.threads.delete(thread.id);
      });
    });
  });
}

conformanceSuite('SQLite', async () => {
  const dataDir = tempDir();
  return { env: { ASSISTD_DATA_DIR: dataDir }, cleanup: async () => rmSync(dataDir, { recursive: true, force: true }) };
});

const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined) test('on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  conformanceSuite('PostgreSQL', async () => {
    const database = await createTestDatabase(postgresUrl);
    return { env: { ASSISTD_DATABASE_URL: database.url }, cleanup: () => database.drop() };
  });
