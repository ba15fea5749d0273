import { type Kysely, sql } from 'kysely';

// The same tables as sqlite/migrations/001-initial.ts, column for column. `seq` is an identity column: the insertion
// counter that breaks created_at ties in pagination. Times are bigint (Unix seconds past 2038); JSON is text, as in
// SQLite (see sql/json-column.ts). `double precision`, not `real`: a float4 would turn 0.9 into 0.8999999761581421.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table assistants (
      seq bigint generated always as identity primary key,
      id text not null unique,
      project_id text not null,
      created_at bigint not null,
      name text,
      description text,
      model text not null,
      instructions text,
      tools text not null,
      tool_resources text,
      metadata text not null,
      temperature double precision,
      top_p double precision,
      response_format text,
      reasoning_effort text
    )`.execute(db);
  await sql`create index assistants_page on assistants (project_id, created_at, seq)`.execute(db);

  await sql`
    create table threads (
      seq bigint generated always as identity primary key,
      id text not null unique,
      project_id text not null,
      created_at bigint not null,
      tool_resources text,
      metadata text not null
    )`.execute(db);
  await sql`create index threads_page on threads (project_id, created_at, seq)`.execute(db);

  // One JSON document per message (the wire object) beside the columns queries filter and sort on; see the SQLite
  // migration for the measurement behind it.
  await sql`
    create table messages (
      seq bigint generated always as identity primary key,
      id text not null unique,
      project_id text not null,
      thread_id text not null references threads (id) on delete cascade,
      created_at bigint not null,
      run_id text,
      doc text not null
    )`.execute(db);
  await sql`create index messages_page on messages (thread_id, created_at, seq)`.execute(db);
  await sql`create index messages_by_run on messages (thread_id, run_id, created_at, seq)`.execute(db);
}
