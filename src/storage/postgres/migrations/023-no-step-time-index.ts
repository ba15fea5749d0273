import { type Kysely, sql } from 'kysely';

// The index that the reverted 021-step-tokens-window made, where it did: nothing reads it, and every step written
// paid for it.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`drop index if exists run_steps_by_time`.execute(db);
}
