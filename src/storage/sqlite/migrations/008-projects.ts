import { type Kysely, sql } from 'kysely';

// Projects and their API keys (storage/sql/sql-project-records.ts). Every object already carries the project it
// belongs to; until now that was always `proj_default`, which becomes a project like the others ("Default project"),
// the one ASSISTD_API_KEY and a server without keys work in. A key's secret is never stored: `secret_hash` is its
// scrypt hash (tenancy/api-keys.ts), `redacted_value` what lists show.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table projects (
      seq integer primary key,
      id text not null unique,
      name text not null,
      created_at integer not null,
      archived_at integer
    )`.execute(db);
  await sql`insert into projects (id, name, created_at) values ('proj_default', 'Default project', cast(strftime('%s', 'now') as integer))`.execute(
    db,
  );
  await sql`
    create table api_keys (
      seq integer primary key,
      id text not null unique,
      project_id text not null references projects (id),
      name text not null,
      redacted_value text not null,
      secret_hash text not null,
      created_at integer not null,
      last_used_at integer
    )`.execute(db);
  await sql`create index api_keys_project on api_keys (project_id, seq)`.execute(db);
}
