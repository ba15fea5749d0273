import { isDeepStrictEqual } from 'node:util';
import { type Kysely, type Selectable, sql } from 'kysely';
import { messageInProgress, messagesLockedByRun, notFound, threadHasActiveRun } from '../../domain/errors.ts';
import type { Assistant, Message, MessageAttachment, Metadata, Thread } from '../../domain/objects.ts';
import { type Run, type RunStatus, TERMINAL_RUN_STATUSES, uncommittedTurn } from '../../domain/runs.ts';
import type { BlobStore } from '../blobs/blob-store.ts';
import type {
  AssistantPatch,
  ClaimedRun,
  MessageFilter,
  MessagePatch,
  Page,
  PageRequest,
  QueueOption,
  RunCommit,
  RunLock,
  Scope,
  SignalChannel,
  Store,
  StoredStep,
  ThreadFilter,
  ThreadPatch,
  WireJson,
} from '../store.ts';
import type { SqlCapabilities } from './capabilities.ts';
import { type Arg, CompiledQueries, rowArgs } from './compiled-queries.ts';
import { fromJson, toJson } from './json-column.ts';
import { bury, deleteAndBury } from './list-tombstones.ts';
import { applyPage, finishPage, resolveCursors } from './pagination.ts';
import { queueBehindLastRun, releaseQueuedMessages } from './queued-messages.ts';
import {
  assistantPatchToRow,
  assistantToRow,
  messageToRow,
  rowToAssistant,
  rowToMessage,
  rowToRun,
  rowToStep,
  rowToThread,
  runStateToRow,
  runToRow,
  stepToRow,
  threadPatchToRow,
  threadToRow,
} from './rows.ts';
import type { Database, RunsTable } from './schema.ts';
import { SqlBlobStore } from './sql-blob-store.ts';
import { SqlFileRecords } from './sql-file-records.ts';
import { SqlProjectRecords } from './sql-project-records.ts';
import { SqlVectorStoreRecords } from './sql-vector-store-records.ts';

/**
 * The conditions of the partial indexes `runs_claimable` and `runs_expiring`, written as literals: with the
 * statuses bound as parameters SQLite cannot prove the index applies and scans the whole table (measured by
 * bench/runs.bench.ts: a claim took 32 ms at 100,000 runs, 0.1 ms with the index).
 */
const NEEDS_WORKER = sql<boolean>`status in ('queued', 'in_progress', 'cancelling')`;
const IS_ACTIVE = sql<boolean>`status in ('queued', 'in_progress', 'requires_action', 'cancelling')`;
/**
 * Of a waiting run (`runs` in the claim's picking query): no other active run of its thread is going, or waiting
 * since before it — it is first in line on a free thread.
 */
const FIRST_IN_LINE = sql<boolean>`not exists (
  select 1 from runs as ahead
  where ahead.thread_id = runs.thread_id and ahead.id <> runs.id
    and ahead.status in ('queued', 'in_progress', 'requires_action', 'cancelling')
    and (ahead.waiting = 0 or ahead.created_at < runs.created_at
      or (ahead.created_at = runs.created_at and ahead.seq < runs.seq)))`;

type Executor = Kysely<Database>;

/** A placeholder argument where the column is a number (compiled-queries.ts binds the real value). */
const num = (placeholder: string) => placeholder as unknown as number;
/** Rows a part of a thread's deletion deletes at most (messages; runs, with their steps, a quarter as many). */
const DELETED_PER_PART = 2_000;
/**
 * The messages that have attachments. messageToRow writes JSON.stringify's text: a message without attachments holds
 * `"attachments":[]`, and no other message can (within a string every quote is escaped). Written out, not bound: the
 * index messages_with_attachments (migration 018) holds the rows that meet this very condition, and a planner uses
 * it only for a query that states the condition as the index does.
 */
export const WITH_ATTACHMENTS = sql<boolean>`doc not like '%"attachments":[]%'`;

/** The unique partial index that holds the thread lock (see the migrations of each database). */
const ONE_ACTIVE_RUN_PER_THREAD = 'runs_one_active_per_thread';

/**
 * The Store over any Kysely dialect. The queries here are portable SQL (row values, RETURNING, ON DELETE CASCADE
 * are in both SQLite ≥ 3.35 and PostgreSQL); what differs between databases — connection setup, pragmas, DDL —
 * lives in the dialect's own folder, and how concurrent writers are kept apart is a capability (capabilities.ts).
 */
/** Creations of a run that lost to runs which had ended by the time the loser looked (reportActiveRunConflict). */
const MAX_CREATE_ATTEMPTS = 3;

export class SqlStore implements Store {
  readonly description: string;
  /** Set by the opener whose migrations made the database (open-sqlite-store.ts, open-postgres-store.ts). */
  createdNow = false;
  readonly signals: (SignalChannel & { close(): Promise<void> }) | undefined;
  readonly files: SqlFileRecords;
  readonly vectorStores: SqlVectorStoreRecords;
  readonly projects: SqlProjectRecords;
  private readonly db: Kysely<Database>;
  private readonly capabilities: SqlCapabilities;
  /** The hot queries of a run's path, compiled once for this database (compiled-queries.ts). */
  private readonly q = new CompiledQueries();
  private readonly waitingRunsFreed: Array<() => void> = [];

  constructor(
    db: Kysely<Database>,
    description: string,
    capabilities: SqlCapabilities,
    signals?: SignalChannel & { close(): Promise<void> },
  ) {
    this.db = db;
    this.description = description;
    this.capabilities = capabilities;
    this.signals = signals;
    this.files = new SqlFileRecords(db, capabilities);
    this.vectorStores = new SqlVectorStoreRecords(db, capabilities);
    this.projects = new SqlProjectRecords(db);
  }

