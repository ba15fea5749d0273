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

  // Messages are read in bulk by every list and every run's context, so each is one JSON document (the wire object)
  // beside the columns that queries filter and sort on: reading a page is one narrow column and one parse per row
  // (bench/api.bench.ts measured select * of 21 wide rows at ~5× the cost of a single column).
  await sql`
    create table messages (
      seq integer primary key,
      id text not null unique,
      project_id text not null,
      thread_id text not null references threads (id) on delete cascade,
      created_at integer not null,
      run_id text,
      doc text not null
    )`.execute(db);
  await sql`create index messages_page on messages (thread_id, created_at, seq)`.execute(db);
  await sql`create index messages_by_run on messages (thread_id, run_id, created_at, seq)`.execute(db);
}
