import { type Kysely, sql } from 'kysely';

// A thread's last activity, for the thread list's `order_by=last_active_at` (GET /v1/threads, an assistd
// extension): its creation, or the latest message a client added or run created on it, in Unix seconds. SqlStore
// moves it in the transaction of that write. Existing threads get it from their rows: the messages without a run
// are the clients' (a run's answers carry the run, whose creation is the activity). The index serves the list
// ordered by activity, as threads_page serves it by creation.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table threads add column last_active_at integer not null default 0`.execute(db);
  await sql`
    update threads set last_active_at = max(
      created_at,
      coalesce((select max(created_at) from messages m where m.thread_id = threads.id and m.run_id is null), 0),
      coalesce((select max(created_at) from runs r where r.thread_id = threads.id), 0)
    )`.execute(db);
  await sql`create index threads_by_activity on threads (project_id, last_active_at, seq)`.execute(db);
}