  databaseBlobs(): BlobStore {
    return new SqlBlobStore(this.db, `database:${this.description}`);
  }

  async databaseId(): Promise<string> {
    const { rows } = await sql<{ timestamp: string }>`
      select timestamp from kysely_migration where name = '001-initial'`.execute(this.db);
    return String(rows[0]?.timestamp);
  }

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  async close(): Promise<void> {
    await this.signals?.close();
    // The reader threads' connections first: the store's, closing last, checkpoints and removes SQLite's WAL file.
    await this.capabilities.searchReader?.close();
    await this.db.destroy();
  }

  // ── assistants ──────────────────────────────────────────────────────────────

  async createAssistant(scope: Scope, assistant: Assistant): Promise<void> {
    await this.db.insertInto('assistants').values(assistantToRow(scope, assistant)).execute();
  }

  async getAssistant(scope: Scope, id: string): Promise<Assistant | undefined> {
    const [row] = await this.q.rows(
      this.db,
      'getAssistant',
      (a) => this.db.selectFrom('assistants').selectAll().where('project_id', '=', a(0)).where('id', '=', a(1)),
      [scope.projectId, id],
    );
    return row && rowToAssistant(row);
  }

  async listAssistants(scope: Scope, page: PageRequest): Promise<Page<Assistant>> {
    const cursors = await resolveCursors(this.db, 'assistants', scope, page);
    const query = this.db.selectFrom('assistants').selectAll().where('project_id', '=', scope.projectId);
    return finishPage(await applyPage(query, page, cursors).execute(), page, rowToAssistant);
  }

  async updateAssistant(scope: Scope, id: string, patch: AssistantPatch): Promise<Assistant | undefined> {
    const changes = assistantPatchToRow(patch);
    if (Object.keys(changes).length === 0) return this.getAssistant(scope, id);
    const row = await this.db
      .updateTable('assistants')
      .set(changes)
      .where('project_id', '=', scope.projectId)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    return row && rowToAssistant(row);
  }

  deleteAssistant(scope: Scope, id: string): Promise<boolean> {
    return deleteAndBury(this.db, 'assistants', scope.projectId, id);
  }

  // ── threads ─────────────────────────────────────────────────────────────────

