import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import pino from 'pino';
import { sandboxCommand } from '../../src/sandbox/bwrap-command.ts';
import { fontCacheDir } from '../../src/sandbox/font-cache.ts';
import { SandboxProcess } from '../../src/sandbox/sandbox-process.ts';
import { SandboxSpawner } from '../../src/sandbox/spawner.ts';
import { alive, commandOf, parents } from '../support/processes.ts';
import { ROOT } from '../support/root.ts';
import { TEST_SETTINGS } from './support.ts';

/** Live bwrap processes whose parent is `spawner` or init (an orphan of a sandbox killed too early). */
function bwraps(spawner: number | undefined): number[] {
  return [...parents()]
    .filter(([pid, parent]) => (parent === spawner || parent === 1) && commandOf(pid) === 'bwrap' && alive(pid))
    .map(([pid]) => pid);
}

describe('a sandbox process', () => {
  it('can be killed at any moment of its start, leaving nothing behind', async () => {
    const driver = await readFile(path.join(ROOT, 'src/sandbox/driver.py'), 'utf8');
    const command = sandboxCommand(TEST_SETTINGS, driver, await fontCacheDir(TEST_SETTINGS.python));
    const spawner = new SandboxSpawner();
    const before = new Set(bwraps(spawner.pid));
    for (let delayMs = 0; delayMs < 30; delayMs += 0.5) {
      const sandbox = new SandboxProcess(command, spawner, pino({ level: 'silent' }));
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      const killed = await Promise.race([
        sandbox.kill('test').then(() => true),
        new Promise((resolve) => setTimeout(() => resolve(false), 3_000)),
      ]);
      assert.ok(killed, `kill after ${delayMs} ms did not finish`);
    }
    const deadline = Date.now() + 3_000;
    let left = bwraps(spawner.pid).filter((pid) => !before.has(pid));
    while (left.length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      left = bwraps(spawner.pid).filter((pid) => !before.has(pid));
    }
    await spawner.close();
    assert.deepEqual(left, []);
  });
});
