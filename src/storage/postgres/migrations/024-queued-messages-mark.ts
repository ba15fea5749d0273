import type { Kysely } from 'kysely';
import { addQueuedMessagesMark } from '../../sql/queued-messages.ts';

// A run's own row says whether messages wait behind it, for the ending that must release them (sql/queued-messages.ts).
export async function up(db: Kysely<unknown>): Promise<void> {
  await addQueuedMessagesMark(db);
}
