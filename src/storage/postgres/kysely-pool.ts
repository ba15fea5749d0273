import type { PostgresCursor, PostgresPool, PostgresPoolClient } from 'kysely';
import type pg from 'pg';
import { DatabaseUnavailable, StorageFull } from '../store.ts';

/** Distinct statements given a name; the rest (rare shapes) run unnamed. */
const CAPACITY = 256;
/** `cached plan must not change result type`: a prepared `select *` after a migration added a column. */
const FEATURE_NOT_SUPPORTED = '0A000';
/**
 * A named statement the server connection does not have (`invalid_sql_statement_name`), or has already
 * (`duplicate_prepared_statement`): pg prepares each name once per connection, so the connection it prepared it on
 * was swapped under it, by a pooler in transaction mode that cannot keep prepared statements.
 */
const POOLED_AWAY = new Set<unknown>(['26000', '42P05']);
const POOLED_AWAY_HINT =
  'a pooler in transaction mode that cannot keep prepared statements? Set ASSISTD_DATABASE_PREPARED_STATEMENTS=off (README, "Behind a connection pooler")';
/** `disk_full`: PostgreSQL could not extend a file of the database. */
const DISK_FULL = '53100';

/**
 * The pool every statement of the store goes through (Kysely's, PgSignals' own, the migrations'). Three things
 * differ from pg's:
 *
 * - Every statement that has parameters runs as a named prepared statement, unless `prepared` is false (a pooler in
 *   transaction mode that cannot keep them: PgBouncer before 1.21): PostgreSQL parses and plans it once per
 *   connection instead of on every call (planning was about 0.3 ms of a run's short statements, measured by
 *   bench/runs.bench.ts). Names are given by SQL text, per process; Kysely compiles the same text for the same query
 *   shape, and the run path's queries are compiled once per shape anyway (sql/compiled-queries.ts). A plan
 *   invalidated by a schema change made by another process's migration is retried unnamed, once and from then on.
 * - A connection that cannot be made or is lost (isConnectionLoss) fails with DatabaseUnavailable, which the API
 *   answers with a 503 and the run executor waits out; a full disk (`disk_full`) with StorageFull, a 507 waited out
 *   the same way; any other failure stays the driver's own error. A connection lost while lent out never crashes the
 *   process.
 * - With `timeoutMs`, a statement unanswered that long gives its connection up (answerWithin), which fails it with
 *   DatabaseUnavailable: a database that went away without closing its connections (a failover, a host or a network
 *   gone) never answers on them, and TCP alone takes many minutes to say so, or never does on an idle one. The
 *   connections opened before that are given up too, when next taken from the pool, unused: they lead to the same
 *   place. (`pool` itself limits its connection attempts and its waits for a free connection: pg's
 *   `connectionTimeoutMillis`.) Without it, statements take as long as they take: migrations.
 */
export function kyselyPool(pool: pg.Pool, timeoutMs?: number, prepared = true): PostgresPool {
  const names = new Map<string, string>();
  const unnamed = new Set<string>();
  const nameOf = (sql: string): string | undefined => {
    if (!prepared || unnamed.has(sql)) return undefined;
    let name = names.get(sql);
    if (name === undefined && names.size < CAPACITY) {
      name = `assistd_${names.size}`;
      names.set(sql, name);
    }
    return name;
  };
  /** Connections given up for want of an answer so far; each connection is stamped with the count when it opened. */
  let silences = 0;
  const stamps = new WeakMap<pg.PoolClient, number>();
  const connect = async (): Promise<pg.PoolClient> => {
    for (;;) {
      const client = await pool.connect().catch(unavailableIfLost);
      const stamp = stamps.get(client);
      if (stamp === silences) return client;
      if (stamp === undefined) {
        // pg's pool listens for a connection's errors only while it is idle: one lost while lent out (a restart under
        // a running statement) would be emitted with no listener, which would crash the process. The statement fails
        // with it anyway, and the pool drops the connection when it comes back.
        client.on('error', ignore);
        stamps.set(client, silences);
        return client;
      }
      giveUp(client, 'opened before a connection went silent');
      client.release(true);
    }
  };
  return {
    connect: async () => {
      const client = await connect();
      const query = (sql: string, values: unknown[]) => {
        const name = values.length > 0 ? nameOf(sql) : undefined;
        if (name === undefined) return client.query(sql, values);
        return client.query({ name, text: sql, values }).catch((error: { code?: unknown; message?: unknown }) => {
          if (POOLED_AWAY.has(error?.code) && typeof error.message === 'string')
            error.message += `: ${POOLED_AWAY_HINT}`;
          if (error?.code !== FEATURE_NOT_SUPPORTED) throw error;
          unnamed.add(sql);
          return client.query(sql, values);
        });
      };
      const wrapped: PostgresPoolClient = {
        query: ((sql: string | PostgresCursor<unknown>, parameters?: ReadonlyArray<unknown>) => {
          if (typeof sql !== 'string') return client.query(sql as never);
          const pending = query(sql, parameters ? [...parameters] : []);
          const answered =
            timeoutMs === undefined
              ? pending
              : answerWithin(client, timeoutMs, pending, () => {
                  silences++;
                });
          return answered.catch(unavailableIfLost);
        }) as unknown as PostgresPoolClient['query'],
        release: () => client.release(),
      };
      return wrapped;
    },
    end: () => pool.end(),
  };
}

/**
 * `pending`, a statement of `client`'s; if it is not answered within `timeoutMs`, the connection is given up: closed
 * at once, which fails the statement with an ETIMEDOUT error (a connection loss) and keeps the pool from lending the
 * connection again. `onSilence` is told.
 */
export function answerWithin<T>(
  client: pg.ClientBase,
  timeoutMs: number,
  pending: Promise<T>,
  onSilence?: () => void,
): Promise<T> {
  const timer = setTimeout(() => {
    onSilence?.();
    giveUp(client, `no answer from the database within ${timeoutMs / 1000} s`);
  }, timeoutMs);
  return pending.finally(() => clearTimeout(timer));
}

/** Closes `client`'s connection now, failing what it runs with ETIMEDOUT. pg has no public way to do it. */
function giveUp(client: pg.ClientBase, reason: string): void {
  const socket = (client as unknown as { connection: { stream: { destroy(error: Error): void } } }).connection.stream;
  socket.destroy(Object.assign(new Error(reason), { code: 'ETIMEDOUT' }));
}

function ignore(): void {}

function unavailableIfLost(error: unknown): never {
  if ((error as { code?: unknown } | undefined)?.code === DISK_FULL) throw new StorageFull(error);
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

/**
 * pg's own errors for a connection that ended under it, was already broken, or did not open in time, and pg's pool's
 * for no connection free in time; they carry no code.
 */
const LOST =
  /^Connection terminated|^Client has encountered a connection error|^Client was closed|^timeout expired$|^timeout exceeded when trying to connect$/;

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