  async createThread(scope: Scope, thread: Thread, messages: readonly Message[]): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await insertThread(trx, this.q, scope, thread);
      await insertMessages(trx, this.q, scope, messages);
    });
  }

  async getThread(scope: Scope, id: string): Promise<Thread | undefined> {
    const row = await this.db
      .selectFrom('threads')
      .selectAll()
      .where('project_id', '=', scope.projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && rowToThread(row);
  }

  async listThreads(scope: Scope, page: PageRequest, filter: ThreadFilter = {}): Promise<Page<Thread>> {
    const cursors = await resolveCursors(this.db, 'threads', scope, page, undefined, filter.orderBy);
    let query = this.db.selectFrom('threads').selectAll().where('project_id', '=', scope.projectId);
    for (const [key, value] of Object.entries(filter.metadata ?? {}))
      query = query.where(sql<boolean>`${this.capabilities.jsonField('metadata', key)} = ${value}`);
    return finishPage(await applyPage(query, page, cursors).execute(), page, rowToThread);
  }

  async updateThread(scope: Scope, id: string, patch: ThreadPatch): Promise<Thread | undefined> {
    const changes = threadPatchToRow(patch);
    if (Object.keys(changes).length === 0) return this.getThread(scope, id);
    const row = await this.db
      .updateTable('threads')
      .set(changes)
      .where('project_id', '=', scope.projectId)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    return row && rowToThread(row);
  }

  async activeRunOf(scope: Scope, threadId: string): Promise<string | undefined> {
    const row = await this.db
      .selectFrom('runs')
      .select('id')
      .where('project_id', '=', scope.projectId)
      .where('thread_id', '=', threadId)
      .where(IS_ACTIVE)
      .limit(1)
      .executeTakeFirst();
    return row?.id;
  }

  async deleteThread(scope: Scope, id: string): Promise<string[] | undefined> {
    if (this.capabilities.statementsOnEventLoop) await this.deleteThreadContents(scope, id);
    return this.db.transaction().execute(async (trx) => {
      // Locks in a run's commit's order (PostgreSQL): its run's row, then, by the foreign key of the message or step
      // it writes, its thread's. Taking the thread's first, the deletion then waited for the run's row in its
      // cascade while the commit waited for the thread's: a deadlock, which failed the run or the deletion.
      if (this.capabilities.rowLocks)
        await trx
          .selectFrom('runs')
          .select('id')
          .where('thread_id', '=', id)
          .where('project_id', '=', scope.projectId)
          .orderBy('id')
          .forUpdate()
          .execute();
      // Then the thread's row (as a run's creation locks it), so no run is created between the two reads.
      const thread = await trx
        .selectFrom('threads')
        .select(['project_id', 'id', 'created_at', 'last_active_at', 'seq'])
        .where('project_id', '=', scope.projectId)
        .where('id', '=', id)
        .$if(this.capabilities.rowLocks, (qb) => qb.forUpdate())
        .executeTakeFirst();
      if (!thread) return undefined;
      const active = await trx.selectFrom('runs').select('id').where('thread_id', '=', id).where(IS_ACTIVE).execute();
      // Messages, runs and their steps go with their thread through ON DELETE CASCADE.
      await trx.deleteFrom('threads').where('project_id', '=', scope.projectId).where('id', '=', id).execute();
      await bury(trx, 'threads', [thread]);
      return active.map((r) => r.id);
    });
  }

  /**
   * A thread's messages, and its runs that have ended (with their steps), deleted a part at a time, each part its
   * own transaction, the event loop free between them; the thread's deletion then takes what is left. Where
   * statements run on the event loop (SQLite), one cascade deleting a long thread held every other request and
   * stream of the process meanwhile (bench/README.md, "Long-thread benchmark"). Meanwhile the thread may show some
   * of its history gone; what the client asked is its deletion, and an interrupted one is finished by asking again.
   */
  private async deleteThreadContents(scope: Scope, id: string): Promise<void> {
    // Runs go once they ended; a run's steps go with it (ON DELETE CASCADE): a few per run.
    const parts = [
      { table: 'messages', limit: DELETED_PER_PART, deletable: sql<boolean>`true` },
      { table: 'runs', limit: DELETED_PER_PART / 4, deletable: sql<boolean>`not ${IS_ACTIVE}` },
    ] as const;
    // A part short of its limit was the last: what arrives meanwhile goes with the thread.
    for (const { table, limit, deletable } of parts)
      for (;;) {
        const part = this.db
          .selectFrom(table)
          .select('seq')
          .where('thread_id', '=', id)
          .where('project_id', '=', scope.projectId)
          .where(deletable)
          .limit(limit);
        const { numDeletedRows } = await this.db.deleteFrom(table).where('seq', 'in', part).executeTakeFirstOrThrow();
        if (numDeletedRows < BigInt(limit)) break;
        await new Promise((resolve) => setImmediate(resolve));
      }
  }

  // ── messages ────────────────────────────────────────────────────────────────

  async createMessage(scope: Scope, message: Message, { queue }: QueueOption = {}): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await requireThread(trx, this.q, scope, message.thread_id, this.capabilities.rowLocks);
      // Queued: the message is for the runs after the active one, which read the thread when they start.
      const active = queue ? undefined : await activeRunOf(trx, this.q, message.thread_id);
      if (active) throw messagesLockedByRun(message.thread_id, active);
      await insertMessages(trx, this.q, scope, [message]);
      if (queue) await queueBehindLastRun(trx, message.thread_id, [message.id]);
      await touchThread(trx, this.q, scope, message.thread_id, message.created_at);
    });
  }

  getMessage(scope: Scope, threadId: string, id: string): Promise<Message | undefined> {
    return readMessage(this.db, scope, threadId, id);
  }

  async listMessages(
    scope: Scope,
    threadId: string,
    page: PageRequest,
    filter: MessageFilter = {},
  ): Promise<Page<Message>> {
    const { data, hasMore } = await this.listMessagesJson(scope, threadId, page, filter);
    return { data: data.map((doc) => rowToMessage({ doc: doc.json })), hasMore };
  }

  async listMessagesJson(
    scope: Scope,
    threadId: string,
    page: PageRequest,
    filter: MessageFilter = {},
  ): Promise<Page<WireJson>> {
    const threadMustExist = async () => {
      if (!(await this.getThread(scope, threadId))) throw notFound('thread', threadId);
    };
    const cursors = await resolveCursors(this.db, 'messages', scope, page, {
      column: 'thread_id',
      value: threadId,
      mustExist: threadMustExist,
    });
    let query = this.db
      .selectFrom('messages')
      .select(['id', 'doc'])
      .where('thread_id', '=', threadId)
      .where('project_id', '=', scope.projectId);
    if (filter.runId !== undefined) query = query.where('run_id', '=', filter.runId);
    const rows = await applyPage(query, page, cursors).execute();
    // Only an empty page can hide a missing thread: the common case costs one query.
    if (rows.length === 0) await threadMustExist();
    return finishPage(rows, page, (row) => ({ id: row.id, json: row.doc }));
  }

  async updateMessage(scope: Scope, threadId: string, id: string, patch: MessagePatch): Promise<Message | undefined> {
    return this.db.transaction().execute(async (trx) => {
      const stored = await changeableMessage(trx, scope, threadId, id);
      if (!stored) return undefined;
      const message = { ...stored, ...patch };
      await trx
        .updateTable('messages')
        .set(messageToRow(scope, message))
        .where('project_id', '=', scope.projectId)
        .where('thread_id', '=', threadId)
        .where('id', '=', id)
        .execute();
      return message;
    });
  }

  async deleteMessage(scope: Scope, threadId: string, id: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      if (!(await changeableMessage(trx, scope, threadId, id))) return false;
      return (await deleteAndBuryChildren(trx, 'messages', scope, threadId, [id])) > 0;
    });
  }

  /**
   * The stored messages of thread `a(0)` in project `a(1)` that its runs read: all but those queued behind a run
   * still to come (queued-messages.ts).
   */
  private readMessages(a: Arg) {
    return this.db
      .selectFrom('messages')
      .select('doc')
      .where('thread_id', '=', a(0))
      .where('project_id', '=', a(1))
      .where('queued_behind', 'is', null);
  }

  async threadAttachments(scope: Scope, threadId: string): Promise<MessageAttachment[]> {
    const rows = await this.q.rows(
      this.db,
      'threadAttachments',
      (a) => this.readMessages(a).where(WITH_ATTACHMENTS).orderBy('created_at').orderBy('seq'),
      [threadId, scope.projectId],
    );
    return rows.flatMap((row) => rowToMessage(row).attachments ?? []);
  }

  async threadMessagesFrom(
    scope: Scope,
    threadId: string,
    end: 'oldest' | 'newest',
    skip: number,
    limit: number,
  ): Promise<Message[]> {
    const order = end === 'oldest' ? 'asc' : 'desc';
    const rows = await this.q.rows(
      this.db,
      `threadMessagesFrom:${order}`,
      (a) =>
        this.readMessages(a)
          .orderBy('created_at', order)
          .orderBy('seq', order)
          .limit(num(a(2)))
          .offset(num(a(3))),
      [threadId, scope.projectId, limit, skip],
    );
    return rows.map(rowToMessage);
  }

  // ── runs ────────────────────────────────────────────────────────────────────

  async createRun(
    scope: Scope,
    run: Run,
    additionalMessages: readonly Message[],
    lock?: RunLock,
    { queue = false }: QueueOption = {},
  ): Promise<{ waiting: boolean }> {
    // One statement reads the runs as they were before it waited for the thread's lock: a queued creation could
    // then miss the runs it must wait behind, so it takes the transaction, whose reads follow the lock.
    if (this.capabilities.rowLocks && this.capabilities.createRunStatement && !queue) {
      const row = withLock(runToRow(scope, run), lock);
      const statement = this.capabilities.createRunStatement({
        projectId: scope.projectId,
        threadId: run.thread_id,
        messages: additionalMessages.map((m) => messageToRow(scope, m)),
        run: row,
      });
      return this.reportActiveRunConflict(run.thread_id, async () => {
        const { rows } = await this.db.executeQuery<{ thread: boolean; active: string | null; inserted: number }>(
          statement,
        );
        const result = rows[0];
        if (!result?.thread) throw notFound('thread', run.thread_id);
        if (result.active) throw threadHasActiveRun(run.thread_id, result.active);
        return { waiting: false };
      });
    }
    return this.reportActiveRunConflict(
      run.thread_id,
      () =>
        this.db.transaction().execute(async (trx) => {
          await requireThread(trx, this.q, scope, run.thread_id, this.capabilities.rowLocks);
          return insertRun(trx, this.q, scope, run, additionalMessages, this.capabilities, lock, queue);
        }),
      queue,
    );
  }

  async createThreadAndRun(
    scope: Scope,
    thread: Thread,
    messages: readonly Message[],
    run: Run,
    lock?: RunLock,
  ): Promise<void> {
    // The thread is new and invisible to other transactions until this one commits: nothing to lock.
    await this.reportActiveRunConflict(run.thread_id, () =>
      this.db.transaction().execute(async (trx) => {
        await insertThread(trx, this.q, scope, thread);
        await insertRun(trx, this.q, scope, run, messages, this.capabilities, lock);
      }),
    );
  }

  /**
   * With row locks, a run creation that still hits `runs_one_active_per_thread` (the backstop behind the thread
   * row lock) has aborted its transaction; the winner is looked up after the rollback, for upstream's message. A
   * winner that has already ended by then left the thread free: the creation is tried again, as if it had come a
   * moment later (it wrote nothing). A queued creation is tried again in any case: it then waits behind the winner.
   */
  private async reportActiveRunConflict<T>(threadId: string, create: () => Promise<T>, queue = false): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await create();
      } catch (error) {
        if (!this.capabilities.rowLocks || !this.capabilities.isUniqueViolation(error, ONE_ACTIVE_RUN_PER_THREAD))
          throw error;
        const winner = await activeRunOf(this.db, this.q, threadId);
        if (winner && !queue) throw threadHasActiveRun(threadId, winner);
        if (attempt === MAX_CREATE_ATTEMPTS) throw error;
      }
    }
  }

  async getRun(scope: Scope, threadId: string, runId: string): Promise<Run | undefined> {
    const [row] = await this.q.rows(
      this.db,
      'getRun',
      (a) =>
        this.db
          .selectFrom('runs')
          .selectAll()
          .where('project_id', '=', a(0))
          .where('thread_id', '=', a(1))
          .where('id', '=', a(2)),
      [scope.projectId, threadId, runId],
    );
    return row && rowToRun(row);
  }

  /**
   * By id alone, across projects: a signal from another process names only the run. Nothing leaks: the run comes
   * with its own project as scope, and only the event bus reads it, for listeners that found the run in their own
   * scope before they listened (a held poll, a stream, /events).
   */
  async findRun(runId: string): Promise<ClaimedRun | undefined> {
    const row = await this.db.selectFrom('runs').selectAll().where('id', '=', runId).executeTakeFirst();
    return (
      row && {
        scope: { projectId: row.project_id },
        run: rowToRun(row),
        lock: { lockedBy: row.locked_by, lockedUntil: row.locked_until === null ? null : Number(row.locked_until) },
      }
    );
  }

  /** By ids alone, as findRun: for streams that found each run in their own scope first (FollowedRuns). */
  async findRuns(runIds: readonly string[]): Promise<Run[]> {
    if (runIds.length === 0) return [];
    const rows = await this.db.selectFrom('runs').selectAll().where('id', 'in', runIds).execute();
    return rows.map(rowToRun);
  }

  async listRuns(scope: Scope, threadId: string, page: PageRequest): Promise<Page<Run>> {
    if (!(await this.getThread(scope, threadId))) throw notFound('thread', threadId);
    const cursors = await resolveCursors(this.db, 'runs', scope, page, { column: 'thread_id', value: threadId });
    const query = this.db
      .selectFrom('runs')
      .selectAll()
      .where('thread_id', '=', threadId)
      .where('project_id', '=', scope.projectId);
    return finishPage(await applyPage(query, page, cursors).execute(), page, rowToRun);
  }

  async updateRunMetadata(scope: Scope, threadId: string, runId: string, metadata: Metadata): Promise<Run | undefined> {
    const row = await this.db
      .updateTable('runs')
      .set({ metadata: JSON.stringify(metadata) })
      .where('project_id', '=', scope.projectId)
      .where('thread_id', '=', threadId)
      .where('id', '=', runId)
      .returningAll()
      .executeTakeFirst();
    return row && rowToRun(row);
  }

  async getRunStep(scope: Scope, threadId: string, runId: string, stepId: string): Promise<StoredStep | undefined> {
    const row = await this.db
      .selectFrom('run_steps')
      .selectAll()
      .where('project_id', '=', scope.projectId)
      .where('thread_id', '=', threadId)
      .where('run_id', '=', runId)
      .where('id', '=', stepId)
      .executeTakeFirst();
    return row && rowToStep(row);
  }

  async listRunSteps(scope: Scope, threadId: string, runId: string, page: PageRequest): Promise<Page<StoredStep>> {
    if (!(await this.getRun(scope, threadId, runId))) throw notFound('run', runId);
    const cursors = await resolveCursors(this.db, 'run_steps', scope, page, { column: 'run_id', value: runId });
    const query = this.db
      .selectFrom('run_steps')
      .selectAll()
      .where('run_id', '=', runId)
      .where('project_id', '=', scope.projectId);
    return finishPage(await applyPage(query, page, cursors).execute(), page, rowToStep);
  }

  runSteps(scope: Scope, runId: string): Promise<StoredStep[]> {
    return readRunSteps(this.db, scope, runId);
  }

  /**
   * By id alone: its one caller (RunService.cancelIfIdle) has just read and committed this run in its scope, and run
   * ids are unique across projects (the primary key; 142 random bits, never guessed).
   */
  async runLock(runId: string): Promise<RunLock | undefined> {
    const row = await this.db
      .selectFrom('runs')
      .select(['locked_by', 'locked_until'])
      .where('id', '=', runId)
      .executeTakeFirst();
    return row && { lockedBy: row.locked_by, lockedUntil: row.locked_until === null ? null : Number(row.locked_until) };
  }

  // ── execution ───────────────────────────────────────────────────────────────

  async commitRun(scope: Scope, commit: RunCommit): Promise<Run | undefined> {
    const { metadata, waiting } = await this.writeCommit(scope, commit);
    if (metadata === undefined) return undefined;
    if (waiting) for (const listener of this.waitingRunsFreed) listener();
    return { ...commit.run, metadata: fromJson(metadata) };
  }

  onWaitingRunsFreed(listener: () => void): void {
    this.waitingRunsFreed.push(listener);
  }

  /**
   * Applies the commit: the run's stored metadata (JSON) when it did, and `waiting` when it ended the run and other
   * runs of its thread wait (queued runs).
   */
  private async writeCommit(
    scope: Scope,
    { run, expect, lock, steps = [], messages = [], discardBegun = false }: RunCommit,
  ): Promise<{ metadata?: string; waiting: boolean }> {
    const readsSteps = discardBegun || expect.steps !== undefined;
    const ends = TERMINAL_RUN_STATUSES.has(run.status);
    // As the column holds it: the same JSON text for the same pause (its row was written by the same toJson).
    const requiredAction =
      expect.requiredAction === undefined || expect.requiredAction === null
        ? expect.requiredAction
        : toJson(expect.requiredAction);
    if (this.capabilities.rowLocks && this.capabilities.commitStatement && !readsSteps) {
      const statement = this.capabilities.commitStatement({
        set: withLock(runStateToRow(run), lock),
        fence: {
          projectId: scope.projectId,
          runId: run.id,
          status: expect.status,
          lockedBy: expect.lockedBy,
          requiredAction,
        },
        waitingOf: ends ? run.thread_id : undefined,
        steps: steps.map((step) => stepToRow(scope, step)),
        messages: messages.map((message) => messageToRow(scope, message)),
      });
      const { rows } = await this.db.executeQuery<{ metadata: string | null; waiting: boolean }>(statement);
      const metadata = rows[0]?.metadata;
      if (metadata != null) return { metadata, waiting: rows[0]?.waiting === true };
      // An ending that wrote nothing may be one that messages wait behind: the transaction below releases them too.
      // Or its fence failed: the transaction's update checks it again, on the row as it is then.
      if (!ends) return { waiting: false };
    }
    const changed = Symbol("the run's steps changed");
    return this.db
      .transaction()
      .execute(async (trx) => {
        const set = rowArgs(withLock(runStateToRow(run), lock));
        const fence = expect.lockedBy === null ? 'free' : expect.lockedBy === undefined ? 'any' : 'held';
        const pause = requiredAction === null ? 'none' : requiredAction === undefined ? 'any' : 'this';
        const n = set.values.length;
        const [updated] = await this.q.rows(
          trx,
          `commitRun:${fence}:${pause}:${set.key}`,
          (a) => {
            let update = trx
              .updateTable('runs')
              .set(set.marked)
              .where('project_id', '=', a(n))
              .where('id', '=', a(n + 1))
              .where('status', '=', a(n + 2));
            if (fence === 'free') update = update.where('locked_by', 'is', null);
            else if (fence === 'held') update = update.where('locked_by', '=', a(n + 3));
            if (pause === 'none') update = update.where('required_action', 'is', null);
            else if (pause === 'this') update = update.where('required_action', '=', a(n + 4));
            return update.returning('metadata');
          },
          [...set.values, scope.projectId, run.id, expect.status, expect.lockedBy, requiredAction],
        );
        if (!updated) return { waiting: false };
        // Read after the fence: a commit of the run's execution lands before it, or is refused by it.
        const stored = readsSteps ? await readRunSteps(trx, scope, run.id) : [];
        if (expect.steps !== undefined && !isDeepStrictEqual(stored, expect.steps)) throw changed;
        if (discardBegun) await discardBegunSteps(trx, scope, run, stored, steps);
        for (const step of steps) await upsert(trx, this.q, 'run_steps', stepToRow(scope, step));
        for (const message of messages) await upsert(trx, this.q, 'messages', messageToRow(scope, message));
        if (ends) await releaseQueuedMessages(trx, run.thread_id, run.id, this.capabilities.rowLocks);
        return {
          metadata: updated.metadata,
          waiting: ends && (await waitingRunOf(trx, this.q, run.thread_id, run.id)),
        };
      })
      .catch((error: unknown) => {
        if (error === changed) return { waiting: false }; // rolled back
        throw error;
      });
  }

  /**
   * One statement both picks the runs and leases them: no window between "this run is free" and "it is mine" for
   * another worker to fall into, and no transaction held open across a round trip.
   *
   * With row locks (PostgreSQL) the picking subquery takes `for update skip locked`. A run that another worker's
   * claim is leasing at this moment is skipped rather than waited for; a run whose lease another claim has just
   * committed is re-read under READ COMMITTED, fails the `locked_until` filter and drops out, and the limit takes the
   * next one. Without the clause, a second claim would wait on the first one's rows and then lease them again (the
   * contract's concurrent-claims test fails that way). Considered and not taken: `select … for update` then
   * `update` in a transaction (two round trips with the locks held in between); a per-worker advisory lock around
   * the claim (serialises all claims instead of letting them skip each other). PostgreSQL plans `id in (subquery …
   * limit n)` as a semi-join that hashes the subquery's rows once (EXPLAIN: Hash Semi Join ← Limit ← LockRows ←
   * Sort); graphile-worker gets the same from a CTE. SQLite runs one write at a time, so it needs no lock clause.
   *
   * A waiting run (queued runs) is taken only when no other active run of its thread goes or waits before it
   * (FIRST_IN_LINE), and stops waiting in the same update. Two claims cannot both take a thread's next run: each
   * sees the other's pick either still waiting, and so before its own, or locked, and so skipped. Should a run going
   * on the thread still escape the claim's view (a creation committed as the claim began), the unique index
   * `runs_one_active_per_thread` refuses the update: the claim takes nothing this time, and the next one sees it.
   *
   * Across every project, as workers serve them all: each claimed run comes with its own project as scope, and
   * everything its execution reads or writes is scoped by that.
   */
  async claimRuns(workerId: string, now: number, leaseUntil: number, limit: number): Promise<ClaimedRun[]> {
    let rows: Array<Selectable<RunsTable>>;
    try {
      rows = await this.db
        .updateTable('runs')
        .set({ locked_by: workerId, locked_until: leaseUntil, waiting: 0 })
        .where('id', 'in', (eb) =>
          eb
            .selectFrom('runs')
            .select('id')
            .where(NEEDS_WORKER)
            .where((w) => w.or([w('locked_until', 'is', null), w('locked_until', '<', now)]))
            .where((w) => w.or([w('expires_at', 'is', null), w('expires_at', '>', Math.floor(now / 1000))]))
            .where((w) => w.or([w('waiting', '=', 0), FIRST_IN_LINE]))
            .orderBy('created_at')
            .orderBy('seq')
            .limit(limit)
            .$if(this.capabilities.rowLocks, (qb) => qb.forUpdate().skipLocked()),
        )
        .returningAll()
        .execute();
    } catch (error) {
      if (this.capabilities.rowLocks && this.capabilities.isUniqueViolation(error, ONE_ACTIVE_RUN_PER_THREAD))
        return [];
      throw error;
    }
    // RETURNING follows no order in either database; the interface promises oldest first.
    rows.sort((a, b) => a.created_at - b.created_at || Number(a.seq) - Number(b.seq));
    return rows.map((row) => ({
      scope: { projectId: row.project_id },
      run: rowToRun(row),
      lock: { lockedBy: row.locked_by, lockedUntil: leaseUntil },
    }));
  }

  /** By id and lease: only the worker that claimed the run (with its scope) holds the lease it renews. */
  async renewLease(runId: string, workerId: string, leaseUntil: number): Promise<RunStatus | undefined> {
    const [row] = await this.q.rows(
      this.db,
      'renewLease',
      (a) =>
        this.db
          .updateTable('runs')
          .set({ locked_until: num(a(0)) })
          .where('id', '=', a(1))
          .where('locked_by', '=', a(2))
          .returning('status'),
      [leaseUntil, runId, workerId],
    );
    return row?.status as RunStatus | undefined;
  }

  async tokensUsedSince(scope: Scope, sinceSeconds: number): Promise<{ tokens: number; oldest: number | null }> {
    const tokens = sql<number>`cast(${this.capabilities.jsonField('usage', 'total_tokens')} as bigint)`;
    const row = await this.db
      .selectFrom('runs')
      .select([
        sql<string | number | null>`sum(${tokens})`.as('tokens'),
        sql<string | number | null>`min(case when ${tokens} > 0 then created_at end)`.as('oldest'),
      ])
      .$if(scope.keyId !== undefined, (q) => q.where('api_key_id', '=', scope.keyId!))
      .$if(scope.keyId === undefined, (q) =>
        q.where('api_key_id', 'is', null).where('project_id', '=', scope.projectId),
      )
      .where('created_at', '>=', sinceSeconds)
      .executeTakeFirst();
    return { tokens: Number(row?.tokens ?? 0), oldest: row?.oldest == null ? null : Number(row.oldest) };
  }

  /** Across every project, as claimRuns: each run comes with its own project as scope, and expires in it. */
  async runsDueForExpiry(nowSeconds: number, limit: number): Promise<ClaimedRun[]> {
    const rows = await this.q.rows(
      this.db,
      'runsDueForExpiry',
      (a) =>
        this.db
          .selectFrom('runs')
          .selectAll()
          .where(IS_ACTIVE)
          .where('expires_at', '<=', num(a(0)))
          .orderBy('expires_at')
          .limit(num(a(1))),
      [nowSeconds, limit],
    );
    return rows.map((row) => ({
      scope: { projectId: row.project_id },
      run: rowToRun(row),
      lock: { lockedBy: row.locked_by, lockedUntil: row.locked_until === null ? null : Number(row.locked_until) },
    }));
  }
}

