import { existsSync, mkdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, type Migration, Migrator, sql } from 'kysely';
import * as sqliteVec from 'sqlite-vec';
import { ConfigError } from '../../config.ts';
import { madeNow, migrationFailure } from '../sql/migration-results.ts';
import type { Database } from '../sql/schema.ts';
import { SqlStore } from '../sql/sql-store.ts';
import { sqliteDialect } from './dialect.ts';
import * as initial from './migrations/001-initial.ts';
import * as runs from './migrations/002-runs.ts';
import * as modelCalls from './migrations/003-model-calls.ts';
import * as files from './migrations/004-files.ts';
import * as vectorStores from './migrations/005-vector-stores.ts';
import * as embeddings from './migrations/006-embeddings.ts';
import * as projects from './migrations/008-projects.ts';
import * as threadActivity from './migrations/009-thread-activity.ts';
import * as runQueue from './migrations/010-run-queue.ts';
import * as runKeys from './migrations/011-run-keys.ts';
import * as keywordIndexPerProject from './migrations/012-keyword-index-per-project.ts';
import * as storeFilesOfDeletedFiles from './migrations/013-store-files-of-deleted-files.ts';
import * as listTombstones from './migrations/014-list-tombstones.ts';
import * as queuedMessages from './migrations/015-queued-messages.ts';
import * as modelReasoning from './migrations/016-model-reasoning.ts';
import * as stepDeadline from './migrations/017-step-deadline.ts';
import * as messagesWithAttachments from './migrations/018-messages-with-attachments.ts';
import * as chunkOverlap from './migrations/019-chunk-overlap.ts';
import * as chunkSeq from './migrations/020-chunk-seq.ts';
import * as stepTokensWindow from './migrations/021-step-tokens-window.ts';
import * as stemmedKeywords from './migrations/022-stemmed-keywords.ts';
import * as noStepTimeIndex from './migrations/023-no-step-time-index.ts';
import * as queuedMessagesMark from './migrations/024-queued-messages-mark.ts';
import { SqliteReaderPool } from './reader-pool.ts';

/** Numbered migrations, applied in order at startup; a new one is appended here and never edited once released. */
export const SQLITE_MIGRATIONS: Record<string, Migration> = {
  '001-initial': initial,
  '002-runs': runs,
  '003-model-calls': modelCalls,
  '004-files': files,
  '005-vector-stores': vectorStores,
  '006-embeddings': embeddings,
  '008-projects': projects,
  '009-thread-activity': threadActivity,
  '010-run-queue': runQueue,
  '011-run-keys': runKeys,
  '012-keyword-index-per-project': keywordIndexPerProject,
  '013-store-files-of-deleted-files': storeFilesOfDeletedFiles,
  '014-list-tombstones': listTombstones,
  '015-queued-messages': queuedMessages,
  '016-model-reasoning': modelReasoning,
  '017-step-deadline': stepDeadline,
  '018-messages-with-attachments': messagesWithAttachments,
  '019-chunk-overlap': chunkOverlap,
  '020-chunk-seq': chunkSeq,
  '021-step-tokens-window': stepTokensWindow,
  '022-stemmed-keywords': stemmedKeywords,
  '023-no-step-time-index': noStepTimeIndex,
  '024-queued-messages-mark': queuedMessagesMark,
};

export const SQLITE_FILE_NAME = 'assistd.sqlite';

/**
 * Why `dataDir` has no database for a command that works on the server's (`assistd backup`, `keys`, `projects`),
 * or undefined when it has one: such a command on a wrong directory must not make a new database nobody serves.
 */
export function noDatabaseIn(dataDir: string): string | undefined {
  const file = path.join(dataDir, SQLITE_FILE_NAME);
  return existsSync(file) ? undefined : `there is no database at ${file}: is ASSISTD_DATA_DIR the server's?`;
}

/**
 * Reader threads for the searches (reader-pool.ts): two run two searches at once beside the event loop, which is
 * what a 2-core machine has room for (more would take the event loop's CPU). Each holds a connection and its own
 * page cache, and a search is tens of milliseconds: larger machines get two as well.
 */
const READER_THREADS = Math.min(2, availableParallelism());

/** How long opening the database waits for another process's migrations. */
const MIGRATION_WAIT_MS = 10 * 60_000;

export interface SqliteStoreOptions {
  /** Reader threads for the searches; 0 runs them on the store's connection (tests compare the two). */
  readerThreads?: number;
}

export async function openSqliteStore(dataDir: string, options: SqliteStoreOptions = {}): Promise<SqlStore> {
  mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, SQLITE_FILE_NAME);
  const sqlite = openFile(file);
  try {
    return await openOn(sqlite, file, options);
  } catch (error) {
    sqlite.close();
    throw unusable(error, file);
  }
}

function openFile(file: string): BetterSqlite3.Database {
  try {
    return new BetterSqlite3(file);
  } catch (error) {
    throw unusable(error, file);
  }
}

