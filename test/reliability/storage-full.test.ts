import assert from 'node:assert/strict';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { type Kysely, sql } from 'kysely';
import { fullIfNoRoom } from '../../src/storage/blobs/directory-blob-store.ts';
import { kyselyPool } from '../../src/storage/postgres/kysely-pool.ts';
import type { Database } from '../../src/storage/sql/schema.ts';
import { BUSY_WAIT_MS } from '../../src/storage/sqlite/dialect.ts';
import { SQLITE_FILE_NAME } from '../../src/storage/sqlite/open-sqlite-store.ts';
import { DatabaseUnavailable, StorageFull } from '../../src/storage/store.ts';
import { countTurns } from '../support/event-loop.ts';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { ANSWERED, eventNames, postSse, type SseEvent } from '../support/sse.ts';

/**
 * The disk under the database fills up (simulated with SQLite's `max_page_count`, which fails a write that needs a
 * new page as a full disk does, with SQLITE_FULL), or another process keeps SQLite's write lock: requests meanwhile
 * get an error that says so, nothing stored is lost, and a run whose turn ends meanwhile commits it once there is
 * room, its stream going on as usual.
 */

/** 20 words of 5,000 characters, one every 100 ms: a turn of two seconds whose answer needs new pages. */
const WORDS = Array.from({ length: 20 }, (_, i) => `${String(i).padStart(2, '0')}${'w'.repeat(4997)} `);

const STORAGE_FULL = {
  error: {
    message: 'The server has no room left to store this at the moment; try again later.',
    type: 'server_error',
    param: null,
    code: 'storage_full',
  },
};

describe('a full or locked SQLite database under a running server', () => {
  let upstream: FakeUpstream;
  let server: TestServer;
  let db: Kysely<Database>;
  before(async () => {
    upstream = await FakeUpstream.start();
    upstream.setDefault({ text: WORDS, chunkDelayMs: 100 });
    server = await startTestServer({ ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl });
    db = (server.server.store as unknown as { db: Kysely<Database> }).db; // the server's one writing connection
  });
  after(async () => {
    await server.close();
    await upstream.close();
  });

  /** The database can grow no further: a write that needs a new page fails as on a full disk. */
  async function fill(): Promise<void> {
    const { rows } = await sql<{ page_count: number }>`pragma page_count`.execute(db);
    await sql.raw(`pragma max_page_count = ${rows[0]!.page_count}`).execute(db);
  }
  async function makeRoom(): Promise<void> {
    await sql.raw('pragma max_page_count = 1073741823').execute(db);
  }

  test('a write to a full database gets a 507 that says so; nothing is lost, and writes go on once there is room', async () => {
    const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
    const long = { role: 'user', content: 'x'.repeat(100_000) };
    await fill();
    try {
      const refused = await server.api.post(`/v1/threads/${thread.body.id}/messages`, long);
      assert.equal(refused.status, 507);
      assert.deepEqual(refused.body, STORAGE_FULL);
      const messages = await server.api.get<{ data: Array<{ content: Array<{ text: { value: string } }> }> }>(
        `/v1/threads/${thread.body.id}/messages`,
      );
      assert.deepEqual(
        messages.body.data.map((m) => m.content[0]!.text.value),
        ['hi'],
      );
    } finally {
      await makeRoom();
    }
    const added = await server.api.post(`/v1/threads/${thread.body.id}/messages`, long);
    assert.equal(added.status, 200, JSON.stringify(added.body));
  });

  test('a turn that ends while the database is full is committed once there is room: the stream goes on as usual', async () => {
    const assistant = await server.api.post('/v1/assistants', { model: 'm' });
    const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'hi' }] });
    const asked = upstream.requests.length;
    let filled: Promise<void> | undefined;
    const events = await postSse(
      `${server.url}/v1/threads/${thread.body.id}/runs`,
      { assistant_id: assistant.body.id, stream: true },
      (event: SseEvent) => {
        if (event.event !== 'thread.message.delta' || filled) return;
        filled = (async () => {
          await fill();
          // The model's turn ends while the database is full, and its commit is refused for a while.
          const [request] = upstream.requests.slice(asked);
          assert.equal(await upstream.waitForEnd(request!), 'finished');
          await new Promise((resolve) => setTimeout(resolve, 1000));
          await makeRoom();
        })();
      },
    );
    await filled;
    assert.deepEqual(eventNames(events), ANSWERED);
    const streamed = events
      .filter((e) => e.event === 'thread.message.delta')
      .map((e) => e.data.delta.content[0].text.value)
      .join('');
    assert.equal(streamed, WORDS.join(''));
    assert.equal(upstream.requests.length, asked + 1); // the answer was kept, not asked for again
    const run = await server.api.get(`/v1/threads/${thread.body.id}/runs/${events[0]!.data.id}`);
    assert.equal(run.body.status, 'completed');
    const messages = await server.api.get<{
      data: Array<{ role: string; content: Array<{ text: { value: string } }> }>;
    }>(`/v1/threads/${thread.body.id}/messages`);
    assert.deepEqual(
      messages.body.data.map((m) => m.role),
      ['assistant', 'user'],
    );
    assert.equal(messages.body.data[0]!.content[0]!.text.value, WORDS.join(''));
  });

  test('a write waits for the write lock another process holds without holding the event loop, and gets a 503 once it is held past 5 s', async () => {
    const thread = await server.api.post('/v1/threads', {});
    const update = (topic: string) => server.api.post(`/v1/threads/${thread.body.id}`, { metadata: { topic } });
    const other = new BetterSqlite3(path.join(server.dataDir, SQLITE_FILE_NAME));
    try {
      // `sqlite3 assistd.sqlite` left in a transaction for a second, say: the write waits for it, and goes through.
      other.exec('begin immediate');
      let turns = countTurns();
      const waiting = update('pets');
      await new Promise((resolve) => setTimeout(resolve, 1000));
      other.exec('rollback');
      const updated = await waiting;
      turns.stop();
      assert.equal(updated.status, 200, JSON.stringify(updated.body));
      assert.deepEqual(updated.body.metadata, { topic: 'pets' });
      // A wait that held the event loop would have let the turns of a second go by as one (and kept this test from
      // letting the lock go).
      assert.ok(turns.count > 100, `${turns.count} turns of the event loop in a second`);

      // Held past BUSY_WAIT_MS: a 503 that says so, the event loop free all along.
      other.exec('begin immediate');
      turns = countTurns();
      const refused = await update('cats');
      turns.stop();
      assert.equal(refused.status, 503);
      assert.equal((refused.body.error as { code: string }).code, 'database_unavailable');
      assert.equal(refused.headers.get('retry-after'), '1');
      assert.ok(turns.count > 100, `${turns.count} turns of the event loop in ${BUSY_WAIT_MS} ms`);
      // Reads go on, and do not make writes wait again: the next write gets its 503 at once.
      assert.equal((await server.api.get(`/v1/threads/${thread.body.id}`)).status, 200);
      const started = Date.now();
      assert.equal((await update('birds')).status, 503);
      assert.ok(Date.now() - started < BUSY_WAIT_MS / 2, `${Date.now() - started} ms for the next write's 503`);
      other.exec('rollback');
    } finally {
      if (other.inTransaction) other.exec('rollback');
      other.close();
    }
    const after = await update('dogs');
    assert.equal(after.status, 200);
    assert.deepEqual(after.body.metadata, { topic: 'dogs' });
  });
});

