/**
 * Scale benchmark on PostgreSQL: does throughput grow with worker processes, and does a held poll stay as fast as on
 * SQLite when the run executes elsewhere? assistd runs as separate processes on a throwaway database created on the
 * server of ASSISTD_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) and dropped at the end;
 * the fake upstream runs in this process. Run with `npm run bench:scale`.
 *
 * 1. Worker scaling: one API process (`assistd serve --no-workers`) and N worker processes (`assistd worker`, each
 *    with ASSISTD_WORKER_CONCURRENCY=16), fake upstream 200 ms before the first byte. R threads are created first
 *    (one user message each, with a unique text), a few warm-up runs go through, then R `POST /v1/threads/{id}/runs`
 *    are fired at once. Wall time from the first POST until every run is terminal, read from the database
 *    (`select status, count(*) from runs group by status` every 25 ms). N = 1, then N = 4, each on a fresh database;
 *    runs/s of both and their ratio (target ≥ 3.5×). Double executions: runs whose message text reached the upstream
 *    more than once (must be 0).
 * 2. createAndPoll ratio on PostgreSQL: one `assistd serve` (API and workers in one process), fake upstream 100 ms
 *    before the first byte, a 5-chunk reply: the official SDK's `runs.createAndPoll` on a fresh thread ÷ a streamed
 *    chat completion sent straight to the fake, sequential and interleaved, as bench/runs.bench.ts does on SQLite;
 *    ratio of the medians (target ≤ 1.08, as bench/runs.bench.ts's on PostgreSQL).
 *
 * Settings: BENCH_RUNS (R, default 400), BENCH_POLL_RUNS (runs of each kind in part 2, default 60).
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import pg from 'pg';
import { FakeUpstream, type RecordedRequest } from '../test/support/fake-upstream.ts';
import { createTestDatabase, type TestDatabase } from '../test/support/postgres.ts';
import { type ServerProcess, spawnServer, spawnWorker, type WorkerProcess } from '../test/support/server.ts';
import {
  CREATE_AND_POLL_TARGET,
  cleanups,
  directCompletionTimer,
  interleaved,
  type Latencies,
  loadAverage,
  log,
  machine,
  peakConcurrency,
  pool,
  positiveInteger,
  processCpuMs,
  reportCreateAndPoll,
  runBench,
  summarizeP50P90,
  table,
  withTimeout,
} from './support.ts';

const ADMIN_URL = process.env.ASSISTD_TEST_DATABASE_URL?.trim() || 'postgres://postgres@127.0.0.1:5432/postgres';
const RUNS = positiveInteger('BENCH_RUNS', 400);
const POLL_RUNS = positiveInteger('BENCH_POLL_RUNS', 60);
const WORKER_COUNTS = [1, 4] as const;
const WORKER_CONCURRENCY = 16;
const SCALE_LATENCY_MS = 200;
const POLL_LATENCY_MS = 100;
const TARGET_SCALING = 3.5;
const WARMUP_RUNS = 5;
/** Warm-up runs per worker process in part 1 (each process's first runs load what is loaded lazily). */
const WARMUP_PER_WORKER = 8;
/** Threads are created this many at a time before the burst. */
const SEED_CONCURRENCY = 16;
const MODEL = 'bench-model';
const PROMPT = 'Say hello.';
const SHORT_REPLY = ['Hello', ' there', ',', ' how can I', ' help?'];
const TERMINAL = ['completed', 'failed', 'cancelled', 'expired', 'incomplete'];

// ── processes and databases ────────────────────────────────────────────────────

/** Starts a process; it is stopped at cleanup, even if it only comes up after its timeout gave up on it. */
async function started<P extends { stop(signal?: NodeJS.Signals): Promise<number | null> }>(
  spawned: Promise<P>,
  what: string,
): Promise<P> {
  cleanups.push(() => spawned.then((late) => late.stop('SIGKILL')).catch(() => {}));
  return withTimeout(spawned, what);
}

/** A throwaway database (dropped at cleanup unless dropped before) and a connection to count its runs. */
async function newDatabase(): Promise<{ database: TestDatabase; observer: pg.Client; drop(): Promise<void> }> {
  const database = await createTestDatabase(ADMIN_URL);
  let dropped = false;
  const observer = new pg.Client({ connectionString: database.url });
  const drop = async () => {
    if (dropped) return;
    dropped = true;
    await observer.end().catch(() => {});
    await database.drop();
  };
  cleanups.push(drop);
  await observer.connect();
  return { database, observer, drop };
}

// ── helpers ───────────────────────────────────────────────────────────────────

/** The machine's CPU counters (all cores, in ticks): idle (with I/O wait) and total; undefined without /proc. */
function machineTicks(): { idle: number; total: number } | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return { idle: fields[3]! + fields[4]!, total: fields.reduce((a, b) => a + b, 0) };
  } catch {
    return undefined;
  }
}

