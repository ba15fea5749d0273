import { lstatSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import { seccompFilter } from './seccomp.ts';
import type { SandboxSettings } from './settings.ts';

/**
 * The bubblewrap command line of one session: the only place that decides what the sandbox can see and do.
 *
 * What a prototype showed, each a hole when missed:
 * - bwrap started by root is no sandbox (the code could remount /usr, write the host's /proc/sys, fork past
 *   RLIMIT_NPROC): it runs as an unprivileged host uid (nobody, 65534, when the server is root), inside a user
 *   namespace of its own, with every capability dropped and no further user namespaces (`--disable-userns`, which
 *   would let it mount tmpfs of unbounded size).
 * - `--clearenv` cleans only the command: bwrap's own pid 1 keeps the spawn environment, readable as
 *   /proc/1/environ inside, so bwrap itself is spawned with nothing but PATH.
 * - Every writable place is a tmpfs with a size (/mnt/data, /tmp, /dev/shm); the root and /dev are read-only; no
 *   host directory is writable. Files go in and out only through the driver inside (O_NOFOLLOW), never by a host
 *   path, where a symlink made inside would lead the host elsewhere.
 * - No network (`--unshare-net`: only a loopback of its own), its own pid, ipc, uts and cgroup namespaces; the
 *   sandbox dies with the server (`--die-with-parent`, and the pid namespace ends with its pid 1).
 * - Memory that RLIMIT_AS does not count (SysV shared memory and message queues, memfds) is refused by a seccomp
 *   filter (seccomp.ts), which bwrap reads from the fd SECCOMP_FD.
 * Limits (RLIMIT_AS, NPROC, FSIZE, CPU, NOFILE) are set by the driver itself before any user code runs (driver.py);
 *   the driver is the pid namespace's pid 1 (`--as-pid-1`), so no process of the sandbox is without them.
 */

/** The uid and gid bwrap runs as when the server is root. */
export const SANDBOX_UID = 65534;

/** The fd of the sandbox's process on which bwrap reads the seccomp filter (`SandboxCommand.seccomp`). */
export const SECCOMP_FD = 3;

/** Where the font cache the host built is bound, read-only. */
const FONT_CACHE_MOUNT = '/opt/assistd/matplotlib';

export interface SandboxCommand {
  command: string;
  args: string[];
  /** For child_process.spawn: the environment, and the uid/gid when the server is root. */
  spawn: { env: NodeJS.ProcessEnv; uid?: number; gid?: number };
  /** The compiled seccomp filter, to be written to the process's fd SECCOMP_FD (then closed: bwrap reads to EOF). */
  seccomp: Buffer;
}

/** How the host's root is laid out: merged-/usr distributions make /bin, /lib… symlinks into /usr. */
function rootEntries(): string[] {
  const args: string[] = ['--ro-bind', '/usr', '/usr'];
  for (const entry of ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']) {
    let stats: ReturnType<typeof lstatSync>;
    try {
      stats = lstatSync(entry);
    } catch {
      continue;
    }
    if (stats.isSymbolicLink()) args.push('--symlink', readlinkSync(entry), entry);
    else if (stats.isDirectory()) args.push('--ro-bind', entry, entry);
  }
  return args;
}

/** Read-only /etc entries the preloaded libraries need: numpy's BLAS is chosen by /etc/alternatives. */
const ETC_ENTRIES = ['/etc/alternatives', '/etc/ld.so.cache', '/etc/matplotlibrc', '/etc/fonts'];

/**
 * The command of a session running `driverSource` with `settings`; `fontCacheDir` (a root-owned host directory
 * holding matplotlib's font cache) is bound read-only when given. Throws on an architecture without a seccomp filter.
 */
export function sandboxCommand(
  settings: SandboxSettings,
  driverSource: string,
  fontCacheDir: string | undefined,
): SandboxCommand {
  const config = {
    memoryBytes: settings.memoryBytes,
    maxProcesses: settings.maxProcesses,
    maxFileBytes: settings.maxFileBytes,
    cpuSeconds: settings.cpuSeconds,
    outputChars: settings.outputChars,
    fontCache: fontCacheDir === undefined ? null : FONT_CACHE_MOUNT,
  };
  // A thread pool per core would count against RLIMIT_NPROC and the address space on a large host.
  const threads = String(Math.min(4, os.availableParallelism()));
  const args = [
    '--unshare-all',
    '--unshare-user',
    '--disable-userns',
    '--die-with-parent',
    // The driver is the namespace's pid 1, under its own limits: bwrap's init, with none, could be ptrace'd by the
    // code (same uid) and made to hold any amount of memory, CPU or processes.
    '--as-pid-1',
    '--new-session',
    '--cap-drop',
    'ALL',
    '--seccomp',
    String(SECCOMP_FD),
    ...rootEntries(),
    ...ETC_ENTRIES.flatMap((entry) => ['--ro-bind-try', entry, entry]),
    ...(fontCacheDir === undefined ? [] : ['--ro-bind', fontCacheDir, FONT_CACHE_MOUNT]),
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    // multiprocessing's semaphores need a writable /dev/shm; the rest of /dev (a tmpfs without a size) is made
    // read-only so that it cannot be filled.
    '--size',
    String(Math.floor(settings.dataBytes / 16)),
    '--tmpfs',
    '/dev/shm',
    '--remount-ro',
    '/dev',
    '--size',
    String(settings.dataBytes),
    '--tmpfs',
    '/mnt/data',
    '--size',
    String(Math.floor(settings.dataBytes / 4)),
    '--tmpfs',
    '/tmp',
    '--remount-ro',
    '/',
    '--chdir',
    '/mnt/data',
    '--clearenv',
    ...['--setenv', 'PATH', '/usr/bin:/bin'],
    ...['--setenv', 'HOME', '/tmp'],
    ...['--setenv', 'USER', 'sandbox'],
    ...['--setenv', 'LANG', 'C.UTF-8'],
    ...['--setenv', 'TZ', 'UTC'],
    ...['--setenv', 'MPLBACKEND', 'Agg'],
    ...['--setenv', 'MPLCONFIGDIR', '/tmp/.matplotlib'],
    ...['--setenv', 'OPENBLAS_NUM_THREADS', threads],
    ...['--setenv', 'OMP_NUM_THREADS', threads],
    '--',
    settings.python,
    '-I',
    '-c',
    driverSource,
    JSON.stringify(config),
  ];
  const root = process.getuid?.() === 0;
  return {
    command: settings.bwrap,
    args,
    spawn: { env: { PATH: '/usr/bin:/bin' }, ...(root ? { uid: SANDBOX_UID, gid: SANDBOX_UID } : {}) },
    seccomp: seccompFilter(),
  };
}
