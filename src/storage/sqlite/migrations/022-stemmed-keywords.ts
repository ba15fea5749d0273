import { type Kysely, sql } from 'kysely';
import { indexProjectChunks } from '../../sql/fts5-tables.ts';

// Keywords are stemmed by keywordText (sql/keyword-text.ts: Snowball's English stemmer, the same on both databases)
// instead of by FTS5's `porter` tokenizer, which stemmed otherwise than PostgreSQL. Every project's table is made
// again without `porter` (a table of a project whose chunks are all gone too: its next chunk would find the old
// tokenizer), and its entries again from the chunks' text, as ingestion makes them.
export async function up(db: Kysely<unknown>): Promise<void> {
  const { rows: tables } = await sql<{ name: string }>`
    select name from sqlite_master
    where type = 'table' and name like 'chunks\\_fts\\_%' escape '\\' and sql like 'create virtual table%'`.execute(db);
  for (const { name } of tables) {
    await sql`drop trigger if exists ${sql.id(`${name}_delete`)}`.execute(db);
    await sql`drop table ${sql.id(name)}`.execute(db);
  }
  const { rows: projects } = await sql<{ project_id: string }>`select distinct project_id from chunks`.execute(db);
  for (const { project_id: projectId } of projects) await indexProjectChunks(db, projectId);
}
