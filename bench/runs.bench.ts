/**
 * Run benchmark: what the run engine costs on top of the model call, against the fake upstream (100 ms before the
 * first byte) running in this process. assistd runs as its own process (`assistd serve`), one fresh server per part
 * and database: SQLite in a temporary directory, or PostgreSQL on a throwaway database created on the server of
 * BENCH_DATABASE_URL and dropped at the end. Run with `npm run bench:runs`.
 *
 * 1. On each database of BENCH_DATABASES: the createAndPoll ratio — the official SDK's `runs.createAndPoll` on a
 *    fresh thread (one user message; creating the thread is not timed) ÷ a streamed chat completion sent straight
 *    to the fake with the same SDK, consumed to the end. Sequential, the two interleaved; p50/p90 of each and the
 *    ratio of the medians (targets ≤ 1.05 on SQLite, ≤ 1.08 on PostgreSQL). Then, on the same server, the server's
 *    CPU time per run: BENCH_CPU_RUNS createAndPoll one after another on threads created beforehand, the server
 *    process's utime + stime (/proc/<pid>/stat) before and after ÷ runs (targets ≤ 3 ms on SQLite, ≤ 5 ms on
 *    PostgreSQL); PostgreSQL's backends on the database are shown beside it, not counted in it.
 *    Before the databases, the same two measurements of a floor (bench/run-floor-server.ts, its own process): the
 *    two requests of createAndPoll answered by Fastify relaying the same model call with node:http, and nothing
 *    else — no database, validation, logging or metrics. Its ratio and CPU are what the HTTP traffic of a run costs
 *    on this machine; assistd's CPU is also printed as a multiple of the floor's.
 * 2. A burst: 500 threads created first, then 500 `POST /v1/threads/{id}/runs` fired at once; each run is then
 *    followed with held polls (what createAndPoll does) until it ends. Wall time from the first POST to the last
 *    terminal status, and runs/s; every run must be `completed`.
 * 3. Database commits per run for a 5-chunk and a 2,000-chunk reply. Commits are counted from the server's WAL
 *    file (one commit frame per committed write transaction) while this process holds a read transaction open,
 *    which keeps SQLite from restarting the WAL under the count. The counter is checked first against a known
 *    number of commits; `PRAGMA data_version` is shown beside it (it says "changed", it does not count).
 *
 * Lease renewals are writes too, one per executing run every lease ÷ 3 (5 s by default): they follow time, not
 * tokens. Part 3 runs its server with a 1 h lease (BENCH_LEASE_S) so that none falls inside the count.
 *
 * Parts 2 and 3 run on SQLite only.
 *
 * Settings: BENCH_DATABASES (part 1: `sqlite,postgres` by default, or either alone), BENCH_DATABASE_URL (the
 * PostgreSQL server where the throwaway database is created, default postgres://postgres@127.0.0.1:5432/postgres),
 * BENCH_RUNS (runs of each kind in part 1, default 60), BENCH_CPU_RUNS (part 1's CPU batch, default 40),
 * BENCH_BURST (part 2, default 500), BENCH_WRITE_RUNS (runs per reply length in part 3, default 20), BENCH_LEASE_S
 * (ASSISTD_WORKER_LEASE_S of the server of part 3, default 3600).
 */
import { setMaxListeners } from 'node:events';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import BetterSqlite3 from 'better-sqlite3';
import OpenAI from 'openai';
import { FakeUpstream, type TextReply } from '../test/support/fake-upstream.ts';
import {
  type Assistd,
  type CpuPerRun,
  CREATE_AND_POLL_TARGET,
  cleanups,
  DATABASE_NAMES,
  type DatabaseKind,
  databaseKinds,
  describeAdminUrl,
  directCompletionTimer,
  interleaved,
  type Latencies,
  loadAverage,
  log,
  machine,
  measureCpuPerRun,
  peakConcurrency,
  pool,
  positiveInteger,
  postgresVersion,
  processCpuMs,
  processCpuMsPerRun,
  reportCreateAndPoll,
  runBench,
  startAssistd,
  startFloor,
  summarizeP50P90,
  table,
} from './support.ts';

