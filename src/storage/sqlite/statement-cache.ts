import type BetterSqlite3 from 'better-sqlite3';
import type { SqliteDatabase } from 'kysely';

/**
 * Kysely's SQLite driver calls `prepare(sql)` for every query. Preparing costs more than running a small indexed
 * query (measured by bench/api.bench.ts: ~25–40 µs to prepare vs ~12 µs to run the thread lookup), so statements
 * are kept, keyed by their SQL text, in a bounded LRU. Reuse is safe: Kysely runs one query at a time on the one
 * connection.
 */
export function withStatementCache(database: BetterSqlite3.Database, capacity = 512): SqliteDatabase {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    close: () => {
      cache.clear();
      database.close();
    },
    prepare: (sql: string) => {
      let statement = cache.get(sql);
      if (statement) {
        cache.delete(sql); // re-insert: most recently used last
      } else {
        statement = database.prepare(sql);
        if (cache.size >= capacity) cache.delete(cache.keys().next().value!);
      }
      cache.set(sql, statement);
      return statement;
    },
  } as SqliteDatabase;
}
