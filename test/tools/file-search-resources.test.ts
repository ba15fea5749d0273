import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { eventually } from '../support/eventually.ts';
import {
  COFFEE,
  FileSearchHarness,
  fileSearchCall,
  fileSearchCalls,
  PARKING,
  textPart,
  toolMessages,
} from '../support/file-search.ts';
import { postSse } from '../support/sse.ts';

/**
 * The vector stores a client gets without creating them, as upstream: the `tool_resources.file_search.vector_stores`
 * helper on assistant and thread create (and the thread of create-thread-and-run), and files attached to messages
 * for file_search, which go into the thread's store (made for the first one). A run waits for its thread's files
 * to be ingested before it searches; cancelling it while it waits ends it at once.
 */

const THREAD_EXPIRY = { anchor: 'last_active_at', days: 7 };

describe('file_search tool resources through the SDK', () => {
  const h = new FileSearchHarness();
  let coffee: string;
  let parking: string;

  before(async () => {
    await h.start();
    coffee = await h.upload('coffee.txt', COFFEE);
    parking = await h.upload('parking.md', PARKING);
  });
  after(() => h.close());
  afterEach(() => h.recorder.assertNoViolations());

  /** A run of `assistantId` on `threadId` in which the model searches once and cites its first result. */
  async function searchRun(threadId: string, assistantId: string, query: string, cite: string) {
    h.upstream.enqueue(fileSearchCall(query), { text: `Here${cite}.` });
    const run = await h.client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistantId });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const [step] = await h.steps(threadId, run.id);
    return { run, call: fileSearchCalls(step)[0]!, output: toolMessages(h.upstream.requests.at(-1)).at(-1)! };
  }

  test('assistant create with the vector_stores helper: a store with the files, named in vector_store_ids', async () => {
    const assistant = await h.client.beta.assistants.create({
      model: 'gpt-test',
      tools: [{ type: 'file_search' }],
      tool_resources: {
        file_search: { vector_stores: [{ file_ids: [coffee], metadata: { made: 'by-helper' } }] },
      },
    });
    const ids = assistant.tool_resources?.file_search?.vector_store_ids ?? [];
    assert.equal(ids.length, 1);
    assert.match(ids[0]!, /^vs_/);
    assert.deepEqual(await h.client.beta.assistants.retrieve(assistant.id), assistant);
    const store = await h.client.vectorStores.retrieve(ids[0]!);
    assert.deepEqual(store.metadata, { made: 'by-helper' });
    assert.equal(store.expires_after, undefined, "an assistant's store does not expire");
    assert.equal(store.file_counts.total, 1);

    // A run does not wait for its assistant's store (only for its thread's), as upstream: ingest it first.
    await h.ingested(store.id);
    const thread = await h.thread();
    const { call } = await searchRun(thread.id, assistant.id, 'espresso descaled', '【0:0†coffee.txt】');
    assert.equal(call.file_search.results![0]!.file_id, coffee);
    const text = textPart(await h.answer(thread.id, (await h.client.beta.threads.runs.list(thread.id)).data[0]!.id));
    assert.equal(text.annotations.length, 1);
  });

  test('thread create with the helper: its store expires 7 days after last use and takes the chunking strategy', async () => {
    const chunking = { type: 'static' as const, static: { max_chunk_size_tokens: 200, chunk_overlap_tokens: 50 } };
    const thread = await h.client.beta.threads.create({
      messages: [{ role: 'user', content: 'Where do visitors park?' }],
      tool_resources: { file_search: { vector_stores: [{ file_ids: [parking], chunking_strategy: chunking }] } },
    });
    const [storeId] = thread.tool_resources?.file_search?.vector_store_ids ?? [];
    assert.ok(storeId);
    const store = await h.client.vectorStores.retrieve(storeId);
    assert.deepEqual(store.expires_after, THREAD_EXPIRY);
    const file = await h.client.vectorStores.files.retrieve(parking, { vector_store_id: storeId });
    assert.deepEqual(file.chunking_strategy, chunking);

    const assistant = await h.assistant();
    const { call, output } = await searchRun(thread.id, assistant.id, 'visitors park', '【0:0†parking.md】');
    assert.equal(call.file_search.results![0]!.file_id, parking, 'the thread’s store is searched');
    assert.ok(output.includes(PARKING));
  });

  test('a run that can search a store is use of it, whether or not the model searches: its expiry moves', async () => {
    // Upstream's stores expire counting from "the last time the vector store was part of a run".
    const thread = await h.client.beta.threads.create({
      messages: [{ role: 'user', content: 'Hello.' }],
      tool_resources: { file_search: { vector_stores: [{ file_ids: [parking] }] } },
    });
    const [threadStore] = thread.tool_resources?.file_search?.vector_store_ids ?? [];
    const assistantStore = await h.client.vectorStores.create({
      file_ids: [coffee],
      expires_after: { anchor: 'last_active_at', days: 30 },
    });
    await h.ingested(assistantStore.id);
    await h.ingested(threadStore!);
    const before = await h.client.vectorStores.retrieve(threadStore!);
    // last_active_at counts seconds: the run starts in a later one.
    while (Math.floor(Date.now() / 1000) <= Math.max(before.last_active_at!, assistantStore.last_active_at!))
      await new Promise((resolve) => setTimeout(resolve, 50));
    const startedAfter = Math.floor(Date.now() / 1000);
    h.upstream.enqueue({ text: 'Hello to you.' });
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: (await h.assistant([assistantStore.id])).id,
    });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    // Marked beside the run, not before its model request: seen once the write lands.
    for (const [id, days] of [
      [threadStore!, 7],
      [assistantStore.id, 30],
    ] as const) {
      const store = await eventually(`${id} to be marked used`, 10_000, async () => {
        const read = await h.client.vectorStores.retrieve(id);
        return read.last_active_at! >= startedAfter ? read : undefined;
      });
      assert.equal(store.expires_at, store.last_active_at! + days * 86_400);
    }
  });

  test('create-thread-and-run with the helper on its thread', async () => {
    const assistant = await h.assistant();
    h.upstream.enqueue(fileSearchCall('espresso machine'), { text: 'Fridays【0:0†coffee.txt】.' });
    const run = await h.client.beta.threads.createAndRunPoll({
      assistant_id: assistant.id,
      thread: {
        messages: [{ role: 'user', content: 'Coffee?' }],
        tool_resources: { file_search: { vector_stores: [{ file_ids: [coffee] }] } },
      },
    });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const thread = await h.client.beta.threads.retrieve(run.thread_id);
    assert.equal(thread.tool_resources?.file_search?.vector_store_ids?.length, 1);
    const text = textPart(await h.answer(run.thread_id, run.id));
    assert.equal(text.annotations[0]?.type === 'file_citation' && text.annotations[0].file_citation.file_id, coffee);
  });

  test('an unknown file in the helper is a 404 and makes no store', async () => {
    const before = (await h.client.vectorStores.list({ limit: 100 })).data.length;
    await assert.rejects(
      h.client.beta.threads.create({
        tool_resources: { file_search: { vector_stores: [{ file_ids: [coffee, 'file-doesnotexist'] }] } },
      }),
      (error: { status?: number; message?: string }) =>
        error.status === 404 && /No file found with id 'file-doesnotexist'/.test(error.message ?? ''),
    );
    assert.equal((await h.client.vectorStores.list({ limit: 100 })).data.length, before);
  });

  test('attachments: the first makes the thread’s store, later ones join it, and a later run searches them all', async () => {
    const thread = await h.client.beta.threads.create();
    assert.deepEqual(thread.tool_resources, {});
    await h.client.beta.threads.messages.create(thread.id, {
      role: 'user',
      content: 'Here is the coffee note.',
      attachments: [{ file_id: coffee, tools: [{ type: 'file_search' }] }],
    });
    const withStore = await h.client.beta.threads.retrieve(thread.id);
    const ids = withStore.tool_resources?.file_search?.vector_store_ids ?? [];
    assert.equal(ids.length, 1);
    const store = await h.client.vectorStores.retrieve(ids[0]!);
    assert.equal(store.name, `${thread.id} store`);
    assert.deepEqual(store.expires_after, THREAD_EXPIRY);

    // Not waited for here: the run waits for the thread's files itself.
    const assistant = await h.assistant();
    const first = await searchRun(thread.id, assistant.id, 'espresso descaled', '【0:0†coffee.txt】');
    assert.equal(first.call.file_search.results![0]!.file_id, coffee);

    await h.client.beta.threads.messages.create(thread.id, {
      role: 'user',
      content: 'And the parking note.',
      attachments: [{ file_id: parking, tools: [{ type: 'file_search' }, { type: 'code_interpreter' }] }],
    });
    assert.deepEqual((await h.client.beta.threads.retrieve(thread.id)).tool_resources, withStore.tool_resources);
    const files = await h.client.vectorStores.files.list(ids[0]!);
    assert.deepEqual(files.data.map((f) => f.id).sort(), [coffee, parking].sort());
    const second = await searchRun(thread.id, assistant.id, 'visitors park garage', '【0:0†parking.md】');
    assert.equal(second.call.file_search.results![0]!.file_id, parking, 'the file attached later is searched');
  });

  test('create thread and run: the thread gets both tool_resources, tool by tool, the top level first', async () => {
    const assistant = await h.assistant();
    const store = await h.client.vectorStores.create({ name: 'top level' });
    h.upstream.enqueue({ text: 'Both.' });
    const run = await h.client.beta.threads.createAndRunPoll({
      assistant_id: assistant.id,
      thread: {
        tool_resources: {
          code_interpreter: { file_ids: [coffee] },
          file_search: { vector_stores: [{ file_ids: [parking] }] },
        },
      },
      tool_resources: { file_search: { vector_store_ids: [store.id] } },
    });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const thread = await h.client.beta.threads.retrieve(run.thread_id);
    assert.deepEqual(thread.tool_resources, {
      code_interpreter: { file_ids: [coffee] },
      file_search: { vector_store_ids: [store.id] },
    });
  });

  test('a request refused after its attachments or helper would make a store makes none and leaves the thread', async () => {
    const stores = async () => (await h.client.vectorStores.list({ limit: 100 })).data.length;
    const before = await stores();
    const attachments = [{ file_id: coffee, tools: [{ type: 'file_search' as const }] }];
    const refused = (status: number, message: RegExp) => (error: { status?: number; message?: string }) =>
      error.status === status && message.test(error.message ?? '');
    const noAssistant = refused(404, /No assistant found with id 'asst_nope'/);
    await assert.rejects(
      h.client.beta.threads.createAndRun({
        assistant_id: 'asst_nope',
        thread: { tool_resources: { file_search: { vector_stores: [{ file_ids: [coffee] }] } } },
      }),
      noAssistant,
    );
    await assert.rejects(
      h.client.beta.threads.createAndRun({
        assistant_id: 'asst_nope',
        thread: { messages: [{ role: 'user', content: 'x', attachments }] },
      }),
      noAssistant,
    );
    const thread = await h.client.beta.threads.create();
    const assistant = await h.assistant();
    const additional = [{ role: 'user' as const, content: 'x', attachments }];
    await assert.rejects(
      h.client.beta.threads.runs.create(thread.id, { assistant_id: 'asst_nope', additional_messages: additional }),
      noAssistant,
    );
    await assert.rejects(
      h.client.beta.threads.runs.create(thread.id, {
        assistant_id: assistant.id,
        additional_messages: additional,
        tool_choice: { type: 'code_interpreter' },
      }),
      refused(400, /the run has no code_interpreter tool/),
    );

    // A thread busy with a run: a message or a run with attachments is refused before any store is made.
    let release!: () => void;
    h.upstream.enqueue({ text: ['Still ', 'going.'], holdLast: new Promise<void>((r) => (release = r)) });
    const going = await h.client.beta.threads.runs.create(thread.id, { assistant_id: assistant.id });
    await assert.rejects(
      h.client.beta.threads.messages.create(thread.id, { role: 'user', content: 'x', attachments }),
      refused(400, new RegExp(`Can't add messages to ${thread.id} while a run ${going.id} is active`)),
    );
    await assert.rejects(
      h.client.beta.threads.runs.create(thread.id, { assistant_id: assistant.id, additional_messages: additional }),
      refused(400, new RegExp(`Thread ${thread.id} already has an active run ${going.id}`)),
    );
    release();
    assert.equal((await h.client.beta.threads.runs.poll(going.id, { thread_id: thread.id })).status, 'completed');
    assert.deepEqual((await h.client.beta.threads.retrieve(thread.id)).tool_resources, {});
    assert.equal(await stores(), before, 'no store was made');
    const messages = await h.client.beta.threads.messages.list(thread.id);
    assert.deepEqual(
      messages.data.map((m) => m.role),
      ['assistant'],
      'no message was added',
    );
  });

  test('an attachment for code_interpreter only makes no store', async () => {
    const thread = await h.client.beta.threads.create({
      messages: [
        { role: 'user', content: 'x', attachments: [{ file_id: coffee, tools: [{ type: 'code_interpreter' }] }] },
      ],
    });
    assert.deepEqual(thread.tool_resources, {});
  });

  test('attachments on thread create, on create-thread-and-run and in a run’s additional_messages', async () => {
    const created = await h.client.beta.threads.create({
      messages: [{ role: 'user', content: 'x', attachments: [{ file_id: coffee, tools: [{ type: 'file_search' }] }] }],
    });
    const [createdStore] = created.tool_resources?.file_search?.vector_store_ids ?? [];
    assert.ok(createdStore);
    assert.deepEqual(
      (await h.client.vectorStores.files.list(createdStore)).data.map((f) => f.id),
      [coffee],
    );

    const assistant = await h.assistant();
    h.upstream.enqueue(fileSearchCall('visitors park'), { text: 'Level minus two【0:0†parking.md】.' });
    const run = await h.client.beta.threads.createAndRunPoll({
      assistant_id: assistant.id,
      thread: {
        messages: [
          { role: 'user', content: 'Parking?', attachments: [{ file_id: parking, tools: [{ type: 'file_search' }] }] },
        ],
      },
    });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const [call] = fileSearchCalls((await h.steps(run.thread_id, run.id))[0]);
    assert.equal(call!.file_search.results![0]!.file_id, parking);

    const thread = await h.client.beta.threads.create();
    h.upstream.enqueue(fileSearchCall('espresso descaled'), { text: 'Fridays【0:0†coffee.txt】.' });
    const run2 = await h.client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistant.id,
      additional_messages: [
        { role: 'user', content: 'Coffee?', attachments: [{ file_id: coffee, tools: [{ type: 'file_search' }] }] },
      ],
    });
    assert.equal(run2.status, 'completed', JSON.stringify(run2.last_error));
    assert.equal(
      (await h.client.beta.threads.retrieve(thread.id)).tool_resources?.file_search?.vector_store_ids?.length,
      1,
    );
    const text = textPart(await h.answer(thread.id, run2.id));
    assert.equal(text.annotations[0]?.type === 'file_citation' && text.annotations[0].file_citation.file_id, coffee);
  });
});