/**
 * Inside a write transaction: the thread must exist in the scope, else the official not-found error.
 *
 * With `lock` (databases with row locks), the thread row stays locked until the transaction ends, so the writes that
 * must see each other's effects — creating a run, adding a message — queue up per thread and each one's active-run
 * check reads what the previous one committed. `for no key update` rather than `for update`: inserting a row that
 * references the thread (a message, a run) takes `for key share` on it for the foreign key check, which
 * `for update` would block; a worker committing a run's answer must not wait for a run creation on the thread.
 */
async function requireThread(
  db: Executor,
  q: CompiledQueries,
  scope: Scope,
  threadId: string,
  lock: boolean,
): Promise<void> {
  const [thread] = await q.rows(
    db,
    `requireThread:${lock}`,
    (a) =>
      db
        .selectFrom('threads')
        .select('id')
        .where('project_id', '=', a(0))
        .where('id', '=', a(1))
        .$if(lock, (qb) => qb.forNoKeyUpdate()),
    [scope.projectId, threadId],
  );
  if (!thread) throw notFound('thread', threadId);
}

/**
 * Whether a run of the thread other than `runId` waits (queued runs). By thread alone: asked only once the ending
 * run's update, fenced by its project, has succeeded, and the answer only says whether to wake the workers.
 */
