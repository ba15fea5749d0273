import { type Kysely, sql } from 'kysely';

// Vector stores: the same tables as sqlite/migrations/005-vector-stores.ts, with the keyword index as a `tsvector`
// column of `chunks` under a GIN index instead of an FTS5 table. The column is written by the insert from
// keywordText(text) (sql/keyword-text.ts), not `generated always as (to_tsvector(…))`: the CJK bigrams are made by
// that TypeScript function, shared with SQLite so both databases index the same terms, and a generated column can
// only call SQL. Being in the chunk's own row it can never be out of step with it. `english` config: it stems
// like SQLite's `porter` tokenizer, so "indexing" finds "indexes" on either database (see keyword-text.ts for the
// stop words both drop from queries).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table vector_stores (
      seq bigint generated always as identity primary key,
      id text not null unique,
      project_id text not null,
      created_at bigint not null,
      name text,
      description text,
      metadata text not null,
      expires_after text,
      expires_at bigint,
      last_active_at bigint,
      expired integer not null default 0
    )`.execute(db);
  await sql`create index vector_stores_page on vector_stores (project_id, created_at, seq)`.execute(db);
  await sql`
    create index vector_stores_expiring on vector_stores (expires_at)
    where expired = 0 and expires_at is not null`.execute(db);

  await sql`
    create table vector_store_file_batches (
      seq bigint generated always as identity primary key,
      id text not null unique,
      vector_store_id text not null references vector_stores (id) on delete cascade,
      project_id text not null,
      created_at bigint not null,
      cancelled integer not null default 0
    )`.execute(db);
  await sql`create index vector_store_file_batches_store on vector_store_file_batches (vector_store_id)`.execute(db);

  await sql`
    create table vector_store_files (
      seq bigint generated always as identity primary key,
      file_id text not null,
      vector_store_id text not null references vector_stores (id) on delete cascade,
      project_id text not null,
      created_at bigint not null,
      status text not null,
      last_error text,
      usage_bytes bigint not null default 0,
      chunking_strategy text not null,
      attributes text,
      batch_id text,
      locked_by text,
      locked_until bigint,
      unique (vector_store_id, file_id)
    )`.execute(db);
  await sql`create index vector_store_files_page on vector_store_files (vector_store_id, created_at, seq)`.execute(db);
  await sql`
    create index vector_store_files_batch on vector_store_files (batch_id, created_at, seq)
    where batch_id is not null`.execute(db);
  await sql`create index vector_store_files_by_file on vector_store_files (file_id)`.execute(db);
  await sql`
    create index vector_store_files_claimable on vector_store_files (created_at, seq)
    where status = 'in_progress'`.execute(db);

  await sql`
    create table chunks (
      seq bigint generated always as identity primary key,
      project_id text not null,
      vector_store_id text not null,
      file_id text not null,
      chunk_index integer not null,
      text text not null,
      tokens integer not null,
      keywords tsvector not null,
      foreign key (vector_store_id, file_id) references vector_store_files (vector_store_id, file_id)
        on delete cascade
    )`.execute(db);
  await sql`create unique index chunks_by_file on chunks (vector_store_id, file_id, chunk_index)`.execute(db);
  await sql`create index chunks_keywords on chunks using gin (keywords)`.execute(db);
}
