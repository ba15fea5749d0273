import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import { openSqliteStore } from '../../src/storage/sqlite/open-sqlite-store.ts';
import { DEFAULT_SCOPE } from '../../src/storage/store.ts';
import { storeContract } from '../contract/store-contract.ts';
import { anAssistant } from '../support/builders.ts';
import { tempDir } from '../support/server.ts';

storeContract('sqlite', async () => {
  const dir = tempDir();
  const store = await openSqliteStore(dir);
  return {
    store,
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

test('sqlite: data survives closing and reopening the database, and migrations run once', async () => {
  const dir = tempDir();
  const assistant = anAssistant();
  const first = await openSqliteStore(dir);
  await first.createAssistant(DEFAULT_SCOPE, assistant);
  await first.close();

  const second = await openSqliteStore(dir);
  assert.deepEqual(await second.getAssistant(DEFAULT_SCOPE, assistant.id), assistant);
  await second.close();
  rmSync(dir, { recursive: true, force: true });
});