test('a full disk is StorageFull wherever it is met: PostgreSQL (disk_full), the directory of file bytes (ENOSPC, EDQUOT)', async () => {
  const diskFull = Object.assign(new Error('could not extend file "base/16384/16385": No space left on device'), {
    code: '53100',
  });
  const client = { on() {}, release() {}, query: () => Promise.reject(diskFull) };
  const pool = kyselyPool({ connect: async () => client } as never, 1000);
  const connection = await pool.connect();
  await assert.rejects(connection.query('insert into t values ($1)', [1]), (error: Error) => {
    assert.ok(error instanceof StorageFull, String(error));
    assert.ok(error instanceof DatabaseUnavailable); // waited out like an outage
    assert.equal(error.cause, diskFull);
    return true;
  });
  for (const code of ['ENOSPC', 'EDQUOT']) {
    const error = Object.assign(new Error(code), { code });
    assert.ok(fullIfNoRoom(error) instanceof StorageFull, code);
  }
  const other = Object.assign(new Error('EACCES'), { code: 'EACCES' });
  assert.equal(fullIfNoRoom(other), other);
});

for (const deleted of ['assistd.sqlite', 'assistd.sqlite-wal', 'the data directory (a file in its place)'])
  test(`SQLite: ${deleted} deleted under a running server: writes get a 503 and /healthz says unavailable, none acknowledged into the lost file`, async () => {
    const server = await startTestServer();
    try {
      const thread = await server.api.post('/v1/threads', {});
      assert.equal(thread.status, 200);
      if (deleted === 'assistd.sqlite-wal') rmSync(path.join(server.dataDir, `${SQLITE_FILE_NAME}-wal`));
      else if (deleted === 'assistd.sqlite')
        for (const suffix of ['', '-wal', '-shm'])
          rmSync(path.join(server.dataDir, `${SQLITE_FILE_NAME}${suffix}`), { force: true });
      else {
        // Its path now leads through a file (ENOTDIR): the database is gone from it, and the server stays up.
        renameSync(server.dataDir, `${server.dataDir}.moved`);
        writeFileSync(server.dataDir, '');
      }
      // Looked at once a second: a write in the second after is still acknowledged; then every one is refused.
      const refused = await eventually('writes refused', 10_000, async () => {
        const added = await server.api.post(`/v1/threads/${thread.body.id}/messages`, { role: 'user', content: 'x' });
        return added.status === 200 ? undefined : added;
      });
      assert.equal(refused.status, 503);
      assert.equal((refused.body as { error: { code: string } }).error.code, 'database_unavailable');
      const health = await fetch(`${server.url}/healthz`);
      assert.equal(health.status, 503);
      assert.equal(((await health.json()) as { status: string }).status, 'unavailable');
      const listed = await server.api.get(`/v1/threads/${thread.body.id}/messages`);
      assert.equal(listed.status, 503, 'reads too: the file read is not the one at the path');
    } finally {
      await server.close();
    }
  });
