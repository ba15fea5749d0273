import { type Kysely, sql } from 'kysely';

// The model's side of a tool_calls step (name, arguments and output of each call as the model saw them): a
// server-side tool's step details are shaped for the client, so the next model turn's tool round is kept here.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table run_steps add column model_calls text`.execute(db);
}
