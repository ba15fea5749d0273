import { type Kysely, sql } from 'kysely';

// The next chunk's seq, which only grows. A table's rowid without AUTOINCREMENT is max(rowid) + 1: chunks written
// after the newest were deleted (a file indexed again) took their seqs, and the vectors cached by seq
// (sql/vector-matrix-cache.ts) were taken for theirs. Rebuilding `chunks` with AUTOINCREMENT would mean rebuilding
// its keyword and vector tables' triggers too; the chunks' insert (sql-vector-store-records.ts) numbers them from here.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create table chunk_seq (next integer not null)`.execute(db);
  await sql`insert into chunk_seq (next) select coalesce(max(seq), 0) + 1 from chunks`.execute(db);
}
