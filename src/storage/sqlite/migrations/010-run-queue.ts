import { type Kysely, sql } from 'kysely';

// Queued runs (an assistd extension, SqlStore.createRun's `queue`): a run created while its thread has an active run
// is stored `waiting` behind it. Its status is the official `queued`; `waiting = 1` keeps it out of the thread lock's
// unique index until a claim finds it first in line on a thread with no other run going (SqlStore.claimRuns), which
// sets `waiting = 0` in the same statement that leases it. The index still allows one run per thread that is active
// and not waiting: never two runs going on one thread.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table runs add column waiting integer not null default 0`.execute(db);
  await sql`drop index runs_one_active_per_thread`.execute(db);
  await sql`
    create unique index runs_one_active_per_thread on runs (thread_id)
    where status in ('queued', 'in_progress', 'requires_action', 'cancelling') and waiting = 0`.execute(db);
}
