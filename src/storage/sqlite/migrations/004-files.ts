import { type Kysely, sql } from 'kysely';

// Files: one row each, written in two steps (see storage/store.ts FileRecords): a row `uploading`, leased to the
// process receiving the bytes, then `ready` once the bytes are durable. Only `ready` rows are files to the API; a
// lapsed upload lease marks a crashed upload for the sweeper. `file_chunks` holds the bytes when files are stored
// in the database (storage/sql/sql-blob-store.ts).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table files (
      seq integer primary key,
      id text not null unique,
      project_id text not null,
      created_at integer not null,
      bytes integer not null,
      filename text not null,
      purpose text not null,
      mime_type text,
      expires_at integer,
      state text not null,
      upload_owner text,
      upload_until integer
    )`.execute(db);
  await sql`create index files_page on files (project_id, created_at, seq) where state = 'ready'`.execute(db);
  await sql`create index files_uploading on files (upload_until) where state = 'uploading'`.execute(db);
  await sql`create index files_expiring on files (expires_at) where expires_at is not null`.execute(db);
  await sql`
    create table file_chunks (
      file_id text not null,
      idx integer not null,
      data blob not null,
      primary key (file_id, idx)
    )`.execute(db);
}
