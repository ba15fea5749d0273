/**
 * Plumbing shared by the benchmarks (bench/*.bench.ts): settings from the environment, cleanup at exit or on a
 * signal, start-up timeouts, the databases a benchmark runs on (SQLite in a temporary directory, or a throwaway
 * PostgreSQL database) and an `assistd serve` on one of them, statistics, process CPU (the server's and
 * PostgreSQL's), and the printed machine line and tables.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { createParser } from 'eventsource-parser';
import OpenAI from 'openai';
import pg from 'pg';
import type { RecordedRequest } from '../test/support/fake-upstream.ts';
import { createTestDatabase } from '../test/support/postgres.ts';
import { type ServerProcess, spawnServer, tempDir } from '../test/support/server.ts';

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

/** Starts a process; it is stopped at cleanup, even if it only comes up after its timeout gave up on it. */
export async function started<P extends { stop(signal?: NodeJS.Signals): Promise<number | null> }>(
  spawned: Promise<P>,
  what: string,
): Promise<P> {
  cleanups.push(() => spawned.then((late) => late.stop('SIGKILL')).catch(() => {}));
  return withTimeout(spawned, what);
}

/** How long a stopped floor server may take to close before it is killed. */
const FLOOR_STOP_TIMEOUT_MS = 5_000;

export interface Floor {
  url: string;
  pid: number;
  /**
   * Stops the floor: SIGTERM, then SIGKILL if it has not exited within FLOOR_STOP_TIMEOUT_MS, so that a floor stuck
   * closing (a request still in flight) can never hold up the benchmark or outlive it. Also done at cleanup.
   */
  stop(): Promise<void>;
}

/**
 * A floor server (a script of bench/ printing `floor listening on <url>` once it listens) as its own process, stopped
 * at cleanup; resolves with its URL, pid and how to stop it — which a benchmark does as soon as it is done with it,
 * so that an idle floor does not share the cores with the parts that follow.
 */
export async function startFloor(script: string, env: Record<string, string> = {}): Promise<Floor> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(new URL(script, import.meta.url))],
    {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), FLOOR_STOP_TIMEOUT_MS);
      });
      const outcome = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (outcome !== 'late') return;
      process.stderr.write(
        `floor server ${child.pid} still running ${FLOOR_STOP_TIMEOUT_MS} ms after SIGTERM: killed\n`,
      );
      child.kill('SIGKILL');
      await exited;
    })();
    return stopping;
  };
  cleanups.push(stop);
  // What it printed until it listened, for the error if it never does; afterwards its output is read and dropped.
  let output: string | undefined = '';
  const listening = new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      if (output === undefined) return;
      output += chunk.toString();
      const match = output.match(/floor listening on (http:\/\/\S+)/);
      if (match) {
        output = undefined;
        resolve(match[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    exited.then((code) => reject(new Error(`floor server exited with ${code} before listening:\n${output}`)));
  });
  return { url: await withTimeout(listening, 'floor server'), pid: child.pid!, stop };
}

// ── databases ─────────────────────────────────────────────────────────────────

export type DatabaseKind = 'sqlite' | 'postgres';

export const DATABASE_NAMES: Record<DatabaseKind, string> = { sqlite: 'SQLite', postgres: 'PostgreSQL' };

/** The PostgreSQL server (and a database on it to connect to) where throwaway databases are created. */
export const ADMIN_DATABASE_URL =
  process.env.BENCH_DATABASE_URL?.trim() || 'postgres://postgres@127.0.0.1:5432/postgres';

/** BENCH_DATABASES: a comma-separated list of `sqlite` and `postgres`, in the order they are measured (default both). */
export function databaseKinds(name = 'BENCH_DATABASES'): DatabaseKind[] {
  const raw = process.env[name]?.trim();
  if (raw === undefined || raw === '') return ['sqlite', 'postgres'];
  const kinds: DatabaseKind[] = [];
  for (const item of raw.split(',').map((s) => s.trim().toLowerCase())) {
    if (item !== 'sqlite' && item !== 'postgres')
      throw new Error(`${name}: '${item}' is not a database (expected a comma-separated list of sqlite, postgres)`);
    if (!kinds.includes(item)) kinds.push(item);
  }
  if (kinds.length === 0) throw new Error(`${name}: '${raw}' names no database`);
  return kinds;
}

/** `postgres://user@host:port/db` without a password, for the printed header. */
export function describeAdminUrl(url = ADMIN_DATABASE_URL): string {
  try {
    const parsed = new URL(url);
    return `postgres://${parsed.username ? `${decodeURIComponent(parsed.username)}@` : ''}${parsed.host}${parsed.pathname}`;
  } catch {
    return '(unparsable BENCH_DATABASE_URL)';
  }
}

/** The PostgreSQL server's version; a clear error (naming how to skip it) if it cannot be reached. */
export async function postgresVersion(adminUrl = ADMIN_DATABASE_URL): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
    return (await client.query<{ v: string }>("select current_setting('server_version') as v")).rows[0]!.v;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `PostgreSQL at ${describeAdminUrl(adminUrl)} (BENCH_DATABASE_URL): ${reason}; BENCH_DATABASES=sqlite skips it`,
    );
  } finally {
    await client.end().catch(() => {});
  }
}

