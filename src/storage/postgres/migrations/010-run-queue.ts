import { type Kysely, sql } from 'kysely';

// Queued runs: the same column and index as sqlite/migrations/010-run-queue.ts. `waiting` is an integer, as in
// SQLite, so that the shared queries compare it the same way in both databases.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table runs add column waiting integer not null default 0`.execute(db);
  await sql`drop index runs_one_active_per_thread`.execute(db);
  await sql`
    create unique index runs_one_active_per_thread on runs (thread_id)
    where status in ('queued', 'in_progress', 'requires_action', 'cancelling') and waiting = 0`.execute(db);
}