function lastUserText(request: RecordedRequest): string {
  const user = request.body.messages.filter((m) => m.role === 'user').at(-1);
  return typeof user?.content === 'string' ? user.content : '';
}

async function statusCounts(observer: pg.Client): Promise<Map<string, number>> {
  const { rows } = await observer.query<{ status: string; n: string }>(
    'select status, count(*) as n from runs group by status',
  );
  return new Map(rows.map((row) => [row.status, Number(row.n)]));
}

function terminalCount(counts: Map<string, number>): number {
  return TERMINAL.reduce((sum, status) => sum + (counts.get(status) ?? 0), 0);
}

// ── 1. throughput with 1 and 4 worker processes ────────────────────────────────

interface ScaleResult {
  workers: number;
  wallMs: number;
  createMs: number;
  statuses: Map<string, number>;
  doubles: number;
  missing: number;
  peakUpstream: number;
  apiCpuMs: number | undefined;
  workersCpuMs: number | undefined;
  benchCpuMs: number;
  /** The share of the whole machine's CPU time that was busy during the burst (every process, not only ours). */
  machineBusy: number | undefined;
}

async function createThread(base: string, text: string): Promise<string> {
  const response = await fetch(`${base}/threads`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: text }] }),
  });
  const body = (await response.json()) as { id: string };
  if (!response.ok) throw new Error(`POST /threads → ${response.status}: ${JSON.stringify(body)}`);
  return body.id;
}

