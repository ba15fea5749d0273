import { type Kysely, sql } from 'kysely';

/**
 * Migration 013, the same on both databases: a vector store's file whose file the Files API no longer has is taken
 * out of its store, its chunks with it (ON DELETE CASCADE, and on SQLite each project's FTS5 delete trigger).
 * Before, an expired file stayed in its stores and stayed searchable, and so did a file deleted while a request
 * added it to a store, or by a process that died between its two steps; deletion and expiry now do both in one
 * transaction (sql-file-records.ts). Stores with vectors get a new vectors_version, as after any change of their
 * files, so no process keeps the removed vectors cached.
 */
export async function removeStoreFilesOfDeletedFiles(db: Kysely<unknown>): Promise<void> {
  const gone = sql`not exists (
    select 1 from files where files.id = vector_store_files.file_id and files.project_id = vector_store_files.project_id
  )`;
  await sql`
    update vector_stores set vectors_version = vectors_version + 1
    where embedding_model is not null and id in (select vector_store_id from vector_store_files where ${gone})`.execute(
    db,
  );
  await sql`delete from vector_store_files where ${gone}`.execute(db);
}