const DATABASES = databaseKinds();
const RUNS = positiveInteger('BENCH_RUNS', 60);
const CPU_RUNS = positiveInteger('BENCH_CPU_RUNS', 40);
const BURST = positiveInteger('BENCH_BURST', 500);
const WRITE_RUNS = positiveInteger('BENCH_WRITE_RUNS', 20);
const LEASE_S = positiveInteger('BENCH_LEASE_S', 3600);
const WARMUP_RUNS = 5;
const LATENCY_MS = 100;
/** Server CPU per run, ms. */
const TARGET_CPU_MS: Record<DatabaseKind, number> = { sqlite: 3, postgres: 5 };
/** Threads are created this many at a time before the burst. */
const SEED_CONCURRENCY = 16;
/** assistd's default ASSISTD_WORKER_CONCURRENCY, for the throughput ceiling printed beside part 2. */
const WORKER_CONCURRENCY = 64;
const MODEL = 'bench-model';
const PROMPT = 'Say hello.';
const SHORT_REPLY = ['Hello', ' there', ',', ' how can I', ' help?'];
const LONG_CHUNKS = 2000;
const LONG_PIECE = ' tok';
/** Where the SDK's createAndPoll stops polling. */
const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'expired', 'incomplete', 'requires_action']);

// ── processes ──────────────────────────────────────────────────────────────────

function startServer(kind: DatabaseKind, upstream: FakeUpstream, env: Record<string, string> = {}): Promise<Assistd> {
  return startAssistd(kind, upstream.baseUrl, { prefix: 'assistd-bench-runs-', env });
}

// ── helpers ───────────────────────────────────────────────────────────────────

async function createThread(client: OpenAI): Promise<string> {
  const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: PROMPT }] });
  return thread.id;
}

/** The text of the newest message of a thread (the run's reply). */
async function replyText(client: OpenAI, threadId: string): Promise<string> {
  const page = await client.beta.threads.messages.list(threadId, { limit: 1, order: 'desc' });
  const content = page.data[0]?.content[0];
  return content?.type === 'text' ? content.text.value : '';
}

// ── 1. createAndPoll ÷ direct chat completion, and server CPU per run ─────────────

interface CreateAndPollResult {
  kind: DatabaseKind;
  run: Latencies;
  direct: Latencies;
  firstRunMs: number;
  cpu: CpuPerRun;
}

async function measureCreateAndPoll(kind: DatabaseKind, upstream: FakeUpstream): Promise<CreateAndPollResult> {
  upstream.setDefault({ text: SHORT_REPLY });
  const expected = SHORT_REPLY.join('');
  const assistd = await startServer(kind, upstream);
  const { client } = assistd;
  const direct = new OpenAI({ baseURL: upstream.baseUrl, apiKey: 'bench', maxRetries: 0 });
  const assistant = await client.beta.assistants.create({ model: MODEL });

  const runOn = async (threadId: string): Promise<string> => {
    const run = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistant.id });
    if (run.status !== 'completed') throw new Error(`run ${run.id} ended ${run.status}: ${JSON.stringify(run)}`);
    return run.id;
  };
  const checkReply = async (threadId: string, runId: string) => {
    const text = await replyText(client, threadId);
    if (text !== expected) throw new Error(`run ${runId} replied ${JSON.stringify(text)}`);
  };
  const timeRun = async (): Promise<number> => {
    const threadId = await createThread(client);
    const start = performance.now();
    const runId = await runOn(threadId);
    const elapsed = performance.now() - start;
    await checkReply(threadId, runId);
    return elapsed;
  };
  const timeDirect = directCompletionTimer(direct, MODEL, PROMPT, expected);

  // The first run on a fresh server also pays for what is loaded lazily (e.g. the tokenizer's tables).
  let firstRunMs = Number.NaN;
  for (let i = 0; i < WARMUP_RUNS; i++) {
    await timeDirect();
    const ms = await timeRun();
    if (i === 0) firstRunMs = ms;
  }
  const [directs, runs] = await interleaved(RUNS, timeDirect, timeRun);

  // CPU: the runs alone, one after another, on threads created beforehand; their replies are checked afterwards.
  const threads = await pool(
    Array.from({ length: CPU_RUNS }, (_, i) => i),
    4,
    () => createThread(client),
  );
  const runIds: string[] = [];
  const cpu = await measureCpuPerRun(assistd, CPU_RUNS, async (i) => {
    runIds.push(await runOn(threads[i]!));
  });
  for (const [i, threadId] of threads.entries()) await checkReply(threadId, runIds[i]!);
  await assistd.stop();
  return { kind, run: summarizeP50P90(runs), direct: summarizeP50P90(directs), firstRunMs, cpu };
}

