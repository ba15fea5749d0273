import type { ColumnType, Generated } from 'kysely';

/**
 * The tables as Kysely sees them. JSON values are stored as text in every dialect (see json-column.ts), `seq` is an
 * insertion counter that breaks `created_at` ties so pagination is stable, and `project_id` scopes every row.
 */
export interface Database {
  assistants: AssistantsTable;
  threads: ThreadsTable;
  messages: MessagesTable;
  runs: RunsTable;
  run_steps: RunStepsTable;
  files: FilesTable;
  file_chunks: FileChunksTable;
  vector_stores: VectorStoresTable;
  vector_store_files: VectorStoreFilesTable;
  vector_store_file_batches: VectorStoreFileBatchesTable;
  chunks: ChunksTable;
  projects: ProjectsTable;
  api_keys: ApiKeysTable;
  list_tombstones: ListTombstonesTable;
}

export interface AssistantsTable {
  seq: Generated<number>;
  id: string;
  project_id: string;
  created_at: number;
  name: string | null;
  description: string | null;
  model: string;
  instructions: string | null;
  tools: string;
  tool_resources: string | null;
  metadata: string;
  temperature: number | null;
  top_p: number | null;
  response_format: string | null;
  reasoning_effort: string | null;
}

export interface ThreadsTable {
  seq: Generated<number>;
  id: string;
  project_id: string;
  created_at: number;
  tool_resources: string | null;
  metadata: string;
  /** Unix seconds of the latest message added or run created on the thread, else its creation (migration 009). */
  last_active_at: number;
}