/** Where one server keeps its data: the environment that points assistd at it, and how to throw it away. */
export interface BenchDatabase {
  kind: DatabaseKind;
  /** ASSISTD_DATA_DIR (a temporary directory, for either database) and, for PostgreSQL, ASSISTD_DATABASE_URL. */
  env: Record<string, string>;
  dataDir: string;
  /** PostgreSQL: the throwaway database's name (its backends are found by it in pg_stat_activity). */
  postgresName: string | undefined;
  /** Removes the directory and drops the database; also done at cleanup if not called. */
  drop(): Promise<void>;
}

/** A temporary data directory, and with PostgreSQL a throwaway database created on ADMIN_DATABASE_URL's server. */
export async function benchDatabase(kind: DatabaseKind, prefix: string): Promise<BenchDatabase> {
  const dataDir = tempDir(prefix);
  const database = kind === 'postgres' ? await createTestDatabase(ADMIN_DATABASE_URL) : undefined;
  let dropped: Promise<void> | undefined;
  const drop = () => {
    dropped ??= (async () => {
      rmSync(dataDir, { recursive: true, force: true });
      await database?.drop();
    })();
    return dropped;
  };
  cleanups.push(drop);
  return {
    kind,
    env: { ASSISTD_DATA_DIR: dataDir, ...(database ? { ASSISTD_DATABASE_URL: database.url } : {}) },
    dataDir,
    postgresName: database?.name,
    drop,
  };
}

export interface Assistd {
  server: ServerProcess;
  database: BenchDatabase;
  /** The API base, up to and including /v1. */
  base: string;
  client: OpenAI;
  /** Stops the server, then removes its data (also done at exit if not called). */
  stop(): Promise<void>;
}

/** `assistd serve` in its own process on a fresh database of `kind`, executing runs on `upstreamUrl`. */
export async function startAssistd(
  kind: DatabaseKind,
  upstreamUrl: string,
  { prefix = 'assistd-bench-', env = {} }: { prefix?: string; env?: Record<string, string> } = {},
): Promise<Assistd> {
  const database = await benchDatabase(kind, prefix);
  const server = await started(
    spawnServer({ ...database.env, ASSISTD_UPSTREAM_BASE_URL: upstreamUrl, ...env }),
    `assistd serve (${DATABASE_NAMES[kind]})`,
  );
  cleanups.push(() => server.stop());
  const base = `${server.url}/v1`;
  return {
    server,
    database,
    base,
    client: new OpenAI({ baseURL: base, apiKey: 'bench', maxRetries: 0 }),
    stop: async () => {
      await server.stop();
      await database.drop();
    },
  };
}

/**
 * What is wrong with a streamed run's Server-Sent Events, read to their end, if anything. assistd ends every stream
 * with `done`, a failed or cancelled run's too, so a stream only counts if `thread.run.completed` comes right before
 * it and it carries one `thread.message.delta` per expected token (and, if given, exactly the expected text): a
 * regression that failed runs, or lost tokens, must fail the benchmark rather than make it cheaper or faster.
 */
export function runStreamProblem(sse: string, expected: { deltas: number; text?: string }): string | undefined {
  const names: string[] = [];
  let deltas = 0;
  let text = '';
  const parser = createParser({
    onEvent: (message) => {
      names.push(message.event ?? 'message');
      if (message.event !== 'thread.message.delta') return;
      deltas++;
      if (expected.text === undefined) return;
      const data = JSON.parse(message.data) as { delta: { content?: Array<{ text?: { value?: string } }> } };
      text += data.delta.content?.[0]?.text?.value ?? '';
    },
  });
  parser.feed(sse);
  if (names.slice(-2).join(', ') !== 'thread.run.completed, done')
    return `events ended ${names.slice(-3).join(', ') || '(none)'}`;
  if (deltas !== expected.deltas) return `${deltas} deltas, not ${expected.deltas}`;
  if (expected.text !== undefined && text !== expected.text)
    return `streamed ${text.length} chars, not ${expected.text.length}`;
  return undefined;
}

/** A streamed reply of `count` one-word tokens, each its own SSE chunk. */
export function tokens(count: number): string[] {
  return Array.from({ length: count }, (_, i) => (i === 0 ? `token${i}` : ` token${i}`));
}

// ── CPU ───────────────────────────────────────────────────────────────────────

/** USER_HZ: 100 on every mainstream Linux (`getconf CLK_TCK`). */
const CLOCK_TICKS_PER_S = 100;

/**
 * CPU time (all threads) a process has used, in ms, in user space and in the kernel; undefined where /proc is
 * missing (not Linux).
 */
export function processCpu(pid: number | undefined): { user: number; system: number } | undefined {
  try {
    // Fields after the command name, which ends in ") ": utime and stime are the 12th and 13th, in clock ticks.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    const ms = (field: string | undefined) => (Number(field) * 1000) / CLOCK_TICKS_PER_S;
    return { user: ms(fields[11]), system: ms(fields[12]) };
  } catch {
    return undefined;
  }
}

