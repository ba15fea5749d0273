import { readFileSync } from 'node:fs';

/** The turns of the event loop counted from now until `stop()`: a statement that holds the loop lets none go by. */
export interface TurnCounter {
  readonly count: number;
  stop(): void;
}

export function countTurns(): TurnCounter {
  let count = 0;
  let ticking = true;
  const tick = () => {
    count += 1;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    get count() {
      return count;
    },
    stop() {
      ticking = false;
    },
  };
}

/** One stall of the event loop: how long the main thread held it (`ms`), and how late the timer was. */
export interface Stall {
  ms: number;
  lateMs: number;
}

export interface StallWatch {
  /** The longest stall so far, in ms. */
  readonly longestMs: number;
  stop(): void;
}

/** Where Linux counts the time the calling thread (here the main one) spent on a core: schedstat's first field, ns. */
const SCHEDSTAT = '/proc/thread-self/schedstat';

/**
 * The main thread's time on a core so far, in ms; undefined where the kernel does not say (no such file, or zeros:
 * a kernel that keeps no such counts prints "0 0 0", and a thread that runs this has been on a core).
 */
function mainThreadCpuMs(): number | undefined {
  try {
    const ns = Number(readFileSync(SCHEDSTAT, 'utf8').split(' ')[0]);
    return ns > 0 ? ns / 1e6 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Watches the event loop with a timer every `sampleMs`. A stall is the time the timer was late, counted at most as
 * the time the main thread spent on a core meanwhile: the tests run two files at once on two cores, and a timer
 * late because another process (or another thread of this one) had the core says nothing of the event loop
 * (timers were measured 100–230 ms late so, the main thread on a core for none of it). Work that holds the loop is
 * counted whole; a call that blocks it without working (a synchronous wait) is not, and needs a wall-clock watch
 * (test/sandbox/support.ts). `onStall` hears every sample.
 */
export function watchStalls(onStall?: (stall: Stall) => void, sampleMs = 10): StallWatch {
  let longestMs = 0;
  let last = performance.now();
  let lastCpu = mainThreadCpuMs();
  const timer = setInterval(() => {
    const now = performance.now();
    const cpu = mainThreadCpuMs();
    const lateMs = now - last - sampleMs;
    const worked = cpu === undefined || lastCpu === undefined ? lateMs : cpu - lastCpu;
    const ms = Math.max(0, Math.min(lateMs, worked));
    last = now;
    lastCpu = cpu;
    longestMs = Math.max(longestMs, ms);
    onStall?.({ ms, lateMs });
  }, sampleMs);
  return {
    get longestMs() {
      return longestMs;
    },
    stop: () => clearInterval(timer),
  };
}

/**
 * Runs `task`; answers its result and the longest stall of the event loop meanwhile, in ms (watchStalls, a timer
 * every `sampleMs`).
 */
export async function longestStall<T>(task: () => Promise<T>, sampleMs = 10): Promise<{ result: T; stallMs: number }> {
  const watch = watchStalls(undefined, sampleMs);
  try {
    const result = await task();
    // A stall that lasts until the task ends is seen by the timer's next turn.
    await new Promise((resolve) => setTimeout(resolve, sampleMs));
    return { result, stallMs: watch.longestMs };
  } finally {
    watch.stop();
  }
}
