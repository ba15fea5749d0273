/**
 * A project: the unit of isolation. Every object (assistant, thread, file, vector store …) belongs to the project of
 * the key that created it, and no request of another project can see it. `proj_default` always exists: it is the
 * project of ASSISTD_API_KEY and of a server without keys.
 */
export interface Project {
  id: string;
  name: string;
  created_at: number;
  archived_at: number | null;
}

export const DEFAULT_PROJECT_ID = 'proj_default';

/** A project's API key as stored and shown: never its secret (tenancy/api-keys.ts). */
export interface ApiKey {
  id: string;
  project_id: string;
  name: string;
  /** The key's start and end, e.g. `sk-proj-a1B2…xY9z`: what lists and logs may show. */
  redacted_value: string;
  created_at: number;
  last_used_at: number | null;
}