async function openOn(sqlite: BetterSqlite3.Database, file: string, options: SqliteStoreOptions): Promise<SqlStore> {
  // WAL: readers never block the writer. synchronous=NORMAL in WAL mode loses no committed transaction when the
  // process dies (SIGKILL, crash); only an OS crash or power cut can roll back the last commits. FULL would fsync
  // on every commit for that last case.
  // Another process on the same file (`assistd migrate` next to a server, or processes started together on a new
  // file) is waited for instead of failed at once: for these first statements and the migrations, before any request,
  // with the event loop held (WAL mode is set with the file locked). The other process may be migrating: its lock is
  // held for as long as its migrations take (one of them re-indexes every chunk).
  sqlite.pragma(`busy_timeout = ${MIGRATION_WAIT_MS}`);
  await whileBusy(() => sqlite.pragma('journal_mode = WAL'), Date.now() + MIGRATION_WAIT_MS);
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  // sqlite-vec: the `vec0` tables that index chunk vectors. Its package ships the loadable extension for linux-x64
  // (and darwin, windows, linux-arm64); where it cannot be loaded, vectors are searched by the in-memory cache.
  const vectorIndex = loadSqliteVec(sqlite);
  proveWritable(sqlite);

  // A reader thread opens the file anew: a database in memory exists only on this connection, and is searched there.
  const readerThreads = options.readerThreads ?? READER_THREADS;
  const searchReader =
    sqlite.memory || readerThreads <= 0
      ? undefined
      : new SqliteReaderPool({ file, sqliteVec: vectorIndex === 'sqlite-vec' }, readerThreads);

  const db = new Kysely<Database>({ dialect: sqliteDialect(sqlite) });
  let createdNow: boolean;
  try {
    createdNow = await migrate(db, file);
  } catch (error) {
    await searchReader?.close();
    throw error;
  }
  // From now on a write lock held by another process is waited for without holding the event loop (dialect.ts).
  sqlite.pragma('busy_timeout = 0');
  const store = new SqlStore(db, `sqlite:${file}`, {
    rowLocks: false,
    statementsOnEventLoop: true,
    ...(searchReader && { searchReader }),
    keywordIndex: 'fts5',
    vectorIndex,
    // json_each names each field by its key as it is; `->> 'key'` would read the key as a path.
    jsonField: (column, key) =>
      sql<string | null>`(select value from json_each(${sql.ref(column)}) where key = ${key})`,
  });
  store.createdNow = createdNow;
  return store;
}

/**
 * `statement`, tried again while SQLite answers SQLITE_BUSY at once. The switch of a new file to WAL needs it locked
 * whole, and when another process opening it at the same moment holds a lock this one would wait behind while
 * holding its own, SQLite refuses rather than wait (its busy handler is not called where waiting could deadlock):
 * one of three processes started together on a new database failed so about once in fifteen tries.
 */
async function whileBusy<T>(statement: () => T, deadline: number): Promise<T> {
  for (;;) {
    try {
      return statement();
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'SQLITE_BUSY' || Date.now() >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 40));
    }
  }
}

function loadSqliteVec(sqlite: BetterSqlite3.Database): 'sqlite-vec' | 'matrix-cache' {
  try {
    sqliteVec.load(sqlite);
    return 'sqlite-vec';
  } catch {
    return 'matrix-cache';
  }
}

/** Brings the schema up to date; whether that made the database (its first migration ran). */
async function migrate(db: Kysely<Database>, file: string): Promise<boolean> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => SQLITE_MIGRATIONS } });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw migrationFailure(error, results, 'ASSISTD_DATA_DIR', file);
  return madeNow(results);
}

/**
 * A write, rolled back: SQLite opens a file it may not write read-only without a word, and a server on it would
 * answer /healthz ok and every write 500. BEGIN IMMEDIATE alone passes on such a file (it only takes the WAL's
 * lock); rewriting the header's user_version as it is fails unless the file, its -wal and its -shm are writable.
 */
function proveWritable(sqlite: BetterSqlite3.Database): void {
  sqlite.exec('begin immediate');
  try {
    sqlite.pragma(`user_version = ${Number(sqlite.pragma('user_version', { simple: true }))}`);
  } finally {
    sqlite.exec('rollback');
  }
}

/**
 * SQLite's refusals that a setting fixes, as a ConfigError naming the file: a database restored badly (truncated,
 * overwritten, not SQLite at all) or one this user may not write. Any other error as it is.
 */
function unusable(error: unknown, file: string): unknown {
  const cause = error instanceof Error && error.cause !== undefined ? error.cause : error;
  const code = String((cause as { code?: unknown } | undefined)?.code);
  const reason = cause instanceof Error ? cause.message : String(cause);
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB')
    return new ConfigError(
      'ASSISTD_DATA_DIR',
      `${file} is not a usable SQLite database (${reason}): restore it from a backup.`,
    );
  if (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN') || code === 'SQLITE_PERM')
    return new ConfigError(
      'ASSISTD_DATA_DIR',
      `${file} cannot be written by this user (${reason}): the server's user must be able to write it, its -wal and -shm files and its directory.`,
    );
  return error;
}
