import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ApiError } from '../../src/domain/errors.ts';
import type { Message } from '../../src/domain/objects.ts';
import type { PageRequest, Scope, Store } from '../../src/storage/store.ts';
import { aMessage, anAssistant, aThread } from '../support/builders.ts';

export interface StoreFixture {
  store: Store;
  cleanup(): Promise<void>;
}

const scope: Scope = { projectId: 'proj_contract' };
const otherScope: Scope = { projectId: 'proj_other' };

/** Pages through a whole list with the cursor the SDK uses (`after` = last id) or with `before` = first id. */
async function collect(
  list: (page: PageRequest) => Promise<{ data: Message[]; hasMore: boolean }>,
  order: 'asc' | 'desc',
  via: 'after' | 'before',
  limit: number,
  start?: string,
): Promise<string[]> {
  const seen: string[] = [];
  let cursor = start;
  for (;;) {
    const page = await list({ limit, order, [via]: cursor });
    const ids = page.data.map((m) => m.id);
    if (via === 'after') seen.push(...ids);
    else seen.unshift(...ids);
    if (!page.hasMore || ids.length === 0) return seen;
    cursor = via === 'after' ? ids.at(-1) : ids[0];
  }
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
      assert.equal(await store.deleteThread(otherScope, thread.id), false);
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

      assert.equal(await store.deleteThread(scope, thread.id), true);
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

      assert.deepEqual(await collect(list, 'asc', 'after', 17), inserted);
      assert.deepEqual(await collect(list, 'desc', 'after', 17), [...inserted].reverse());
      // `before` walks back from an object: from the last one of each order, everything that precedes it.
      assert.deepEqual(await collect(list, 'asc', 'before', 17, inserted.at(-1)), inserted.slice(0, -1));
      assert.deepEqual(await collect(list, 'desc', 'before', 17, inserted[0]), [...inserted].reverse().slice(0, -1));

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
      const all = await store.threadMessages(scope, thread.id);
      assert.deepEqual(
        all.map((m) => m.id),
        messages.map((m) => m.id),
      );
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
  });
}
