import { Kysely, type Migration, Migrator, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { ConfigError, DEFAULT_DATABASE_TIMEOUT_MS } from '../../config.ts';
import type { SqlCapabilities } from '../sql/capabilities.ts';
import { madeNow, migrationFailure } from '../sql/migration-results.ts';
import type { Database } from '../sql/schema.ts';
import { SqlStore } from '../sql/sql-store.ts';
import { kyselyPool } from './kysely-pool.ts';
import * as initial from './migrations/001-initial.ts';
import * as runs from './migrations/002-runs.ts';
import * as modelCalls from './migrations/003-model-calls.ts';
import * as files from './migrations/004-files.ts';
import * as vectorStores from './migrations/005-vector-stores.ts';
import * as embeddings from './migrations/006-embeddings.ts';
import * as chunkStatistics from './migrations/007-chunk-statistics.ts';
import * as projects from './migrations/008-projects.ts';
import * as threadActivity from './migrations/009-thread-activity.ts';
import * as runQueue from './migrations/010-run-queue.ts';
import * as runKeys from './migrations/011-run-keys.ts';
import * as storeFilesOfDeletedFiles from './migrations/013-store-files-of-deleted-files.ts';
import * as listTombstones from './migrations/014-list-tombstones.ts';
import * as queuedMessages from './migrations/015-queued-messages.ts';
import * as modelReasoning from './migrations/016-model-reasoning.ts';
import * as stepDeadline from './migrations/017-step-deadline.ts';
import * as messagesWithAttachments from './migrations/018-messages-with-attachments.ts';
import * as chunkOverlap from './migrations/019-chunk-overlap.ts';
import * as runTokenLimits from './migrations/020-run-token-limits.ts';
import * as stepTokensWindow from './migrations/021-step-tokens-window.ts';
import * as stemmedKeywords from './migrations/022-stemmed-keywords.ts';
import * as noStepTimeIndex from './migrations/023-no-step-time-index.ts';
import * as queuedMessagesMark from './migrations/024-queued-messages-mark.ts';
import { oneStatementCommit } from './one-statement-commit.ts';
import { oneStatementRunCreation } from './one-statement-run-creation.ts';
import { PgSignals } from './pg-signals.ts';

/** Numbered migrations, applied in order at startup; a new one is appended here and never edited once released. */
const MIGRATIONS: Record<string, Migration> = {
  '001-initial': initial,
  '002-runs': runs,
  '003-model-calls': modelCalls,
  '004-files': files,
  '005-vector-stores': vectorStores,
  '006-embeddings': embeddings,
  '007-chunk-statistics': chunkStatistics,
  '008-projects': projects,
  '009-thread-activity': threadActivity,
  '010-run-queue': runQueue,
  '011-run-keys': runKeys,
  '013-store-files-of-deleted-files': storeFilesOfDeletedFiles,
  '014-list-tombstones': listTombstones,
  '015-queued-messages': queuedMessages,
  '016-model-reasoning': modelReasoning,
  '017-step-deadline': stepDeadline,
  '018-messages-with-attachments': messagesWithAttachments,
  '019-chunk-overlap': chunkOverlap,
  '020-run-token-limits': runTokenLimits,
  '021-step-tokens-window': stepTokensWindow,
  '022-stemmed-keywords': stemmedKeywords,
  '023-no-step-time-index': noStepTimeIndex,
  '024-queued-messages-mark': queuedMessagesMark,
};

/** Exported for tests that wrap them to observe the store (e.g. count unique violations). */
export const POSTGRES_CAPABILITIES: SqlCapabilities = {
  rowLocks: true,
  statementsOnEventLoop: false,
  keywordIndex: 'tsvector',
  vectorIndex: 'matrix-cache',
  // 23505 is unique_violation; pg names the violated index in `constraint`.
  isUniqueViolation: (error, index) => {
    const { code, constraint } = (error ?? {}) as { code?: unknown; constraint?: unknown };
    return code === '23505' && constraint === index;
  },
  commitStatement: oneStatementCommit,
  createRunStatement: oneStatementRunCreation,
  jsonField: (column, key) => sql<string | null>`(${sql.ref(column)}::jsonb ->> ${key}::text)`,
};

/**
 * bigint (int8) columns hold Unix seconds, epoch milliseconds and `seq` — all far below 2^53 — so they are read as
 * numbers, like SQLite's integers; pg's default is a string. A value that would lose precision fails the query
 * rather than come back wrong.
 */
function parseInt8(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new RangeError(`bigint ${text} does not fit a JavaScript number`);
  return value;
}

/** Per pool, not pg's process-wide `types.setTypeParser`: nothing else in the process is affected. */
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: (oid, format) =>
    oid === pg.types.builtins.INT8 && format !== 'binary' ? parseInt8 : pg.types.getTypeParser(oid, format),
};

/**
 * Opens a PostgreSQL store on a pool of at most `poolSize` connections and brings its schema up to date. A database
 * that cannot be reached or refuses the login stops startup with a ConfigError naming ASSISTD_DATABASE_URL; the
 * password never appears in it.
 */
