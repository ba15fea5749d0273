import type BetterSqlite3 from 'better-sqlite3';
import { CompiledQuery, type DatabaseConnection, type Driver, SqliteDialect, SqliteDriver } from 'kysely';
import { withStatementCache } from './statement-cache.ts';

/**
 * Kysely's SQLite dialect over `sqlite` (its statements cached, statement-cache.ts), whose transactions take the
 * write lock when they begin (`begin immediate`). Begun deferred, a transaction that reads and then writes fails at
 * once with SQLITE_BUSY if another process wrote in between (`assistd keys create` next to a running server): the
 * busy timeout does not apply to that upgrade. Begun immediate, it waits for the other writer instead, as the busy
 * timeout says. Within the process, Kysely runs one transaction at a time on the one connection anyway.
 */
export function sqliteDialect(sqlite: BetterSqlite3.Database): SqliteDialect {
  return new ImmediateSqliteDialect({ database: withStatementCache(sqlite) });
}

class ImmediateSqliteDialect extends SqliteDialect {
  readonly #config: ConstructorParameters<typeof SqliteDialect>[0];

  constructor(config: ConstructorParameters<typeof SqliteDialect>[0]) {
    super(config);
    this.#config = config;
  }

  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.#config);
  }
}

class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}
