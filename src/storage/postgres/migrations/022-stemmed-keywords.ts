import { type Kysely, sql } from 'kysely';
import { keywordText } from '../../sql/keyword-text.ts';

/** Chunks re-indexed per statement. */
const BATCH = 2000;

// Keywords are stemmed by keywordText (sql/keyword-text.ts: Snowball's English stemmer, the same on both databases)
// and the `tsvector` is made with the `simple` config, which neither stems nor drops words, instead of `english`.
// Every chunk's vector is made again from its text, as ingestion makes it. The keyword index is dropped meanwhile and
// made again after, once, rather than updated for every chunk rewritten.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`drop index chunks_keywords`.execute(db);
  for (let after = '0'; ; ) {
    const { rows } = await sql<{ seq: string; text: string }>`
      select seq, text from chunks where seq > ${after} order by seq limit ${BATCH}`.execute(db);
    if (rows.length === 0) break;
    await sql`
      update chunks c set keywords = to_tsvector('simple', u.keywords)
      from unnest(cast(${rows.map((row) => row.seq)} as bigint[]), cast(${rows.map((row) => keywordText(row.text))} as text[]))
        as u (seq, keywords)
      where c.seq = u.seq`.execute(db);
    after = rows.at(-1)!.seq;
  }
  await sql`create index chunks_keywords on chunks using gin (keywords)`.execute(db);
}
