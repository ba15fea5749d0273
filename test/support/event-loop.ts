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

/** One stall of the event loop: how long this process held it (`ms`), and how late the timer was. */
export interface Stall {
  ms: number;
  lateMs: number;
}

export interface StallWatch {
  /** The longest stall so far, in ms. */
  readonly longestMs: number;
  stop(): void;
}

/**
 * Watches the event loop with a timer every `sampleMs`. A stall is the time the timer was late, counted at most as
 * the CPU time this process (all its threads) used meanwhile: the tests run three files at once on two cores, and a
 * timer late because another process had the core says nothing of this one (timers were measured up to 230 ms late
 * so, while this process worked a fraction of that). Work that holds the loop is counted whole; a call that blocks
 * it without working (a synchronous wait) is not, and needs a wall-clock watch (test/sandbox/support.ts). `onStall`
 * hears every sample.
 */
export function watchStalls(onStall?: (stall: Stall) => void, sampleMs = 10): StallWatch {
  let longestMs = 0;
  let last = performance.now();
  let lastCpu = process.cpuUsage();
  const timer = setInterval(() => {
    const now = performance.now();
    const cpu = process.cpuUsage(lastCpu);
    const lateMs = now - last - sampleMs;
    const ms = Math.max(0, Math.min(lateMs, (cpu.user + cpu.system) / 1000));
    last = now;
    lastCpu = process.cpuUsage();
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

/** Runs `task`; answers its result and the longest stall of the event loop meanwhile, in ms (watchStalls). */
export async function longestStall<T>(task: () => Promise<T>): Promise<{ result: T; stallMs: number }> {
  const watch = watchStalls();
  try {
    const result = await task();
    return { result, stallMs: watch.longestMs };
  } finally {
    watch.stop();
  }
}
