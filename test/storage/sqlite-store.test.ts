import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, sql } from 'kysely';
import type { Database } from '../../src/storage/sql/schema.ts';
import { WITH_ATTACHMENTS } from '../../src/storage/sql/sql-store.ts';
import { sqliteDialect } from '../../src/storage/sqlite/dialect.ts';
import { openSqliteStore, SQLITE_FILE_NAME, SQLITE_MIGRATIONS } from '../../src/storage/sqlite/open-sqlite-store.ts';
import { DEFAULT_SCOPE } from '../../src/storage/store.ts';
import { storeContract } from '../contract/store-contract.ts';
import { anAssistant, storedThreadWithOneAttachment } from '../support/builders.ts';
import { tempDir } from '../support/server.ts';

storeContract('sqlite', async () => {
  const dir = tempDir();
  const store = await openSqliteStore(dir);
  return {
    store,
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

test('sqlite: data survives closing and reopening the database, and migrations run once', async () => {
  const dir = tempDir();
  const assistant = anAssistant();
  const first = await openSqliteStore(dir);
  await first.createAssistant(DEFAULT_SCOPE, assistant);
  await first.close();

  const second = await openSqliteStore(dir);
  assert.deepEqual(await second.getAssistant(DEFAULT_SCOPE, assistant.id), assistant);
  await second.close();
  rmSync(dir, { recursive: true, force: true });
});

test("a transaction that reads, then writes, is not failed by another process's write in between", async () => {
  // `assistd keys create` next to a running server failed with `database is locked` (SQLITE_BUSY) at once: its
  // transaction, begun deferred, read, then could not write, as the server had written since.
  const dir = tempDir();
  const file = path.join(dir, 'db.sqlite');
  const other = new BetterSqlite3(file, { timeout: 0 }); // this thread holds what it would wait for
  other.pragma('journal_mode = WAL');
  other.exec('create table t (n integer)');
  const sqlite = new BetterSqlite3(file);
  sqlite.pragma('busy_timeout = 5000');
  const db = new Kysely<{ t: { n: number } }>({ dialect: sqliteDialect(sqlite) });
  try {
    let waited = false;
    await db.transaction().execute(async (trx) => {
      await trx.selectFrom('t').selectAll().execute();
      try {
        other.exec('insert into t values (1)'); // another process's write: waits for this transaction, if it can
      } catch (error) {
        assert.equal((error as { code?: string }).code, 'SQLITE_BUSY');
        waited = true;
      }
      await trx.insertInto('t').values({ n: 2 }).execute();
    });
    if (waited) other.exec('insert into t values (1)');
    assert.deepEqual(
      (await db.selectFrom('t').select('n').orderBy('n').execute()).map((row) => row.n),
      [1, 2],
    );
  } finally {
    await db.destroy();
    other.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a thread's attachments are read from the index of the messages that have some, not by scanning the thread", async () => {
  // code_interpreter reads them on every run that calls it; SQLite reads on the event loop.
  const dir = tempDir();
  const store = await openSqliteStore(dir);
  const thread = await storedThreadWithOneAttachment(store, DEFAULT_SCOPE);
  await store.close();
  const db = new Kysely<Database>({ dialect: sqliteDialect(new BetterSqlite3(path.join(dir, SQLITE_FILE_NAME))) });
  try {
    const plan = await sql<{ detail: string }>`explain query plan select doc from messages
      where thread_id = ${thread.id} and project_id = ${DEFAULT_SCOPE.projectId} and queued_behind is null
        and ${WITH_ATTACHMENTS} order by created_at, seq`.execute(db);
    assert.deepEqual(
      plan.rows.map((row) => row.detail),
      ['SEARCH messages USING INDEX messages_with_attachments (thread_id=?)'],
    );
  } finally {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sqlite: processes that open one new database at once all start, the migrations run once, in turn', async () => {
  // `assistd serve` and `assistd worker` (or `assistd keys …`) started together after an upgrade: each found the
  // migrations pending and ran them, and all but one failed ("table assistants already exists", "database is locked").
  const dir = tempDir();
  const store = pathToFileURL(path.resolve('src/storage/sqlite/open-sqlite-store.ts')).href;
  // Each waits, its modules loaded, for one line on stdin: the line goes to all at once.
  const script = `import { openSqliteStore } from ${JSON.stringify(store)};
process.stdout.write('ready\\n');
process.stdin.once('data', async () => {
  const opened = await openSqliteStore(${JSON.stringify(dir)}, { readerThreads: 0 });
  await opened.close();
  process.stdout.write('opened\\n');
  process.exit(0);
});`;
  const children = Array.from({ length: 3 }, () =>
    spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'pipe' }),
  );
  const outputs = children.map((child) => {
    let text = '';
    child.stdout.on('data', (chunk) => (text += chunk));
    child.stderr.on('data', (chunk) => (text += chunk));
    return { text: () => text, exit: once(child, 'exit') as Promise<[number | null]> };
  });
  await Promise.all(children.map((child) => once(child.stdout, 'data')));
  for (const child of children) child.stdin.write('go\n');
  try {
    const codes = await Promise.all(outputs.map((o) => o.exit));
    for (const [i, [code]] of codes.entries()) assert.equal(code, 0, outputs[i]!.text());
    const raw = new BetterSqlite3(path.join(dir, SQLITE_FILE_NAME));
    const migrations = raw.prepare('select name from kysely_migration order by name').all() as Array<{ name: string }>;
    raw.close();
    assert.deepEqual(
      migrations.map((m) => m.name),
      Object.keys(SQLITE_MIGRATIONS).sort(),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
