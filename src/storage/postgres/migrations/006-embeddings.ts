import { type Kysely, sql } from 'kysely';

// Embeddings of vector-store chunks: the same columns as sqlite/migrations/006-embeddings.ts. PostgreSQL has no
// vector index here (pgvector is not assumed): a store's vectors are searched exactly, in memory, by the process
// cache of sql/vector-matrix-cache.ts, which reloads a store when its `vectors_version` has moved — whichever
// process changed it. bytea of float32 is the compact form (4 bytes a dimension; `real[]` would add a header and
// per-element alignment and is slower to read in bulk).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table vector_stores
      add column embedding_model text,
      add column embedding_dimensions integer,
      add column vectors_version bigint not null default 0`.execute(db);
  await sql`alter table chunks add column embedding bytea`.execute(db);
}
