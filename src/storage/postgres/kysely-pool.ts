import type { PostgresCursor, PostgresPool, PostgresPoolClient } from 'kysely';
import type pg from 'pg';
import { DatabaseUnavailable } from '../store.ts';

/** Distinct statements given a name; the rest (rare shapes) run unnamed. */
const CAPACITY = 256;
/** `cached plan must not change result type`: a prepared `select *` after a migration added a column. */
const FEATURE_NOT_SUPPORTED = '0A000';

/**
 * The pool Kysely uses. Two things differ from pg's own:
 *
 * - Every statement that has parameters runs as a named prepared statement: PostgreSQL parses and plans it once per
 *   connection instead of on every call (planning was about 0.3 ms of a run's short statements, measured by
 *   bench/runs.bench.ts). Names are given by SQL text, per process; Kysely compiles the same text for the same query
 *   shape, and the run path's queries are compiled once per shape anyway (sql/compiled-queries.ts). A plan
 *   invalidated by a schema change made by another process's migration is retried unnamed, once and from then on.
 * - A connection that cannot be made or is lost (isConnectionLoss) fails with DatabaseUnavailable, which the API
 *   answers with a 503 and the run executor waits out; any other failure stays the driver's own error. A connection
 *   lost while lent out never crashes the process.
 */
export function kyselyPool(pool: pg.Pool): PostgresPool {
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
      const client = await pool.connect().catch(unavailableIfLost);
      // pg's pool listens for a connection's errors only while it is idle: one lost while lent out (a restart under a
      // running statement) is emitted with no listener, which would crash the process. The statement fails with it
      // anyway, and the pool drops the connection when it comes back.
      client.on('error', ignore);
      const query = (sql: string, values: unknown[]) => {
        const name = values.length > 0 ? nameOf(sql) : undefined;
        if (name === undefined) return client.query(sql, values);
        return client.query({ name, text: sql, values }).catch((error: { code?: unknown }) => {
          if (error?.code !== FEATURE_NOT_SUPPORTED) throw error;
          unnamed.add(sql);
          return client.query(sql, values);
        });
      };
      const wrapped: PostgresPoolClient = {
        query: ((sql: string | PostgresCursor<unknown>, parameters?: ReadonlyArray<unknown>) => {
          if (typeof sql !== 'string') return client.query(sql as never);
          return query(sql, parameters ? [...parameters] : []).catch(unavailableIfLost);
        }) as unknown as PostgresPoolClient['query'],
        release: () => {
          client.off('error', ignore);
          client.release();
        },
      };
      return wrapped;
    },
    end: () => pool.end(),
  };
}

function ignore(): void {}

function unavailableIfLost(error: unknown): never {
  throw isConnectionLoss(error) ? new DatabaseUnavailable(error) : error;
}

/** Node's errors for a connection refused, cut or not routable, and a host name not resolved (yet). */
const NETWORK_ERRORS = new Set([
  'ECONNREFUSED',
  'EADDRNOTAVAIL',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * PostgreSQL's codes for a server going away or not taking connections: `admin_shutdown` (a fast restart),
 * `crash_shutdown`, `cannot_connect_now` (starting up, shutting down, in recovery) and `too_many_connections`.
 */
const GOING_AWAY = new Set(['57P01', '57P02', '57P03', '53300']);

/** pg's own errors for a connection that ended under it or was already broken; they carry no code. */
const LOST = /^Connection terminated|^Client has encountered a connection error|^Client was closed/;

/**
 * Whether `error` says the database could not be reached or the connection to it was lost: worth trying again once
 * it is back, unlike an error of the statement itself (class 08 is PostgreSQL's `connection_exception`).
 */
export function isConnectionLoss(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (NETWORK_ERRORS.has(code) || GOING_AWAY.has(code) || code.startsWith('08')))
    return true;
  // A host name with several addresses: one error per address tried (Node names the first one's code only).
  if (error instanceof AggregateError) return error.errors.some(isConnectionLoss);
  return code === undefined && LOST.test(error.message);
}
