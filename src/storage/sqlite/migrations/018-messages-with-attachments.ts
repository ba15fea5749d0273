import { type Kysely, sql } from 'kysely';

// The messages of a thread that have attachments, which code_interpreter reads on every run that calls it: a thread
// of 100,000 messages was scanned whole for the few that have some. The condition is the one the query states
// (sql-store.ts, WITH_ATTACHMENTS), word for word, so that the planner sees the index applies.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create index messages_with_attachments on messages (thread_id, created_at, seq)
    where doc not like '%"attachments":[]%'`.execute(db);
}