interface FloorResult {
  run: Latencies;
  direct: Latencies;
  /** The floor process's CPU per run, ms; undefined without /proc. */
  cpuMs: number | undefined;
}

/** Part 1's measurements on the floor server: latency interleaved with the direct call, then CPU per run. */
async function measureFloor(upstream: FakeUpstream): Promise<FloorResult> {
  upstream.setDefault({ text: SHORT_REPLY });
  const floor = await startFloor('./run-floor-server.ts', { FLOOR_UPSTREAM_URL: upstream.baseUrl });
  const client = new OpenAI({ baseURL: `${floor.url}/v1`, apiKey: 'bench', maxRetries: 0 });
  const direct = new OpenAI({ baseURL: upstream.baseUrl, apiKey: 'bench', maxRetries: 0 });
  const runOnce = async () => {
    const run = await client.beta.threads.runs.createAndPoll('thread_floor', { assistant_id: 'asst_floor' });
    if (run.status !== 'completed') throw new Error(`the floor's run ended ${run.status}`);
  };
  const timeRun = async (): Promise<number> => {
    const start = performance.now();
    await runOnce();
    return performance.now() - start;
  };
  const timeDirect = directCompletionTimer(direct, MODEL, PROMPT, SHORT_REPLY.join(''));
  for (let i = 0; i < WARMUP_RUNS; i++) {
    await timeDirect();
    await timeRun();
  }
  const [directs, runs] = await interleaved(RUNS, timeDirect, timeRun);
  const cpuMs = await processCpuMsPerRun(floor.pid, CPU_RUNS, runOnce);
  // Done with it: an idle floor would still share the cores with the parts that follow.
  await floor.stop();
  return { run: summarizeP50P90(runs), direct: summarizeP50P90(directs), cpuMs };
}

// ── 2. a burst of runs ─────────────────────────────────────────────────────────

interface BurstResult {
  wallMs: number;
  /** CPU used during the burst by the server, and by this process (the clients and the fake upstream). */
  serverCpuMs: number | undefined;
  benchCpuMs: number;
  statuses: Map<string, number>;
  peakUpstream: number;
  createMs: number;
}

