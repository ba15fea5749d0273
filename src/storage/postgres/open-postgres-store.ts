import {
  Kysely,
  type Migration,
  type MigrationResult,
  Migrator,
  PostgresAdapter,
  PostgresDialect,
  type PostgresPool,
  type PostgresPoolClient,
  sql,
} from 'kysely';
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

export interface PostgresStoreOptions {
  /**
   * How the store reaches PostgreSQL through a pooler in transaction mode (StorageConfig): the URL of the listening
   * connection, which reaches PostgreSQL itself (default: the store's).
   */
  directUrl?: string | undefined;
  /** Whether statements run as named prepared statements (default: yes). */
  preparedStatements?: boolean;
  /** Told, once, when startup waits for another process's migrations (OpenStoreOptions.onMigrationWait). */
  onMigrationWait?: ((message: string) => void) | undefined;
}

/**
 * Opens a PostgreSQL store on a pool of at most `poolSize` connections and brings its schema up to date. A database
 * that cannot be reached or refuses the login stops startup with a ConfigError naming ASSISTD_DATABASE_URL (or
 * ASSISTD_DATABASE_DIRECT_URL); the password never appears in it.
 */
export async function openPostgresStore(
  url: string,
  poolSize: number,
  timeoutMs = DEFAULT_DATABASE_TIMEOUT_MS,
  { directUrl, preparedStatements = true, onMigrationWait }: PostgresStoreOptions = {},
): Promise<SqlStore> {
  const where = describe(url);
  await checkConnection(url, where, timeoutMs);
  if (directUrl !== undefined)
    await checkConnection(directUrl, describe(directUrl), timeoutMs, 'ASSISTD_DATABASE_DIRECT_URL');
  const createdNow = await migrate(url, where, onMigrationWait);

  const pool = newPool(url, poolSize, timeoutMs);
  const statements = kyselyPool(pool, timeoutMs, preparedStatements);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: statements }) });
  const signals = new PgSignals(statements, directUrl ?? url, timeoutMs);
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
async function checkConnection(
  url: string,
  where: string,
  timeoutMs: number,
  setting = 'ASSISTD_DATABASE_URL',
): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    const reason = error instanceof Error ? error.message || error.name : String(error);
    throw new ConfigError(setting, `cannot connect to ${where}: ${hidePassword(reason, url)}`);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Kysely's lock id for migrations (kysely/dist/esm/dialect/postgres/postgres-adapter.js): an earlier assistd, which
 * takes it as a session lock through Kysely's Migrator, and this one exclude each other.
 */
const MIGRATION_LOCK = '3853314791062309107';

/**
 * Brings the schema up to date, and says whether that made the database (its first migration ran).
 *
 * Several processes may start on one fresh database at once. Everything the migration does — Kysely's bookkeeping
 * tables, the pending migrations, their record — is one transaction on one connection, which first takes an
 * advisory lock held until it ends (`pg_advisory_xact_lock`): the first process migrates, and the others, waiting,
 * then find nothing left to do. Kysely's Migrator runs inside it, its own lock (a session lock taken and released
 * around its transaction, in statements of their own) left out: through a pooler in transaction mode (PgBouncer)
 * those statements may each reach another server connection, and a lock left held on one stopped every later
 * process at startup. test/storage/postgres-store.test.ts opens four stores on one fresh database at once, and
 * test/scale/multi-process.test.ts starts four processes so through PgBouncer, to hold it to that.
 */
async function migrate(url: string, where: string, onWait?: (message: string) => void): Promise<boolean> {
  // A connection of its own, with no limit on how long a statement takes: a migration of a large table may take
  // long, and so may waiting for another process's migration. Not prepared by name: the names would outlive the
  // transaction on a pooler's server connection, for another process's migration to collide with.
  const pool = kyselyPool(newPool(url, 1), undefined, false);
  let results: readonly MigrationResult[] | undefined;
  try {
    const connection = await pool.connect();
    const run = (text: string) => connection.query(text, []);
    let open = false;
    try {
      await run('begin');
      open = true;
      const { rows } = await connection.query<{ free: boolean }>(
        `select pg_try_advisory_xact_lock(${MIGRATION_LOCK}) as free`,
        [],
      );
      if (!rows[0]?.free) {
        onWait?.(await migrationLockHolder(connection, where));
        await run(`select pg_advisory_xact_lock(${MIGRATION_LOCK})`);
      }
      const db = new Kysely<Database>({ dialect: new MigrationsUnderOwnLock({ pool: inTransaction(connection) }) });
      const migrator = new Migrator({
        db,
        provider: { getMigrations: async () => MIGRATIONS },
        disableTransactions: true,
      });
      const outcome = await migrator.migrateToLatest();
      results = outcome.results;
      if (outcome.error) throw outcome.error;
      await run('commit');
      open = false;
      return madeNow(results);
    } finally {
      if (open) await run('rollback').catch(() => {});
      connection.release();
    }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    if (isPermissionDenied(error)) throw await mayNotCreateTables(pool, where, hidePassword(reason, url));
    throw migrationFailure(error, results, 'ASSISTD_DATABASE_URL', where);
  } finally {
    await pool.end();
  }
}

