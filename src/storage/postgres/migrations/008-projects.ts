import { type Kysely, sql } from 'kysely';

// Projects and their API keys: the same tables as sqlite/migrations/008-projects.ts.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table projects (
      seq bigint generated always as identity primary key,
      id text not null unique,
      name text not null,
      created_at bigint not null,
      archived_at bigint
    )`.execute(db);
  await sql`insert into projects (id, name, created_at) values ('proj_default', 'Default project', extract(epoch from now())::bigint)`.execute(
    db,
  );
  await sql`
    create table api_keys (
      seq bigint generated always as identity primary key,
      id text not null unique,
      project_id text not null references projects (id),
      name text not null,
      redacted_value text not null,
      secret_hash text not null,
      created_at bigint not null,
      last_used_at bigint
    )`.execute(db);
  await sql`create index api_keys_project on api_keys (project_id, seq)`.execute(db);
}
