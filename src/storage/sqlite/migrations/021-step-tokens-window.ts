import { type Kysely, sql } from 'kysely';

// The tokens-per-minute limit counts the tokens of the model turns of the last minute, from their steps
// (tokensUsedSince): the steps of a project by time.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`create index run_steps_by_time on run_steps (project_id, created_at)`.execute(db);
}
