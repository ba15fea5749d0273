import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import type { SandboxCommand } from '../../src/sandbox/bwrap-command.ts';
import { SandboxSpawner, type SandboxStdio, type SpawnedSandbox } from '../../src/sandbox/spawner.ts';
import { alive, commandOf, descendants } from '../support/processes.ts';
import { testPool } from './support.ts';

/**
 * The spawner's failures, with plain commands in place of bwrap: each ends only the start it concerns, every
 * sandbox settles (`close`), and no process is left behind.
 */

const PATH = process.env['PATH'] ?? '/usr/bin:/bin';

function command(...args: string[]): SandboxCommand {
  return { command: args[0]!, args: args.slice(1), spawn: { env: { PATH } }, seccomp: Buffer.alloc(0) };
}

/** How the sandbox ended: its error's message (if any) and its exit. */
async function ending(sandbox: SpawnedSandbox): Promise<{ error?: string; signal: string | null }> {
  let error: string | undefined;
  sandbox.once('error', (e) => {
    error = e.message;
  });
  // Not events.once: it rejects on the `error` that comes first.
  const signal = await new Promise<string | null>((resolve) => sandbox.once('close', (_code, sig) => resolve(sig)));
  return { ...(error !== undefined ? { error } : {}), signal };
}

/** The node processes below this one: spawners (the tests' own helpers run none). */
function spawners(): number[] {
  return descendants(process.pid).filter((pid) => commandOf(pid) === 'node' && alive(pid));
}

describe('the sandbox spawner', () => {
  it('fails a start it cannot make alone: the sandboxes it runs go on', async () => {
    const spawner = new SandboxSpawner();
    try {
      const running = spawner.spawn(command('/bin/sleep', '100'));
      const [stdio] = (await once(running, 'spawn')) as [SandboxStdio];
      assert.ok(stdio.stdout && running.pid !== undefined);
      // A NUL in an argument: child_process.spawn throws rather than emits.
      const thrown = await ending(spawner.spawn(command('/bin/echo', 'a\u0000b')));
      assert.match(thrown.error ?? '', /null bytes/);
      const missing = await ending(spawner.spawn(command('/no/such/program')));
      assert.match(missing.error ?? '', /ENOENT/);
      assert.ok(alive(running.pid!), 'the running sandbox is untouched');
      running.kill();
      assert.equal((await ending(running)).signal, 'SIGKILL');
    } finally {
      await spawner.close();
    }
    assert.deepEqual(spawners(), []);
  });

  it('settles every sandbox when the spawner itself cannot start, and kill() returns', async () => {
    const spawner = new SandboxSpawner();
    const execPath = process.execPath;
    process.execPath = '/no/such/node';
    let sandbox: SpawnedSandbox;
    try {
      sandbox = spawner.spawn(command('/bin/sleep', '100'));
    } finally {
      process.execPath = execPath;
    }
    sandbox.kill();
    const ended = await ending(sandbox);
    assert.match(ended.error ?? '', /spawner/);
    await spawner.close();
  });

  it('starts nothing once closed: a start then fails at once', async () => {
    const spawner = new SandboxSpawner();
    await spawner.close();
    const refused = await ending(spawner.spawn(command('/bin/sleep', '100')));
    assert.match(refused.error ?? '', /closed/);
    assert.deepEqual(spawners(), []);
  });

  it('leaves no spawner behind a pool closed while it probes the sandbox', async () => {
    const pool = testPool();
    const started = pool.start();
    await pool.close();
    await started;
    assert.deepEqual(spawners(), []);
  });
});
