import assert from 'node:assert/strict';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import OpenAI, { type APIError, toFile } from 'openai';
import { MAX_IMAGE_BYTES } from '../../src/api/file-references.ts';
import { SQLITE_FILE_NAME } from '../../src/storage/sqlite/open-sqlite-store.ts';
import { DEFAULT_SCOPE } from '../../src/storage/store.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { onePixelPng } from '../support/images.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

/**
 * Every route that takes file ids — message attachments, image_file parts, tool_resources.code_interpreter.file_ids
 * — checks them against the project's files before it writes anything: an unknown id is upstream's 404, an
 * image_file part naming a file that is not an image a 400 naming the part. Through the official SDK, every
 * response checked against the official schema; "nothing written" is checked on the database's rows.
 */

const UNKNOWN = 'file-unknown0000000000000000';
const OTHER_UNKNOWN = 'file-unknown1111111111111111';
const TABLES = ['assistants', 'threads', 'messages', 'runs'] as const;

type ContentPart = OpenAI.Beta.Threads.MessageContentPartParam;

function imagePart(fileId: string, detail?: 'auto' | 'low' | 'high'): ContentPart {
  return { type: 'image_file', image_file: detail ? { file_id: fileId, detail } : { file_id: fileId } };
}

async function rejection(promise: Promise<unknown>): Promise<APIError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof OpenAI.APIError, `expected an API error, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the request to fail, but it succeeded');
}

async function assertNoFile(promise: Promise<unknown>, id: string): Promise<void> {
  const error = await rejection(promise);
  assert.ok(error instanceof OpenAI.NotFoundError, `expected a 404, got ${error.status}: ${error.message}`);
  assert.deepEqual(error.error, {
    message: `No file found with id '${id}'.`,
    type: 'invalid_request_error',
    param: null,
    code: null,
  });
}

async function assertNotAnImage(promise: Promise<unknown>, param: string, id: string): Promise<void> {
  const error = await rejection(promise);
  assert.ok(error instanceof OpenAI.BadRequestError, `expected a 400, got ${error.status}: ${error.message}`);
  assert.deepEqual(error.error, {
    message: `Invalid '${param}': file '${id}' is not an image (png, jpeg, gif or webp).`,
    type: 'invalid_request_error',
    param,
    code: 'invalid_value',
  });
}

describe('file ids are checked where the API takes them', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let recorder: ValidatingFetch;
  let client: OpenAI;
  let db: BetterSqlite3.Database;
  let image: string;
  let text: string;
  let assistantId: string;

  /** Rows per table: a refused request must leave them as they were. */
  function rows(): Record<string, number> {
    return Object.fromEntries(
      TABLES.map((table) => [table, (db.prepare(`select count(*) as n from ${table}`).get() as { n: number }).n]),
    );
  }

  async function refusedWithoutWriting(check: () => Promise<void>): Promise<void> {
    const before = rows();
    await check();
    assert.deepEqual(rows(), before, 'a refused request wrote rows');
  }

  before(async () => {
    upstream = await FakeUpstream.start();
    server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_UPSTREAM_MAX_RETRIES: '0' });
    recorder = createValidatingFetch();
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
    db = new BetterSqlite3(path.join(server.dataDir, SQLITE_FILE_NAME), { readonly: true });
    image = (await client.files.create({ file: await toFile(onePixelPng(), 'pixel.png'), purpose: 'vision' })).id;
    text = (
      await client.files.create({ file: await toFile(Buffer.from('Notes.\n'), 'notes.txt'), purpose: 'assistants' })
    ).id;
    assistantId = (await client.beta.assistants.create({ model: 'gpt-test' })).id;
  });
  after(async () => {
    db?.close();
    await server?.close();
    await upstream?.close();
  });
  afterEach(() => recorder.assertNoViolations());

  test('create message: unknown ids are a 404 naming the first in request order; known ones are stored', async () => {
    const thread = await client.beta.threads.create();
    const create = (body: OpenAI.Beta.Threads.MessageCreateParams) =>
      client.beta.threads.messages.create(thread.id, body);
    await refusedWithoutWriting(async () => {
      await assertNoFile(
        create({ role: 'user', content: 'x', attachments: [{ file_id: UNKNOWN, tools: [{ type: 'file_search' }] }] }),
        UNKNOWN,
      );
      await assertNoFile(create({ role: 'user', content: [imagePart(UNKNOWN)] }), UNKNOWN);
      // Parts come before attachments, and the first unknown part is the one named.
      await assertNoFile(
        create({
          role: 'user',
          content: [imagePart(image), imagePart(OTHER_UNKNOWN), imagePart(UNKNOWN)],
          attachments: [{ file_id: UNKNOWN, tools: [{ type: 'code_interpreter' }] }],
        }),
        OTHER_UNKNOWN,
      );
      // An unknown id is reported before a file that is not an image.
      await assertNoFile(create({ role: 'user', content: [imagePart(text), imagePart(UNKNOWN)] }), UNKNOWN);
      await assertNotAnImage(
        create({ role: 'user', content: [{ type: 'text', text: 'see' }, imagePart(text)] }),
        'content[1].image_file.file_id',
        text,
      );
    });
    assert.deepEqual((await client.beta.threads.messages.list(thread.id)).data, []);

    // An image too large to send to a model: a PNG followed by padding, over MAX_IMAGE_BYTES.
    const huge = (
      await client.files.create({
        file: await toFile(Buffer.concat([onePixelPng(), Buffer.alloc(MAX_IMAGE_BYTES)]), 'huge.png'),
        purpose: 'vision',
      })
    ).id;
    await refusedWithoutWriting(async () => {
      const error = await rejection(create({ role: 'user', content: [imagePart(huge)] }));
      assert.equal(error.status, 400);
      assert.equal(error.param, 'content[0].image_file.file_id');
      assert.match(error.message, /images are limited to 20971520 bytes/);
    });
    await client.files.delete(huge);

    const before = rows();
    const message = await create({
      role: 'user',
      content: [{ type: 'text', text: 'What is this?' }, imagePart(image, 'high')],
      attachments: [{ file_id: text, tools: [{ type: 'file_search' }] }],
    });
    const stored = await client.beta.threads.messages.retrieve(message.id, { thread_id: thread.id });
    assert.deepEqual(stored.content, [
      { type: 'text', text: { value: 'What is this?', annotations: [] } },
      { type: 'image_file', image_file: { file_id: image, detail: 'high' } },
    ]);
    assert.deepEqual(stored.attachments, [{ file_id: text, tools: [{ type: 'file_search' }] }]);
    assert.deepEqual(rows(), { ...before, messages: before['messages']! + 1 }, 'the row count sees writes');
  });

  test('a file_search attachment of a type file_search cannot read is upstream’s 400, before anything is written', async () => {
    const thread = await client.beta.threads.create();
    const stores = () => (db.prepare('select count(*) as n from vector_stores').get() as { n: number }).n;
    const storesBefore = stores();
    const searched = (fileId: string) => ({ file_id: fileId, tools: [{ type: 'file_search' as const }] });
    const expected = {
      message:
        'Files with extensions [.png] are not supported for retrieval: the file type image/png is not supported for file_search.',
      type: 'invalid_request_error',
      param: 'attachments',
      code: 'unsupported_file',
    };
    const refused = async (request: Promise<unknown>, param = 'attachments') => {
      const error = await rejection(request);
      assert.equal(error.status, 400, error.message);
      assert.deepEqual(
        {
          ...(error.error as object),
          message: (error.error as { message: string }).message.replace(/ Supported types: .*/, ''),
        },
        {
          ...expected,
          param,
        },
      );
    };
    await refusedWithoutWriting(async () => {
      await refused(
        client.beta.threads.messages.create(thread.id, {
          role: 'user',
          content: 'x',
          attachments: [searched(text), searched(image)],
        }),
      );
      await refused(
        client.beta.threads.create({ messages: [{ role: 'user', content: 'x', attachments: [searched(image)] }] }),
        'messages[0].attachments',
      );
      await refused(
        client.beta.threads.runs.create(thread.id, {
          assistant_id: assistantId,
          additional_messages: [{ role: 'user', content: 'x', attachments: [searched(image)] }],
        }),
        'additional_messages[0].attachments',
      );
    });
    assert.equal(stores(), storesBefore, 'no vector store was made for a refused attachment');
    // For code_interpreter, any file goes.
    const message = await client.beta.threads.messages.create(thread.id, {
      role: 'user',
      content: 'x',
      attachments: [{ file_id: image, tools: [{ type: 'code_interpreter' }] }],
    });
    assert.equal(message.attachments?.[0]?.file_id, image);
  });

  test('a deleted file is unknown', async () => {
    const gone = (
      await client.files.create({ file: await toFile(onePixelPng([0, 0, 255]), 'gone.png'), purpose: 'vision' })
    ).id;
    await client.files.delete(gone);
    const thread = await client.beta.threads.create();
    await refusedWithoutWriting(() =>
      assertNoFile(client.beta.threads.messages.create(thread.id, { role: 'user', content: [imagePart(gone)] }), gone),
    );
  });

  test('a file deleted while a request adds it to a vector store: the add is a 404, the store does not name it', async () => {
    const doomed = (
      await client.files.create({ file: await toFile(Buffer.from('Doomed.\n'), 'doomed.txt'), purpose: 'assistants' })
    ).id;
    const store = await client.vectorStores.create({ name: 'race' });
    // Another request (here, or in another process) deletes the file right before this one writes it into the store.
    const { files, vectorStores } = server.server.store;
    const addFiles = vectorStores.addFiles;
    vectorStores.addFiles = async (...args) => {
      vectorStores.addFiles = addFiles;
      assert.equal(await files.deleteFile(DEFAULT_SCOPE, doomed), true);
      return addFiles.apply(vectorStores, args);
    };
    try {
      await assertNoFile(client.vectorStores.files.create(store.id, { file_id: doomed }), doomed);
    } finally {
      vectorStores.addFiles = addFiles;
    }
    assert.deepEqual((await client.vectorStores.files.list(store.id)).data, []);
    assert.equal((await client.vectorStores.retrieve(store.id)).file_counts.total, 0);
  });

  test('create thread: messages and tool_resources are checked, and a refused thread does not exist', async () => {
    await refusedWithoutWriting(async () => {
      await assertNoFile(
        client.beta.threads.create({
          messages: [
            { role: 'user', content: 'first' },
            { role: 'user', content: 'second', attachments: [{ file_id: UNKNOWN, tools: [{ type: 'file_search' }] }] },
          ],
        }),
        UNKNOWN,
      );
      await assertNoFile(
        client.beta.threads.create({ tool_resources: { code_interpreter: { file_ids: [text, UNKNOWN] } } }),
        UNKNOWN,
      );
      // Messages come before tool_resources.
      await assertNoFile(
        client.beta.threads.create({
          messages: [{ role: 'user', content: [imagePart(OTHER_UNKNOWN)] }],
          tool_resources: { code_interpreter: { file_ids: [UNKNOWN] } },
        }),
        OTHER_UNKNOWN,
      );
      await assertNotAnImage(
        client.beta.threads.create({
          messages: [
            { role: 'user', content: [imagePart(image)] },
            { role: 'user', content: [{ type: 'text', text: 'and' }, imagePart(text)] },
          ],
        }),
        'messages[1].content[1].image_file.file_id',
        text,
      );
    });

    const thread = await client.beta.threads.create({
      messages: [{ role: 'user', content: [imagePart(image)], attachments: [{ file_id: text, tools: [] }] }],
      tool_resources: { code_interpreter: { file_ids: [text, image] } },
    });
    assert.deepEqual(thread.tool_resources, { code_interpreter: { file_ids: [text, image] } });
    const [message] = (await client.beta.threads.messages.list(thread.id)).data;
    assert.deepEqual(message!.content, [{ type: 'image_file', image_file: { file_id: image, detail: 'auto' } }]);
  });

  test("modify thread: unknown tool_resources ids are a 404 and leave the thread's as they were", async () => {
    const thread = await client.beta.threads.create({ tool_resources: { code_interpreter: { file_ids: [text] } } });
    await assertNoFile(
      client.beta.threads.update(thread.id, {
        tool_resources: { code_interpreter: { file_ids: [UNKNOWN] } },
        metadata: { changed: 'yes' },
      }),
      UNKNOWN,
    );
    assert.deepEqual(await client.beta.threads.retrieve(thread.id), thread);
    const updated = await client.beta.threads.update(thread.id, {
      tool_resources: { code_interpreter: { file_ids: [image] } },
    });
    assert.deepEqual(updated.tool_resources, { code_interpreter: { file_ids: [image] } });
  });

  test('modify: a file deleted since it was given stays referred to, and sending the object back as read is no 404', async () => {
    const doomed = async () =>
      (await client.files.create({ file: await toFile(Buffer.from('Gone.\n'), 'gone.txt'), purpose: 'assistants' })).id;
    const [forAssistant, forThread] = [await doomed(), await doomed()];
    const assistant = await client.beta.assistants.create({
      model: 'gpt-test',
      tool_resources: { code_interpreter: { file_ids: [forAssistant, text] } },
    });
    const thread = await client.beta.threads.create({
      tool_resources: { code_interpreter: { file_ids: [forThread] } },
    });
    await client.files.delete(forAssistant);
    await client.files.delete(forThread);
    const read = await client.beta.assistants.retrieve(assistant.id);
    const renamed = await client.beta.assistants.update(assistant.id, {
      name: 'renamed',
      tool_resources: read.tool_resources!,
    });
    assert.deepEqual(renamed.tool_resources, { code_interpreter: { file_ids: [forAssistant, text] } });
    const kept = await client.beta.threads.update(thread.id, {
      tool_resources: (await client.beta.threads.retrieve(thread.id)).tool_resources!,
      metadata: { kept: 'yes' },
    });
    assert.deepEqual(kept.metadata, { kept: 'yes' });
    // A deleted file given anew is still unknown.
    await assertNoFile(
      client.beta.threads.update(thread.id, {
        tool_resources: { code_interpreter: { file_ids: [forThread, forAssistant] } },
      }),
      forAssistant,
    );
  });

  test('create and modify assistant: tool_resources ids are checked; more than 20 is upstream’s 400', async () => {
    await refusedWithoutWriting(async () => {
      await assertNoFile(
        client.beta.assistants.create({
          model: 'gpt-test',
          tool_resources: { code_interpreter: { file_ids: [UNKNOWN, text] } },
        }),
        UNKNOWN,
      );
      const error = await rejection(
        client.beta.assistants.create({
          model: 'gpt-test',
          tool_resources: { code_interpreter: { file_ids: Array.from({ length: 21 }, () => text) } },
        }),
      );
      assert.equal(error.status, 400);
      assert.deepEqual(error.error, {
        message:
          "Invalid 'tool_resources.code_interpreter.file_ids': array too long. Expected an array with maximum length 20, but got an array with length 21 instead.",
        type: 'invalid_request_error',
        param: 'tool_resources.code_interpreter.file_ids',
        code: 'array_above_max_length',
      });
    });

    const assistant = await client.beta.assistants.create({
      model: 'gpt-test',
      tool_resources: { code_interpreter: { file_ids: [text] } },
    });
    assert.deepEqual(assistant.tool_resources, { code_interpreter: { file_ids: [text] } });
    await assertNoFile(
      client.beta.assistants.update(assistant.id, {
        name: 'renamed',
        tool_resources: { code_interpreter: { file_ids: [image, UNKNOWN] } },
      }),
      UNKNOWN,
    );
    assert.deepEqual(await client.beta.assistants.retrieve(assistant.id), assistant);
    const updated = await client.beta.assistants.update(assistant.id, {
      tool_resources: { code_interpreter: { file_ids: Array.from({ length: 20 }, () => image) } },
    });
    assert.equal(updated.tool_resources?.code_interpreter?.file_ids?.length, 20);
  });

  test("create run: additional_messages are checked, streamed or not; a refused run and its messages don't exist", async () => {
    const thread = await client.beta.threads.create();
    await refusedWithoutWriting(async () => {
      await assertNoFile(
        client.beta.threads.runs.create(thread.id, {
          assistant_id: assistantId,
          additional_messages: [{ role: 'user', content: 'x', attachments: [{ file_id: UNKNOWN, tools: [] }] }],
        }),
        UNKNOWN,
      );
      await assertNoFile(
        client.beta.threads.runs.create(thread.id, {
          assistant_id: assistantId,
          stream: true,
          additional_messages: [{ role: 'user', content: [imagePart(UNKNOWN)] }],
        }),
        UNKNOWN,
      );
      await assertNotAnImage(
        client.beta.threads.runs.create(thread.id, {
          assistant_id: assistantId,
          additional_messages: [
            { role: 'user', content: 'first' },
            { role: 'user', content: [imagePart(text)] },
          ],
        }),
        'additional_messages[1].content[0].image_file.file_id',
        text,
      );
    });
    assert.deepEqual((await client.beta.threads.runs.list(thread.id)).data, []);

    const run = await client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistantId,
      additional_messages: [{ role: 'user', content: [imagePart(image, 'low')] }],
    });
    assert.equal(run.status, 'completed');
    const [first] = (await client.beta.threads.messages.list(thread.id, { order: 'asc' })).data;
    assert.deepEqual(first!.content, [{ type: 'image_file', image_file: { file_id: image, detail: 'low' } }]);
  });

  test('create thread and run: thread.messages, thread.tool_resources and tool_resources are checked', async () => {
    await refusedWithoutWriting(async () => {
      await assertNoFile(
        client.beta.threads.createAndRun({
          assistant_id: assistantId,
          thread: { messages: [{ role: 'user', content: [imagePart(UNKNOWN)] }] },
        }),
        UNKNOWN,
      );
      await assertNoFile(
        client.beta.threads.createAndRun({
          assistant_id: assistantId,
          thread: { tool_resources: { code_interpreter: { file_ids: [UNKNOWN] } } },
        }),
        UNKNOWN,
      );
      await assertNoFile(
        client.beta.threads.createAndRun({
          assistant_id: assistantId,
          stream: true,
          tool_resources: { code_interpreter: { file_ids: [UNKNOWN] } },
        }),
        UNKNOWN,
      );
      await assertNotAnImage(
        client.beta.threads.createAndRun({
          assistant_id: assistantId,
          thread: { messages: [{ role: 'user', content: [{ type: 'text', text: 'look' }, imagePart(text)] }] },
        }),
        'thread.messages[0].content[1].image_file.file_id',
        text,
      );
    });

    const run = await client.beta.threads.createAndRunPoll({
      assistant_id: assistantId,
      thread: {
        messages: [{ role: 'user', content: [imagePart(image)], attachments: [{ file_id: text, tools: [] }] }],
      },
      tool_resources: { code_interpreter: { file_ids: [text] } },
    });
    assert.equal(run.status, 'completed');
    const thread = await client.beta.threads.retrieve(run.thread_id);
    assert.deepEqual(thread.tool_resources, { code_interpreter: { file_ids: [text] } });
  });

  test("an id that is no file id is upstream's 400 naming where it is, before unknown ids' 404", async () => {
    // LibreChat sent its own id for a file (a UUID): `Invalid 'messages[0].attachments[0].file_id': '31abac64-…'.
    // Expected an ID that begins with 'file'.` (LibreChat #8178, from api.openai.com).
    const own = '31abac64-545c-4c30-ba06-2a7ae1b987bf';
    const assertNoFileId = async (promise: Promise<unknown>, param: string) => {
      const error = await rejection(promise);
      assert.ok(error instanceof OpenAI.BadRequestError, `expected a 400, got ${error.status}: ${error.message}`);
      assert.deepEqual(error.error, {
        message: `Invalid '${param}': '${own}'. Expected an ID that begins with 'file'.`,
        type: 'invalid_request_error',
        param,
        code: 'invalid_value',
      });
    };
    const thread = await client.beta.threads.create();
    await refusedWithoutWriting(async () => {
      await assertNoFileId(
        client.beta.threads.createAndRun({
          assistant_id: assistantId,
          thread: {
            messages: [
              { role: 'user', content: 'hi', attachments: [{ file_id: UNKNOWN, tools: [] }] },
              { role: 'user', content: 'and', attachments: [{ file_id: own, tools: [{ type: 'file_search' }] }] },
            ],
          },
        }),
        'thread.messages[1].attachments[0].file_id',
      );
      await assertNoFileId(
        client.beta.threads.messages.create(thread.id, { role: 'user', content: [imagePart(own)] }),
        'content[0].image_file.file_id',
      );
      await assertNoFileId(
        client.beta.assistants.create({
          model: 'gpt-test',
          tool_resources: { code_interpreter: { file_ids: [text, own] } },
        }),
        'tool_resources.code_interpreter.file_ids[1]',
      );
      await assertNoFileId(
        client.beta.threads.create({ tool_resources: { file_search: { vector_stores: [{ file_ids: [own] }] } } }),
        'tool_resources.file_search.vector_stores[0].file_ids[0]',
      );
      await assertNoFileId(
        client.beta.threads.createAndRun({
          assistant_id: assistantId,
          thread: { tool_resources: { code_interpreter: { file_ids: [own] } } },
        }),
        'thread.tool_resources.code_interpreter.file_ids[0]',
      );
      await assertNoFileId(
        client.beta.threads.runs.create(thread.id, {
          assistant_id: assistantId,
          additional_messages: [{ role: 'user', content: 'x', attachments: [{ file_id: own, tools: [] }] }],
        }),
        'additional_messages[0].attachments[0].file_id',
      );
    });
  });
});
