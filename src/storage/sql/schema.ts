import type { Generated } from 'kysely';

/**
 * The tables as Kysely sees them. JSON values are stored as text in every dialect (see json-column.ts), `seq` is an
 * insertion counter that breaks `created_at` ties so pagination is stable, and `project_id` scopes every row.
 */
export interface Database {
  assistants: AssistantsTable;
  threads: ThreadsTable;
  messages: MessagesTable;
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
}

export interface MessagesTable {
  seq: Generated<number>;
  id: string;
  project_id: string;
  thread_id: string;
  created_at: number;
  status: string;
  incomplete_details: string | null;
  completed_at: number | null;
  incomplete_at: number | null;
  role: string;
  content: string;
  assistant_id: string | null;
  run_id: string | null;
  attachments: string;
  metadata: string;
}

/** The tables whose rows are listed with cursor pagination: each has `created_at` and `seq`. */
export type PaginatedTable = 'assistants' | 'threads' | 'messages';