export interface MessagesTable {
  seq: Generated<number>;
  id: string;
  project_id: string;
  thread_id: string;
  created_at: number;
  run_id: string | null;
  /** The whole Message as JSON. */
  doc: string;
  /** The run this message waits behind, added while it was going (queued runs; queued-messages.ts). */
  queued_behind: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface RunsTable {
  seq: Generated<number>;
  id: string;
  project_id: string;
  thread_id: string;
  assistant_id: string;
  created_at: number;
  status: string;
  required_action: string | null;
  last_error: string | null;
  expires_at: number | null;
  started_at: number | null;
  cancelled_at: number | null;
  failed_at: number | null;
  completed_at: number | null;
  incomplete_details: string | null;
  model: string;
  instructions: string;
  tools: string;
  metadata: string;
  usage: string | null;
  temperature: number | null;
  top_p: number | null;
  max_prompt_tokens: number | null;
  max_completion_tokens: number | null;
  truncation_strategy: string;
  tool_choice: string;
  parallel_tool_calls: number;
  response_format: string;
  reasoning_effort: string | null;
  /** The worker executing the run, and until when (ms since the epoch) its lease holds. */
  locked_by: string | null;
  locked_until: number | null;
  /** 1 while a queued run waits behind another run of its thread (queued runs: SqlStore.createRun's `queue`). */
  waiting: Generated<number>;
  /** 1 once messages were made to wait behind the run (queued runs; queued-messages.ts, migration 024). */
  queued_messages: Generated<number>;
  /** The project key the run was created with; null for ASSISTD_API_KEY or no key (migration 011). */
  api_key_id: string | null;
}

export interface RunStepsTable {
  seq: Generated<number>;
  id: string;
  project_id: string;
  run_id: string;
  thread_id: string;
  assistant_id: string;
  created_at: number;
  type: string;
  status: string;
  step_details: string;
  last_error: string | null;
  expired_at: number | null;
  /** Null for a step stored before the column existed. */
  expires_at: number | null;
  cancelled_at: number | null;
  failed_at: number | null;
  completed_at: number | null;
  metadata: string;
  usage: string | null;
  /** The model turn's usage while the step is in progress (the wire shows `usage: null` until it ends). */
  turn_usage: string | null;
  /** The model's side of a tool_calls step (ModelToolCall[] as JSON). */
  model_calls: string | null;
  model_reasoning: string | null;
}

export interface FilesTable {
  seq: Generated<number>;
  id: string;
  project_id: string;
  created_at: number;
  bytes: number;
  filename: string;
  purpose: string;
  mime_type: string | null;
  expires_at: number | null;
  /** `uploading` while the bytes arrive (not yet a file to the API), then `ready`. */
  state: 'uploading' | 'ready';
  /** The process receiving an upload, and until when (ms since the epoch) its lease holds. */
  upload_owner: string | null;
  upload_until: number | null;
}

export interface FileChunksTable {
  file_id: string;
  idx: number;
  data: Buffer;
}

export interface VectorStoresTable {
  seq: Generated<number>;
  id: string;
  project_id: string;
  created_at: number;
  name: string | null;
  description: string | null;
  metadata: string;
  expires_after: string | null;
  expires_at: number | null;
  last_active_at: number | null;
  /** 0 or 1: set once by the expiry sweeper. */
  expired: number;
  /** The model whose vectors the store holds, set with its first embedded file (migration 006). */
  embedding_model: string | null;
  embedding_dimensions: number | null;
  /** Moves whenever the store's set of chunk vectors changes (for in-memory caches of them). */
  vectors_version: Generated<number>;
}

/**
 * A file of a vector store; while `in_progress` it is an ingestion job, leased like a run. No `file_counts` or
 * `usage_bytes` are stored on the store or the batch: they are aggregates of these rows, computed when read.
 */
export interface VectorStoreFilesTable {
  seq: Generated<number>;
  file_id: string;
  vector_store_id: string;
  project_id: string;
  created_at: number;
  status: string;
  last_error: string | null;
  usage_bytes: number;
  chunking_strategy: string;
  attributes: string | null;
  batch_id: string | null;
  /** The worker indexing the file, and until when (ms since the epoch) its lease holds. */
  locked_by: string | null;
  locked_until: number | null;
}

export interface VectorStoreFileBatchesTable {
  seq: Generated<number>;
  id: string;
  vector_store_id: string;
  project_id: string;
  created_at: number;
  /** 0 or 1. */
  cancelled: number;
}

/**
 * The indexed pieces of a completed vector-store file. The keyword index over `text` is not a column Kysely sees:
 * an FTS5 table kept in step by rowid on SQLite, a `tsvector` column on PostgreSQL (sql-vector-store-records.ts).
 */
export interface ChunksTable {
  seq: Generated<number>;
  project_id: string;
  vector_store_id: string;
  file_id: string;
  chunk_index: number;
  text: string;
  tokens: number;
  /** Chunk.overlap; null for chunks stored before migration 019. */
  text_overlap: number | null;
  /** float32 little-endian, length 1; null without a vector. */
  embedding: Buffer | null;
}

/** A project: what every object belongs to (migration 008). `proj_default` is created with the table. */
export interface ProjectsTable {
  seq: Generated<number>;
  id: string;
  name: string;
  created_at: number;
  archived_at: number | null;
}

/** A project's API key: never its secret, only the secret's hash (tenancy/api-keys.ts) and a redacted form. */
export interface ApiKeysTable {
  seq: Generated<number>;
  id: string;
  project_id: string;
  name: string;
  redacted_value: string;
  secret_hash: string;
  created_at: number;
  last_used_at: number | null;
}

/** Where a deleted object stood in its list, for a day (list-tombstones.ts). */
export interface ListTombstonesTable {
  project_id: string;
  list: string;
  parent_id: string;
  id: string;
  created_at: number;
  last_active_at: number | null;
  /** A bigint: a string from PostgreSQL, only passed back as a parameter. */
  seq: number | string;
  deleted_at: number;
}

/** The tables whose rows are listed with cursor pagination: each has `created_at` and `seq`. */
export type PaginatedTable =
  | 'assistants'
  | 'threads'
  | 'messages'
  | 'runs'
  | 'run_steps'
  | 'files'
  | 'vector_stores'
  | 'vector_store_files';
