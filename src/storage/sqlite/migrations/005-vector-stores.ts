import { type Kysely, sql } from 'kysely';

// Vector stores, their files and batches, and the chunks of completed files with a keyword index over them. A
// store's and a batch's file counts and usage are aggregates of `vector_store_files`, computed when read. A file in
// progress is an ingestion job leased like a run (`locked_by`, `locked_until` in ms). Deleting a store cascades to
// its files and batches, a file to its chunks, and a chunk to its keyword entry (the trigger below: SQLite fires
// triggers for foreign-key cascades too).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table vector_stores (
      seq integer primary key,
      id text not null unique,
      project_id text not null,
      created_at integer not null,
      name text,
      description text,
      metadata text not null,
      expires_after text,
      expires_at integer,
      last_active_at integer,
      expired integer not null default 0
    )`.execute(db);
  await sql`create index vector_stores_page on vector_stores (project_id, created_at, seq)`.execute(db);
  await sql`
    create index vector_stores_expiring on vector_stores (expires_at)
    where expired = 0 and expires_at is not null`.execute(db);

  await sql`
    create table vector_store_file_batches (
      seq integer primary key,
      id text not null unique,
      vector_store_id text not null references vector_stores (id) on delete cascade,
      project_id text not null,
      created_at integer not null,
      cancelled integer not null default 0
    )`.execute(db);
  await sql`create index vector_store_file_batches_store on vector_store_file_batches (vector_store_id)`.execute(db);

  await sql`
    create table vector_store_files (
      seq integer primary key,
      file_id text not null,
      vector_store_id text not null references vector_stores (id) on delete cascade,
      project_id text not null,
      created_at integer not null,
      status text not null,
      last_error text,
      usage_bytes integer not null default 0,
      chunking_strategy text not null,
      attributes text,
      batch_id text,
      locked_by text,
      locked_until integer,
      unique (vector_store_id, file_id)
    )`.execute(db);
  await sql`create index vector_store_files_page on vector_store_files (vector_store_id, created_at, seq)`.execute(db);
  await sql`
    create index vector_store_files_batch on vector_store_files (batch_id, created_at, seq)
    where batch_id is not null`.execute(db);
  await sql`create index vector_store_files_by_file on vector_store_files (file_id)`.execute(db);
  // The ingestion queue: files in progress, oldest first (the claim walks it and skips live leases).
  await sql`
    create index vector_store_files_claimable on vector_store_files (created_at, seq)
    where status = 'in_progress'`.execute(db);

  await sql`
    create table chunks (
      seq integer primary key,
      project_id text not null,
      vector_store_id text not null,
      file_id text not null,
      chunk_index integer not null,
      text text not null,
      tokens integer not null,
      foreign key (vector_store_id, file_id) references vector_store_files (vector_store_id, file_id)
        on delete cascade
    )`.execute(db);
  await sql`create unique index chunks_by_file on chunks (vector_store_id, file_id, chunk_index)`.execute(db);

  // The keyword index: rowid = chunks.seq, one column holding keywordText(text) (sql/keyword-text.ts: lowercase
  // words, Latin diacritics folded, CJK runs as bigrams). Contentless (the text is already in `chunks`), with
  // contentless_delete so that an entry can be deleted by rowid alone. The tokenizer only splits what keywordText
  // wrote on spaces and stems it: `porter` for English suffixes (PostgreSQL's side uses the `english` config);
  // diacritics are not removed here because keywordText already decided which to fold, the same for both
  // databases; marks (M*) are word characters so that scripts written with combining vowel signs stay whole.
  await sql`
    create virtual table chunks_fts using fts5(
      keywords,
      content = '',
      contentless_delete = 1,
      tokenize = "porter unicode61 remove_diacritics 0 categories 'L* N* Co M*'"
    )`.execute(db);
  await sql`
    create trigger chunks_fts_delete after delete on chunks begin
      delete from chunks_fts where rowid = old.seq;
    end`.execute(db);
}
