import type BetterSqlite3 from 'better-sqlite3';
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  type QueryResult,
  SqliteDialect,
  SqliteDriver,
} from 'kysely';
import { DatabaseUnavailable, StorageFull } from '../store.ts';
import { withStatementCache } from './statement-cache.ts';

/**
 * Kysely's SQLite dialect over `sqlite` (its statements cached, statement-cache.ts), whose transactions take the
 * write lock when they begin (`begin immediate`). Begun deferred, a transaction that reads and then writes fails at
 * once with SQLITE_BUSY if another process wrote in between (`assistd keys create` next to a running server): the
 * busy timeout does not apply to that upgrade. Begun immediate, it waits for the other writer instead, as the busy
 * timeout says. Within the process, Kysely runs one transaction at a time on the one connection anyway.
 *
 * A full database (SQLITE_FULL) fails a statement with StorageFull, and a write lock still held by another process
 * when the busy timeout ends (SQLITE_BUSY) with DatabaseUnavailable: the API answers 507 and 503, and a run's commit
 * waits, as for PostgreSQL.
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
}

class ImmediateSqliteDriver extends SqliteDriver {
  readonly #sqlite: BetterSqlite3.Database;
  #connection: DatabaseConnection | undefined;

  constructor(config: ConstructorParameters<typeof SqliteDialect>[0], sqlite: BetterSqlite3.Database) {
    super(config);
    this.#sqlite = sqlite;
  }

  override async acquireConnection(): Promise<DatabaseConnection> {
    const connection = await super.acquireConnection(); // the one connection, for as long as the driver lives
    this.#connection ??= {
      // Kysely's SQLite connection throws at once rather than rejecting: no await is added to every statement.
      executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
        try {
          return connection.executeQuery<R>(query);
        } catch (error) {
          return Promise.reject(unavailableIfFullOrBusy(error));
        }
      },
      streamQuery: (query, chunkSize) => connection.streamQuery(query, chunkSize),
    };
    return this.#connection;
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

function unavailableIfFullOrBusy(error: unknown): unknown {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === 'SQLITE_FULL') return new StorageFull(error);
  if (typeof code === 'string' && code.startsWith('SQLITE_BUSY')) return new DatabaseUnavailable(error);
  return error;
}
