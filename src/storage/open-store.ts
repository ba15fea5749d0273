import { accessSync, constants, mkdirSync } from 'node:fs';
import { ConfigError, type StorageConfig } from '../config.ts';
import { openSqliteStore } from './sqlite/open-sqlite-store.ts';
import type { Store } from './store.ts';

/** Opens the configured database and brings its schema up to date. */
export async function openStore(storage: StorageConfig): Promise<Store> {
  switch (storage.kind) {
    case 'sqlite':
      ensureWritableDir(storage.dataDir);
      return openSqliteStore(storage.dataDir);
    case 'postgres':
      throw new ConfigError(
        'ASSISTD_DATABASE_URL',
        'PostgreSQL is not supported by this version of assistd yet; leave the setting unset to use SQLite.',
      );
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
