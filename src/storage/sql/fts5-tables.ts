import { createHash } from 'node:crypto';
import { type QueryExecutorProvider, sql } from 'kysely';
import { keywordText } from './keyword-text.ts';

/**
 * SQLite's keyword index: one contentless FTS5 table per project, rowid = chunks.seq, one column holding
 * keywordText(text) (keyword-text.ts). One per project because FTS5's bm25 weighs a term by statistics of its
 * whole table (how many rows hold the term, the rows' average length): in a table shared by every project, the
 * scores of one project's search would show which words other projects' files hold. A project's table, with the
 * trigger that deletes a chunk's entry with the chunk (cascaded deletes included), is made with its first chunk.
 *
 * The tokenizer only splits what keywordText wrote on spaces: keywordText already stemmed the words and decided which
 * diacritics to fold, the same for both databases; marks (M*) are word characters so that scripts written with
 * combining vowel signs stay whole. Contentless (the text is already in `chunks`), with contentless_delete so that
 * an entry can be deleted by rowid alone.
 */

/** The FTS5 table of a project: a hash of its id (SQLite's names ignore case; ids do not). */
export function ftsTableOf(projectId: string): string {
  return `chunks_fts_${createHash('sha256').update(projectId).digest('hex').slice(0, 24)}`;
}

/** Makes the project's table and its delete trigger, unless they exist. Inside the caller's transaction. */
export async function createFtsTable(db: QueryExecutorProvider, projectId: string): Promise<string> {
  const table = ftsTableOf(projectId);
  await sql`
    create virtual table if not exists ${sql.id(table)} using fts5(
      keywords,
      content = '',
      contentless_delete = 1,
      tokenize = "unicode61 remove_diacritics 0 categories 'L* N* Co M*'"
    )`.execute(db);
  // No parameters in a trigger: the project's id is a literal, quoted as SQL quotes strings.
  const project = `'${projectId.replaceAll("'", "''")}'`;
  await sql`
    create trigger if not exists ${sql.id(`${table}_delete`)} after delete on chunks
    when old.project_id = ${sql.raw(project)} begin
      delete from ${sql.id(table)} where rowid = old.seq;
    end`.execute(db);
  return table;
}

/** Whether the project's table exists (a project with no chunk yet has none). */
export async function ftsTableExists(db: QueryExecutorProvider, projectId: string): Promise<boolean> {
  const { rows } =
    await sql`select 1 from sqlite_master where type = 'table' and name = ${ftsTableOf(projectId)}`.execute(db);
  return rows.length > 0;
}

/** Chunks indexed per statement by indexProjectChunks. */
const BATCH = 2000;

/**
 * Makes the project's table (unless it exists) and indexes all its chunks in it, as ingestion would have: for the
 * migrations that rebuild the keyword index.
 */
export async function indexProjectChunks(db: QueryExecutorProvider, projectId: string): Promise<void> {
  const table = await createFtsTable(db, projectId);
  for (let after = 0; ; ) {
    const { rows } = await sql<{ seq: number; text: string }>`
      select seq, text from chunks where project_id = ${projectId} and seq > ${after} order by seq limit ${BATCH}`.execute(
      db,
    );
    if (rows.length === 0) return;
    const entries = JSON.stringify(rows.map((row) => [row.seq, keywordText(row.text)]));
    await sql`
      insert into ${sql.id(table)} (rowid, keywords)
      select value ->> 0, value ->> 1 from json_each(${entries})`.execute(db);
    after = Number(rows.at(-1)!.seq);
  }
}
