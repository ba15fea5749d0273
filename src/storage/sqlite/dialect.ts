import { statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type BetterSqlite3 from 'better-sqlite3';
import {
  CompiledQuery,
  type DatabaseConnection,
  type DialectAdapter,
  type Driver,
  type QueryResult,
  SqliteAdapter,
  type SqliteDatabase,
  SqliteDialect,
  SqliteDriver,
} from 'kysely';
import { DatabaseUnavailable, StorageFull } from '../store.ts';
import { withStatementCache } from './statement-cache.ts';

/**
 * Kysely's SQLite dialect over `sqlite` (its statements cached, statement-cache.ts), whose transactions take the
 * write lock when they begin (`begin immediate`). Begun deferred, a transaction that reads and then writes fails at
 * once with SQLITE_BUSY if another process wrote in between (`assistd keys create` next to a running server): the
 * busy timeout does not apply to that upgrade. Begun immediate, it waits for the other writer instead (BUSY_WAIT_MS).
 * Within the process, Kysely runs one transaction at a time on the one connection anyway.
 *
 * A full database (SQLITE_FULL) fails a statement with StorageFull, and a write lock held by another process past
 * BUSY_WAIT_MS (SQLITE_BUSY) with DatabaseUnavailable: the API answers 507 and 503, and a run's commit waits, as for
 * PostgreSQL. So does every statement once the database's file is no longer the one open (OpenFileWatch).
 */
export function sqliteDialect(sqlite: BetterSqlite3.Database): SqliteDialect {
  return new ImmediateSqliteDialect({ database: withStatementCache(sqlite) }, sqlite);
}

class ImmediateSqliteDialect extends SqliteDialect {
  readonly #config: ConstructorParameters<typeof SqliteDialect>[0];
  readonly #sqlite: BetterSqlite3.Database;

  constructor(config: ConstructorParameters<typeof SqliteDialect>[0], sqlite: BetterSqlite3.Database) {
    super(config);
    this.#config = config;
    this.#sqlite = sqlite;
  }

  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.#config, this.#sqlite);
  }

  override createAdapter(): DialectAdapter {
    return new TransactionalDdlAdapter();
  }
}

/**
 * SQLite's DDL is transactional, though Kysely's adapter says not (and takes no migration lock): so said, the
 * migrations run in one transaction, begun immediate, and processes that open one database at once take turns. Each
 * ran the migrations it found pending, on autocommit, and all but one failed ("table assistants already exists");
 * and a migration cut short by a kill stayed half applied.
 */
class TransactionalDdlAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

/**
 * How long statements wait, all told, for a write lock another process holds (`sqlite3` left in a transaction, say),
 * before failing with DatabaseUnavailable; until a write goes through again, the next fail at once. SQLite's own busy
 * timeout would wait with the event loop held, every stream of the process with it: here it is waited out
 * asynchronously. The statements of this process wait behind the one waiting (one connection), reads too.
 */
export const BUSY_WAIT_MS = 5000;

class ImmediateSqliteDriver extends SqliteDriver {
  readonly #sqlite: BetterSqlite3.Database;
  readonly #statements: SqliteDatabase;
  #connection: DatabaseConnection | undefined;
  /** When writes started finding the write lock held by another process; undefined once one goes through. */
  #busySince: number | undefined;
  readonly #file: OpenFileWatch | undefined;

  constructor(config: ConstructorParameters<typeof SqliteDialect>[0], sqlite: BetterSqlite3.Database) {
    super(config);
    this.#sqlite = sqlite;
    this.#statements = config.database as SqliteDatabase;
    this.#file = sqlite.memory ? undefined : new OpenFileWatch(sqlite.name);
  }

  override async destroy(): Promise<void> {
    this.#file?.stop();
    await super.destroy();
  }