/**
 * Who holds the migration lock of this database (every database's assistd takes the same number), as startup says
 * it waits: a process migrating, or a connection that an earlier assistd left holding Kysely's session lock (through
 * a pooler), which the operator may end by its pid. Read in a savepoint of migrate's transaction: a read that fails
 * leaves it usable, and startup goes on to wait.
 */
async function migrationLockHolder(connection: PostgresPoolClient, where: string): Promise<string> {
  const waiting = `${where}: waiting for the migrations another process is running (it holds the migration lock)`;
  // pg_locks shows a bigint advisory lock as its high and low 32 bits.
  const high = BigInt(MIGRATION_LOCK) >> 32n;
  const low = BigInt(MIGRATION_LOCK) & 0xffffffffn;
  const run = (text: string) => connection.query(text, []);
  await run('savepoint holder');
  try {
    const { rows } = await connection.query<{
      pid: number;
      application_name: string | null;
      state: string | null;
      seconds: number | null;
    }>(
      `select l.pid, a.application_name, a.state, extract(epoch from now() - a.xact_start)::int as seconds
         from pg_locks l left join pg_stat_activity a on a.pid = l.pid
        where l.locktype = 'advisory' and l.granted and l.classid = ${high} and l.objid = ${low} and l.objsubid = 1
          and l.database = (select oid from pg_database where datname = current_database())`,
      [],
    );
    await run('release savepoint holder');
    const holder = rows[0];
    if (holder === undefined) return `${waiting}.`;
    const what = [
      holder.application_name ? `application '${holder.application_name}'` : undefined,
      holder.state ? `state ${holder.state}` : undefined,
      holder.seconds != null ? `in its transaction for ${holder.seconds} s` : undefined,
    ].filter((part) => part !== undefined);
    return `${waiting}: PostgreSQL backend pid ${holder.pid}${what.length > 0 ? ` (${what.join(', ')})` : ''}.`;
  } catch {
    await run('rollback to savepoint holder; release savepoint holder');
    return `${waiting}.`;
  }
}

/** Kysely's dialect, but for the migration lock, which `migrate` holds itself. */
class MigrationsUnderOwnLock extends PostgresDialect {
  override createAdapter(): PostgresAdapter {
    return new (class extends PostgresAdapter {
      override async acquireMigrationLock(): Promise<void> {}
      override async releaseMigrationLock(): Promise<void> {}
    })();
  }
}

/**
 * A Kysely pool that is one connection, lent to every statement at once: migrate's, whose transaction it holds. Each
 * statement runs in a savepoint of its own, so that one that fails leaves the transaction usable, as it would be
 * outside one: Kysely tries `create table if not exists` and looks again when that fails, and a user who may not
 * create tables is then told why (mayNotCreateTables).
 */
function inTransaction(connection: PostgresPoolClient): PostgresPool {
  const run = (text: string) => connection.query(text, []);
  const query = async (text: string, values?: readonly unknown[]) => {
    await run('savepoint statement');
    try {
      const result = await connection.query(text, values ?? []);
      await run('release savepoint statement');
      return result;
    } catch (error) {
      await run('rollback to savepoint statement; release savepoint statement').catch(() => {});
      throw error;
    }
  };
  return {
    connect: async () => ({ query: query as PostgresPoolClient['query'], release: () => {} }),
    end: async () => {},
  };
}

/** 42501 is insufficient_privilege. */
function isPermissionDenied(error: unknown): boolean {
  return (error as { code?: unknown } | undefined)?.code === '42501';
}

/**
 * A user who may not create tables in the schema (PostgreSQL 15's default for one who does not own the database)
 * is a setting to fix, said with the grant that fixes it.
 */
async function mayNotCreateTables(pool: PostgresPool, where: string, reason: string): Promise<ConfigError> {
  let user = 'its user';
  try {
    const connection = await pool.connect();
    try {
      const { rows } = await connection.query<{ user: string }>('select current_user as user', []);
      user = rows[0]?.user ?? user;
    } finally {
      connection.release();
    }
  } catch {}
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
