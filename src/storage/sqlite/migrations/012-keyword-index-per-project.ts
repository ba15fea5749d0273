import { type Kysely, sql } from 'kysely';
import { createFtsTable } from '../../sql/fts5-tables.ts';
import { keywordText } from '../../sql/keyword-text.ts';

/** Chunks re-indexed per statement. */
const BATCH = 2000;

// The keyword index becomes one FTS5 table per project instead of one for every project (sql/fts5-tables.ts: in a
// shared table bm25's statistics mixed the projects, and a project's scores showed which words the others' files
// held). The old table is contentless, so its entries cannot be read back: they are made again from the chunks'
// text, as ingestion makes them.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`drop trigger chunks_fts_delete`.execute(db);
  await sql`drop table chunks_fts`.execute(db);
  const { rows: projects } = await sql<{ project_id: string }>`select distinct project_id from chunks`.execute(db);
  for (const { project_id: projectId } of projects) {
    const table = await createFtsTable(db, projectId);
    for (let after = 0; ; ) {
      const { rows } = await sql<{ seq: number; text: string }>`
        select seq, text from chunks where project_id = ${projectId} and seq > ${after} order by seq limit ${BATCH}`.execute(
        db,
      );
      if (rows.length === 0) break;
      const entries = JSON.stringify(rows.map((row) => [row.seq, keywordText(row.text)]));
      await sql`
        insert into ${sql.id(table)} (rowid, keywords)
        select value ->> 0, value ->> 1 from json_each(${entries})`.execute(db);
      after = Number(rows.at(-1)!.seq);
    }
  }
}