async function waitingRunOf(db: Executor, q: CompiledQueries, threadId: string, runId: string): Promise<boolean> {
  const rows = await q.rows(
    db,
    'waitingRunOf',
    (a) =>
      db
        .selectFrom('runs')
        .select('id')
        .where('thread_id', '=', a(0))
        .where('id', '!=', a(1))
        .where('waiting', '=', 1)
        .where(IS_ACTIVE)
        .limit(1),
    [threadId, runId],
  );
  return rows.length > 0;
}

/**
 * The thread's active run — going, or waiting behind another (queued runs) — if it has one.
 *
 * By thread alone: every caller has found the thread in its scope first (requireThread, a creation statement that
 * checks it, or a thread inserted in this transaction), and thread ids are unique across projects.
 */
async function activeRunOf(db: Executor, q: CompiledQueries, threadId: string): Promise<string | undefined> {
  const [row] = await q.rows(
    db,
    'activeRunOf',
    (a) => db.selectFrom('runs').select('id').where('thread_id', '=', a(0)).where(IS_ACTIVE).limit(1),
    [threadId],
  );
  return row?.id;
}

/**
 * Inserts a run after its thread's new messages. The active-run check gives upstream's error message; the unique
 * partial index `runs_one_active_per_thread` is what makes the lock hold when two creations race. (In SQLite the
 * whole transaction is serialised anyway. With row locks the caller has locked the thread row, and since a failed
 * statement aborts the transaction there, the re-read below is left to SqlStore.reportActiveRunConflict.)
 *
 * With `queue`, a thread with an active run — going or itself waiting — gets the run waiting behind it, unleased;
 * the answer says whether it waits.
 */
