import { type Kysely, sql } from 'kysely';

// Runs and their steps. Execution state (`locked_by`, `locked_until`) lives on the run row: a worker holds a run
// under a lease it renews, and every write it makes is fenced on it (see SqlStore.commitRun).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table runs (
      seq integer primary key,
      id text not null unique,
      project_id text not null,
      thread_id text not null references threads (id) on delete cascade,
      assistant_id text not null,
      created_at integer not null,
      status text not null,
      required_action text,
      last_error text,
      expires_at integer,
      started_at integer,
      cancelled_at integer,
      failed_at integer,
      completed_at integer,
      incomplete_details text,
      model text not null,
      instructions text not null,
      tools text not null,
      metadata text not null,
      usage text,
      temperature real,
      top_p real,
      max_prompt_tokens integer,
      max_completion_tokens integer,
      truncation_strategy text not null,
      tool_choice text not null,
      parallel_tool_calls integer not null,
      response_format text not null,
      reasoning_effort text,
      locked_by text,
      locked_until integer
    )`.execute(db);
  await sql`create index runs_page on runs (thread_id, created_at, seq)`.execute(db);
  // The thread lock, enforced by the database: at most one active run per thread, whatever races above it.
  await sql`
    create unique index runs_one_active_per_thread on runs (thread_id)
    where status in ('queued', 'in_progress', 'requires_action', 'cancelling')`.execute(db);
  await sql`
    create index runs_claimable on runs (locked_until)
    where status in ('queued', 'in_progress', 'cancelling')`.execute(db);
  await sql`
    create index runs_expiring on runs (expires_at)
    where status in ('queued', 'in_progress', 'requires_action', 'cancelling')`.execute(db);

  await sql`
    create table run_steps (
      seq integer primary key,
      id text not null unique,
      project_id text not null,
      run_id text not null references runs (id) on delete cascade,
      thread_id text not null,
      assistant_id text not null,
      created_at integer not null,
      type text not null,
      status text not null,
      step_details text not null,
      last_error text,
      expired_at integer,
      cancelled_at integer,
      failed_at integer,
      completed_at integer,
      metadata text not null,
      usage text,
      turn_usage text
    )`.execute(db);
  await sql`create index run_steps_page on run_steps (run_id, created_at, seq)`.execute(db);
}
