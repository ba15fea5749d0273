import type { PostgresCursor, PostgresPool, PostgresPoolClient } from 'kysely';
import type pg from 'pg';

/** Distinct statements given a name; the rest (rare shapes) run unnamed. */
const CAPACITY = 256;
/** `cached plan must not change result type`: a prepared `select *` after a migration added a column. */
const FEATURE_NOT_SUPPORTED = '0A000';

/**
 * The pool Kysely uses, with every statement that has parameters run as a named prepared statement: PostgreSQL
 * parses and plans it once per connection instead of on every call (planning was about 0.3 ms of a run's short
 * statements, measured by bench/runs.bench.ts). Names are given by SQL text, per process; Kysely compiles the same
 * text for the same query shape, and the run path's queries are compiled once per shape anyway
 * (sql/compiled-queries.ts). A plan invalidated by a schema change made by another process's migration is retried
 * unnamed, once and from then on.
 */
export function withPreparedStatements(pool: pg.Pool): PostgresPool {
  const names = new Map<string, string>();
  const unnamed = new Set<string>();
  const nameOf = (sql: string): string | undefined => {
    if (unnamed.has(sql)) return undefined;
    let name = names.get(sql);
    if (name === undefined && names.size < CAPACITY) {
      name = `assistd_${names.size}`;
      names.set(sql, name);
    }
    return name;
  };
  return {
    connect: async () => {
      const client = await pool.connect();
      const wrapped: PostgresPoolClient = {
        query: ((sql: string | PostgresCursor<unknown>, parameters?: ReadonlyArray<unknown>) => {
          if (typeof sql !== 'string') return client.query(sql as never);
          const values = parameters ? [...parameters] : [];
          const name = values.length > 0 ? nameOf(sql) : undefined;
          if (name === undefined) return client.query(sql, values);
          return client.query({ name, text: sql, values }).catch((error: { code?: unknown }) => {
            if (error?.code !== FEATURE_NOT_SUPPORTED) throw error;
            unnamed.add(sql);
            return client.query(sql, values);
          });
        }) as unknown as PostgresPoolClient['query'],
        release: () => client.release(),
      };
      return wrapped;
    },
    end: () => pool.end(),
  };
}
