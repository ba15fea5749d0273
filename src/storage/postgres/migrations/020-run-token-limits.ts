import { type Kysely, sql } from 'kysely';

// A run's max_prompt_tokens and max_completion_tokens have no maximum in the spec: a value past 32 bits is valid, and
// was a 500 here (SQLite's integers are 64-bit already).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table runs
      alter column max_prompt_tokens type bigint,
      alter column max_completion_tokens type bigint`.execute(db);
}
