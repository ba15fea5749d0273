import type { Kysely } from 'kysely';
import { createListTombstones } from '../../sql/list-tombstones.ts';

// Where deleted objects stood in their lists, for a day (sql/list-tombstones.ts).
export async function up(db: Kysely<unknown>): Promise<void> {
  await createListTombstones(db);
}
