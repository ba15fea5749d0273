/**
 * Plumbing shared by the benchmarks (bench/*.bench.ts): settings from the environment, cleanup at exit or on a
 * signal, start-up timeouts, statistics, process CPU, and the printed machine line and tables.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type OpenAI from 'openai';
import type { RecordedRequest } from '../test/support/fake-upstream.ts';

// ── settings ──────────────────────────────────────────────────────────────────

export function positiveNumber(name: string, fallback: number): number {
  const raw = process.env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}: '${raw}' is not a positive number`);
  return value;
}

export function positiveInteger(name: string, fallback: number): number {
  const raw = process.env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name}: '${raw}' is not a positive integer`);
  return value;
}

// ── processes ─────────────────────────────────────────────────────────────────

export const STARTUP_TIMEOUT_MS = 30_000;

/** Steps run at exit, the last pushed first. */
export const cleanups: Array<() => Promise<unknown> | unknown> = [];

let cleaning: Promise<void> | undefined;

/** Runs the cleanup steps once: a signal and a failing run may both ask for it. */
export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const step of cleanups.splice(0).reverse()) {
      try {
        await step();
      } catch (error) {
        process.stderr.write(`cleanup: ${error instanceof Error ? error.message : String(error)}\n`);
      }
    }
  })();
  return cleaning;
}

export function withTimeout<T>(promise: Promise<T>, what: string, timeoutMs = STARTUP_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not start within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Runs `main` with cleanup on SIGINT/SIGTERM (exit 130) and at the end, then exits: 0, or 1 if `main` failed.
 * `stopping` names what a signal stops, in the message printed on it.
 */
export async function runBench(main: () => Promise<void>, stopping = 'servers'): Promise<never> {
  let exitCode = 0;
  const interrupted = (signal: NodeJS.Signals) => {
    process.stderr.write(`${signal} received, stopping ${stopping}\n`);
    cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  try {
    await main();
  } catch (error) {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    exitCode = 1;
  } finally {
    await cleanup();
  }
  process.exit(exitCode);
}

/** Runs `task` for every item, at most `limit` at a time. */
export async function pool<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await task(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** USER_HZ: 100 on every mainstream Linux (`getconf CLK_TCK`). */
const CLOCK_TICKS_PER_S = 100;

/** CPU time (user + system, all threads) a process has used, in ms; undefined where /proc is missing (not Linux). */
export function processCpuMs(pid: number | undefined): number | undefined {
  try {
    // Fields after the command name, which ends in ") ": utime and stime are the 12th and 13th, in clock ticks.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
  } catch {
    return undefined;
  }
}

/** The most upstream requests in flight at once, from the fake's record. */
export function peakConcurrency(requests: readonly RecordedRequest[]): number {
  const events: Array<[number, number]> = [];
  for (const r of requests) {
    events.push([r.receivedAt, 1]);
    events.push([r.finishedAt ?? r.abortedAt ?? Number.POSITIVE_INFINITY, -1]);
  }
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let current = 0;
  let peak = 0;
  for (const [, delta] of events) {
    current += delta;
    peak = Math.max(peak, current);
  }
  return peak;
}

// ── statistics ────────────────────────────────────────────────────────────────

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

export interface Latencies {
  p50: number;
  p90: number;
}

export function summarizeP50P90(samples: number[]): Latencies {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p90: percentile(sorted, 90) };
}

/**
 * `count` samples of each of two timings, interleaved, the order alternating (`first` first on even turns), so drift
 * on the machine falls on both sides alike.
 */
export async function interleaved(
  count: number,
  first: () => Promise<number>,
  second: () => Promise<number>,
): Promise<[number[], number[]]> {
  const firsts: number[] = [];
  const seconds: number[] = [];
  for (let i = 0; i < count; i++) {
    if (i % 2 === 0) {
      firsts.push(await first());
      seconds.push(await second());
    } else {
      seconds.push(await second());
      firsts.push(await first());
    }
  }
  return [firsts, seconds];
}

/** Times one streamed chat completion straight from the fake, consumed to the end; checks the text it streamed. */
export function directCompletionTimer(direct: OpenAI, model: string, prompt: string, expected: string) {
  return async (): Promise<number> => {
    const start = performance.now();
    const stream = await direct.chat.completions.create({
      model,
      messages: [{ role: 'user', content: prompt }],
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    const elapsed = performance.now() - start;
    if (text !== expected) throw new Error(`direct completion streamed ${JSON.stringify(text)}`);
    return elapsed;
  };
}

// ── report ────────────────────────────────────────────────────────────────────

export function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** `machine: <cores> × <CPU model>, <platform> <release>`. */
export function machine(): string {
  const cpus = os.cpus();
  return `machine: ${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${os.platform()} ${os.release()}`;
}

/** The 1, 5 and 15 min load averages, joined by `separator`. */
export function loadAverage(separator = ' / '): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(separator);
}

/** A Markdown table: the first column left-aligned, the others right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const format = (cells: string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? ` ${'-'.repeat(w)} ` : ` ${'-'.repeat(w - 1)}: `)).join('|')}|`;
  return [format(header), rule, ...rows.map(format)].join('\n');
}

/** The createAndPoll ÷ direct completion table and verdict (bench/runs.bench.ts part 1, bench/scale.bench.ts part 2). */
export function reportCreateAndPoll(run: Latencies, direct: Latencies, firstRunMs: number, targetRatio: number): void {
  const ratio = run.p50 / direct.p50;
  log(
    table(
      ['path', 'p50 ms', 'p90 ms'],
      [
        ['direct: chat.completions.create (stream)', direct.p50.toFixed(1), direct.p90.toFixed(1)],
        ['assistd: runs.createAndPoll', run.p50.toFixed(1), run.p90.toFixed(1)],
      ],
    ),
  );
  log('');
  log(
    `createAndPoll p50 ÷ direct p50: ${ratio.toFixed(3)} (+${(run.p50 - direct.p50).toFixed(1)} ms; ` +
      `target ≤ ${targetRatio}) — ${ratio <= targetRatio ? 'met' : 'NOT met'}`,
  );
  log(`(first run on the fresh server, not counted: ${firstRunMs.toFixed(0)} ms)`);
}
