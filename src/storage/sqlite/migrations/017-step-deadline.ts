import { type Kysely, sql } from 'kysely';

// A step's `expires_at`: its run's deadline when it began, shown as OpenAI showed it on every step.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table run_steps add column expires_at integer`.execute(db);
}
