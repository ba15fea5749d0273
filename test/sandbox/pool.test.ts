import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SandboxError } from '../../src/sandbox/sandbox-error.ts';
import { commandOf, parentOf, sandboxesBelow, spawnersBelow } from '../support/processes.ts';
import { startedPool, testPool } from './support.ts';

/** Pids of the sandboxes this test process started. */
function ownBwraps(): number[] {
  return sandboxesBelow(process.pid);
}

describe('the sandbox pool', () => {
  it('reports itself disabled, and refuses sessions', async () => {
    const pool = testPool({ enabled: false });
    assert.equal(pool.status, undefined);
    const status = await pool.start();
    assert.deepEqual(status, { available: false, reason: 'disabled by ASSISTD_CODE_INTERPRETER=off' });
    assert.equal(pool.start(), pool.start(), 'probed once');
    assert.deepEqual(pool.status, status);
    await assert.rejects(pool.session('thread_a'), SandboxError);
    await pool.close();
  });

  it('reports a missing Python or bubblewrap as unavailable, with a clear reason', async () => {
    const noPython = testPool({ python: '/usr/bin/no-such-python3' });
    assert.deepEqual(await noPython.start(), { available: false, reason: 'no Python at /usr/bin/no-such-python3' });
    await assert.rejects(noPython.session('thread_a'), /unavailable: no Python at \/usr\/bin\/no-such-python3/);
    const noBwrap = testPool({ bwrap: 'no-such-bwrap' });
    assert.deepEqual(await noBwrap.start(), { available: false, reason: 'no-such-bwrap (bubblewrap) is not on PATH' });
    // The real sandbox command fails (here: a Python the sandbox cannot see), not just a version check.
    const hidden = testPool({ python: process.execPath });
    const status = await hidden.start();
    assert.equal(status.available, false);
    assert.ok(
      !status.available && /cannot build matplotlib|does not start/.test(status.reason),
      JSON.stringify(status),
    );
    await Promise.all([noPython.close(), noBwrap.close(), hidden.close()]);
  });

  it('hands out one session per key, fresh the first time', async () => {
    const pool = await startedPool();
    try {
      const first = await pool.session('thread_a');
      assert.equal(first.fresh, true);
      await first.session.runCell('value = "a"');
      const again = await pool.session('thread_a');
      assert.equal(again.session, first.session);
      assert.equal(again.fresh, false);
      assert.equal((await again.session.runCell('value')).logs, "'a'\n");
      assert.equal(first.session.key, 'thread_a');
    } finally {
      await pool.close();
    }
  });

  it('evicts the least recently used idle session when full, and refuses when every session is busy', async () => {
    const pool = await startedPool({ maxSessions: 2 });
    try {
      const heldA = await pool.session('thread_a');
      const a = heldA.session;
      const heldB = await pool.session('thread_b');
      const b = heldB.session;
      await b.runCell('name = "b"');
      await a.runCell('name = "a"'); // a is now the most recently used
      await assert.rejects(
        pool.session('thread_c', { waitMs: 0 }),
        /All 2 code interpreter sessions are busy/,
        'both held',
      );
      heldB.release();
      heldA.release();
      const c = await pool.session('thread_c'); // evicts b
      c.release();
      assert.equal(c.fresh, true);
      assert.equal((await a.runCell('name')).logs, "'a'\n", 'a kept');
      await assert.rejects(b.runCell('name'), /closed \(evicted/);
      await c.session.runCell('name = "c"');
      const b2 = await pool.session('thread_b'); // evicts a, used before c
      b2.release();
      assert.equal(b2.fresh, true);
      assert.notEqual(b2.session, b);
      assert.match((await b2.session.runCell('name')).logs, /NameError/);
      assert.equal((await c.session.runCell('name')).logs, "'c'\n", 'c kept');
      await assert.rejects(a.runCell('name'), /closed \(evicted/);

      const busy = b2.session.runCell('import time\ntime.sleep(3)');
      const busyToo = c.session.runCell('import time\ntime.sleep(3)');
      await new Promise((resolve) => setTimeout(resolve, 200));
      await assert.rejects(pool.session('thread_d', { waitMs: 0 }), /All 2 code interpreter sessions are busy/);
      await Promise.all([busy, busyToo]);
    } finally {
      await pool.close();
    }
  });

  it('never evicts a session starting or held: of four keys at once with room for two, two run, two wait their turn', async () => {
    const pool = await startedPool({ maxSessions: 2 });
    try {
      // Each caller holds its session from session() to the end of its cell, as the tool does while it places files.
      const order: string[] = [];
      const outcomes = await Promise.all(
        ['thread_a', 'thread_b', 'thread_c', 'thread_d'].map(async (key) => {
          const held = await pool.session(key);
          order.push(`${key} in`);
          try {
            return (await held.session.runCell('import time\ntime.sleep(0.5)\nprint("ran")')).logs;
          } finally {
            order.push(`${key} out`);
            held.release();
          }
        }),
      );
      assert.deepEqual(outcomes, ['ran\n', 'ran\n', 'ran\n', 'ran\n']);
      let inside = 0;
      for (const event of order) {
        inside += event.endsWith(' in') ? 1 : -1;
        assert.ok(inside <= 2, `never more than two held at once: ${order.join(', ')}`);
      }
    } finally {
      await pool.close();
    }
  });

  it('a wait for a session ends at its time limit (refused) or when its signal aborts (its reason)', async () => {
    const pool = await startedPool({ maxSessions: 1 });
    try {
      const held = await pool.session('thread_a');
      await assert.rejects(pool.session('thread_b', { waitMs: 300 }), /All 1 code interpreter sessions are busy/);
      const controller = new AbortController();
      const waiting = pool.session('thread_b', { signal: controller.signal });
      setTimeout(() => controller.abort(new Error('run cancelled')), 200);
      await assert.rejects(waiting, /run cancelled/);
      held.release();
      const next = await pool.session('thread_b', { waitMs: 0 });
      assert.equal(next.fresh, true);
      next.release();
    } finally {
      await pool.close();
    }
  });

  it('closes the session of a key at once (its thread deleted), held or not; its process is gone', async () => {
    const pool = await startedPool();
    try {
      const held = await pool.session('thread_a');
      await held.session.runCell('kept = 1');
      const running = held.session.runCell('while True:\n    pass');
      await new Promise((resolve) => setTimeout(resolve, 200)); // the cell has started
      const before = ownBwraps();
      await pool.closeSession('thread_a', 'thread deleted');
      assert.deepEqual(await running, {
        logs: '[The session was closed (thread deleted).]',
        images: [],
        outcome: 'killed',
        killed: 'closed',
      });
      const after = ownBwraps();
      assert.equal(before.filter((pid) => !after.includes(pid)).length, 1, 'its sandbox ended');
      await assert.rejects(held.session.runCell('kept'), /closed \(thread deleted\)/);
      held.release();
      const again = await pool.session('thread_a');
      again.release();
      assert.equal(again.fresh, true);
      await pool.closeSession('thread_none', 'thread deleted'); // no session: nothing to do
    } finally {
      await pool.close();
    }
  });

  it('closes a session idle too long; the key then gets a fresh one', async () => {
    const pool = await startedPool({ idleMs: 400 });
    try {
      const first = await pool.session('thread_a');
      await first.session.runCell('value = 1');
      first.release();
      await new Promise((resolve) => setTimeout(resolve, 900));
      const after = await pool.session('thread_a');
      assert.equal(after.fresh, true);
      assert.notEqual(after.session, first.session);
      assert.match((await after.session.runCell('value')).logs, /NameError/);
    } finally {
      await pool.close();
    }
  });

  it('keeps a held session idle longer than its idle time (a run between two calls); idle time counts once let go', async () => {
    const pool = await startedPool({ idleMs: 400 });
    try {
      const held = await pool.session('thread_a');
      await held.session.runCell('kept = 1');
      await new Promise((resolve) => setTimeout(resolve, 900)); // a model turn longer than the idle time
      assert.equal((await held.session.runCell('kept')).logs, '1\n');
      held.release();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const again = await pool.session('thread_a');
      assert.equal(again.fresh, false, 'let go 200 ms ago: not idle too long yet');
      again.release();
      await new Promise((resolve) => setTimeout(resolve, 900));
      const later = await pool.session('thread_a');
      later.release();
      assert.equal(later.fresh, true, 'idle too long once let go');
    } finally {
      await pool.close();
    }
  });

  it('closes a session at the end of its lifetime, even while a cell runs (its caller done with it)', async () => {
    const pool = await startedPool({ lifetimeMs: 1_500 });
    try {
      const first = await pool.session('thread_a');
      first.release();
      const cell = first.session.runCell('import time\ntime.sleep(2)\n"finished"');
      await new Promise((resolve) => setTimeout(resolve, 1_700));
      assert.equal((await pool.session('thread_a')).fresh, true, 'replaced at once');
      assert.equal((await cell).logs, "'finished'\n", 'the running cell was let finish');
    } finally {
      await pool.close();
    }
  });

  it('closes a session held at the end of its lifetime once it is let go, not under its holder', async () => {
    const pool = await startedPool({ lifetimeMs: 1_000 });
    try {
      const held = await pool.session('thread_a');
      await held.session.runCell('kept = 1');
      // Its lifetime ends while it is held: between two files a call places, or between two calls of a run.
      await new Promise((resolve) => setTimeout(resolve, 1_300));
      await held.session.writeFile('late.txt', new Uint8Array([1]));
      assert.equal((await held.session.runCell('kept')).logs, '1\n');
      const again = await pool.session('thread_a');
      assert.equal(again.session, held.session, 'its key still gets it while it is held');
      assert.equal(again.fresh, false);
      again.release();
      assert.equal((await held.session.runCell('kept')).logs, '1\n', 'held by its first caller still');
      held.release();
      await assert.rejects(held.session.runCell('kept'), /closed \(lifetime reached\)/);
      const next = await pool.session('thread_a');
      next.release();
      assert.equal(next.fresh, true);
      assert.notEqual(next.session, held.session);
    } finally {
      await pool.close();
    }
  });

  it('starts its sandboxes from the spawner: the server forks none of them itself', async () => {
    const pool = await startedPool();
    try {
      await pool.session('thread_a');
      const sandboxes = ownBwraps();
      assert.ok(sandboxes.length >= 1, 'the session');
      const parents = new Set(sandboxes.map(parentOf));
      assert.equal(parents.size, 1, 'one spawner');
      const [spawner] = parents;
      assert.notEqual(spawner, process.pid);
      assert.equal(parentOf(spawner!), process.pid, "the spawner is the server's child");
      assert.equal(commandOf(spawner!), 'node');
    } finally {
      await pool.close();
    }
  });

  it('outlives a killed spawner: its sandboxes die with it, their cells end, and the next session gets a new one', async () => {
    const pool = await startedPool();
    try {
      const { session, release } = await pool.session('thread_a');
      await session.runCell('kept = 1');
      const running = session.runCell('while True:\n    pass');
      await new Promise((resolve) => setTimeout(resolve, 200)); // the cell has started
      const [first] = ownBwraps();
      const spawner = parentOf(first!)!;
      process.kill(spawner, 'SIGKILL');
      assert.equal((await running).outcome, 'killed');
      release();
      const again = await pool.session('thread_a');
      assert.equal(again.fresh, true, 'its variables went with its sandbox');
      assert.equal((await again.session.runCell('print(6 * 7)')).logs, '42\n');
      again.release();
      const now = new Set(ownBwraps().map(parentOf));
      assert.ok(now.size === 1 && !now.has(spawner), 'a new spawner started the new sandboxes');
    } finally {
      await pool.close();
    }
  });

  it('leaves no sandbox process after close, and refuses sessions then', async () => {
    const pool = await startedPool();
    const { session } = await pool.session('thread_a');
    const running = session.runCell('while True:\n    pass');
    await pool.session('thread_b');
    assert.ok(ownBwraps().length >= 3, 'two sessions and a spare');
    await pool.close();
    assert.equal((await running).outcome, 'killed');
    assert.deepEqual(ownBwraps(), []);
    assert.deepEqual(spawnersBelow(process.pid), [], 'the spawner is gone too');
    await assert.rejects(pool.session('thread_c'), /shutting down/);
  });
});
