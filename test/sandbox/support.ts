/**
 * Helpers of the sandbox tests: a pool with small limits and a silent logger, checks of PNG bytes, and a watch on
 * the event loop's delay while a nasty cell runs.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import pino from 'pino';
import { SandboxPool } from '../../src/sandbox/sandbox-pool.ts';
import { DEFAULT_SANDBOX_SETTINGS, type SandboxSettings } from '../../src/sandbox/settings.ts';

const MiB = 1024 * 1024;

/** Settings sized for tests: short grace, small tmpfs, the rest as shipped. */
export const TEST_SETTINGS: SandboxSettings = {
  ...DEFAULT_SANDBOX_SETTINGS,
  killGraceMs: 1_000,
  cellTimeoutMs: 20_000,
  dataBytes: 96 * MiB,
  maxFileBytes: 32 * MiB,
};

export function testPool(overrides: Partial<SandboxSettings> = {}): SandboxPool {
  return new SandboxPool({ ...TEST_SETTINGS, ...overrides }, pino({ level: 'silent' }));
}

/** A started pool; fails the test when the sandbox is unavailable (this machine has bwrap and the libraries). */
export async function startedPool(overrides: Partial<SandboxSettings> = {}): Promise<SandboxPool> {
  const pool = testPool(overrides);
  const status = await pool.start();
  if (!status.available) throw new Error(`sandbox unavailable: ${status.reason}`);
  return pool;
}

/** Runs `task`, returning its result and the event loop's longest delay meanwhile, in ms. */
export async function watchEventLoop<T>(task: () => Promise<T>): Promise<{ result: T; maxDelayMs: number }> {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  try {
    const result = await task();
    return { result, maxDelayMs: histogram.max / 1e6 };
  } finally {
    histogram.disable();
  }
}

/** The event loop's longest delay allowed while a nasty cell runs (generous: the machine is shared). */
export const EVENT_LOOP_BOUND_MS = 250;