/** CPU time (user + system, all threads) a process has used, in ms; undefined where /proc is missing (not Linux). */
export function processCpuMs(pid: number | undefined): number | undefined {
  const cpu = processCpu(pid);
  return cpu && cpu.user + cpu.system;
}

/**
 * CPU time (ms) of every PostgreSQL backend connected to `database` (pool connections, the LISTEN connection), by
 * pid: read from /proc, so only for a server on this machine; undefined for SQLite or where it cannot be read. The
 * server's shared processes (WAL writer, checkpointer…) are not included.
 */
export async function postgresBackendsCpuMs(database: BenchDatabase): Promise<Map<number, number> | undefined> {
  if (database.postgresName === undefined) return undefined;
  const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('select pid from pg_stat_activity where datname = $1', [
      database.postgresName,
    ]);
    const cpu = new Map<number, number>();
    for (const { pid } of rows) {
      const ms = processCpuMs(pid);
      if (ms === undefined) return undefined;
      cpu.set(pid, ms);
    }
    return cpu;
  } finally {
    await client.end();
  }
}

/** The CPU used between two samples of postgresBackendsCpuMs (a backend that started meanwhile counts in full). */
export function backendsCpuDelta(
  before: Map<number, number> | undefined,
  after: Map<number, number> | undefined,
): number | undefined {
  if (before === undefined || after === undefined) return undefined;
  let total = 0;
  for (const [pid, ms] of after) total += ms - (before.get(pid) ?? 0);
  return total;
}

/**
 * Runs `runOne(0 … count − 1)` one after another and divides the CPU time the process `pid` used meanwhile (utime +
 * stime from /proc) by `count`, in ms; undefined where /proc cannot be read.
 */
export async function processCpuMsPerRun(
  pid: number | undefined,
  count: number,
  runOne: (i: number) => Promise<unknown>,
): Promise<number | undefined> {
  const before = processCpuMs(pid);
  for (let i = 0; i < count; i++) await runOne(i);
  const after = processCpuMs(pid);
  return before === undefined || after === undefined ? undefined : (after - before) / count;
}

export interface CpuPerRun {
  runs: number;
  wallMs: number;
  /** The assistd process, ms per run; undefined without /proc. */
  serverMs: number | undefined;
  /** PostgreSQL's backends on the run's database, ms per run; undefined for SQLite. */
  postgresMs: number | undefined;
}

/**
 * Runs `runOne(0 … count − 1)` one after another and divides the server's CPU time over them (utime + stime from
 * /proc/<pid>/stat, read before and after: 10 ms ticks, so the more runs the finer) by `count`. Whatever the server
 * does meanwhile on its own (its sweeper, its worker's polling) is counted too; it is small next to a run.
 */
export async function measureCpuPerRun(
  assistd: Assistd,
  count: number,
  runOne: (i: number) => Promise<void>,
): Promise<CpuPerRun> {
  const pid = assistd.server.child.pid;
  const postgresBefore = await postgresBackendsCpuMs(assistd.database);
  const serverBefore = processCpuMs(pid);
  const start = performance.now();
  for (let i = 0; i < count; i++) await runOne(i);
  const wallMs = performance.now() - start;
  const serverAfter = processCpuMs(pid);
  const postgres = backendsCpuDelta(postgresBefore, await postgresBackendsCpuMs(assistd.database));
  return {
    runs: count,
    wallMs,
    serverMs:
      serverBefore === undefined || serverAfter === undefined ? undefined : (serverAfter - serverBefore) / count,
    postgresMs: postgres === undefined ? undefined : postgres / count,
  };
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
export async function interleaved<A, B>(
  count: number,
  first: () => Promise<A>,
  second: () => Promise<B>,
): Promise<[A[], B[]]> {
  const firsts: A[] = [];
  const seconds: B[] = [];
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

/**
 * The createAndPoll p50 ÷ direct p50 target per database, here so that bench/runs.bench.ts and bench/scale.bench.ts
 * judge the same measurement against the same figure.
 */
export const CREATE_AND_POLL_TARGET: Record<DatabaseKind, number> = { sqlite: 1.05, postgres: 1.08 };

/** The createAndPoll ÷ direct completion table and verdict (bench/runs.bench.ts part 1, bench/scale.bench.ts part 2). */
export function reportCreateAndPoll(
  run: Latencies,
  direct: Latencies,
  firstRunMs: number,
  targetRatio: number,
  database?: string,
): void {
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
    `createAndPoll p50 ÷ direct p50${database ? ` on ${database}` : ''}: ${ratio.toFixed(3)} (+${(run.p50 - direct.p50).toFixed(1)} ms; ` +
      `target ≤ ${targetRatio}) — ${ratio <= targetRatio ? 'met' : 'NOT met'}`,
  );
  log(`(first run on the fresh server, not counted: ${firstRunMs.toFixed(0)} ms)`);
}

/** A process's resident memory now (VmRSS) or at its peak (VmHWM), in MiB; undefined once it is gone. */
export function memoryMiB(pid: number | undefined, field: 'VmHWM' | 'VmRSS'): number | undefined {
  try {
    const match = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return match ? Number(match[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}
