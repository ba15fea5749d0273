import { type Kysely, sql } from 'kysely';

// INTEGER PRIMARY KEY makes `seq` the rowid: the insertion counter used to break created_at ties in pagination.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table assistants (
      seq integer primary key,
      id text not null unique,
      project_id text not null,
      created_at integer not null,
      name text,
      description text,
      model text not null,
      instructions text,
      tools text not null,
      tool_resources text,
      metadata text not null,
      temperature real,
      top_p real,
      response_format text,
      reasoning_effort text
    )`.execute(db);
  await sql`create index assistants_page on assistants (project_id, created_at, seq)`.execute(db);

  await sql`
    create table threads (
      seq integer primary key,
      id text not null unique,
      project_id text not null,
      created_at integer not null,
      tool_resources text,
      metadata text not null
    )`.execute(db);
  await sql`create index threads_page on threads (project_id, created_at, seq)`.execute(db);

  await sql`
    create table messages (
      seq integer primary key,
      id text not null unique,
      project_id text not null,
      thread_id text not null references threads (id) on delete cascade,
      created_at integer not null,
      status text not null,
      incomplete_details text,
      completed_at integer,
      incomplete_at integer,
      role text not null,
      content text not null,
      assistant_id text,
      run_id text,
      attachments text not null,
      metadata text not null
    )`.execute(db);
  await sql`create index messages_page on messages (thread_id, created_at, seq)`.execute(db);
  await sql`create index messages_by_run on messages (thread_id, run_id, created_at, seq)`.execute(db);
}
