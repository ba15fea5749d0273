import assert from 'node:assert/strict';
import { newId } from '../../src/domain/ids.ts';
import type { FileRecords, Scope } from '../../src/storage/store.ts';

/**
 * A file of the Files API written straight through the store's two steps (an upload row, then the file), with no
 * bytes: what storage-level suites need when a vector store names a file and a search hit reports its name.
 */
export async function recordFile(
  files: FileRecords,
  scope: Scope,
  filename: string,
  createdAt: number,
): Promise<string> {
  const id = newId('file');
  await files.beginUpload(scope, id, createdAt, { owner: 'test-uploader', until: Date.now() + 60_000 });
  const file = {
    id,
    created_at: createdAt,
    bytes: 1,
    filename,
    purpose: 'assistants',
    expires_at: null,
    mime_type: null,
  };
  assert.equal(await files.finishUpload(scope, file, 'test-uploader'), true);
  return id;
}
