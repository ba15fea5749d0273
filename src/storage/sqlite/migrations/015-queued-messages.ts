import type { Kysely } from 'kysely';
import { addQueuedMessages } from '../../sql/queued-messages.ts';

// Messages queued behind a run (queued runs) wait to join the thread until it ends (sql/queued-messages.ts).
export async function up(db: Kysely<unknown>): Promise<void> {
  await addQueuedMessages(db);
}
