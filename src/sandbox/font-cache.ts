import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { access, chmod, constants, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * matplotlib's font cache, built once per process so that a session starts without a font scan (`fc-list` and a
 * read of every font: ~3 s).
 *
 * It is built on the host, by the sandbox's Python run on a fixed one-liner (no user code), into a fresh directory
 * only the server can write; sessions get it bound read-only, and the driver copies it into the writable
 * MPLCONFIGDIR that matplotlib insists on (given a read-only one, it builds a cache of its own). The directory is
 * removed when the process exits; one left by a process that was killed is removed by the next build (its name
 * carries its process id).
 */

const run = promisify(execFile);

const PREFIX = 'assistd-matplotlib-';

const BUILD = 'import matplotlib; matplotlib.use("Agg"); import matplotlib.font_manager';

/** The cache directory by Python; a failed build is forgotten, so that a later pool tries again. */
const built = new Map<string, Promise<string>>();
const dirs: string[] = [];

/** The directory of the cache for `python`; throws when it cannot be built (the sandbox is then unavailable). */
export function fontCacheDir(python: string): Promise<string> {
  let dir = built.get(python);
  if (dir === undefined) {
    dir = build(python);
    built.set(python, dir);
    dir.catch(() => built.delete(python));
  }
  return dir;
}

async function build(python: string): Promise<string> {
  await sweepFontCaches();
  const dir = await mkdtemp(path.join(os.tmpdir(), `${PREFIX}${process.pid}-`));
  try {
    await access(python, constants.X_OK);
    await run(python, ['-I', '-c', BUILD], {
      env: { PATH: '/usr/bin:/bin', HOME: dir, MPLCONFIGDIR: dir, MPLBACKEND: 'Agg' },
      timeout: 120_000,
    });
    // mkdtemp makes it 0700: the sandbox's uid must be able to read it (and nothing can write it but us).
    await chmod(dir, 0o755);
    const files = await readdir(dir);
    if (!files.some((name) => name.endsWith('.json'))) throw new Error('matplotlib wrote no font cache');
    await Promise.all(files.map((name) => chmod(path.join(dir, name), 0o644)));
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  if (dirs.length === 0)
    process.once('exit', () => {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });
  dirs.push(dir);
  return dir;
}

/**
 * Removes the cache directories in `tmp` of processes that are gone (killed: their exit handler never ran). A
 * directory whose process still runs is kept, whoever runs it.
 */
export async function sweepFontCaches(tmp = os.tmpdir()): Promise<void> {
  for (const name of await readdir(tmp).catch(() => [])) {
    const pid = /^assistd-matplotlib-(\d+)-[^/]+$/.exec(name)?.[1];
    if (pid !== undefined && !alive(Number(pid))) await rm(path.join(tmp, name), { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // another user's: alive
  }
}