async function insertRun(
  db: Executor,
  q: CompiledQueries,
  scope: Scope,
  run: Run,
  messages: readonly Message[],
  capabilities: SqlCapabilities,
  lock?: RunLock,
  queue = false,
): Promise<{ waiting: boolean }> {
  const active = await activeRunOf(db, q, run.thread_id);
  if (active && !queue) throw threadHasActiveRun(run.thread_id, active);
  const waiting = active !== undefined;
  await insertMessages(db, q, scope, messages);
  // A run made to wait brings messages that the runs before it must not read, and that follow their answers.
  if (waiting)
    await queueBehindLastRun(
      db,
      run.thread_id,
      messages.map((m) => m.id),
    );
  const values = rowArgs(waiting ? { ...runToRow(scope, run), waiting: 1 } : withLock(runToRow(scope, run), lock));
  try {
    await q.execute(db, `insertRun:${values.key}`, () => db.insertInto('runs').values(values.marked), values.values);
  } catch (error) {
    if (capabilities.rowLocks) throw error;
    const winner = await activeRunOf(db, q, run.thread_id);
    if (winner) throw threadHasActiveRun(run.thread_id, winner);
    throw error;
  }
  await touchThread(db, q, scope, run.thread_id, run.created_at);
  return { waiting };
}

