import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { sweepFontCaches } from '../../src/sandbox/font-cache.ts';
import { tempDir } from '../support/server.ts';

test("a font cache left by a killed process is swept; a live process's and other directories are kept", async () => {
  const tmp = tempDir();
  try {
    const gone = spawnSync(process.execPath, ['-e', '']).pid!; // a process that has exited
    const names = [
      `assistd-matplotlib-${gone}-a1B2c3`,
      `assistd-matplotlib-${process.pid}-d4E5f6`,
      'assistd-matplotlib-x9y8z7', // no process id in its name: not ours to judge
      'unrelated',
    ];
    for (const name of names) mkdirSync(path.join(tmp, name, 'inner'), { recursive: true });
    await sweepFontCaches(tmp);
    assert.deepEqual(
      names.map((name) => existsSync(path.join(tmp, name))),
      [false, true, true, true],
    );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
