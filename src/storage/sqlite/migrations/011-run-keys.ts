import { type Kysely, sql } from 'kysely';

// The API key a run was created with (null: ASSISTD_API_KEY, or a server without keys), for the tokens-per-minute
// limit of each key (api/rate-limits.ts): the tokens of a key's recent runs are summed from here, by every process.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table runs add column api_key_id text`.execute(db);
  await sql`create index runs_by_key on runs (api_key_id, created_at)`.execute(db);
}
