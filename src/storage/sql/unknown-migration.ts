import { ConfigError } from '../../config.ts';

/**
 * Kysely's refusal of a database that ran a migration this version does not list (a newer assistd's, most often),
 * as a ConfigError saying what to do, or undefined for any other error. The refusal changed nothing: the database is
 * as that version left it.
 */
export function unknownMigration(error: unknown, setting: string, where: string): ConfigError | undefined {
  const name = /previously executed migration (\S+) is missing/.exec(error instanceof Error ? error.message : '')?.[1];
  if (name === undefined) return undefined;
  return new ConfigError(
    setting,
    `${where} was migrated by another version of assistd (its migration ${name} is unknown to this one): run that version or a newer one, or restore a backup made before it.`,
  );
}