async function measureBurst(upstream: FakeUpstream): Promise<BurstResult> {
  upstream.setDefault({ text: SHORT_REPLY });
  const assistd = await startServer('sqlite', upstream);
  const { client, base } = assistd;
  const assistant = await client.beta.assistants.create({ model: MODEL });
  // Warm the fresh server up first: its first runs pay for lazy loading, which is not throughput.
  for (let i = 0; i < WARMUP_RUNS; i++) {
    const run = await client.beta.threads.runs.createAndPoll(await createThread(client), {
      assistant_id: assistant.id,
    });
    if (run.status !== 'completed') throw new Error(`warm-up run ${run.id} ended ${run.status}`);
  }
  const threads = await pool(
    Array.from({ length: BURST }, (_, i) => i),
    SEED_CONCURRENCY,
    () => createThread(client),
  );
  const requestsBefore = upstream.requests.length;

  const follow = async (threadId: string): Promise<{ status: string; createdAt: number }> => {
    const created = await fetch(`${base}/threads/${threadId}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: assistant.id }),
    });
    const createdAt = performance.now();
    let run = (await created.json()) as { id: string; status: string };
    if (!created.ok) throw new Error(`POST run on ${threadId} → ${created.status}: ${JSON.stringify(run)}`);
    // A held poll, as the SDK's createAndPoll sends it: answered when the run changes (or after 10 s).
    while (!TERMINAL.has(run.status)) {
      const polled = await fetch(`${base}/threads/${threadId}/runs/${run.id}`, {
        headers: { 'x-stainless-poll-helper': 'true' },
      });
      run = (await polled.json()) as { id: string; status: string };
      if (!polled.ok) throw new Error(`GET run ${run.id} → ${polled.status}: ${JSON.stringify(run)}`);
    }
    return { status: run.status, createdAt };
  };

  const serverCpuBefore = processCpuMs(assistd.server.child.pid);
  const benchCpuBefore = process.cpuUsage();
  const start = performance.now();
  const outcomes = await Promise.all(threads.map(follow));
  const wallMs = performance.now() - start;
  const serverCpuAfter = processCpuMs(assistd.server.child.pid);
  const benchCpu = process.cpuUsage(benchCpuBefore);
  const serverCpuMs =
    serverCpuBefore === undefined || serverCpuAfter === undefined ? undefined : serverCpuAfter - serverCpuBefore;
  const statuses = new Map<string, number>();
  for (const { status } of outcomes) statuses.set(status, (statuses.get(status) ?? 0) + 1);
  const createMs = Math.max(...outcomes.map((o) => o.createdAt)) - start;
  const peakUpstream = peakConcurrency(upstream.requests.slice(requestsBefore));
  await assistd.stop();
  return {
    wallMs,
    statuses,
    peakUpstream,
    createMs,
    serverCpuMs,
    benchCpuMs: (benchCpu.user + benchCpu.system) / 1000,
  };
}

// ── 3. database commits per run ─────────────────────────────────────────────────

const WAL_HEADER_BYTES = 32;
const WAL_FRAME_HEADER_BYTES = 24;

/**
 * Counts the transactions committed to a SQLite database in WAL mode by reading its `-wal` file: every commit ends
 * with one frame whose header carries the database size ("commit frame"); other frames carry 0. Frames of the
 * current WAL generation carry the salts of the WAL header; a restarted WAL gets new salts. The caller must hold a
 * read transaction on the database, so the WAL cannot be restarted behind frames not yet read (a reader that
 * started on a fully checkpointed WAL allows one restart before its first new frame: that case is followed).
 */
class WalCommitCounter {
  private readonly fd: number;
  private offset = WAL_HEADER_BYTES;
  private salts: string | undefined;
  private total = 0;
  restarts = 0;

  constructor(walPath: string) {
    this.fd = openSync(walPath, 'r');
  }

  /** Skips the frames written so far; later calls of `commits()` count from here. */
  begin(): void {
    this.scan();
    this.total = 0;
    this.restarts = 0;
  }

  /** Commits since `begin()`. */
  commits(): number {
    this.scan();
    return this.total;
  }

  private closed = false;

  close(): void {
    if (!this.closed) closeSync(this.fd);
    this.closed = true;
  }

  private read(position: number, length: number): Buffer | undefined {
    const buffer = Buffer.alloc(length);
    return readSync(this.fd, buffer, 0, length, position) === length ? buffer : undefined;
  }

  private scan(): void {
    const header = this.read(0, WAL_HEADER_BYTES);
    if (!header) return;
    const magic = header.readUInt32BE(0);
    if (magic !== 0x377f0682 && magic !== 0x377f0683) throw new Error(`not a WAL file (magic ${magic.toString(16)})`);
    const pageSize = header.readUInt32BE(8);
    const salts = header.subarray(16, 24).toString('hex');
    if (this.salts !== undefined && salts !== this.salts) {
      this.restarts++;
      this.offset = WAL_HEADER_BYTES;
    }
    this.salts = salts;
    const frameBytes = WAL_FRAME_HEADER_BYTES + pageSize;
    const size = fstatSync(this.fd).size;
    while (this.offset + frameBytes <= size) {
      const frame = this.read(this.offset, WAL_FRAME_HEADER_BYTES);
      if (!frame || frame.subarray(8, 16).toString('hex') !== salts) break; // past this generation's last frame
      if (frame.readUInt32BE(4) !== 0) this.total++;
      this.offset += frameBytes;
    }
  }
}

interface WriteCounts {
  perRun: number[];
  /** Median createAndPoll time, ms. */
  p50Ms: number;
  replyChars: number;
  completionTokens: number;
}

interface CommitsResult {
  idleMs: number;
  idleCommits: number;
  knownCommits: number;
  walCountedKnown: number;
  dataVersionDelta: number;
  dataVersionPolledEach: number;
  restarts: number;
  short: WriteCounts;
  long: WriteCounts;
}

async function measureCommits(upstream: FakeUpstream): Promise<CommitsResult> {
  upstream.setDefault({ text: SHORT_REPLY });
  const assistd = await startServer('sqlite', upstream, { ASSISTD_WORKER_LEASE_S: String(LEASE_S) });
  const { client } = assistd;
  const assistant = await client.beta.assistants.create({ model: MODEL });
  const probeThread = await createThread(client); // also makes sure the WAL file exists

  const file = path.join(assistd.database.dataDir, 'assistd.sqlite');
  // The pinning reader: a read transaction held open to the end keeps the WAL from being restarted under the count.
  const pin = new BetterSqlite3(file, { readonly: true, fileMustExist: true });
  cleanups.push(() => pin.close());
  pin.exec('BEGIN');
  pin.prepare('SELECT count(*) AS n FROM runs').get();
  // A second reader, outside any transaction, for PRAGMA data_version.
  const watcher = new BetterSqlite3(file, { readonly: true, fileMustExist: true });
  cleanups.push(() => watcher.close());
  const dataVersion = () => watcher.pragma('data_version', { simple: true }) as number;
  const counter = new WalCommitCounter(`${file}-wal`);
  cleanups.push(() => counter.close());
  counter.begin();

  // Check the counter. An idle server must commit nothing (its worker polls and its sweeper only read) …
  const idleMs = 2500;
  await sleep(idleMs);
  const idleCommits = counter.commits();
  // … and each message created is one transaction.
  const knownCommits = 20;
  const before = counter.commits();
  const versionBefore = dataVersion();
  for (let i = 0; i < knownCommits; i++)
    await client.beta.threads.messages.create(probeThread, { role: 'user', content: `probe ${i}` });
  const walCountedKnown = counter.commits() - before;
  const dataVersionDelta = dataVersion() - versionBefore;
  let dataVersionPolledEach = 0;
  for (let i = 0; i < knownCommits; i++) {
    const v = dataVersion();
    await client.beta.threads.messages.create(probeThread, { role: 'user', content: `probe again ${i}` });
    dataVersionPolledEach += dataVersion() - v;
  }

  const measure = async (reply: TextReply, expectedText: string): Promise<WriteCounts> => {
    upstream.setDefault(reply);
    // Threads first, outside the count: what is counted is the run alone.
    const threads = await pool(
      Array.from({ length: WRITE_RUNS }, (_, i) => i),
      4,
      () => createThread(client),
    );
    const perRun: number[] = [];
    const times: number[] = [];
    let completionTokens = 0;
    for (const threadId of threads) {
      const from = counter.commits();
      const start = performance.now();
      const run = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistant.id });
      times.push(performance.now() - start);
      perRun.push(counter.commits() - from);
      if (run.status !== 'completed') throw new Error(`run ${run.id} ended ${run.status}`);
      completionTokens += run.usage?.completion_tokens ?? 0;
      const text = await replyText(client, threadId);
      if (text !== expectedText)
        throw new Error(`run ${run.id} replied ${text.length} chars, not ${expectedText.length}`);
    }
    return {
      perRun,
      p50Ms: summarizeP50P90(times).p50,
      replyChars: expectedText.length,
      completionTokens: completionTokens / threads.length,
    };
  };

  const short = await measure({ text: SHORT_REPLY }, SHORT_REPLY.join(''));
  const longText = Array.from({ length: LONG_CHUNKS }, () => LONG_PIECE);
  const long = await measure({ text: longText }, longText.join(''));
  // Let a write that raced the last poll land before the last look.
  await sleep(200);
  counter.commits();
  const restarts = counter.restarts;

  pin.exec('COMMIT');
  counter.close();
  watcher.close();
  pin.close();
  await assistd.stop();
  return {
    idleMs,
    idleCommits,
    knownCommits,
    walCountedKnown,
    dataVersionDelta,
    dataVersionPolledEach,
    restarts,
    short,
    long,
  };
}

// ── report ────────────────────────────────────────────────────────────────────

function describeCounts(counts: number[]): { mean: string; min: number; max: number; total: number } {
  const total = counts.reduce((a, b) => a + b, 0);
  return { mean: (total / counts.length).toFixed(2), min: Math.min(...counts), max: Math.max(...counts), total };
}

async function main(): Promise<void> {
  log(machine());
  // Anything else running on the machine shows in every figure below: this says whether something was.
  log(`load average at start (1/5/15 min): ${loadAverage()}`);
  const postgres = DATABASES.includes('postgres') ? await postgresVersion() : undefined;
  log(
    `node ${process.version}; fake upstream ${LATENCY_MS} ms to first byte, no chunk delay; part 1 on ` +
      DATABASES.map((k) =>
        k === 'postgres' ? `PostgreSQL ${postgres} (throwaway database on ${describeAdminUrl()})` : 'SQLite',
      ).join(' and ') +
      `: ${RUNS} runs per side (after ${WARMUP_RUNS} warm-up) and ${CPU_RUNS} for CPU; ` +
      `burst of ${BURST}, ${WRITE_RUNS} runs per reply length (SQLite)`,
  );

  // The fake's pauses all listen on one AbortSignal: more than 10 requests in flight is expected, not a leak.
  setMaxListeners(4 * BURST);
  const upstream = await FakeUpstream.start({ latencyMs: LATENCY_MS });
  cleanups.push(() => upstream.close());

  // 1.
  const floor = await measureFloor(upstream);
  const results: CreateAndPollResult[] = [];
  for (const kind of DATABASES) results.push(await measureCreateAndPoll(kind, upstream));
  const floorCpu = floor.cpuMs === undefined ? 'n/a' : floor.cpuMs.toFixed(2);
  log('');
  log(`1. createAndPoll vs direct streamed chat completion (${SHORT_REPLY.length}-chunk reply, sequential)`);
  log('');
  log(
    'floor (bench/run-floor-server.ts: the same two requests relayed to the same upstream by Fastify and node:http; ' +
      'no database, validation, logging or metrics):',
  );
  log('');
  log(
    table(
      ['path', 'p50 ms', 'p90 ms'],
      [
        ['direct: chat.completions.create (stream)', floor.direct.p50.toFixed(1), floor.direct.p90.toFixed(1)],
        ['floor: runs.createAndPoll', floor.run.p50.toFixed(1), floor.run.p90.toFixed(1)],
      ],
    ),
  );
  log('');
  log(
    `floor createAndPoll p50 ÷ direct p50: ${(floor.run.p50 / floor.direct.p50).toFixed(3)} ` +
      `(+${(floor.run.p50 - floor.direct.p50).toFixed(1)} ms); floor CPU per run: ${floorCpu} ms`,
  );
  for (const r of results) {
    log('');
    log(`${DATABASE_NAMES[r.kind]}:`);
    log('');
    reportCreateAndPoll(r.run, r.direct, r.firstRunMs, CREATE_AND_POLL_TARGET[r.kind], DATABASE_NAMES[r.kind]);
  }
  log('');
  log(
    `server CPU per run (${CPU_RUNS} createAndPoll one after another, ${SHORT_REPLY.length}-chunk reply; ` +
      `utime + stime of the server process before and after ÷ runs)`,
  );
  log('');
  log(
    table(
      [
        'database',
        'runs',
        'wall s',
        'server CPU ms/run',
        'target',
        `÷ floor (${floorCpu} ms)`,
        'PostgreSQL backends CPU ms/run (not counted)',
      ],
      results.map(({ kind, cpu }) => [
        DATABASE_NAMES[kind],
        String(cpu.runs),
        (cpu.wallMs / 1000).toFixed(2),
        cpu.serverMs === undefined ? 'n/a' : cpu.serverMs.toFixed(2),
        `≤ ${TARGET_CPU_MS[kind]}`,
        cpu.serverMs === undefined || !floor.cpuMs ? 'n/a' : `${(cpu.serverMs / floor.cpuMs).toFixed(2)}×`,
        cpu.postgresMs === undefined ? '—' : cpu.postgresMs.toFixed(2),
      ]),
    ),
  );
  log('');
  for (const { kind, cpu } of results)
    log(
      `server CPU per run on ${DATABASE_NAMES[kind]}: ${cpu.serverMs === undefined ? 'n/a' : `${cpu.serverMs.toFixed(2)} ms`} ` +
        `(target ≤ ${TARGET_CPU_MS[kind]}) — ` +
        (cpu.serverMs === undefined ? 'not measured' : cpu.serverMs <= TARGET_CPU_MS[kind] ? 'met' : 'NOT met'),
    );

  // 2.
  const burst = await measureBurst(upstream);
  const completed = burst.statuses.get('completed') ?? 0;
  const statusList = [...burst.statuses].map(([s, n]) => `${n} ${s}`).join(', ');
  const ceiling = (WORKER_CONCURRENCY / LATENCY_MS) * 1000;
  log('');
  log(`2. ${BURST} runs created at once (held polls until terminal; ${WARMUP_RUNS} warm-up runs first)`);
  log('');
  log(
    `${statusList}; wall ${(burst.wallMs / 1000).toFixed(2)} s (all ${BURST} POSTs answered after ` +
      `${(burst.createMs / 1000).toFixed(2)} s) → ${((BURST / burst.wallMs) * 1000).toFixed(0)} runs/s; ` +
      `peak ${burst.peakUpstream} upstream requests in flight ` +
      `(ceiling at ${WORKER_CONCURRENCY} workers × ${LATENCY_MS} ms: ${ceiling.toFixed(0)} runs/s)`,
  );
  const cpuShare = (ms: number) =>
    `${(ms / 1000).toFixed(2)} s (${((ms / burst.wallMs) * 100).toFixed(0)}% of one core)`;
  log(
    `CPU during the burst: server ${burst.serverCpuMs === undefined ? 'n/a' : cpuShare(burst.serverCpuMs)}` +
      (burst.serverCpuMs === undefined ? '' : `, ${(burst.serverCpuMs / BURST).toFixed(1)} ms per run`) +
      `; this process (clients, fake upstream) ${cpuShare(burst.benchCpuMs)}`,
  );
  if (completed !== BURST) throw new Error(`only ${completed} of ${BURST} runs completed (${statusList})`);

  // 3.
  const commits = await measureCommits(upstream);
  const shortCounts = describeCounts(commits.short.perRun);
  const longCounts = describeCounts(commits.long.perRun);
  log('');
  log(`3. database commits per run (counted from the WAL; server lease ${LEASE_S} s)`);
  log('');
  log(
    `counter check: idle ${commits.idleMs / 1000} s → ${commits.idleCommits} commits (expected 0); ` +
      `${commits.knownCommits} messages created → ${commits.walCountedKnown} commits (expected ${commits.knownCommits}); ` +
      `PRAGMA data_version over the same ${commits.knownCommits}: +${commits.dataVersionDelta} read once, ` +
      `+${commits.dataVersionPolledEach} read after each of ${commits.knownCommits} more; WAL restarts ${commits.restarts}`,
  );
  if (commits.idleCommits !== 0 || commits.walCountedKnown !== commits.knownCommits || commits.restarts > 1)
    throw new Error('the WAL commit counter does not count commits: part 3 cannot be trusted');
  log('');
  log(
    table(
      ['reply', 'chars', 'completion tokens', 'run p50 ms', 'runs', 'commits/run', 'min', 'max'],
      [
        [
          `${SHORT_REPLY.length} chunks`,
          String(commits.short.replyChars),
          commits.short.completionTokens.toFixed(0),
          commits.short.p50Ms.toFixed(0),
          String(commits.short.perRun.length),
          shortCounts.mean,
          String(shortCounts.min),
          String(shortCounts.max),
        ],
        [
          `${LONG_CHUNKS} chunks`,
          String(commits.long.replyChars),
          commits.long.completionTokens.toFixed(0),
          commits.long.p50Ms.toFixed(0),
          String(commits.long.perRun.length),
          longCounts.mean,
          String(longCounts.min),
          String(longCounts.max),
        ],
      ],
    ),
  );
  log('');
  const equal = shortCounts.total === longCounts.total;
  log(
    `commits per run, ${LONG_CHUNKS} vs ${SHORT_REPLY.length} chunks: ${longCounts.mean} vs ${shortCounts.mean} — ` +
      (equal
        ? 'equal (met)'
        : `NOT equal (a lease renewal is one more commit per ${(LEASE_S / 3).toFixed(1)} s of a run)`),
  );
  log('');
  log(`load average at end (1/5/15 min): ${loadAverage()}`);
}

await runBench(main);