/**
 * Moves the thread's `last_active_at` (the thread list's `order_by=last_active_at`) to `at`, in the transaction of
 * the message or run that is the activity. Never backwards, and no write when it already says that second: the
 * messages of a busy thread mostly share their second with the one before.
 */
async function touchThread(
  db: Executor,
  q: CompiledQueries,
  scope: Scope,
  threadId: string,
  at: number,
): Promise<void> {
  await q.execute(
    db,
    'touchThread',
    (a) =>
      db
        .updateTable('threads')
        .set({ last_active_at: num(a(0)) })
        .where('project_id', '=', a(1))
        .where('id', '=', a(2))
        .where('last_active_at', '<', num(a(0))),
    [at, scope.projectId, threadId],
  );
}

async function insertThread(db: Executor, q: CompiledQueries, scope: Scope, thread: Thread): Promise<void> {
  const values = rowArgs(threadToRow(scope, thread));
  await q.execute(
    db,
    `insertThread:${values.key}`,
    () => db.insertInto('threads').values(values.marked),
    values.values,
  );
}

/** Multi-row inserts in chunks: SQLite allows 32,766 bound values per statement (15 columns × 500 rows stays under). */
const INSERT_CHUNK = 500;
/** Inserts of up to this many messages are compiled once per count (compiled-queries.ts); larger ones each time. */
const COMPILED_MESSAGE_ROWS = 8;

