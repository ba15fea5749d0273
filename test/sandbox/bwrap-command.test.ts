import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SANDBOX_UID, SECCOMP_FD, sandboxCommand } from '../../src/sandbox/bwrap-command.ts';
import { seccompFilter } from '../../src/sandbox/seccomp.ts';
import { TEST_SETTINGS } from './support.ts';

describe('the bwrap command', () => {
  const { command, args, spawn, seccomp } = sandboxCommand(TEST_SETTINGS, 'DRIVER', '/tmp/fonts');
  const pairs = (flag: string) => args.flatMap((arg, i) => (arg === flag ? [args[i + 1]] : []));

  it('spawns bwrap with nothing of the server’s environment, unprivileged when the server is root', () => {
    assert.equal(command, 'bwrap');
    assert.deepEqual(spawn.env, { PATH: '/usr/bin:/bin' });
    if (process.getuid?.() === 0) {
      assert.equal(spawn.uid, SANDBOX_UID);
      assert.equal(spawn.gid, SANDBOX_UID);
    } else assert.equal(spawn.uid, undefined);
  });

  it('isolates every namespace, drops capabilities, and dies with the server', () => {
    for (const flag of ['--unshare-all', '--unshare-user', '--disable-userns', '--die-with-parent', '--new-session'])
      assert.ok(args.includes(flag), flag);
    assert.deepEqual(pairs('--cap-drop'), ['ALL']);
    assert.ok(args.includes('--clearenv'));
  });

  it('loads the seccomp filter from the fd the process is given it on', () => {
    assert.deepEqual(pairs('--seccomp'), [String(SECCOMP_FD)]);
    assert.ok(args.indexOf('--seccomp') < args.indexOf('--'), 'an option of bwrap, not of the command');
    assert.deepEqual(seccomp, seccompFilter());
  });

  it('binds nothing writable; every writable place is a tmpfs with a size; / and /dev are read-only', () => {
    assert.ok(!args.includes('--bind') && !args.includes('--dev-bind') && !args.includes('--bind-try'));
    assert.deepEqual(pairs('--tmpfs'), ['/dev/shm', '/mnt/data', '/tmp']);
    assert.deepEqual(pairs('--size').map(Number), [
      TEST_SETTINGS.dataBytes / 16,
      TEST_SETTINGS.dataBytes,
      TEST_SETTINGS.dataBytes / 4,
    ]);
    for (const [i, arg] of args.entries()) if (arg === '--tmpfs') assert.equal(args[i - 2], '--size');
    assert.deepEqual(pairs('--remount-ro'), ['/dev', '/']);
    assert.ok(args.lastIndexOf('--remount-ro') > args.lastIndexOf('--tmpfs'), 'remounted after the mounts');
    assert.deepEqual(pairs('--ro-bind').slice(-1), ['/tmp/fonts']);
  });

  it('runs the driver from its source with -I, the limits as its argument', () => {
    const end = args.indexOf('--');
    assert.deepEqual(args.slice(end + 1, end + 5), [TEST_SETTINGS.python, '-I', '-c', 'DRIVER']);
    const config = JSON.parse(args.at(-1)!);
    assert.equal(config.memoryBytes, TEST_SETTINGS.memoryBytes);
    assert.equal(config.maxProcesses, TEST_SETTINGS.maxProcesses);
    assert.equal(config.outputChars, TEST_SETTINGS.outputChars);
  });
});
