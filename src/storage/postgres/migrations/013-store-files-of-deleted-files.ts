import type { Kysely } from 'kysely';
import { removeStoreFilesOfDeletedFiles } from '../../sql/store-files-of-deleted-files.ts';

// Vector-store files whose file is gone leave their stores (sql/store-files-of-deleted-files.ts).
export async function up(db: Kysely<unknown>): Promise<void> {
  await removeStoreFilesOfDeletedFiles(db);
}