async function insertMessages(
  db: Executor,
  q: CompiledQueries,
  scope: Scope,
  messages: readonly Message[],
): Promise<void> {
  if (messages.length === 0) return;
  if (messages.length <= COMPILED_MESSAGE_ROWS) {
    const rows = messages.map((m) => messageToRow(scope, m));
    const width = Object.keys(rows[0]!).length;
    const args = rows.map((row, i) => rowArgs(row, i * width));
    await q.execute(
      db,
      `insertMessages:${rows.length}:${args[0]!.key}`,
      () => db.insertInto('messages').values(args.map((a) => a.marked)),
      args.flatMap((a) => a.values),
    );
    return;
  }
  for (let i = 0; i < messages.length; i += INSERT_CHUNK)
    await db
      .insertInto('messages')
      .values(messages.slice(i, i + INSERT_CHUNK).map((m) => messageToRow(scope, m)))
      .execute();
}

/**
 * Inserts the row, or replaces every field but its id and project of the row with the same id. By id alone: the
 * rows are the run's own steps and messages (new ids, or ones read in the run's scope), written only once the run's
 * update, fenced by project, has succeeded; and a conflict never moves a row to another project.
 */
async function upsert(
  db: Executor,
  q: CompiledQueries,
  table: 'run_steps' | 'messages',
  row: Record<string, unknown> & { id: string; project_id: string },
): Promise<void> {
  const values = rowArgs(row);
  const changed = Object.keys(row).filter((k) => k !== 'id' && k !== 'project_id');
  await q.execute(
    db,
    `upsert:${table}:${values.key}`,
    () =>
      // biome-ignore lint/suspicious/noExplicitAny: the row's columns are those of `table`, checked by its *ToRow function
      (db as Kysely<any>)
        .insertInto(table)
        .values(values.marked)
        .onConflict((oc) =>
          oc.column('id').doUpdateSet((eb) => Object.fromEntries(changed.map((c) => [c, eb.ref(`excluded.${c}`)]))),
        ),
    values.values,
  );
}

/** A run's steps, oldest first (Store.runSteps). */
async function readRunSteps(db: Kysely<Database>, scope: Scope, runId: string): Promise<StoredStep[]> {
  const rows = await db
    .selectFrom('run_steps')
    .selectAll()
    .where('run_id', '=', runId)
    .where('project_id', '=', scope.projectId)
    .orderBy('created_at')
    .orderBy('seq')
    .execute();
  return rows.map(rowToStep);
}

async function readMessage(
  db: Kysely<Database>,
  scope: Scope,
  threadId: string,
  id: string,
): Promise<Message | undefined> {
  const row = await db
    .selectFrom('messages')
    .select('doc')
    .where('project_id', '=', scope.projectId)
    .where('thread_id', '=', threadId)
    .where('id', '=', id)
    .executeTakeFirst();
  return row && rowToMessage(row);
}

/** The message as stored, if there is one; a 400 while it is in progress (Store.updateMessage). */
async function changeableMessage(
  trx: Kysely<Database>,
  scope: Scope,
  threadId: string,
  id: string,
): Promise<Message | undefined> {
  const stored = await readMessage(trx, scope, threadId, id);
  if (stored?.status === 'in_progress') throw messageInProgress(id, stored.run_id);
  return stored;
}

/**
 * Deletes what the run's dead turn stored before its end (uncommittedTurn of the run's `stored` steps), but the steps
 * of `written`, and their messages (RunCommit.discardBegun), leaving their places in the lists.
 */
async function discardBegunSteps(
  trx: Kysely<Database>,
  scope: Scope,
  { id: runId, thread_id: threadId }: Run,
  stored: readonly StoredStep[],
  written: readonly StoredStep[],
): Promise<void> {
  const keep = new Set(written.map((step) => step.id));
  // Found among all the run's steps: the steps this commit writes may be the last calls the turns stop at.
  const begun = uncommittedTurn(stored).filter((step) => !keep.has(step.id));
  if (begun.length === 0) return;
  await deleteAndBuryChildren(
    trx,
    'run_steps',
    scope,
    runId,
    begun.map((step) => step.id),
  );
  const messageIds = begun.flatMap((step) =>
    step.step_details.type === 'message_creation' ? [step.step_details.message_creation.message_id] : [],
  );
  if (messageIds.length > 0) await deleteAndBuryChildren(trx, 'messages', scope, threadId, messageIds);
}

/**
 * Deletes objects of a list within its parent (a thread's messages, a run's steps) by id, and records where they
 * stood (list-tombstones.ts); how many there were.
 */
async function deleteAndBuryChildren(
  trx: Kysely<Database>,
  list: 'messages' | 'run_steps',
  scope: Scope,
  parentId: string,
  ids: readonly string[],
): Promise<number> {
  const parent = list === 'messages' ? 'thread_id' : 'run_id';
  // biome-ignore lint/suspicious/noExplicitAny: both tables have the columns used, each with its own parent column
  const rows = await (trx as Kysely<any>)
    .deleteFrom(list)
    .where('project_id', '=', scope.projectId)
    .where(parent, '=', parentId)
    .where('id', 'in', ids)
    .returning(['project_id', `${parent} as parent_id`, 'id', 'created_at', 'seq'])
    .execute();
  await bury(trx, list, rows);
  return rows.length;
}

/** A run's columns with its new lease, when there is one (RunLock → `locked_by`, `locked_until`). */
function withLock<T extends object>(
  row: T,
  lock: RunLock | undefined,
): T & { locked_by?: string | null; locked_until?: number | null } {
  return lock ? { ...row, locked_by: lock.lockedBy, locked_until: lock.lockedUntil } : row;
}
