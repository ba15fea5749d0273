import { type Kysely, sql } from 'kysely';
import { indexProjectChunks } from '../../sql/fts5-tables.ts';

// The keyword index becomes one FTS5 table per project instead of one for every project (sql/fts5-tables.ts: in a
// shared table bm25's statistics mixed the projects, and a project's scores showed which words the others' files
// held). The old table is contentless, so its entries cannot be read back: they are made again from the chunks'
// text, as ingestion makes them.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`drop trigger chunks_fts_delete`.execute(db);
  await sql`drop table chunks_fts`.execute(db);
  const { rows: projects } = await sql<{ project_id: string }>`select distinct project_id from chunks`.execute(db);
  for (const { project_id: projectId } of projects) await indexProjectChunks(db, projectId);
}
