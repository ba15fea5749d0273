import { readdirSync, readFileSync } from 'node:fs';

/** The host's processes as /proc shows them, for tests that check what a server leaves running. */

/** The fields of /proc/<pid>/stat after the command (state, parent pid, …); undefined once it is gone. */
function statFields(pid: number | string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Pid → parent pid of every process on the host. */
export function parents(): Map<number, number> {
  const map = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(entry);
    if (fields) map.set(Number(entry), Number(fields[1])); // else gone meanwhile
  }
  return map;
}

/** Every process below `root` (children, their children, …). */
export function descendants(root: number): number[] {
  const map = parents();
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    for (const [child, parent] of map)
      if (parent === pid) {
        found.push(child);
        queue.push(child);
      }
  }
  return found;
}

/**
 * The sandboxes below `root`: its live bwrap processes whose parent is not a bwrap (bwrap runs the sandbox under a
 * bwrap child of its own), one per sandbox, whatever process started them.
 */
export function sandboxesBelow(root: number): number[] {
  return descendants(root).filter(
    (pid) => commandOf(pid) === 'bwrap' && alive(pid) && commandOf(parentOf(pid) ?? 0) !== 'bwrap',
  );
}

/** The spawners below `root`: its live node processes (the tests' own helpers run none). */
export function spawnersBelow(root: number): number[] {
  return descendants(root).filter((pid) => commandOf(pid) === 'node' && alive(pid));
}

/** The parent of process `pid`; undefined once it is gone. */
export function parentOf(pid: number): number | undefined {
  const fields = statFields(pid);
  return fields && Number(fields[1]);
}

/** Whether the process exists and is not a zombie. */
export function alive(pid: number): boolean {
  const state = statFields(pid)?.[0];
  return state !== undefined && state !== 'Z';
}

/** The process's command name (`comm`), or undefined once it is gone. */
export function commandOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Resident set size now and at its peak (VmHWM), in bytes, of a process of this machine. */
export function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'))?.[1]) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/** Keeps the thread busy for `ms`, as synchronous work (a SQLite statement, a run's creation) does. */
export function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {}
}
