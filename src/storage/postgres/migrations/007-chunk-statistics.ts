import { type Kysely, sql } from 'kysely';

// No planner statistics for the columns of `chunks` that no query filters or joins on: the chunk's text, its
// tsvector and its vector. ANALYZE, which the ingestion now runs as the table grows (sql/chunk-statistics.ts),
// spent half its time on them: the tsvector's lexeme frequencies above all (0.57 → 0.27 s for `analyze chunks` at
// 100,000 chunks). What the keyword search's plan depends on — how many of the table's rows a store or a project
// holds — is in the small columns, still analysed. Without lexeme statistics the planner takes any keyword query to
// match 0.5% of the rows (PostgreSQL's default for `@@`), which only ever favours the keyword index.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table chunks
      alter column text set statistics 0,
      alter column keywords set statistics 0,
      alter column embedding set statistics 0`.execute(db);
}
