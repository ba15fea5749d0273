import { accessSync, constants, mkdirSync } from 'node:fs';
import { ConfigError, type StorageConfig } from '../config.ts';
import type { Store } from './store.ts';

/** Opens the configured database and brings its schema up to date. Only that database's driver and store load. */
export async function openStore(storage: StorageConfig): Promise<Store> {
  switch (storage.kind) {
    case 'sqlite': {
      ensureWritableDir(storage.dataDir);
      const { openSqliteStore } = await import('./sqlite/open-sqlite-store.ts');
      return openSqliteStore(storage.dataDir);
    }
    case 'postgres': {
      const { openPostgresStore } = await import('./postgres/open-postgres-store.ts');
      return openPostgresStore(storage.url, storage.poolSize, storage.timeoutMs);
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
