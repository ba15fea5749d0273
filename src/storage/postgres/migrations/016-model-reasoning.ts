import { type Kysely, sql } from 'kysely';

// The reasoning a model wrote in its own field in a turn that made tool calls, sent back with those calls in the
// run's next turns (DeepSeek's thinking mode refuses them without it).
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table run_steps add column model_reasoning text`.execute(db);
}
