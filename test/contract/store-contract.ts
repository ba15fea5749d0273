import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { ApiError } from '../../src/domain/errors.ts';
import type { Run } from '../../src/domain/runs.ts';
import { RunEventBus } from '../../src/runs/run-event-bus.ts';
import type { RunExecutor } from '../../src/runs/run-executor.ts';
import type { PageRequest, Scope, Store } from '../../src/storage/store.ts';
import { RunWorker } from '../../src/worker/run-worker.ts';
import { aMessage, anAssistant, aRun, aStep, aThread } from '../support/builders.ts';
import { countTurns } from '../support/event-loop.ts';
import { eventually } from '../support/eventually.ts';
import { collectIds } from '../support/paging.ts';

export interface StoreFixture {
  store: Store;
  cleanup(): Promise<void>;
}

const scope: Scope = { projectId: 'proj_contract' };
const otherScope: Scope = { projectId: 'proj_other' };

/** Every message of a thread, oldest first. */
function everyMessage(store: Store, scope: Scope, threadId: string) {
  return store.threadMessagesFrom(scope, threadId, 'oldest', 0, 1_000_000);
}

/**
 * The behaviour every Store must have, written once. Each implementation's test file calls this with a factory
 * for a fresh, empty store.
 */
export function storeContract(name: string, open: () => Promise<StoreFixture>): void {
  describe(`Store contract: ${name}`, () => {
    let fixture: StoreFixture;
    let store: Store;
    before(async () => {
      fixture = await open();
      store = fixture.store;
    });
    after(async () => fixture.cleanup());

    test('an assistant round-trips every field, updates partially and deletes', async () => {
      const assistant = anAssistant();
      await store.createAssistant(scope, assistant);
      assert.deepEqual(await store.getAssistant(scope, assistant.id), assistant);

      const updated = await store.updateAssistant(scope, assistant.id, { name: null, metadata: { v: '2' }, top_p: 1 });
      assert.deepEqual(updated, { ...assistant, name: null, metadata: { v: '2' }, top_p: 1 });
      assert.deepEqual(await store.updateAssistant(scope, assistant.id, {}), updated);

      assert.equal(await store.deleteAssistant(scope, assistant.id), true);
      assert.equal(await store.getAssistant(scope, assistant.id), undefined);
      assert.equal(await store.deleteAssistant(scope, assistant.id), false);
      assert.equal(await store.updateAssistant(scope, assistant.id, { name: 'x' }), undefined);
    });

    test('objects of one project are invisible to another', async () => {
      const assistant = anAssistant();
      const thread = aThread();
      const message = aMessage(thread.id);
      await store.createAssistant(scope, assistant);
      await store.createThread(scope, thread, [message]);

      assert.equal(await store.getAssistant(otherScope, assistant.id), undefined);
      assert.equal(await store.updateAssistant(otherScope, assistant.id, { name: 'stolen' }), undefined);
      assert.equal(await store.deleteAssistant(otherScope, assistant.id), false);
      assert.equal((await store.listAssistants(otherScope, { limit: 100, order: 'desc' })).data.length, 0);
      assert.equal(await store.getThread(otherScope, thread.id), undefined);
      assert.equal(await store.deleteThread(otherScope, thread.id), undefined);
      assert.equal(await store.getMessage(otherScope, thread.id, message.id), undefined);
      await assert.rejects(store.createMessage(otherScope, aMessage(thread.id)), (e: ApiError) => e.status === 404);
      await assert.rejects(store.listMessages(otherScope, thread.id, { limit: 20, order: 'desc' }), ApiError);

      assert.equal((await store.getAssistant(scope, assistant.id))?.name, assistant.name);
      assert.deepEqual(await store.getMessage(scope, thread.id, message.id), message);
    });

    test('a thread is created with its messages in order, and deleting it deletes them', async () => {
      const thread = aThread({ metadata: { k: 'v' }, tool_resources: { file_search: { vector_store_ids: ['vs_1'] } } });
      const messages = ['one', 'two', 'three'].map((text) => aMessage(thread.id, text));
      await store.createThread(scope, thread, messages);
      assert.deepEqual(await store.getThread(scope, thread.id), thread);

      const asc = await store.listMessages(scope, thread.id, { limit: 10, order: 'asc' });
      assert.deepEqual(
        asc.data.map((m) => m.id),
        messages.map((m) => m.id),
      );
      assert.equal(asc.hasMore, false);

      const patched = await store.updateThread(scope, thread.id, { metadata: {} });
      assert.deepEqual(patched, { ...thread, metadata: {} });

      assert.deepEqual(await store.deleteThread(scope, thread.id), [], 'no run was going');
      assert.equal(await store.deleteThread(scope, thread.id), undefined);
      assert.equal(await store.getThread(scope, thread.id), undefined);
      for (const m of messages) assert.equal(await store.getMessage(scope, thread.id, m.id), undefined);
      assert.equal(await store.updateThread(scope, thread.id, { metadata: {} }), undefined);
    });

    test('creating a thread is atomic: a failing message leaves no thread behind', async () => {
      const existing = aThread();
      const taken = aMessage(existing.id);
      await store.createThread(scope, existing, [taken]);
      const thread = aThread();
      await assert.rejects(
        store.createThread(scope, thread, [aMessage(thread.id), { ...taken, thread_id: thread.id }]),
      );
      assert.equal(await store.getThread(scope, thread.id), undefined);
    });

    test('messages: create, get, update, filter by run, delete; a missing thread is a 404', async () => {
      const thread = aThread();
      await store.createThread(scope, thread, []);
      const plain = aMessage(thread.id, 'plain');
      const fromRun = aMessage(thread.id, 'from a run', { role: 'assistant', run_id: 'run_1', assistant_id: 'asst_1' });
      await store.createMessage(scope, plain);
      await store.createMessage(scope, fromRun);
      assert.deepEqual(await store.getMessage(scope, thread.id, fromRun.id), fromRun);

      const filtered = await store.listMessages(scope, thread.id, { limit: 20, order: 'desc' }, { runId: 'run_1' });
      assert.deepEqual(
        filtered.data.map((m) => m.id),
        [fromRun.id],
      );

      const updated = await store.updateMessage(scope, thread.id, plain.id, { metadata: { seen: 'yes' } });
      assert.deepEqual(updated, { ...plain, metadata: { seen: 'yes' } });
      assert.equal(await store.updateMessage(scope, 'thread_other', plain.id, { metadata: {} }), undefined);

      assert.equal(await store.deleteMessage(scope, thread.id, plain.id), true);
      assert.equal(await store.deleteMessage(scope, thread.id, plain.id), false);
      assert.equal(await store.getMessage(scope, thread.id, plain.id), undefined);

      await assert.rejects(
        store.createMessage(scope, aMessage('thread_missing')),
        (e: ApiError) => e.status === 404 && e.message === "No thread found with id 'thread_missing'.",
      );
      await assert.rejects(
        store.listMessages(scope, 'thread_missing', { limit: 20, order: 'desc' }),
        (e: ApiError) => e.status === 404,
      );
    });

    test('pagination is stable when every object shares one created_at second', async () => {
      const thread = aThread();
      const messages = Array.from({ length: 250 }, (_, i) => aMessage(thread.id, `m${i}`));
      await store.createThread(scope, thread, messages);
      const inserted = messages.map((m) => m.id);
      const list = (page: PageRequest) => store.listMessages(scope, thread.id, page);

      assert.deepEqual(await collectIds(list, 'asc', 'after', 17), inserted);
      assert.deepEqual(await collectIds(list, 'desc', 'after', 17), [...inserted].reverse());
      // `before` walks back from an object: from the last one of each order, everything that precedes it.
      assert.deepEqual(await collectIds(list, 'asc', 'before', 17, inserted.at(-1)), inserted.slice(0, -1));
      assert.deepEqual(await collectIds(list, 'desc', 'before', 17, inserted[0]), [...inserted].reverse().slice(0, -1));

      const window = await list({ limit: 100, order: 'asc', after: inserted[9], before: inserted[20] });
      assert.deepEqual(
        window.data.map((m) => m.id),
        inserted.slice(10, 20),
      );
    });

    test('a thread can start with thousands of messages', async () => {
      const thread = aThread();
      const messages = Array.from({ length: 5000 }, (_, i) => aMessage(thread.id, `m${i}`));
      await store.createThread(scope, thread, messages);
      const all = await everyMessage(store, scope, thread.id);
      assert.deepEqual(
        all.map((m) => m.id),
        messages.map((m) => m.id),
      );
    });

    test("a thread's messages read from either end, a part at a time, in its order; only the scope's", async () => {
      const thread = aThread();
      // Many in one second: the order within it is the order of creation.
      const messages = Array.from({ length: 30 }, (_, i) => aMessage(thread.id, `m${i}`));
      await store.createThread(scope, thread, messages);
      const ids = messages.map((m) => m.id);
      const from = async (end: 'oldest' | 'newest', skip: number, limit: number) =>
        (await store.threadMessagesFrom(scope, thread.id, end, skip, limit)).map((m) => m.id);
      assert.deepEqual(await from('oldest', 0, 1), ids.slice(0, 1));
      assert.deepEqual(await from('newest', 0, 4), ids.slice(-4).reverse());
      assert.deepEqual(await from('newest', 4, 12), ids.slice(-16, -4).reverse());
      assert.deepEqual(await from('newest', 24, 12), ids.slice(0, 6).reverse());
      assert.deepEqual(await from('newest', 30, 12), []);
      assert.deepEqual(await from('oldest', 28, 5), ids.slice(28));
      const read = await store.threadMessagesFrom(scope, thread.id, 'newest', 0, 1);
      assert.deepEqual(read, [messages.at(-1)]);
      assert.deepEqual(await store.threadMessagesFrom(otherScope, thread.id, 'newest', 0, 10), []);
    });

    test("a thread's attachments, oldest first, whatever the messages' text says; only the scope's", async () => {
      const thread = aThread();
      const code = { type: 'code_interpreter' as const };
      const search = { type: 'file_search' as const };
      const messages = [
        aMessage(thread.id, 'none'),
        aMessage(thread.id, 'one', { attachments: [{ file_id: 'file-a', tools: [code] }] }),
        aMessage(thread.id, 'none either: "attachments":[] and %"attachments":[]%'),
        aMessage(thread.id, 'my text says "attachments":[]', {
          attachments: [
            { file_id: 'file-b', tools: [search] },
            { file_id: 'file-c', tools: [code, search] },
          ],
        }),
        aMessage(thread.id, 'none'),
      ];
      await store.createThread(scope, thread, messages);
      assert.deepEqual(await store.threadAttachments(scope, thread.id), [
        { file_id: 'file-a', tools: [code] },
        { file_id: 'file-b', tools: [search] },
        { file_id: 'file-c', tools: [code, search] },
      ]);
      assert.deepEqual(await store.threadAttachments(otherScope, thread.id), []);
    });

    test('a cursor that is not in the list is a 400 naming the parameter', async () => {
      const thread = aThread();
      await store.createThread(scope, thread, [aMessage(thread.id)]);
      await assert.rejects(
        store.listMessages(scope, thread.id, { limit: 20, order: 'desc', after: 'msg_nope' }),
        (e: ApiError) => e.status === 400 && e.param === 'after',
      );
      await assert.rejects(
        store.listAssistants(scope, { limit: 20, order: 'desc', before: 'asst_nope' }),
        (e: ApiError) => e.status === 400 && e.param === 'before',
      );
    });

    test('a cursor naming a deleted object still pages past it to an object created after it, in the same second', async () => {
      // SQLite gives a new row the seq of the newest row just deleted: C takes B's place, (created_at, seq) and all.
      const fresh: Scope = { projectId: 'proj_reused_place' };
      const [a, b, c] = [anAssistant(), anAssistant(), anAssistant()];
      await store.createAssistant(fresh, a);
      await store.createAssistant(fresh, b);
      assert.equal(await store.deleteAssistant(fresh, b.id), true);
      await store.createAssistant(fresh, c);
      const ids = async (page: Omit<PageRequest, 'limit'>) =>
        (await store.listAssistants(fresh, { limit: 20, ...page })).data.map((x) => x.id);
      assert.deepEqual(await ids({ order: 'asc', after: b.id }), [c.id]);
      assert.deepEqual(await ids({ order: 'desc', before: b.id }), [c.id]);
      assert.deepEqual(await ids({ order: 'desc', after: b.id }), [a.id]);
      assert.deepEqual(await ids({ order: 'asc', before: b.id }), [a.id]);
    });

    test('assistants list newest first by default, with has_more', async () => {
      const fresh: Scope = { projectId: 'proj_list' };
      const created = [];
      for (let i = 0; i < 5; i++) {
        const a = anAssistant({ created_at: 1_700_000_000 + i });
        await store.createAssistant(fresh, a);
        created.push(a.id);
      }
      const first = await store.listAssistants(fresh, { limit: 3, order: 'desc' });
      assert.deepEqual(
        first.data.map((a) => a.id),
        created.slice(2).reverse(),
      );
      assert.equal(first.hasMore, true);
      const rest = await store.listAssistants(fresh, { limit: 3, order: 'desc', after: first.data.at(-1)!.id });
      assert.deepEqual(
        rest.data.map((a) => a.id),
        created.slice(0, 2).reverse(),
      );
      assert.equal(rest.hasMore, false);
    });

    test('threads list by creation or by last activity, filtered by metadata, in their project only', async () => {
      const fresh: Scope = { projectId: 'proj_thread_list' };
      // Pairs of threads share a second, so `seq` must order them; the keys are taken literally, dots and all.
      const threads = Array.from({ length: 9 }, (_, i) =>
        aThread({
          created_at: 1_700_000_000 + Math.floor(i / 2),
          metadata: { parity: i % 2 === 0 ? 'even' : 'odd', 'a.b': i < 3 ? 'low' : 'high', '$"q': String(i) },
        }),
      );
      for (const thread of threads) await store.createThread(fresh, thread, []);
      const ids = threads.map((t) => t.id);
      const byCreation = (page: PageRequest) => store.listThreads(fresh, page);
      assert.deepEqual(await collectIds(byCreation, 'asc', 'after', 4), ids);
      assert.deepEqual(await collectIds(byCreation, 'desc', 'after', 4), [...ids].reverse());
      assert.deepEqual(await collectIds(byCreation, 'desc', 'before', 4, ids[0]), [...ids].reverse().slice(0, -1));
      assert.deepEqual((await store.listThreads(fresh, { limit: 1, order: 'desc' })).data, [threads.at(-1)]);
      assert.equal((await store.listThreads(otherScope, { limit: 100, order: 'desc' })).data.length, 0);

      const matching = async (metadata: Record<string, string>) =>
        (await store.listThreads(fresh, { limit: 100, order: 'asc' }, { metadata })).data.map((t) => t.id);
      assert.deepEqual(await matching({ parity: 'even' }), [ids[0], ids[2], ids[4], ids[6], ids[8]]);
      assert.deepEqual(await matching({ parity: 'even', 'a.b': 'low' }), [ids[0], ids[2]]);
      assert.deepEqual(await matching({ '$"q': '7' }), [ids[7]]);
      assert.deepEqual(await matching({ parity: 'odd', 'a.b': 'none' }), []);
      assert.deepEqual(await matching({ a: 'low' }), []);

      // Activity: a message on threads[2], then a run on threads[5]; an older timestamp never moves a thread back.
      await store.createMessage(fresh, aMessage(ids[2]!, 'later', { created_at: 1_700_000_100 }));
      await store.createRun(fresh, aRun(ids[5]!, { created_at: 1_700_000_200 }), []);
      await store.createMessage(fresh, aMessage(ids[2]!, 'older', { created_at: 1_700_000_001 }));
      const byActivity = (page: PageRequest) => store.listThreads(fresh, page, { orderBy: 'last_active_at' });
      const active = [ids[0], ids[1], ids[3], ids[4], ids[6], ids[7], ids[8], ids[2], ids[5]];
      assert.deepEqual(await collectIds(byActivity, 'asc', 'after', 2), active);
      assert.deepEqual(await collectIds(byActivity, 'desc', 'after', 2), [...active].reverse());
      assert.deepEqual(await collectIds(byActivity, 'asc', 'before', 2, ids[5]), active.slice(0, -1));
      const evenByActivity = await store.listThreads(
        fresh,
        { limit: 2, order: 'desc' },
        { orderBy: 'last_active_at', metadata: { parity: 'even' } },
      );
      assert.deepEqual(
        evenByActivity.data.map((t) => t.id),
        [ids[2], ids[8]],
      );
      assert.equal(evenByActivity.hasMore, true);
    });

    // ── runs ──────────────────────────────────────────────────────────────────

    /** Leases every run still waiting for a worker (left by earlier tests) far into the future, out of the way. */
    async function claimEverythingWaiting(): Promise<void> {
      await store.claimRuns('worker_sweeper', Date.now(), Date.now() + 1e10, 1_000_000);
    }

    async function threadWithRun(overrides: Partial<Run> = {}): Promise<Run> {
      const thread = aThread();
      await store.createThread(scope, thread, []);
      const run = aRun(thread.id, overrides);
      await store.createRun(scope, run, []);
      return run;
    }

    test('a run round-trips every field with its additional messages; metadata updates; lists page', async () => {
      const thread = aThread();
      await store.createThread(scope, thread, [aMessage(thread.id, 'first')]);
      // The spec sets the token limits no maximum: they are kept beyond 32 bits too.
      const run = aRun(thread.id, {
        max_prompt_tokens: 3_000_000_000,
        max_completion_tokens: 2 ** 40,
        parallel_tool_calls: true,
        tool_choice: 'required',
      });
      const extra = aMessage(thread.id, 'additional');
      await store.createRun(scope, run, [extra]);

      assert.deepEqual(await store.getRun(scope, thread.id, run.id), run);
      assert.deepEqual(await store.getMessage(scope, thread.id, extra.id), extra);
      assert.equal(await store.getRun(scope, 'thread_other', run.id), undefined);
      assert.equal(await store.getRun(otherScope, thread.id, run.id), undefined);
      assert.deepEqual(await store.runLock(run.id), { lockedBy: null, lockedUntil: null });

      const updated = await store.updateRunMetadata(scope, thread.id, run.id, { v: '2' });
      assert.deepEqual(updated, { ...run, metadata: { v: '2' } });
      assert.equal(await store.updateRunMetadata(otherScope, thread.id, run.id, {}), undefined);

      const listed = await store.listRuns(scope, thread.id, { limit: 20, order: 'desc' });
      assert.deepEqual(listed.data, [updated]);
      await assert.rejects(
        store.listRuns(scope, 'thread_missing', { limit: 20, order: 'desc' }),
        (e: ApiError) => e.status === 404,
      );
      await assert.rejects(
        store.createRun(scope, aRun('thread_missing'), []),
        (e: ApiError) => e.status === 404 && e.message === "No thread found with id 'thread_missing'.",
      );
    });

    test("a run's additional messages, and a commit's steps and messages, are listed in the order given", async () => {
      const thread = aThread();
      await store.createThread(scope, thread, []);
      const run = aRun(thread.id);
      const extras = ['one', 'two', 'three', 'four'].map((text) => aMessage(thread.id, text));
      await store.createRun(scope, run, extras);
      const texts = async () =>
        (await store.listMessages(scope, thread.id, { limit: 20, order: 'asc' })).data.map((m) => m.id);
      assert.deepEqual(
        await texts(),
        extras.map((m) => m.id),
      );

      const done: Run = { ...run, status: 'completed', completed_at: run.created_at };
      const answers = [aMessage(thread.id, 'answer one'), aMessage(thread.id, 'answer two')];
      const creation = aStep(done, {
        type: 'message_creation',
        step_details: { type: 'message_creation', message_creation: { message_id: answers[0]!.id } },
      });
      const steps = [creation, aStep(done), aStep(done)];
      assert.ok(await store.commitRun(scope, { run: done, expect: { status: 'queued' }, steps, messages: answers }));
      const listed = await store.listRunSteps(scope, thread.id, run.id, { limit: 20, order: 'asc' });
      assert.deepEqual(
        listed.data.map((step) => step.id),
        steps.map((step) => step.id),
      );
      assert.deepEqual(
        await texts(),
        [...extras, ...answers].map((m) => m.id),
      );
    });

    test('an active run locks its thread: no second run, no new message, until it ends', async () => {
      const run = await threadWithRun();
      const threadId = run.thread_id;
      await assert.rejects(
        store.createRun(scope, aRun(threadId), [aMessage(threadId, 'refused')]),
        (e: ApiError) => e.status === 400 && e.message === `Thread ${threadId} already has an active run ${run.id}.`,
      );
      await assert.rejects(
        store.createMessage(scope, aMessage(threadId)),
        (e: ApiError) =>
          e.status === 400 && e.message === `Can't add messages to ${threadId} while a run ${run.id} is active.`,
      );
      assert.equal((await everyMessage(store, scope, threadId)).length, 0, 'the refused run added no message');

      const ended: Run = { ...run, status: 'completed', completed_at: run.created_at + 5 };
      assert.ok(await store.commitRun(scope, { run: ended, expect: { status: 'queued' } }));
      await store.createMessage(scope, aMessage(threadId));
      const next = aRun(threadId);
      await store.createRun(scope, next, []);
      assert.deepEqual(await store.getRun(scope, threadId, next.id), next);

      // Deleting the thread names the run still going, not the one that ended; both go with it.
      assert.deepEqual(await store.deleteThread(scope, threadId), [next.id]);
      assert.equal(await store.getRun(scope, threadId, next.id), undefined);
      assert.equal(await store.getRun(scope, threadId, run.id), undefined);
    });

    test('deleting a long thread lets the event loop run meanwhile; all of it goes; its active run is named', async () => {
      const thread = aThread();
      await store.createThread(
        scope,
        thread,
        Array.from({ length: 10_000 }, (_, i) => aMessage(thread.id, `m${i}`)),
      );
      const ended: Run[] = [];
      for (let i = 0; i < 600; i++) {
        const run = aRun(thread.id);
        await store.createRun(scope, run, []);
        const done: Run = { ...run, status: 'completed', completed_at: run.created_at + 1 };
        await store.commitRun(scope, { run: done, expect: { status: 'queued' }, steps: [aStep(done)] });
        ended.push(done);
      }
      const going = aRun(thread.id);
      await store.createRun(scope, going, [aMessage(thread.id, 'the last question')]);

      // Turns of the event loop while the thread is deleted: one statement deleting it all would allow none.
      const turns = countTurns();
      const deleted = await store.deleteThread(scope, thread.id);
      turns.stop();
      assert.deepEqual(deleted, [going.id]);
      assert.ok(turns.count >= 3, `${turns.count} turns of the event loop`);

      assert.equal(await store.getThread(scope, thread.id), undefined);
      assert.deepEqual(await everyMessage(store, scope, thread.id), []);
      for (const run of [ended[0]!, ended.at(-1)!, going]) {
        assert.equal(await store.getRun(scope, thread.id, run.id), undefined);
        assert.deepEqual(await store.runSteps(scope, run.id), []);
      }
    });

    test('queued runs: a run created on a busy thread waits, and is claimed first in line once the one before ended', async () => {
      await claimEverythingWaiting();
      let freed = 0;
      store.onWaitingRunsFreed(() => freed++);
      const first = await threadWithRun();
      const threadId = first.thread_id;
      const second = aRun(threadId);
      const third = aRun(threadId);
      const lease = { lockedBy: 'worker_local', lockedUntil: Date.now() + 60_000 };
      const added = aMessage(threadId, 'with the second run');
      assert.deepEqual(await store.createRun(scope, second, [added], undefined, { queue: true }), { waiting: true });
      assert.deepEqual(await store.createRun(scope, third, [], lease, { queue: true }), { waiting: true });
      assert.deepEqual(
        await store.runLock(third.id),
        { lockedBy: null, lockedUntil: null },
        'a waiting run is unleased',
      );
      assert.deepEqual(await store.getRun(scope, threadId, third.id), third, 'its wire status is queued');
      await store.createMessage(scope, aMessage(threadId, 'after the third run'), { queue: true });
      // Each waits behind the last run made before it, out of the runs' reading until that run ends.
      const read = async () =>
        (await everyMessage(store, scope, threadId)).map(
          (m) => (m.content[0] as { text: { value: string } }).text.value,
        );
      assert.deepEqual(await read(), []);
      // Without `queue`, a thread with waiting runs is as busy as one with a run going.
      await assert.rejects(store.createRun(scope, aRun(threadId), []), (e: ApiError) => e.status === 400);

      const now = Date.now();
      const claim = async (worker: string) =>
        (await store.claimRuns(worker, now, now + 60_000, 100)).map((c) => c.run.id);
      assert.deepEqual(await claim('worker_a'), [first.id], 'the waiting runs are not claimed while one goes');
      const started: Run = { ...first, status: 'in_progress', started_at: first.created_at };
      assert.ok(await store.commitRun(scope, { run: started, expect: { status: 'queued', lockedBy: 'worker_a' } }));
      assert.equal(freed, 0, 'a commit that does not end the run frees nothing');
      const completed: Run = { ...started, status: 'completed', completed_at: first.created_at + 1 };
      const release = { lockedBy: null, lockedUntil: null };
      assert.ok(
        await store.commitRun(scope, {
          run: completed,
          expect: { status: 'in_progress', lockedBy: 'worker_a' },
          lock: release,
        }),
      );
      assert.equal(freed, 1, 'ending the run with runs waiting behind it tells the listener');
      assert.deepEqual(await read(), ['with the second run'], 'it joins the thread as the run before it ends');

      assert.deepEqual(await claim('worker_b'), [second.id], 'the first in line, and only it');
      assert.deepEqual(await claim('worker_c'), []);
      const expired: Run = { ...second, status: 'expired', expires_at: null };
      assert.ok(
        await store.commitRun(scope, {
          run: expired,
          expect: { status: 'queued', lockedBy: 'worker_b' },
          lock: release,
        }),
      );
      assert.equal(freed, 2);
      assert.deepEqual(await claim('worker_c'), [third.id]);
      const cancelled: Run = { ...third, status: 'cancelled', cancelled_at: third.created_at + 1 };
      assert.ok(
        await store.commitRun(scope, {
          run: cancelled,
          expect: { status: 'queued', lockedBy: 'worker_c' },
          lock: release,
        }),
      );
      assert.equal(freed, 2, 'nothing waits behind the last run');
      assert.deepEqual(await read(), ['with the second run', 'after the third run']);
      await store.createRun(scope, aRun(threadId), []);
    });

    test('of 50 concurrent run creations on one thread, exactly one succeeds; the others get the thread-lock error', async () => {
      const thread = aThread();
      await store.createThread(scope, thread, []);
      const runs = Array.from({ length: 50 }, () => aRun(thread.id));
      const outcomes = await Promise.allSettled(runs.map((run) => store.createRun(scope, run, [aMessage(thread.id)])));

      const winners = runs.filter((_, i) => outcomes[i]?.status === 'fulfilled');
      assert.equal(winners.length, 1, 'exactly one run is created');
      const winner = winners[0]!;
      for (const outcome of outcomes) {
        if (outcome.status === 'fulfilled') continue;
        const error = outcome.reason as ApiError;
        assert.ok(error instanceof ApiError, `expected an ApiError, got ${String(error)}`);
        assert.equal(error.status, 400);
        assert.equal(error.message, `Thread ${thread.id} already has an active run ${winner.id}.`);
      }
      const listed = await store.listRuns(scope, thread.id, { limit: 100, order: 'desc' });
      assert.deepEqual(
        listed.data.map((r) => r.id),
        [winner.id],
      );
      assert.equal((await everyMessage(store, scope, thread.id)).length, 1, "only the winner's message was added");
    });

    test('creating a thread and a run is atomic', async () => {
      const thread = aThread();
      const messages = [aMessage(thread.id, 'a'), aMessage(thread.id, 'b')];
      const run = aRun(thread.id);
      await store.createThreadAndRun(scope, thread, messages, run);
      assert.deepEqual(await store.getThread(scope, thread.id), thread);
      assert.deepEqual(await everyMessage(store, scope, thread.id), messages);
      assert.deepEqual(await store.getRun(scope, thread.id, run.id), run);

      const failing = aThread();
      await assert.rejects(
        store.createThreadAndRun(scope, failing, [aMessage(failing.id)], { ...run, thread_id: failing.id }),
      );
      assert.equal(await store.getThread(scope, failing.id), undefined);
    });

    test('commitRun writes only while its fence holds, and upserts steps and messages', async () => {
      const run = await threadWithRun();
      const { thread_id: threadId } = run;
      const started: Run = { ...run, status: 'in_progress', started_at: run.created_at + 1 };
      const step = aStep(run);
      const lock = { lockedBy: 'worker_a', lockedUntil: 1_700_000_000_123 };
      assert.ok(
        await store.commitRun(scope, {
          run: started,
          expect: { status: 'queued', lockedBy: null },
          lock,
          steps: [step],
        }),
      );
      assert.deepEqual(await store.getRun(scope, threadId, run.id), started);
      assert.deepEqual(await store.runLock(run.id), lock);
      assert.deepEqual(await store.getRunStep(scope, threadId, run.id, step.id), step);

      // A stale status, another worker, or another project: nothing is written.
      const wrong: Run = { ...started, status: 'failed' };
      assert.equal(await store.commitRun(scope, { run: wrong, expect: { status: 'queued' } }), undefined);
      assert.equal(
        await store.commitRun(scope, { run: wrong, expect: { status: 'in_progress', lockedBy: 'worker_b' } }),
        undefined,
      );
      assert.equal(await store.commitRun(otherScope, { run: wrong, expect: { status: 'in_progress' } }), undefined);
      assert.deepEqual(await store.getRun(scope, threadId, run.id), started);

      const doneStep = {
        ...step,
        status: 'completed' as const,
        completed_at: run.created_at + 2,
        usage: step.turn_usage,
        turn_usage: null,
      };
      const answer = aMessage(threadId, 'the answer', {
        role: 'assistant',
        run_id: run.id,
        assistant_id: run.assistant_id,
      });
      const finished: Run = {
        ...started,
        status: 'completed',
        completed_at: run.created_at + 3,
        usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
      };
      const released = { lockedBy: null, lockedUntil: null };
      assert.ok(
        await store.commitRun(scope, {
          run: finished,
          expect: { status: 'in_progress', lockedBy: 'worker_a' },
          lock: released,
          steps: [doneStep],
          messages: [answer],
        }),
      );
      assert.deepEqual(await store.getRun(scope, threadId, run.id), finished);
      assert.deepEqual(await store.runLock(run.id), released);
      assert.deepEqual(await store.runSteps(scope, run.id), [doneStep]);
      assert.deepEqual((await store.listRunSteps(scope, threadId, run.id, { limit: 20, order: 'asc' })).data, [
        doneStep,
      ]);
      assert.deepEqual(await store.listMessages(scope, threadId, { limit: 20, order: 'asc' }, { runId: run.id }), {
        data: [answer],
        hasMore: false,
      });
      await assert.rejects(
        store.listRunSteps(scope, threadId, 'run_missing', { limit: 20, order: 'asc' }),
        (e: ApiError) => e.status === 404,
      );
    });

    test('commitRun fenced on a pending action applies only while the run holds that one', async () => {
      const run = await threadWithRun();
      const pause = (id: string): Run['required_action'] => ({
        type: 'submit_tool_outputs',
        submit_tool_outputs: {
          tool_calls: [{ id, type: 'function', function: { name: 'lookup', arguments: '{"q":"é"}' } }],
        },
      });
      const paused: Run = { ...run, status: 'requires_action', required_action: pause('call_2') };
      assert.ok(await store.commitRun(scope, { run: paused, expect: { status: 'queued' } }));
      const answered: Run = { ...paused, status: 'queued', required_action: null };
      // Outputs checked against an earlier pause of the same run: not applied.
      const stale = { status: 'requires_action' as const, requiredAction: pause('call_1') };
      assert.equal(await store.commitRun(scope, { run: answered, expect: stale }), undefined);
      assert.equal(
        await store.commitRun(scope, { run: answered, expect: { status: 'requires_action', requiredAction: null } }),
        undefined,
      );
      assert.deepEqual(await store.getRun(scope, run.thread_id, run.id), paused);
      const current = { status: 'requires_action' as const, requiredAction: pause('call_2') };
      assert.ok(await store.commitRun(scope, { run: answered, expect: current }));
      assert.deepEqual(await store.getRun(scope, run.thread_id, run.id), answered);
    });

    test('a message in progress is changed by its run alone; discardBegun deletes what a dead turn began, not what the commit writes', async () => {
      const run = await threadWithRun();
      const { thread_id: threadId } = run;
      const started: Run = { ...run, status: 'in_progress', started_at: run.created_at + 1 };
      const held = { status: 'in_progress' as const, lockedBy: 'worker_a' };
      await store.commitRun(scope, {
        run: started,
        expect: { status: 'queued' },
        lock: { lockedBy: 'worker_a', lockedUntil: 1 },
      });
      // As a turn stores them as they begin: a message being written with its step, a tool_calls step with no call.
      const begun = (text: string) => {
        const message = aMessage(threadId, text, {
          role: 'assistant',
          run_id: run.id,
          assistant_id: run.assistant_id,
          status: 'in_progress',
          content: [],
          completed_at: null,
        });
        const step = aStep(run, {
          type: 'message_creation',
          step_details: { type: 'message_creation', message_creation: { message_id: message.id } },
          turn_usage: null,
        });
        return { message, step };
      };
      // A turn that wrote a message before its calls, committed with them: kept, also when the ending writes the calls.
      const said = begun('');
      const early = {
        message: { ...said.message, status: 'completed' as const, content: aMessage(threadId, 'Let me look.').content },
        step: { ...said.step, status: 'completed' as const, completed_at: run.created_at + 1 },
      };
      const pending = aStep(run); // the model's calls in it: not a turn's beginning
      const dead = begun('');
      const deadCalls = aStep(run, {
        step_details: { type: 'tool_calls', tool_calls: [] },
        model_calls: [],
        turn_usage: null,
      });
      const own = begun('');
      for (const written of [
        { steps: [early.step, pending], messages: [early.message] },
        { steps: [dead.step], messages: [dead.message] },
        { steps: [deadCalls] },
        { steps: [own.step], messages: [own.message] },
      ])
        assert.ok(await store.commitRun(scope, { run: started, expect: held, ...written }));

      await assert.rejects(
        store.updateMessage(scope, threadId, dead.message.id, { metadata: { a: 'b' } }),
        (e: ApiError) => e.status === 400 && /in progress/.test(e.message),
      );
      await assert.rejects(store.deleteMessage(scope, threadId, dead.message.id), (e: ApiError) => e.status === 400);

      const at = run.created_at + 2;
      const ended: Run = { ...started, status: 'cancelled', cancelled_at: at };
      const cancelledPending = { ...pending, status: 'cancelled' as const, cancelled_at: at };
      const ownDone = { ...own.step, status: 'completed' as const, completed_at: at };
      const ownMessage = {
        ...own.message,
        status: 'incomplete' as const,
        content: aMessage(threadId, 'so far').content,
      };
      assert.ok(
        await store.commitRun(scope, {
          run: ended,
          expect: held,
          steps: [cancelledPending, ownDone],
          messages: [ownMessage],
          discardBegun: true,
        }),
      );
      assert.deepEqual(await store.runSteps(scope, run.id), [early.step, cancelledPending, ownDone]);
      assert.deepEqual(await store.getMessage(scope, threadId, early.message.id), early.message);
      assert.equal(await store.getMessage(scope, threadId, dead.message.id), undefined);
      assert.deepEqual(await store.getMessage(scope, threadId, own.message.id), ownMessage);
      // Their places stay: a cursor naming one pages on.
      assert.deepEqual(
        (await store.listRunSteps(scope, threadId, run.id, { limit: 20, order: 'asc', after: dead.step.id })).data,
        [ownDone],
      );
      assert.deepEqual(
        (await store.listMessages(scope, threadId, { limit: 20, order: 'asc', after: dead.message.id })).data.map(
          (m) => m.id,
        ),
        [own.message.id],
      );
      const modified = await store.updateMessage(scope, threadId, own.message.id, { metadata: { a: 'b' } });
      assert.deepEqual(modified?.metadata, { a: 'b' });
    });

    /**
     * A run held by a stuck execution (`worker_stuck`, its lease renewed), whose model turn opened a tool_calls step:
     * `commitCalls` commits the calls in it (executed in the server, so still in progress), as the holder would.
     */
    async function stuckRun(overrides: Partial<Run> = {}) {
      const run = await threadWithRun(overrides);
      const started: Run = { ...run, status: 'in_progress', started_at: run.created_at + 1 };
      const held = { status: 'in_progress' as const, lockedBy: 'worker_stuck' };
      await store.commitRun(scope, {
        run: started,
        expect: { status: 'queued' },
        lock: { lockedBy: 'worker_stuck', lockedUntil: Date.now() + 60_000 },
      });
      const opened = aStep(run, {
        step_details: { type: 'tool_calls', tool_calls: [] },
        model_calls: [],
        turn_usage: null,
      });
      assert.ok(await store.commitRun(scope, { run: started, expect: held, steps: [opened] }));
      const calls = aStep(run, { id: opened.id });
      const commitCalls = async () =>
        assert.ok(await store.commitRun(scope, { run: started, expect: held, steps: [calls] }));
      return { run: started, held, calls, commitCalls };
    }

    test("an ending fenced on the steps it read is refused once the run's holder commits a step, and applies on the steps as they are", async () => {
      const { run, held, calls, commitCalls } = await stuckRun();
      const read = await store.runSteps(scope, run.id);
      await commitCalls();

      // The ending made from what it read takes the step for a dead turn's beginning: the calls would stay open on it.
      const at = run.created_at + 2;
      const expired: Run = { ...run, status: 'expired' };
      const ending = (steps: typeof read, written: typeof read) =>
        store.commitRun(scope, {
          run: expired,
          expect: { ...held, steps },
          lock: { lockedBy: null, lockedUntil: null },
          steps: written,
          discardBegun: true,
        });
      assert.equal(await ending(read, []), undefined);
      assert.deepEqual(await store.getRun(scope, run.thread_id, run.id), run);
      assert.deepEqual(await store.runSteps(scope, run.id), [calls]);
      assert.equal((await store.runLock(run.id))?.lockedBy, 'worker_stuck');

      const now = await store.runSteps(scope, run.id);
      const callsExpired = { ...calls, status: 'expired' as const, expired_at: at };
      assert.ok(await ending(now, [callsExpired]));
      assert.deepEqual(await store.runSteps(scope, run.id), [callsExpired]);
      assert.equal((await store.getRun(scope, run.thread_id, run.id))?.status, 'expired');
    });

    test('the expiry sweep of a run its stuck execution holds ends the step that execution committed as the sweep looked', async () => {
      // Long past its deadline, and so past the time left to its execution to expire it.
      const { run, calls, commitCalls } = await stuckRun({ expires_at: Math.floor(Date.now() / 1000) - 60 });
      // The worker's store: its first read of the run's steps is followed by the holder's commit of the calls.
      let raced = false;
      const racing = new Proxy(store, {
        get(target, key) {
          if (key === 'runSteps')
            return async (...args: Parameters<Store['runSteps']>) => {
              const read = await target.runSteps(...args);
              if (!raced && args[1] === run.id) {
                raced = true;
                await commitCalls();
              }
              return read;
            };
          const value = Reflect.get(target, key);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      const worker = new RunWorker({
        store: racing,
        bus: new RunEventBus(),
        executor: {} as RunExecutor, // concurrency 0: it executes nothing, it sweeps
        logger: pino({ level: 'silent' }),
        concurrency: 0,
        leaseMs: 60_000,
        sweepMs: 50,
      });
      worker.start();
      try {
        await eventually('the run expired', 10_000, async () =>
          (await store.getRun(scope, run.thread_id, run.id))?.status === 'expired' ? true : undefined,
        );
      } finally {
        await worker.close();
      }
      assert.ok(raced);
      const [step, ...more] = await store.runSteps(scope, run.id);
      assert.deepEqual(more, []);
      assert.deepEqual([step?.id, step?.status, step?.step_details], [calls.id, 'expired', calls.step_details]);
    });

    test("commitRun leaves the run's metadata as modify run last set it", async () => {
      const run = await threadWithRun();
      const modified = await store.updateRunMetadata(scope, run.thread_id, run.id, { changed: 'meanwhile' });
      assert.deepEqual(modified?.metadata, { changed: 'meanwhile' });
      // The executor's copy of the run is older than the modification.
      const started: Run = { ...run, status: 'in_progress', started_at: run.created_at + 1 };
      const committed = await store.commitRun(scope, { run: started, expect: { status: 'queued' } });
      // It answers with the run as stored, which is what the events announcing the commit carry.
      assert.deepEqual(committed, { ...started, metadata: { changed: 'meanwhile' } });
      assert.deepEqual(await store.getRun(scope, run.thread_id, run.id), committed);
    });

    test('claimRuns leases waiting runs oldest first; a held lease is renewed, a lapsed one is taken over', async () => {
      await claimEverythingWaiting();
      const now = Date.now();
      const newer = await threadWithRun({ created_at: 1_700_000_002 });
      const older = await threadWithRun({ created_at: 1_700_000_001 });
      const requiresAction = await threadWithRun();
      await store.commitRun(scope, {
        run: { ...requiresAction, status: 'requires_action' },
        expect: { status: 'queued' },
      });

      const claimed = await store.claimRuns('worker_a', now, now + 15_000, 10);
      assert.deepEqual(
        claimed.map((c) => c.run.id),
        [older.id, newer.id],
      );
      assert.deepEqual(claimed[0], { scope, run: older, lock: { lockedBy: 'worker_a', lockedUntil: now + 15_000 } });
      assert.deepEqual(
        await store.claimRuns('worker_b', now + 1, now + 15_001, 10),
        [],
        'held leases are not claimable',
      );

      assert.equal(await store.renewLease(older.id, 'worker_a', now + 30_000), 'queued');
      assert.equal(await store.renewLease(older.id, 'worker_b', now + 30_000), undefined);
      assert.deepEqual(await store.runLock(older.id), { lockedBy: 'worker_a', lockedUntil: now + 30_000 });

      // worker_a dies: once its leases lapse, worker_b takes the runs over.
      const later = now + 20_000;
      const takenOver = await store.claimRuns('worker_b', later, later + 15_000, 10);
      assert.deepEqual(
        takenOver.map((c) => c.run.id),
        [newer.id],
      );
      assert.equal(
        await store.renewLease(newer.id, 'worker_a', later + 30_000),
        undefined,
        'the lost lease stays lost',
      );
    });

    test('claimRuns leaves a run past its expires_at to the sweep that expires it', async () => {
      await claimEverythingWaiting();
      const now = Date.now();
      const nowSeconds = Math.floor(now / 1000);
      const due = await threadWithRun({ expires_at: nowSeconds });
      const notYet = await threadWithRun({ expires_at: nowSeconds + 1 });
      assert.deepEqual(
        (await store.claimRuns('worker_a', now, now + 15_000, 10)).map((c) => c.run.id),
        [notYet.id],
      );
      const expiring = (await store.runsDueForExpiry(nowSeconds, 1000)).map((c) => c.run.id);
      assert.ok(expiring.includes(due.id) && !expiring.includes(notYet.id));
    });

    test('concurrent claims by different workers never lease the same run', async () => {
      await claimEverythingWaiting();
      for (let round = 0; round < 5; round++) {
        const runs = await Promise.all(Array.from({ length: 20 }, () => threadWithRun()));
        const now = Date.now();
        const [a, b] = await Promise.all([
          store.claimRuns(`worker_a${round}`, now, now + 1e9, 10),
          store.claimRuns(`worker_b${round}`, now, now + 1e9, 10),
        ]);
        const idsA = a.map((c) => c.run.id);
        const idsB = b.map((c) => c.run.id);
        assert.equal(idsA.length, 10);
        assert.equal(idsB.length, 10);
        assert.deepEqual(
          new Set([...idsA, ...idsB]),
          new Set(runs.map((r) => r.id)),
          'every run is leased exactly once',
        );
        for (const id of idsA) assert.equal((await store.runLock(id))?.lockedBy, `worker_a${round}`);
        for (const id of idsB) assert.equal((await store.runLock(id))?.lockedBy, `worker_b${round}`);
      }
    });

    test('runsDueForExpiry lists active runs past expires_at, soonest first', async () => {
      const due = await threadWithRun({ expires_at: 1_000 });
      const dueFirst = await threadWithRun({ expires_at: 900 });
      const notYet = await threadWithRun({ expires_at: 1_200 });
      const ended = await threadWithRun({ expires_at: 800 });
      await store.commitRun(scope, {
        run: { ...ended, status: 'cancelled', cancelled_at: 1 },
        expect: { status: 'queued' },
      });

      const expiring = await store.runsDueForExpiry(1_100, 100);
      assert.deepEqual(
        expiring.map((c) => c.run.id),
        [dueFirst.id, due.id],
      );
      assert.deepEqual(expiring[1], { scope, run: due, lock: { lockedBy: null, lockedUntil: null } });
      assert.ok(!expiring.some((c) => c.run.id === notYet.id));
    });
  });
}