describe('file_search waiting for ingestion, on a server that ingests nothing (API only)', () => {
  // No workers: files stay in progress, and only streamed runs execute (here), so the run waits for as long as
  // its thread's file is not ingested — until it is cancelled.
  const h = new FileSearchHarness({}, { workers: false });
  before(() => h.start());
  after(() => h.close());

  test('cancel while the run waits for its thread’s files: the run ends cancelled at once', async () => {
    const coffee = await h.upload('coffee.txt', COFFEE);
    const assistant = await h.assistant();
    const thread = await h.client.beta.threads.create({
      messages: [
        { role: 'user', content: 'Coffee?', attachments: [{ file_id: coffee, tools: [{ type: 'file_search' }] }] },
      ],
    });
    const [storeId] = thread.tool_resources?.file_search?.vector_store_ids ?? [];
    assert.equal((await h.client.vectorStores.retrieve(storeId!)).file_counts.in_progress, 1);

    h.upstream.enqueue(fileSearchCall('espresso'));
    let runId = '';
    let cancelledAt = 0;
    const events = await postSse(
      `${h.server.url}/v1/threads/${thread.id}/runs`,
      { assistant_id: assistant.id, stream: true },
      async (event) => {
        if (event.event === 'thread.run.created') runId = event.data.id;
        if (event.event !== 'thread.run.step.delta') return;
        // The call has started (its delta is published as it starts): give it time to be in its wait.
        await new Promise((resolve) => setTimeout(resolve, 300));
        cancelledAt = Date.now();
        const cancelling = await h.client.beta.threads.runs.cancel(runId, { thread_id: thread.id });
        assert.equal(cancelling.status, 'cancelling');
      },
    );
    const ended = Date.now();
    assert.ok(cancelledAt > 0, 'the call started');
    assert.ok(ended - cancelledAt < 5000, `the run ended ${ended - cancelledAt} ms after the cancel`);
    const names = events.map((e) => e.event);
    assert.deepEqual(names.slice(-4), [
      'thread.run.cancelling',
      'thread.run.step.cancelled',
      'thread.run.cancelled',
      'done',
    ]);
    const run = events.at(-2)!.data;
    assert.equal(run.status, 'cancelled');
    const steps = await h.steps(thread.id, run.id);
    assert.deepEqual(
      steps.map((s) => [s.type, s.status]),
      [['tool_calls', 'cancelled']],
    );
    assert.equal(h.upstream.requests.length, 1, 'the model was not asked again');
  });
});
