import { type Kysely, sql } from 'kysely';

// Runs and their steps: the same tables as sqlite/migrations/002-runs.ts. `locked_until` holds milliseconds since
// the epoch, hence bigint like every time column here.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table runs (
      seq bigint generated always as identity primary key,
      id text not null unique,
      project_id text not null,
      thread_id text not null references threads (id) on delete cascade,
      assistant_id text not null,
      created_at bigint not null,
      status text not null,
      required_action text,
      last_error text,
      expires_at bigint,
      started_at bigint,
      cancelled_at bigint,
      failed_at bigint,
      completed_at bigint,
      incomplete_details text,
      model text not null,
      instructions text not null,
      tools text not null,
      metadata text not null,
      usage text,
      temperature double precision,
      top_p double precision,
      max_prompt_tokens integer,
      max_completion_tokens integer,
      truncation_strategy text not null,
      tool_choice text not null,
      parallel_tool_calls integer not null,
      response_format text not null,
      reasoning_effort text,
      locked_by text,
      locked_until bigint
    )`.execute(db);
  await sql`create index runs_page on runs (thread_id, created_at, seq)`.execute(db);
  // The thread lock's backstop: at most one active run per thread, whatever races above it. SqlStore finds this
  // index by name in the driver's error (pg reports the constraint), so the name is part of the contract.
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
      seq bigint generated always as identity primary key,
      id text not null unique,
      project_id text not null,
      run_id text not null references runs (id) on delete cascade,
      thread_id text not null,
      assistant_id text not null,
      created_at bigint not null,
      type text not null,
      status text not null,
      step_details text not null,
      last_error text,
      expired_at bigint,
      cancelled_at bigint,
      failed_at bigint,
      completed_at bigint,
      metadata text not null,
      usage text,
      turn_usage text
    )`.execute(db);
  await sql`create index run_steps_page on run_steps (run_id, created_at, seq)`.execute(db);
}
