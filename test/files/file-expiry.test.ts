import assert from 'node:assert/strict';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import OpenAI, { toFile } from 'openai';
import pg from 'pg';
import { SQLITE_FILE_NAME } from '../../src/storage/sqlite/open-sqlite-store.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

/**
 * An expired file is gone for the API the moment it expires, as upstream's, not only once FileSweeper deletes it:
 * retrieve, download, delete and list, and every route that takes file ids, treat it as an unknown file. The
 * sweeper is kept out of the way (a one-hour lease: it sweeps at startup, then hourly) and the expiry is moved into
 * the past in the database, so the row is still there when the API is asked. Through the official SDK, on SQLite
 * and PostgreSQL, every response checked against the official schema.
 */

interface Backend {
  env: Record<string, string>;
  /** Runs SQL against the server's database; the rows it answers. */
  query(server: TestServer, statement: string): Promise<unknown[]>;
  cleanup(): Promise<void>;
}

async function assertRejected(promise: Promise<unknown>, message: string, param: string | null): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof OpenAI.NotFoundError, `expected a 404, got ${String(error)}`);
    assert.deepEqual(error.error, { message, type: 'invalid_request_error', param, code: null });
    return true;
  });
}

function fileExpirySuite(name: string, makeBackend: () => Promise<Backend>): void {
  describe(`expired files on ${name}`, () => {
    let backend: Backend;
    let server: TestServer;
    let recorder: ValidatingFetch;
    let client: OpenAI;

    before(async () => {
      backend = await makeBackend();
      server = await startTestServer({ ...backend.env, ASSISTD_WORKER_LEASE_S: '3600' });
      recorder = createValidatingFetch();
      client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
    });
    after(async () => {
      await server?.close();
      await backend?.cleanup();
    });
    afterEach(() => recorder.assertNoViolations());

    test('an expired file is gone before the sweeper runs: 404 wherever it is named, left out of lists', async () => {
      const upload = (name: string, expires?: number) =>
        toFile(Buffer.from(name), name).then((file) =>
          client.files.create({
            file,
            purpose: 'assistants',
            ...(expires ? { expires_after: { anchor: 'created_at' as const, seconds: expires } } : {}),
          }),
        );
      const kept = await upload('kept.txt');
      const expiring = await upload('expiring.txt', 3600);
      assert.equal((await client.files.retrieve(expiring.id)).id, expiring.id, 'usable until it expires');

      // Expired as of its creation: `expires_at <= now` is expired, as the sweeper counts it.
      await backend.query(server, `update files set expires_at = created_at where id = '${expiring.id}'`);

      const noSuchFile = `No such File object: ${expiring.id}`; // the Files API's wording
      await assertRejected(client.files.retrieve(expiring.id), noSuchFile, 'id');
      await assertRejected(client.files.content(expiring.id), noSuchFile, 'id');
      await assertRejected(client.files.delete(expiring.id), noSuchFile, 'id');
      for (const purpose of [undefined, 'assistants'] as const) {
        const listed: string[] = [];
        for await (const file of client.files.list(purpose ? { purpose } : {})) listed.push(file.id);
        assert.deepEqual(listed, [kept.id], `listed with purpose ${purpose}`);
      }

      const unknownFile = `No file found with id '${expiring.id}'.`; // the wording of routes that take file ids
      const thread = await client.beta.threads.create();
      await assertRejected(
        client.beta.threads.messages.create(thread.id, {
          role: 'user',
          content: 'see the file',
          attachments: [{ file_id: expiring.id, tools: [{ type: 'file_search' }] }],
        }),
        unknownFile,
        null,
      );
      await assertRejected(
        client.beta.threads.create({
          tool_resources: { file_search: { vector_stores: [{ file_ids: [expiring.id] }] } },
        }),
        unknownFile,
        null,
      );
      await assertRejected(
        client.beta.assistants.create({
          model: 'gpt-test',
          tools: [{ type: 'code_interpreter' }],
          tool_resources: { code_interpreter: { file_ids: [expiring.id] } },
        }),
        unknownFile,
        null,
      );

      const store = await client.vectorStores.create({ name: 'late' });
      await assertRejected(client.vectorStores.files.create(store.id, { file_id: expiring.id }), unknownFile, null);
      await assertRejected(client.vectorStores.create({ file_ids: [expiring.id] }), unknownFile, null);
      await client.vectorStores.delete(store.id);

      const rows = await backend.query(server, `select id from files where id = '${expiring.id}'`);
      assert.equal(rows.length, 1, 'the sweeper has not run: the row is still there');
      await client.files.delete(kept.id);
    });

    test("an expired file's chunks are not found by a search before the sweeper takes it out of its stores", async () => {
      const upload = (text: string, name: string, expires?: number) =>
        toFile(Buffer.from(text), name).then((file) =>
          client.files.create({
            file,
            purpose: 'assistants',
            ...(expires ? { expires_after: { anchor: 'created_at' as const, seconds: expires } } : {}),
          }),
        );
      const kept = await upload('Otters hold hands while they sleep.', 'kept.txt');
      const expiring = await upload('Otters have a pocket of skin for stones.', 'expiring.txt', 3600);
      const store = await client.vectorStores.create({ name: 'otters' });
      for (const file of [kept, expiring]) {
        const added = await client.vectorStores.files.createAndPoll(store.id, { file_id: file.id });
        assert.equal(added.status, 'completed');
      }
      const found = async () => {
        const page = await client.vectorStores.search(store.id, { query: 'otters' });
        return page.data.map((result) => result.file_id).sort();
      };
      assert.deepEqual(await found(), [kept.id, expiring.id].sort());
      await backend.query(server, `update files set expires_at = created_at where id = '${expiring.id}'`);
      assert.deepEqual(await found(), [kept.id], 'the expired file is not read');
      await client.vectorStores.delete(store.id);
      await client.files.delete(kept.id);
    });
  });
}

fileExpirySuite('SQLite', async () => ({
  env: {},
  query: async (server, statement) => {
    const db = new BetterSqlite3(path.join(server.dataDir, SQLITE_FILE_NAME));
    try {
      db.pragma('busy_timeout = 5000');
      const prepared = db.prepare(statement);
      if (prepared.reader) return prepared.all();
      prepared.run();
      return [];
    } finally {
      db.close();
    }
  },
  cleanup: async () => {},
}));

const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined) test('expired files on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  fileExpirySuite('PostgreSQL', async () => {
    const database = await createTestDatabase(postgresUrl);
    return {
      env: { ASSISTD_DATABASE_URL: database.url },
      query: async (_server, statement) => {
        const db = new pg.Client({ connectionString: database.url });
        await db.connect();
        try {
          return (await db.query(statement)).rows;
        } finally {
          await db.end();
        }
      },
      cleanup: () => database.drop(),
    };
  });
