import type { CompiledQuery, QueryResult, RawBuilder } from 'kysely';

/**
 * What SqlStore needs to know about the database under it, as capabilities rather than a database name: each
 * opener (sqlite/, postgres/) states what its database does, and the shared code never asks which one it is.
 */
export type SqlCapabilities = {
  /**
   * The keyword index over vector-store chunks that the database's migration 005 made: an FTS5 table (SQLite) or a
   * tsvector column with a GIN index (PostgreSQL).
   */
  readonly keywordIndex: 'fts5' | 'tsvector';
  /**
   * How chunk vectors (`chunks.embedding`, migration 006) are searched: sqlite-vec's `vec0` tables (SQLite with the
   * extension loaded), or exactly, in memory, by this process's cache of each store's vectors
   * (vector-matrix-cache.ts; PostgreSQL without pgvector, or any database).
   */
  readonly vectorIndex: 'sqlite-vec' | 'matrix-cache';
  /**
   * A top-level field of a JSON text column as text, null when the object lacks it: how lists filter on `metadata`.
   * The key is bound as a parameter and taken literally (dots, quotes, a leading `$`), which a JSON path would not.
   */
  jsonField(column: string, key: string): RawBuilder<string | null>;
  /**
   * Where the searches' heavy read-only statements run — the keyword search, sqlite-vec's KNN, the loads of the
   * vector cache — when the store's own connection must not run them: better-sqlite3 runs each statement
   * synchronously on the event loop (a keyword search of a common word over a large store held it ~350 ms, every
   * request of the process waiting), so SQLite hands them to reader threads (sqlite/reader-pool.ts). Absent, they
   * run on the store's connections: PostgreSQL's are asynchronous already.
   */
  readonly searchReader?: SearchReader;
  /**
   * Whether the store's statements run on the event loop (better-sqlite3 runs each synchronously), so that a long
   * one holds up every request of the process: such work is split into short statements (a long thread's deletion).
   */
  readonly statementsOnEventLoop: boolean;
} /**
 * The database runs one write transaction at a time, and a failed statement leaves its transaction usable
 * (SQLite: one connection, serialised by Kysely's driver; SQLite itself allows a single writer).
 */ & (
  | { readonly rowLocks: false }
  /**
   * Write transactions really run at once, so the ones that conflict must serialise on row locks
   * (`select … for no key update`, `for update skip locked`); and a failed statement aborts its transaction, so a
   * constraint violation can only be handled after the rollback (PostgreSQL).
   */
  | {
      readonly rowLocks: true;
      /** Whether `error` is the driver's report of a violation of the unique index named `index`. */
      isUniqueViolation(error: unknown, index: string): boolean;
      /**
       * A run's commit (SqlStore.commitRun) as one statement, where the database can make one: a round trip
       * instead of a transaction's five. It returns one row, `{ metadata, waiting }`: the run's metadata when the
       * fence held (else null), and, with `waitingOf`, whether other runs of that thread wait (queued runs). An
       * ending (`waitingOf`) of a run that messages wait behind writes nothing: a transaction makes it.
       */
      commitStatement?(rows: CommitRows): CompiledQuery;
      /**
       * A run's creation on an existing thread (SqlStore.createRun) as one statement, where the database can make
       * one. It returns one row, `{ thread, active, inserted }`: whether the thread exists, the id of its active
       * run if it has one, and 1 when the run was inserted.
       */
      createRunStatement?(rows: RunCreationRows): CompiledQuery;
    }
);

/** A run's creation as rows: the thread it needs, the additional messages and the run. */
export interface RunCreationRows {
  projectId: string;
  threadId: string;
  messages: ReadonlyArray<Record<string, unknown>>;
  run: Record<string, unknown>;
}

/** A run's commit as rows: the run's new columns, the fence of the update, and the step and message rows. */
export interface CommitRows {
  set: Record<string, unknown>;
  fence: {
    projectId: string;
    runId: string;
    status: string;
    lockedBy?: string | null | undefined;
    /** The run's `required_action` column as it must be (JSON text, or null for none), when the commit says. */
    requiredAction?: string | null | undefined;
  };
  /** The thread of a run this commit ends: whether other runs of it wait behind is reported too. */
  waitingOf?: string | undefined;
  steps: ReadonlyArray<Record<string, unknown>>;
  messages: ReadonlyArray<Record<string, unknown>>;
}

/** What runs a compiled query: a Kysely instance, a transaction, or reader threads (SearchReader). */
export interface QueryRunner {
  executeQuery<R>(query: CompiledQuery<R>): Promise<QueryResult<R>>;
}

/** Runs read-only statements on connections of its own, which close with it (when the store closes). */
export interface SearchReader extends QueryRunner {
  close(): Promise<void>;
}
