import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { SandboxCommand } from '../../src/sandbox/bwrap-command.ts';
import { SandboxSpawner, type SandboxStdio, type SpawnedSandbox } from '../../src/sandbox/spawner.ts';
import { alive, spawnersBelow } from '../support/processes.ts';
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

/** The live processes whose command line is `cmdline` (its arguments joined by NULs), wherever they are. */
function running(cmdline: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0$/, '') === cmdline && alive(Number(pid));
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

/** The spawners below this process. */
function spawners(): number[] {
  return spawnersBelow(process.pid);
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

  it('is gone once closed, also when a start was in flight (its handles unacknowledged), and takes its sandboxes', async () => {
    for (const delayMs of [0, 1, 5]) {
      const spawner = new SandboxSpawner();
      const first = spawner.spawn(command('/bin/sleep', '100'));
      await once(first, 'spawn'); // the spawner is up
      first.kill();
      await ending(first);
      const marker = `77.${delayMs}1`;
      const inFlight = spawner.spawn(command('/bin/sleep', marker));
      const settled = ending(inFlight);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      const closed = await Promise.race([
        spawner.close().then(() => true),
        new Promise((resolve) => setTimeout(() => resolve(false), 8_000)),
      ]);
      assert.ok(closed, `close() ${delayMs} ms after a start resolved`);
      await settled;
      assert.deepEqual(spawners(), []);
      assert.deepEqual(running(`/bin/sleep\0${marker}`), [], 'its sandbox is gone too');
    }
  });

  it('kills a sandbox whose spawner was let go: kill() settles it at once', async () => {
    const spawner = new SandboxSpawner();
    const sandbox = spawner.spawn(command('/bin/sleep', '100'));
    await once(sandbox, 'spawn');
    const closing = spawner.close();
    const settled = ending(sandbox);
    sandbox.kill();
    assert.equal((await settled).signal, 'SIGKILL');
    await closing;
  });

  it('starts nothing once closed: a start then fails at once', async () => {
    const spawner = new SandboxSpawner();
    await spawner.close();
    const refused = await ending(spawner.spawn(command('/bin/sleep', '100')));
    assert.match(refused.error ?? '', /closed/);
    assert.deepEqual(spawners(), []);
  });

  it('leaves no spawner behind a pool closed before or while it probes the sandbox', async () => {
    const early = testPool();
    const probing = early.start();
    await early.close(); // before the probe's first start: none is made
    await probing;
    assert.deepEqual(spawners(), []);

    const pool = testPool();
    const started = pool.start();
    const deadline = Date.now() + 10_000;
    while (spawners().length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
    assert.equal(spawners().length, 1, 'the probe started the spawner');
    await pool.close(); // the probe's sandbox starting or started
    await started;
    assert.deepEqual(spawners(), []);
  });
});