export async function openPostgresStore(
  url: string,
  poolSize: number,
  timeoutMs = DEFAULT_DATABASE_TIMEOUT_MS,
): Promise<SqlStore> {
  const where = describe(url);
  await checkConnection(url, where, timeoutMs);
  const createdNow = await migrate(url, where);

  const pool = newPool(url, poolSize, timeoutMs);
  const statements = kyselyPool(pool, timeoutMs);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: statements }) });
  const signals = new PgSignals(statements, url, timeoutMs);
  try {
    await signals.start();
  } catch (error) {
    await db.destroy();
    throw error;
  }
  const store = new PostgresStore(db, where, POSTGRES_CAPABILITIES, signals, pool);
  store.createdNow = createdNow;
  return store;
}

/**
 * A pool of at most `max` connections to `url`. With `timeoutMs`, a connection attempt, or a wait for a free
 * connection, that lasts longer fails (pg's `connectionTimeoutMillis` is both): with connections that do not answer,
 * requests would otherwise queue for them without end.
 */
function newPool(url: string, max: number, timeoutMs?: number): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max, types: TYPES, connectionTimeoutMillis: timeoutMs ?? 0 });
  // An idle connection that dies (database restart, network cut) is dropped from the pool and reported here; with
  // no listener Node would crash the process on the 'error' event. The next query opens a fresh connection, and if
  // the database is really gone, that query fails with the reason.
  pool.on('error', () => {});
  return pool;
}

/** The SQL store, with its pool's use for /metrics. */
class PostgresStore extends SqlStore {
  private readonly pool: pg.Pool;
  constructor(...[db, where, capabilities, signals, pool]: [...ConstructorParameters<typeof SqlStore>, pg.Pool]) {
    super(db, where, capabilities, signals);
    this.pool = pool;
  }

  poolUse(): { total: number; idle: number; waiting: number } {
    return { total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount };
  }
}

/**
 * One connection before the pool exists, given up after `timeoutMs` as the pool's are: a bad URL, or a database that
 * does not answer, stops startup clearly instead of hanging it.
 */
async function checkConnection(url: string, where: string, timeoutMs: number): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    const reason = error instanceof Error ? error.message || error.name : String(error);
    throw new ConfigError('ASSISTD_DATABASE_URL', `cannot connect to ${where}: ${hidePassword(reason, url)}`);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Brings the schema up to date, and says whether that made the database (its first migration ran).
 *
 * Several processes may start on one fresh database at once; Kysely's Migrator already makes that safe, so no lock
 * of our own is added. On PostgreSQL its adapter's `acquireMigrationLock` takes a session advisory lock
 * (`pg_advisory_lock`, kysely/dist/esm/dialect/postgres/postgres-adapter.js) on one connection and runs the pending
 * migrations in one transaction under it, so the first process migrates and the others find nothing left to do.
 * Its bookkeeping tables (`kysely_migration`, `kysely_migration_lock`) are created before that lock, with
 * `create table if not exists` plus a re-check when a racing creation fails. test/storage/postgres-store.test.ts
 * opens four stores on one fresh database at once (and 8 × 10 such openings were tried by hand) to hold it to that.
 */
async function migrate(url: string, where: string): Promise<boolean> {
  // A connection of its own, with no limit on how long a statement takes: a migration of a large table may take
  // long, and so may waiting for another process's migration.
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: kyselyPool(newPool(url, 1)) }) });
  try {
    const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
    const { error, results } = await migrator.migrateToLatest();
    if (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (isPermissionDenied(error)) throw await mayNotCreateTables(db, where, hidePassword(reason, url));
      throw migrationFailure(error, results, 'ASSISTD_DATABASE_URL', where);
    }
    return madeNow(results);
  } finally {
    await db.destroy();
  }
}

/** 42501 is insufficient_privilege. */
function isPermissionDenied(error: unknown): boolean {
  return (error as { code?: unknown } | undefined)?.code === '42501';
}

/**
 * A user who may not create tables in the schema (PostgreSQL 15's default for one who does not own the database)
 * is a setting to fix, said with the grant that fixes it.
 */
async function mayNotCreateTables(db: Kysely<Database>, where: string, reason: string): Promise<ConfigError> {
  const user = await sql<{ user: string }>`select current_user as user`
    .execute(db)
    .then((result) => result.rows[0]?.user ?? 'its user')
    .catch(() => 'its user');
  return new ConfigError(
    'ASSISTD_DATABASE_URL',
    `cannot create assistd's tables in ${where}: ${reason} (GRANT CREATE ON SCHEMA public TO ${user}, or make the user own the database)`,
  );
}

/** `postgres://user@host:5432/db` for the startup log and errors: the URL without its password and parameters. */
function describe(url: string): string {
  try {
    const parsed = new URL(url);
    const user = parsed.username ? `${decodeURIComponent(parsed.username)}@` : '';
    return `postgres://${user}${parsed.host}${parsed.pathname}`;
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

/** Drivers do not echo passwords in their errors today; this keeps it so if one ever does. */
function hidePassword(text: string, url: string): string {
  let password = '';
  try {
    password = decodeURIComponent(new URL(url).password);
  } catch {}
  return password ? text.split(password).join('***') : text;
}