async function createRun(base: string, threadId: string, assistantId: string): Promise<void> {
  const response = await fetch(`${base}/threads/${threadId}/runs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ assistant_id: assistantId }),
  });
  const body = await response.text();
  if (!response.ok) throw new Error(`POST run on ${threadId} → ${response.status}: ${body}`);
}

/** Resolves once `expected` runs of the database are terminal; the counts at that moment. */
async function untilTerminal(observer: pg.Client, expected: number, timeoutMs: number): Promise<Map<string, number>> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const counts = await statusCounts(observer);
    if (terminalCount(counts) >= expected) return counts;
    if (performance.now() > deadline)
      throw new Error(`runs not terminal after ${timeoutMs} ms: ${JSON.stringify([...counts])}`);
    await sleep(25);
  }
}

async function measureScale(upstream: FakeUpstream, workerCount: number): Promise<ScaleResult> {
  const { database, observer, drop } = await newDatabase();
  const env = {
    ASSISTD_DATABASE_URL: database.url,
    ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
    ASSISTD_WORKER_CONCURRENCY: String(WORKER_CONCURRENCY),
  };
  // The API process first: it migrates the fresh database, so the workers start on a ready schema.
  const api: ServerProcess = await started(spawnServer(env, ['serve', '--no-workers']), 'assistd serve --no-workers');
  const workers: WorkerProcess[] = await Promise.all(
    Array.from({ length: workerCount }, () => started(spawnWorker(env), 'assistd worker')),
  );
  const base = `${api.url}/v1`;
  const client = new OpenAI({ baseURL: base, apiKey: 'bench', maxRetries: 0 });
  const assistant = await client.beta.assistants.create({ model: MODEL });

  // Warm-up: every worker process's first runs pay for lazy loading, which is not throughput.
  const warmup = WARMUP_PER_WORKER * workerCount;
  const warmThreads = await pool(
    Array.from({ length: warmup }, (_, i) => `warm-up ${i} ${randomUUID()}`),
    SEED_CONCURRENCY,
    (text) => createThread(base, text),
  );
  await Promise.all(warmThreads.map((threadId) => createRun(base, threadId, assistant.id)));
  const warmStatuses = await untilTerminal(observer, warmup, 30_000);

  const texts = Array.from({ length: RUNS }, (_, i) => `${workerCount} workers, run ${i}: ${randomUUID()}`);
  const threads = await pool(texts, SEED_CONCURRENCY, (text) => createThread(base, text));
  const requestsBefore = upstream.requests.length;

  const cpuOf = (pids: Array<number | undefined>) => {
    const values = pids.map(processCpuMs);
    return values.some((v) => v === undefined) ? undefined : values.reduce((a, b) => a! + b!, 0)!;
  };
  const apiCpuBefore = cpuOf([api.child.pid]);
  const workersCpuBefore = cpuOf(workers.map((w) => w.child.pid));
  const benchCpuBefore = process.cpuUsage();
  const machineBefore = machineTicks();
  const start = performance.now();
  let createMs = 0;
  const creating = Promise.all(threads.map((threadId) => createRun(base, threadId, assistant.id))).then(() => {
    createMs = performance.now() - start;
  });
  // A failed creation fails the bench, instead of the wait below timing out.
  let failure: unknown;
  creating.catch((error: unknown) => {
    failure = error;
  });
  const deadline = start + 120_000;
  let statuses: Map<string, number>;
  for (;;) {
    if (failure !== undefined) throw failure;
    const counts = await statusCounts(observer);
    if (terminalCount(counts) >= warmup + RUNS) {
      statuses = counts;
      break;
    }
    if (performance.now() > deadline) throw new Error(`runs not terminal after 120 s: ${JSON.stringify([...counts])}`);
    await sleep(25);
  }
  const wallMs = performance.now() - start;
  await creating;
  const apiCpuAfter = cpuOf([api.child.pid]);
  const workersCpuAfter = cpuOf(workers.map((w) => w.child.pid));
  const benchCpu = process.cpuUsage(benchCpuBefore);
  const machineAfter = machineTicks();

  // Let a late duplicate call (if any) reach the fake before counting.
  await sleep(500);
  const requests = upstream.requests.slice(requestsBefore);
  const calls = new Map<string, number>();
  for (const request of requests) {
    const text = lastUserText(request);
    calls.set(text, (calls.get(text) ?? 0) + 1);
  }
  const doubles = texts.filter((text) => (calls.get(text) ?? 0) > 1).length;
  const missing = texts.filter((text) => !calls.has(text)).length;
  for (const [status, n] of warmStatuses) statuses.set(status, (statuses.get(status) ?? 0) - n); // the burst's only

  for (const child of [api, ...workers]) await child.stop();
  await drop();
  return {
    workers: workerCount,
    wallMs,
    createMs,
    statuses,
    doubles,
    missing,
    peakUpstream: peakConcurrency(requests),
    apiCpuMs: apiCpuBefore === undefined || apiCpuAfter === undefined ? undefined : apiCpuAfter - apiCpuBefore,
    workersCpuMs:
      workersCpuBefore === undefined || workersCpuAfter === undefined ? undefined : workersCpuAfter - workersCpuBefore,
    benchCpuMs: (benchCpu.user + benchCpu.system) / 1000,
    machineBusy:
      machineBefore === undefined || machineAfter === undefined
        ? undefined
        : 1 - (machineAfter.idle - machineBefore.idle) / (machineAfter.total - machineBefore.total),
  };
}

// ── 2. createAndPoll ÷ direct chat completion, on PostgreSQL ────────────────────

async function measureCreateAndPoll(
  upstream: FakeUpstream,
): Promise<{ run: Latencies; direct: Latencies; firstRunMs: number }> {
  upstream.setDefault({ text: SHORT_REPLY });
  const expected = SHORT_REPLY.join('');
  const { database, drop } = await newDatabase();
  const server = await started(
    spawnServer({ ASSISTD_DATABASE_URL: database.url, ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl }),
    'assistd serve',
  );
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'bench', maxRetries: 0 });
  const direct = new OpenAI({ baseURL: upstream.baseUrl, apiKey: 'bench', maxRetries: 0 });
  const assistant = await client.beta.assistants.create({ model: MODEL });

  const timeRun = async (): Promise<number> => {
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: PROMPT }] });
    const start = performance.now();
    const run = await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    const elapsed = performance.now() - start;
    if (run.status !== 'completed') throw new Error(`run ${run.id} ended ${run.status}: ${JSON.stringify(run)}`);
    const page = await client.beta.threads.messages.list(thread.id, { limit: 1, order: 'desc' });
    const content = page.data[0]?.content[0];
    const text = content?.type === 'text' ? content.text.value : '';
    if (text !== expected) throw new Error(`run ${run.id} replied ${JSON.stringify(text)}`);
    return elapsed;
  };
  const timeDirect = directCompletionTimer(direct, MODEL, PROMPT, expected);

  let firstRunMs = Number.NaN;
  for (let i = 0; i < WARMUP_RUNS; i++) {
    await timeDirect();
    const ms = await timeRun();
    if (i === 0) firstRunMs = ms;
  }
  const [directs, runs] = await interleaved(POLL_RUNS, timeDirect, timeRun);
  await server.stop();
  await drop();
  return { run: summarizeP50P90(runs), direct: summarizeP50P90(directs), firstRunMs };
}

// ── report ────────────────────────────────────────────────────────────────────

async function main(): Promise<void> {
  log(machine());
  log(`load average at start (1/5/15 min): ${loadAverage()}`);
  const admin = new URL(ADMIN_URL);
  const version = await (async () => {
    const client = new pg.Client({ connectionString: ADMIN_URL });
    await client.connect();
    try {
      return (await client.query<{ v: string }>("select current_setting('server_version') as v")).rows[0]!.v;
    } finally {
      await client.end();
    }
  })();
  log(
    `node ${process.version}; PostgreSQL ${version} at ${admin.host} (a throwaway database per part); ` +
      `part 1: ${RUNS} runs, fake upstream ${SCALE_LATENCY_MS} ms to first byte; ` +
      `part 2: ${POLL_RUNS} runs per side (after ${WARMUP_RUNS} warm-up), ${POLL_LATENCY_MS} ms to first byte`,
  );

  // The fake's pauses all listen on one AbortSignal: hundreds of requests in flight are expected, not a leak.
  setMaxListeners(4 * RUNS);
  const scaleUpstream = await FakeUpstream.start({ latencyMs: SCALE_LATENCY_MS });
  cleanups.push(() => scaleUpstream.close());
  scaleUpstream.setDefault({ text: SHORT_REPLY });

  // 1.
  const results: ScaleResult[] = [];
  for (const workers of WORKER_COUNTS) results.push(await measureScale(scaleUpstream, workers));
  log('');
  log(
    `1. ${RUNS} runs created at once on ${RUNS} threads: 1 API process (serve --no-workers, default pool) + N worker ` +
      `processes (worker, ASSISTD_WORKER_CONCURRENCY=${WORKER_CONCURRENCY} each); wall time from the first POST ` +
      `until all are terminal (read from the database)`,
  );
  log('');
  const cpu = (ms: number | undefined, wallMs: number) =>
    ms === undefined ? 'n/a' : `${(ms / 1000).toFixed(2)} (${((ms / wallMs) * 100).toFixed(0)}%)`;
  log(
    table(
      [
        'workers',
        'wall s',
        'POSTs done s',
        'runs/s',
        'ceiling runs/s',
        'peak in flight',
        'completed',
        'double exec',
        'CPU s API',
        'CPU s workers',
        'worker CPU ms/run',
        'CPU s bench',
        'machine busy',
      ],
      results.map((r) => [
        `${r.workers} × ${WORKER_CONCURRENCY}`,
        (r.wallMs / 1000).toFixed(2),
        (r.createMs / 1000).toFixed(2),
        ((RUNS / r.wallMs) * 1000).toFixed(0),
        ((r.workers * WORKER_CONCURRENCY * 1000) / SCALE_LATENCY_MS).toFixed(0),
        String(r.peakUpstream),
        `${r.statuses.get('completed') ?? 0}/${RUNS}`,
        String(r.doubles),
        cpu(r.apiCpuMs, r.wallMs),
        cpu(r.workersCpuMs, r.wallMs),
        r.workersCpuMs === undefined ? 'n/a' : (r.workersCpuMs / RUNS).toFixed(1),
        cpu(r.benchCpuMs, r.wallMs),
        r.machineBusy === undefined ? 'n/a' : `${(r.machineBusy * 100).toFixed(0)}%`,
      ]),
    ),
  );
  log(
    `(CPU: seconds used during the burst, and as a share of one core; bench = clients, fake upstream, polling; ` +
      `machine busy: all ${os.cpus().length} cores, every process on the machine, PostgreSQL included)`,
  );
  const [one, four] = results as [ScaleResult, ScaleResult];
  const scaling = one.wallMs / four.wallMs;
  log('');
  log(
    `throughput ${WORKER_COUNTS[1]} workers ÷ ${WORKER_COUNTS[0]} worker: ${scaling.toFixed(2)}× ` +
      `(target ≥ ${TARGET_SCALING}×) — ${scaling >= TARGET_SCALING ? 'met' : 'NOT met'}`,
  );
  const doubles = one.doubles + four.doubles;
  log(`double executions: ${doubles} (target 0) — ${doubles === 0 ? 'met' : 'NOT met'}`);
  for (const r of results) {
    const others = [...r.statuses].filter(([s, n]) => s !== 'completed' && n > 0);
    if ((r.statuses.get('completed') ?? 0) !== RUNS || r.missing > 0)
      throw new Error(
        `${r.workers} workers: ${r.statuses.get('completed') ?? 0} of ${RUNS} runs completed ` +
          `(${others.map(([s, n]) => `${n} ${s}`).join(', ')}), ${r.missing} never reached the upstream`,
      );
  }

  // 2.
  const pollUpstream = await FakeUpstream.start({ latencyMs: POLL_LATENCY_MS });
  cleanups.push(() => pollUpstream.close());
  const { run, direct, firstRunMs } = await measureCreateAndPoll(pollUpstream);
  log('');
  log(
    `2. createAndPoll vs direct streamed chat completion on PostgreSQL (one assistd serve; ${SHORT_REPLY.length}-chunk ` +
      `reply, sequential)`,
  );
  log('');
  reportCreateAndPoll(run, direct, firstRunMs, CREATE_AND_POLL_TARGET.postgres, 'PostgreSQL');
  log('');
  log(`load average at end (1/5/15 min): ${loadAverage()}`);
}

await runBench(main, 'processes');
