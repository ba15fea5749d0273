import { readdirSync, readFileSync } from 'node:fs';

/** The host's processes as /proc shows them, for tests that check what a server leaves running. */

/** Pid → parent pid of every process on the host. */
export function parents(): Map<number, number> {
  const map = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      map.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {} // gone meanwhile
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

/** The parent of process `pid`; undefined once it is gone. */
export function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** Whether the process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
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
