import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import OpenAI, { toFile } from 'openai';
import { CursorPage } from 'openai/pagination';
import { buriedCursor, bury } from '../../src/storage/sql/list-tombstones.ts';
import type { Database } from '../../src/storage/sql/schema.ts';
import { openSqliteStore, SQLITE_FILE_NAME } from '../../src/storage/sqlite/open-sqlite-store.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { startTestServer, type TestServer, tempDir } from '../support/server.ts';
import { createValidatingFetch } from '../support/validating-fetch.ts';

/**
 * The clean-up loop of real programs: `for await (const x of client.….list()) await client.….delete(x.id)`. The
 * SDK asks for each next page `after` the last object of the page before, which the loop has just deleted: the
 * list goes on from where that object was (a deleted object's place is kept for a day), on SQLite and PostgreSQL.
 */

const COUNT = 25;

function deleteWhileListingSuite(
  name: string,
  env: () => Promise<{ env: Record<string, string>; cleanup(): Promise<void> }>,
) {
  describe(`deleting while listing, on ${name}`, () => {
    let server: TestServer;
    let cleanup: () => Promise<void>;
    let client: OpenAI;
    const recorder = createValidatingFetch();

    before(async () => {
      const setup = await env();
      cleanup = setup.cleanup;
      server = await startTestServer(setup.env);
      client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
    });
    after(async () => {
      await server?.close();
      await cleanup?.();
    });

    const uploadFiles = (count: number, prefix: string) =>
      Promise.all(
        Array.from({ length: count }, async (_, i) =>
          client.files.create({
            file: await toFile(Buffer.from(`text ${i}`), `${prefix}-${i}.txt`),
            purpose: 'assistants',
          }),
        ),
      );

    test('assistants, in both orders', async () => {
      for (const order of ['desc', 'asc'] as const) {
        const made = await Promise.all(
          Array.from({ length: COUNT }, (_, i) => client.beta.assistants.create({ model: 'm', name: `a${i}` })),
        );
        const deleted: string[] = [];
        for await (const assistant of client.beta.assistants.list({ limit: 10, order })) {
          await client.beta.assistants.delete(assistant.id);
          deleted.push(assistant.id);
        }
        assert.deepEqual(deleted.sort(), made.map((a) => a.id).sort());
        assert.deepEqual((await client.beta.assistants.list()).data, []);
      }
      recorder.assertNoViolations();
    });

    test("a thread's messages, and threads by last activity", async () => {
      const thread = await client.beta.threads.create({
        messages: Array.from({ length: COUNT }, (_, i) => ({ role: 'user' as const, content: `m${i}` })),
      });
      let deleted = 0;
      for await (const message of client.beta.threads.messages.list(thread.id, { limit: 10 })) {
        await client.beta.threads.messages.delete(message.id, { thread_id: thread.id });
        deleted++;
      }
      assert.equal(deleted, COUNT);
      assert.deepEqual((await client.beta.threads.messages.list(thread.id)).data, []);

      const threads = await Promise.all(Array.from({ length: COUNT - 1 }, () => client.beta.threads.create()));
      const all = new Set([thread.id, ...threads.map((t) => t.id)]);
      const listed = client.getAPIList<OpenAI.Beta.Thread, CursorPage<OpenAI.Beta.Thread>>('/threads', CursorPage, {
        query: { limit: 10, order_by: 'last_active_at' },
      });
      for await (const t of listed) {
        await client.beta.threads.delete(t.id);
        assert.ok(all.delete(t.id), `${t.id} listed once, and is one of ours`);
      }
      assert.equal(all.size, 0);
      recorder.assertNoViolations();
    });

    test('files, vector stores, and the files of a store (removed, or deleted from the Files API)', async () => {
      const files = await uploadFiles(COUNT, 'f');
      let deleted = 0;
      for await (const file of client.files.list({ limit: 10 })) {
        await client.files.delete(file.id);
        deleted++;
      }
      assert.equal(deleted, COUNT);

      const stores = await Promise.all(Array.from({ length: COUNT }, () => client.vectorStores.create({})));
      deleted = 0;
      for await (const store of client.vectorStores.list({ limit: 10 })) {
        await client.vectorStores.delete(store.id);
        deleted++;
      }
      assert.equal(deleted, stores.length);

      for (const remove of ['from the store', 'from the Files API'] as const) {
        const inStore = await uploadFiles(COUNT, 's');
        const store = await client.vectorStores.create({ file_ids: inStore.map((f) => f.id) });
        const seen: string[] = [];
        for await (const file of client.vectorStores.files.list(store.id, { limit: 10 })) {
          if (remove === 'from the store')
            await client.vectorStores.files.delete(file.id, { vector_store_id: store.id });
          else await client.files.delete(file.id);
          seen.push(file.id);
        }
        assert.deepEqual(seen.sort(), inStore.map((f) => f.id).sort(), remove);
        assert.deepEqual((await client.vectorStores.files.list(store.id)).data, [], remove);
      }
      assert.equal(files.length, COUNT);
      recorder.assertNoViolations();
    });

    test('`before` a deleted object, and an id that was never in the list', async () => {
      const made = [];
      for (let i = 0; i < 5; i++) made.push(await client.beta.assistants.create({ model: 'm', name: `b${i}` }));
      await client.beta.assistants.delete(made[2]!.id);
      const before = await client.beta.assistants.list({ order: 'asc', before: made[2]!.id });
      assert.deepEqual(
        before.data.map((a) => a.id),
        [made[0]!.id, made[1]!.id],
      );
      const afterIt = await client.beta.assistants.list({ order: 'asc', after: made[2]!.id });
      assert.deepEqual(
        afterIt.data.map((a) => a.id),
        [made[3]!.id, made[4]!.id],
      );
      // A deleted object of another list is no cursor here: still the usual error.
      const thread = await client.beta.threads.create();
      await client.beta.threads.delete(thread.id);
      const wrong = await server.api.get<{ error: { param: string; code: string } }>(
        `/v1/assistants?after=${thread.id}`,
      );
      assert.equal(wrong.status, 400);
      assert.equal(wrong.body.error.param, 'after');
      for (const a of made) if (a !== made[2]) await client.beta.assistants.delete(a.id);
      recorder.assertNoViolations();
    });
  });
}

