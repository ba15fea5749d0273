import { type Kysely, sql } from 'kysely';
import { unixSeconds } from '../../domain/clock.ts';
import { ACTIVE_RUN_STATUSES } from '../../domain/runs.ts';
import { messageToRow, rowToMessage } from './rows.ts';
import type { Database } from './schema.ts';

const ACTIVE = [...ACTIVE_RUN_STATUSES];

/**
 * Queued runs (`x-assistd-queue`) let a message, or a run with its messages, be added while the thread has runs
 * going or waiting. Such messages wait behind the last of those runs: no run before them reads them (they came
 * after those runs were made), and when that run ends they join the thread after its answer — as if added then,
 * with that `created_at` and a new `seq` — so the thread reads in the order things were asked (a question, its
 * answer, the next question), and the runs made after them read them there. Without this, a message added while
 * the model answered was listed, and given to the next run, before the answer it had not seen.
 */

/** Migration 015, the same on both databases. */
export async function addQueuedMessages(db: Kysely<unknown>): Promise<void> {
  await sql`alter table messages add column queued_behind text`.execute(db);
  await sql`create index messages_queued on messages (thread_id, queued_behind) where queued_behind is not null`.execute(
    db,
  );
}

/**
 * Migration 024, the same on both databases: `runs.queued_messages`, 1 once messages were made to wait behind the
 * run (never reset: only the run's ending reads it). It is on the run's own row so that PostgreSQL's one-statement
 * ending sees it even when it lands while that statement runs (one-statement-commit.ts).
 */
export async function addQueuedMessagesMark(db: Kysely<unknown>): Promise<void> {
  await sql`alter table runs add column queued_messages integer not null default 0`.execute(db);
  await sql`update runs set queued_messages = 1
    where id in (select queued_behind from messages where queued_behind is not null)`.execute(db);
}

/** Makes `messageIds` wait behind the last active run of the thread (the most recent one), if it has any. */
export async function queueBehindLastRun(
  db: Kysely<Database>,
  threadId: string,
  messageIds: readonly string[],
): Promise<void> {
  if (messageIds.length === 0) return;
  const last = await markWaitedBehind(db, threadId);
  if (last) await db.updateTable('messages').set({ queued_behind: last }).where('id', 'in', messageIds).execute();
}

/**
 * The thread's last active run (made before the run `before`, if given), marked as one that messages wait behind
 * (`queued_messages`), or undefined when it has none. The mark is an update of the run's row, which also locks it:
 * an ending of that run that began before waits for this transaction and then sees the mark (PostgreSQL re-checks
 * an updated row against its statement's conditions), and one that committed first makes the update match nothing,
 * and the run before it is looked for.
 */
async function markWaitedBehind(db: Kysely<Database>, threadId: string, before?: string): Promise<string | undefined> {
  for (;;) {
    const last = await db
      .selectFrom('runs')
      .select('id')
      .where('thread_id', '=', threadId)
      .where('status', 'in', ACTIVE)
      .$if(before !== undefined, (qb) =>
        qb.where(sql<boolean>`(created_at, seq) < (select created_at, seq from runs where id = ${before})`),
      )
      .orderBy('created_at', 'desc')
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
    if (!last) return undefined;
    const marked = await db
      .updateTable('runs')
      .set({ queued_messages: 1 })
      .where('id', '=', last.id)
      .where('status', 'in', ACTIVE)
      .returning('id')
      .executeTakeFirst();
    if (marked) return marked.id;
  }
}

/**
 * The messages waiting behind `runId`, which has ended, join the thread now, in the order they were added: each
 * `created_at` becomes now (if later) and each gets a new `seq`, after the run's answer. `postgres`: `seq` is
 * PostgreSQL's identity column (set to DEFAULT for its next value), else SQLite's rowid (one past the largest).
 *
 * Unless a run made before `runId` still goes (a waiting run cancelled or expired while the one before it runs):
 * they wait behind that one instead, after the messages already waiting there (their `seq`s are larger), as they
 * would have had `runId` never been made; that run is marked as queued behind as by queueBehindLastRun.
 */
export async function releaseQueuedMessages(
  db: Kysely<Database>,
  threadId: string,
  runId: string,
  postgres: boolean,
): Promise<void> {
  const before = await markWaitedBehind(db, threadId, runId);
  if (before) {
    await db
      .updateTable('messages')
      .set({ queued_behind: before })
      .where('thread_id', '=', threadId)
      .where('queued_behind', '=', runId)
      .execute();
    return;
  }
  const rows = await db
    .selectFrom('messages')
    .select(['id', 'project_id', 'doc'])
    .where('thread_id', '=', threadId)
    .where('queued_behind', '=', runId)
    .orderBy('seq')
    .execute();
  const now = unixSeconds();
  for (const row of rows) {
    const message = rowToMessage(row);
    const joined = { ...message, created_at: Math.max(message.created_at, now) };
    const { doc, created_at } = messageToRow({ projectId: row.project_id }, joined);
    await db
      .updateTable('messages')
      .set({
        doc,
        created_at,
        queued_behind: null,
        seq: postgres ? sql`default` : sql`(select max(seq) + 1 from messages)`,
      })
      .where('id', '=', row.id)
      .execute();
  }
}
