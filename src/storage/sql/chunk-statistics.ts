import { type Kysely, sql } from 'kysely';
import type { Database } from './schema.ts';

/** Chunks this process adds between two looks at the table's statistics. */
const CHECK_EVERY_CHUNKS = 1_000;
/** A table with fewer changed rows than this is never analysed here: any plan is fast on it. */
const MIN_CHANGED_ROWS = 1_000;

/**
 * Keeps PostgreSQL's statistics of `chunks` (and its GIN pending list) current as ingestion adds chunks, without
 * relying on autovacuum, which may be off or minutes behind. Without statistics the planner guessed a fresh store's
 * chunks to be a handful of rows and walked them all by `chunks_by_file` (or ANDed that walk with the keyword index)
 * instead of asking the keyword index alone: a keyword search at 100,000 chunks took about 80 ms, 250 ms through the
 * HTTP API in bench:search, against 5 ms once analysed. The unmerged GIN pending list (up to gin_pending_list_limit,
 * 4 MB) is scanned in full by every search, about 2.4 ms more at that size.
 *
 * The rule is cheap and bounded: after every CHECK_EVERY_CHUNKS chunks this process committed, one statement reads
 * the table's rows as of its last ANALYZE (`pg_class.reltuples`, -1 if never) and the rows changed since (the
 * statistics collector's count, which lags other connections by up to a second or so, so this process's own count
 * stands in when larger). The table is analysed, and the pending list merged, when the changes reach the rows
 * analysed — the table doubled, or was never analysed — and at least MIN_CHANGED_ROWS. A growing table is thus
 * analysed about log2(size / 1,000) times, each time sampling at most 30,000 rows (300 × the statistics target),
 * and its statistics always describe at least half of its rows: a store that makes up most of the table is never
 * taken for a rare one. The count has a slack: inserts reported after an ANALYZE (a connection reports them up to a
 * second late, ten when idle) count as changes since it, though it sampled their rows, so the table is analysed up
 * to that much early: by what was committed in the seconds before it (the tests analyse once more, to count from
 * zero). Migration 007 turns off the statistics of the columns no search filters on (text, keywords,
 * embedding), which halves what an ANALYZE costs (≈ 0.5 → 0.25 s at 100,000 chunks).
 *
 * It runs after the completion's commit, in the completing call: a search racing it plans on the statistics of the
 * previous round, which describe at least half the table. An ANALYZE refused (a role that does not own the table:
 * PostgreSQL skips it with a warning) or failing leaves the searches as they were and never fails an ingestion.
 */
export class ChunkStatistics {
  private sinceCheck = 0;
  private sinceAnalyze = 0;
  private running = false;

  /** Completed analyses by this instance (for tests). */
  analyses = 0;

  async added(db: Kysely<Database>, chunks: number): Promise<void> {
    this.sinceCheck += chunks;
    this.sinceAnalyze += chunks;
    if (this.sinceCheck < CHECK_EVERY_CHUNKS || this.running) return;
    this.sinceCheck = 0;
    this.running = true;
    try {
      const { rows } = await sql<{ analysed: number; changed: number }>`
        select reltuples as analysed, pg_stat_get_mod_since_analyze(oid) as changed
        from pg_class where oid = cast('chunks' as regclass)`.execute(db);
      const row = rows[0];
      if (!row) return;
      const changed = Math.max(Number(row.changed), this.sinceAnalyze);
      if (changed < MIN_CHANGED_ROWS || changed < Number(row.analysed)) return;
      this.sinceAnalyze = 0;
      await sql`analyze chunks`.execute(db);
      this.analyses++;
      // Needs the index's ownership, like ANALYZE; a refusal only leaves the list to the next insert that fills it.
      await sql`select gin_clean_pending_list(cast('chunks_keywords' as regclass))`.execute(db).catch(() => {});
    } catch {
      // The searches keep the statistics they had; the next check tries again.
    } finally {
      this.running = false;
    }
  }
}
