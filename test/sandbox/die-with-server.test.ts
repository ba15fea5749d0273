import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { alive, descendants } from '../support/processes.ts';

describe('a server killed with SIGKILL', () => {
  it('leaves no sandbox process behind', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/sandbox/fixtures/pool-child.ts'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const [line] = (await Promise.race([once(child.stdout, 'data'), once(child, 'exit').then(() => ['exited'])])) as [
      Buffer | string,
    ];
    assert.equal(String(line).trim(), 'running');
    const sandbox = descendants(child.pid!);
    const commands = sandbox.map((pid) => readFileSync(`/proc/${pid}/comm`, 'utf8').trim());
    assert.ok(commands.filter((c) => c === 'bwrap').length >= 2, `bwrap processes: ${commands.join(', ')}`);
    assert.ok(commands.includes('python3'), `no python3 among ${commands.join(', ')}`);
    for (const pid of sandbox)
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'python3' && process.getuid?.() === 0)
        assert.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /^Uid:\s+65534\s/m, 'runs as nobody on the host');

    child.kill('SIGKILL');
    await once(child, 'exit');
    const deadline = Date.now() + 5_000;
    while (sandbox.some(alive) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(sandbox.filter(alive), [], 'sandbox processes outlived the server');
  });
});
