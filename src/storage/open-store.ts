import { accessSync, constants, mkdirSync } from 'node:fs';
import { ConfigError, type StorageConfig } from '../config.ts';
import type { Store } from './store.ts';

export interface OpenStoreOptions {
  /**
   * The database must exist already (the admin commands): a SQLite data directory without one is refused rather
   * than given a new database, whose keys the server, on its own directory, would never accept.
   */
  existing?: boolean;
  /**
   * Told when startup waits for the migrations of another process on the same PostgreSQL database, saying who holds
   * their lock: a wait that would otherwise be silent for as long as it lasts.
   */
  onMigrationWait?: (message: string) => void;
}

/**
 * Opens the configured database and brings its schema up to date. Only that database's driver and store load. A
 * database this process cannot use (unreachable, refused, corrupt, not writable) stops it with a ConfigError.
 */
export async function openStore(storage: StorageConfig, options: OpenStoreOptions = {}): Promise<Store> {
  switch (storage.kind) {
    case 'sqlite': {
      const { noDatabaseIn, openSqliteStore } = await import('./sqlite/open-sqlite-store.ts');
      const missing = options.existing ? noDatabaseIn(storage.dataDir) : undefined;
      if (missing !== undefined) throw new ConfigError('ASSISTD_DATA_DIR', missing);
      ensureWritableDir(storage.dataDir);
      return openSqliteStore(storage.dataDir);
    }
    case 'postgres': {
      const { openPostgresStore } = await import('./postgres/open-postgres-store.ts');
      const { url, poolSize, timeoutMs, directUrl, preparedStatements } = storage;
      const { onMigrationWait } = options;
      return openPostgresStore(url, poolSize, timeoutMs, { directUrl, preparedStatements, onMigrationWait });
    }
  }
}

function ensureWritableDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.R_OK | constants.W_OK);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new ConfigError('ASSISTD_DATA_DIR', `'${dir}' is not a readable and writable directory (${reason}).`);
  }
}