deleteWhileListingSuite('SQLite', async () => ({ env: {}, cleanup: async () => {} }));

const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined) test('deleting while listing, on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  deleteWhileListingSuite('PostgreSQL', async () => {
    const database = await createTestDatabase(postgresUrl);
    return { env: { ASSISTD_DATABASE_URL: database.url }, cleanup: () => database.drop() };
  });

test("a deleted object's place is kept for a day, then swept by a later deletion", async () => {
  const dir = tempDir();
  const store = await openSqliteStore(dir);
  const db = new Kysely<Database>({
    dialect: new SqliteDialect({ database: new BetterSqlite3(path.join(dir, SQLITE_FILE_NAME)) }),
  });
  try {
    const day = 24 * 60 * 60 * 1000;
    const t0 = 1_800_000_000_000;
    const row = (id: string) => ({ project_id: 'proj_a', id, created_at: 1_700_000_000, seq: 7 });
    await bury(db, 'assistants', [row('asst_old')], t0);
    const place = await buriedCursor(db, 'assistants', 'proj_a', undefined, 'asst_old', 'created_at');
    assert.deepEqual(place, { sort_key: 1_700_000_000, seq: 7 });
    assert.equal(await buriedCursor(db, 'assistants', 'proj_b', undefined, 'asst_old', 'created_at'), undefined);
    assert.equal(await buriedCursor(db, 'messages', 'proj_a', undefined, 'asst_old', 'created_at'), undefined);
    await bury(db, 'assistants', [row('asst_new')], t0 + day);
    assert.ok(await buriedCursor(db, 'assistants', 'proj_a', undefined, 'asst_old', 'created_at'), 'a day: kept');
    await bury(db, 'assistants', [row('asst_newer')], t0 + day + 1);
    assert.equal(await buriedCursor(db, 'assistants', 'proj_a', undefined, 'asst_old', 'created_at'), undefined);
    assert.ok(await buriedCursor(db, 'assistants', 'proj_a', undefined, 'asst_new', 'created_at'));

    // Many due at once (a bulk clean-up a day ago): each deletion sweeps a bounded batch, oldest first.
    const count = async () =>
      Number(
        (
          await db
            .selectFrom('list_tombstones')
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );
    const t1 = t0 + 10 * day;
    const bulk = Array.from({ length: 2500 }, (_, i) => row(`thread_${i}`));
    await bury(db, 'threads', bulk, t1); // sweeps the two records above
    assert.equal(await count(), 2500);
    await bury(db, 'assistants', [row('asst_a')], t1 + day + 1);
    assert.equal(await count(), 2500 - 1001 + 1);
    await bury(db, 'assistants', [row('asst_b')], t1 + day + 2);
    assert.equal(await count(), 1499 - 1001 + 2);
    await bury(db, 'assistants', [row('asst_c')], t1 + day + 3);
    assert.equal(await count(), 3);
  } finally {
    await db.destroy();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
