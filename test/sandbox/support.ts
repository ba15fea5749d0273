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

/** Width and height from a PNG's IHDR; throws when the bytes are not a PNG starting with its IHDR chunk. */
export function pngSize(bytes: Uint8Array): { width: number; height: number } {
  const buffer = Buffer.from(bytes);
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (!buffer.subarray(0, 8).equals(signature)) throw new Error('no PNG signature');
  if (buffer.readUInt32BE(8) !== 13 || buffer.toString('latin1', 12, 16) !== 'IHDR') throw new Error('no IHDR');
  return { width: buffer.readUInt32BE(16), height: buffer.readUInt32BE(20) };
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
