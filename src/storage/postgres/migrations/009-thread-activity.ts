import { type Kysely, sql } from 'kysely';

// A thread's last activity, for the thread list's `order_by=last_active_at`: see the SQLite migration of the same
// name. greatest() skips the nulls of threads without messages or runs.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table threads add column last_active_at bigint not null default 0`.execute(db);
  await sql`
    update threads set last_active_at = greatest(
      created_at,
      (select max(created_at) from messages m where m.thread_id = threads.id and m.run_id is null),
      (select max(created_at) from runs r where r.thread_id = threads.id)
    )`.execute(db);
  await sql`create index threads_by_activity on threads (project_id, last_active_at, seq)`.execute(db);
}
