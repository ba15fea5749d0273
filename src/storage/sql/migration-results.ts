import type { MigrationResult } from 'kysely';
import { ConfigError } from '../../config.ts';

// What startup makes of the migrations' results, the same for both databases.

/**
 * Why the migrations of the database at `where` failed, as startup reports it. Kysely's refusal of a database that
 * ran a migration this version does not list (a newer assistd's, most often) is a ConfigError of `setting` saying
 * what to do; the refusal changed nothing, the database is as that version left it. Anything else names the
 * migration that failed, where one did (not, say, for a connection lost while waiting for another process's).
 */
export function migrationFailure(
  error: unknown,
  results: readonly MigrationResult[] | undefined,
  setting: string,
  where: string,
): Error {
  const reason = error instanceof Error ? error.message : String(error);
  const unknown = /previously executed migration (\S+) is missing/.exec(reason)?.[1];
  if (unknown !== undefined)
    return new ConfigError(
      setting,
      `${where} was migrated by another version of assistd (its migration ${unknown} is unknown to this one): run that version or a newer one, or restore a backup made before it.`,
    );
  const failed = results?.find((r) => r.status === 'Error')?.migrationName;
  const what = failed === undefined ? `the migrations of ${where}` : `migration ${failed} of ${where}`;
  return new Error(`${what} failed: ${reason}`, { cause: error });
}

/** Whether the migrations just run made the database: its first one was among them. */
export function madeNow(results: readonly MigrationResult[] | undefined): boolean {
  return results?.some((result) => result.migrationName === '001-initial' && result.status === 'Success') ?? false;
}
