import { type Kysely, sql } from 'kysely';

// Embeddings of vector-store chunks. A store records the model (and its dimension) that embedded its first
// embedded file; only files embedded by that model get vectors there afterwards. `chunks.embedding` is the
// chunk's vector as float32 (little-endian, scaled to length 1), null for a chunk without one. `vectors_version`
// moves whenever the store's set of vectors changes, for the caches that keep a store's vectors in memory.
//
// The nearest-neighbour index over the vectors is sqlite-vec's `vec0` virtual tables, one per dimension
// (`chunk_vectors_384`, …), since a vec0 column has a fixed dimension: sql/sql-vector-store-records.ts creates
// each on the first vector of that dimension, with the trigger that deletes a chunk's entry with the chunk (as
// chunks_fts_delete does for the keyword index).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table vector_stores add column embedding_model text`.execute(db);
  await sql`alter table vector_stores add column embedding_dimensions integer`.execute(db);
  await sql`alter table vector_stores add column vectors_version integer not null default 0`.execute(db);
  await sql`alter table chunks add column embedding blob`.execute(db);
}
