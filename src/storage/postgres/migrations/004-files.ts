import { type Kysely, sql } from 'kysely';

// Files: the same tables as sqlite/migrations/004-files.ts. `file_chunks` holds the bytes when files are stored in
// the database (the default on PostgreSQL, so every process reads every file with no shared disk).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table files (
      seq bigint generated always as identity primary key,
      id text not null unique,
      project_id text not null,
      created_at bigint not null,
      bytes bigint not null,
      filename text not null,
      purpose text not null,
      mime_type text,
      expires_at bigint,
      state text not null,
      upload_owner text,
      upload_until bigint
    )`.execute(db);
  await sql`create index files_page on files (project_id, created_at, seq) where state = 'ready'`.execute(db);
  await sql`create index files_uploading on files (upload_until) where state = 'uploading'`.execute(db);
  await sql`create index files_expiring on files (expires_at) where expires_at is not null`.execute(db);
  await sql`
    create table file_chunks (
      file_id text not null,
      idx integer not null,
      data bytea not null,
      primary key (file_id, idx)
    )`.execute(db);
}