  override async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await super.acquireConnection(); // the one connection, for as long as the driver lives
    this.#connection ??= {
      // Kysely's SQLite connection throws at once rather than rejecting: no await is added to every statement.
      executeQuery: <R>(query: CompiledQuery): Promise<QueryResult<R>> => {
        // A transaction begun goes on to its end: its rollback must not fail in place of the error that ended it.
        if (this.#file?.lost !== undefined && !this.#sqlite.inTransaction) throw this.#file.lost;
        try {
          const result = connection.executeQuery<R>(query);
          if (this.#busySince !== undefined) this.#wrote(query);
          return result;
        } catch (error) {
          return this.#whileBusy(connection, query, error);
        }
      },
      streamQuery: (query, chunkSize) => connection.streamQuery(query, chunkSize),
    };
    return this.#connection;
  }

  /** `query`, which failed with `error`, tried again while the write lock is another process's (BUSY_WAIT_MS). */
  async #whileBusy<R>(connection: DatabaseConnection, query: CompiledQuery, error: unknown): Promise<QueryResult<R>> {
    // Not within a transaction: its statements before this one would not be tried again (`begin immediate` itself
    // begins none when it finds the lock taken).
    for (let waitMs = 2; isBusy(error) && !this.#sqlite.inTransaction; waitMs = Math.min(waitMs * 2, 50)) {
      this.#busySince ??= Date.now();
      if (Date.now() - this.#busySince >= BUSY_WAIT_MS) break;
      await sleep(waitMs);
      try {
        const result = await connection.executeQuery<R>(query);
        this.#wrote(query);
        return result;
      } catch (again) {
        error = again;
      }
    }
    throw unavailableIfFullOrBusy(error);
  }

  /** `query` went through: if it writes (a read goes through while another process holds the lock), the lock is free. */
  #wrote(query: CompiledQuery): void {
    if (!this.#statements.prepare(query.sql).reader) this.#busySince = undefined;
  }

  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }

  override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    // SQLite rolls a transaction back itself on some errors (SQLITE_FULL among them): a rollback after that would fail
    // with "no transaction is active", and that error would hide the one that ended the transaction.
    if (this.#sqlite.inTransaction) await super.rollbackTransaction(connection);
  }
}

/** How often OpenFileWatch looks at the database's files. */
const FILE_CHECK_MS = 1000;

/**
 * Whether the database's file and its WAL are still, at their paths, the files the connection has open. Deleted or
 * renamed over under the server (`rm`, `mv`, `rsync`), the writes would go on into files no longer linked,
 * acknowledged and then lost at the next start, /healthz saying ok all along. Looked at every FILE_CHECK_MS, off
 * the statements' path: once they are not, `lost` is the error every statement fails with until a restart (503, and
 * /healthz unavailable), losing at most that interval's writes.
 */
class OpenFileWatch {
  lost: DatabaseUnavailable | undefined;
  readonly #timer: NodeJS.Timeout;

  constructor(file: string) {
    // What is not there at the start (or cannot be told) is not watched.
    const opened = [file, `${file}-wal`]
      .map((path) => ({ path, ino: inode(path) }))
      .filter(({ ino }) => typeof ino === 'number');
    this.#timer = setInterval(() => {
      const gone = opened.find(({ path, ino }) => {
        const now = inode(path);
        return now !== null && now !== ino;
      });
      if (gone === undefined) return;
      this.lost = new DatabaseUnavailable(
        new Error(
          `${gone.path} was deleted or replaced while the server had it open, and what is written now would be ` +
            'lost: restart the server (after putting the file back, if it was not meant to go)',
        ),
      );
      this.stop();
    }, FILE_CHECK_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/**
 * The file's inode number, undefined when there is none at `path` (or a folder on the way is a file now), or null
 * when it cannot be told now (EACCES, EIO…): the file open may well be there still, and is looked at again later.
 */
function inode(path: string): number | undefined | null {
  try {
    return statSync(path, { throwIfNoEntry: false })?.ino;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOTDIR' ? undefined : null;
  }
}

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}

/**
 * SQLite's error as the store's: StorageFull for a full database, DatabaseUnavailable for a lock held past the wait
 * (here, or on a reader thread's connection: reader-pool.ts); any other as it is.
 */
export function unavailableIfFullOrBusy(error: unknown): unknown {
  if ((error as { code?: unknown } | undefined)?.code === 'SQLITE_FULL') return new StorageFull(error);
  return isBusy(error) ? new DatabaseUnavailable(error) : error;
}
