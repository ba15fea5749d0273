import { type RawBuilder, sql } from 'kysely';
import { unixSeconds } from '../../domain/clock.ts';

/**
 * A file of the Files API: its upload finished, and it has not expired. An expired file is gone for the API at
 * once, as upstream's; its row and bytes wait for FileSweeper's next pass, which deletes what this leaves out
 * (`expires_at <= now`, Unix seconds on the same clock). `state = 'ready'` is written as a literal so that SQLite can
 * use the partial index `files_page`.
 */
export function liveFile(): RawBuilder<boolean> {
  return sql<boolean>`state = 'ready' and ${notExpired(sql`expires_at`)}`;
}

/** The file whose `expires_at` column is `expiresAt` has not expired (null: none, as for a file left joined). */
export function notExpired(expiresAt: RawBuilder<unknown>): RawBuilder<boolean> {
  return sql<boolean>`(${expiresAt} is null or ${expiresAt} > ${unixSeconds()})`;
}
