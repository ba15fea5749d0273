/**
 * Streaming benchmark: what assistd adds to the tokens of a streamed run, against the fake upstream (a token every
 * 20 ms) running in this process — so the fake's write times and the clients' receive times share one clock
 * (performance.now()). assistd runs as its own process (`assistd serve`), one fresh server per part and database:
 * SQLite in a temporary directory, or PostgreSQL on a throwaway database created on the server of
 * BENCH_DATABASE_URL and dropped at the end. Run with `npm run bench:stream`.
 *
 * 1. First-token latency added, on each database of BENCH_DATABASES: sequential streamed runs
 *    (`POST /v1/threads/{id}/runs`, `stream: true`, a fresh thread each, created untimed, a 5-token reply), read
 *    with the official SDK; beside them, the same SDK streaming `chat.completions.create({ stream: true })`
 *    straight from the fake. The two interleaved. Each is timed twice: from the moment the client sends its
 *    request (just before the SDK call) to the first `thread.message.delta` / first content chunk (targets for the
 *    added p50: ≤ 3 ms on SQLite, ≤ 5 ms on PostgreSQL), and from the fake writing its first content chunk to the
 *    same arrival (targets ≤ 2 ms at p50, ≤ 10 ms at p99). p50/p99 of each side and of the pairwise difference.
 *    Then, on the same server, the server's CPU time per streamed run: BENCH_CPU_RUNS streamed runs one after
 *    another on threads created beforehand, the server process's utime + stime (/proc/<pid>/stat) before and after
 *    ÷ runs (targets ≤ 3 ms on SQLite, ≤ 5 ms on PostgreSQL); PostgreSQL's backends are shown beside it.
 *    Before the databases, the same measurements of a floor (bench/run-floor-server.ts, its own process): the same
 *    streamed runs answered by Fastify relaying the same model call with node:http and writing the run's events,
 *    with nothing else. What it adds is what the second HTTP hop and the events cost on this machine.
 * 2. Concurrent streams on one server (ASSISTD_WORKER_CONCURRENCY = the number of streams): the threads (one
 *    message each) are created first, then every streamed run is opened at once, each on its own connection
 *    (node:http, no socket limit; deltas counted as they arrive, the SSE parsed at the end). Every stream must end with
 *    `thread.run.completed` then `done` and carry the whole reply. Reported: errors, wall time, the added
 *    inter-token delay (each gap between consecutive deltas at the client minus the fake's 20 ms spacing; all gaps
 *    pooled), the same gaps minus the fake's actual spacing of those two tokens (what the server added, with the
 *    fake's own timer lag in this busy process taken out; target p99 ≤ 50 ms), the per-token latency (client
 *    receipt − the fake's write, every token), CPU of both processes and the server's per token, and the server's
 *    peak memory (VmHWM; target ≤ 400 MiB).
 *
 * Part 2 runs on SQLite. Part 3 (BENCH_PARTS=3) is part 2 on PostgreSQL, first with one API process and then with
 * BENCH_API_PROCESSES (default 2) sharing the database, the streams spread over them in turn: how one machine uses
 * more than one core for streams.
 *
 * Settings: BENCH_DATABASES (part 1: `sqlite,postgres` by default, or either alone), BENCH_DATABASE_URL (the
 * PostgreSQL server where the throwaway database is created, default postgres://postgres@127.0.0.1:5432/postgres),
 * BENCH_RUNS (part 1 runs per side, default 50), BENCH_CPU_RUNS (part 1's CPU batch, default 40), BENCH_STREAMS
 * (part 2, default 1000), BENCH_CHUNK_MS (the fake's token spacing, default 20), BENCH_STREAM_TIMEOUT_S (part 2: a
 * stream still open after this counts as an error, default 120), BENCH_PARTS (`1,2` by default; any of 1, 2, 3),
 * BENCH_API_PROCESSES (part 3, default 2).
 */
import { setMaxListeners } from 'node:events';
import { Agent, request } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import OpenAI from 'openai';
import { FakeUpstream, type RecordedRequest } from '../test/support/fake-upstream.ts';
import { spawnServer } from '../test/support/server.ts';
import {
  type Assistd,
  backendsCpuDelta,
  type CpuPerRun,
  cleanups,
  DATABASE_NAMES,
  type DatabaseKind,
  databaseKinds,
  describeAdminUrl,
  interleaved,
  loadAverage,
  log,
  machine,
  measureCpuPerRun,
  memoryMiB,
  percentile,
  pool,
  positiveInteger,
  postgresBackendsCpuMs,
  postgresVersion,
  processCpuMs,
  processCpuMsPerRun,
  runBench,
  runStreamProblem,
  startAssistd,
  started,
  startFloor,
  table,
  tokens,
} from './support.ts';

const DATABASES = databaseKinds();
const RUNS = positiveInteger('BENCH_RUNS', 50);
const CPU_RUNS = positiveInteger('BENCH_CPU_RUNS', 40);
const STREAMS = positiveInteger('BENCH_STREAMS', 1000);
const CHUNK_MS = positiveInteger('BENCH_CHUNK_MS', 20);
const STREAM_TIMEOUT_MS = positiveInteger('BENCH_STREAM_TIMEOUT_S', 120) * 1000;
const WARMUP_RUNS = 5;
/** Part 1's reply (its length does not change when the first token arrives; 5 keeps a run to ~0.15 s). */
const FIRST_TOKEN_CHUNKS = 5;
const CONCURRENT_CHUNKS = 25;
/** Threads are created this many at a time before part 2. */
const SEED_CONCURRENCY = 16;
/** Added p50 from the client's request to the first delta, ms. */
const TARGET_REQUEST_P50_MS: Record<DatabaseKind, number> = { sqlite: 3, postgres: 5 };
/** Added from the upstream's first chunk written to the first delta, ms. */
const TARGET_FIRST_P50_MS = 2;
const TARGET_FIRST_P99_MS = 10;
/** Server CPU per streamed run, ms. */
const TARGET_CPU_MS: Record<DatabaseKind, number> = { sqlite: 3, postgres: 5 };
const TARGET_GAP_P99_MS = 50;
/** Peak resident memory of the server during part 2, MiB. */
const TARGET_PEAK_MIB = 400;
const PARTS = new Set((process.env.BENCH_PARTS ?? '1,2').split(',').map((p) => p.trim()));
/** Part 3's API processes on one PostgreSQL database. */
const API_PROCESSES = positiveInteger('BENCH_API_PROCESSES', 2);
const MODEL = 'bench-model';

// ── processes ──────────────────────────────────────────────────────────────────

interface StreamServer extends Assistd {
  assistantId: string;
}

async function startServer(
  kind: DatabaseKind,
  upstream: FakeUpstream,
  env: Record<string, string> = {},
): Promise<StreamServer> {
  const assistd = await startAssistd(kind, upstream.baseUrl, { prefix: 'assistd-bench-stream-', env });
  const assistant = await assistd.client.beta.assistants.create({ model: MODEL });
  return { ...assistd, assistantId: assistant.id };
}

// ── helpers ───────────────────────────────────────────────────────────────────

interface Summary {
  p50: number;
  p99: number;
  max: number;
  count: number;
}

function summarize(samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? Number.NaN,
    count: sorted.length,
  };
}

/** A `Vm…` line of /proc/<pid>/status in MiB (VmHWM: peak resident set; VmRSS: now); undefined off Linux. */
function ms(value: number | undefined, digits = 2): string {
  return value === undefined || Number.isNaN(value) ? 'n/a' : value.toFixed(digits);
}

/** The one request the fake received since `from`, with the times it wrote its content chunks. */
function onlyRequestSince(upstream: FakeUpstream, from: number, expectedChunks: number): number[] {
  const received = upstream.requests.slice(from);
  if (received.length !== 1) throw new Error(`expected 1 upstream request, got ${received.length}`);
  const written = received[0]!.contentWrittenAt ?? [];
  if (written.length !== expectedChunks)
    throw new Error(`the fake wrote ${written.length} content chunks, not ${expectedChunks}`);
  return written;
}

// ── 1. first-token latency, and server CPU per streamed run ─────────────────────

/** One side's first content, timed from two starts. */
interface FirstSample {
  /** From just before the client's SDK call (the request being sent) to the first content at the client. */
  fromRequest: number;
  /** From the fake writing its first content chunk to the first content at the client. */
  fromWrite: number;
}

interface Comparison {
  direct: Summary;
  assistd: Summary;
  /** assistd − direct, pair by pair. */
  paired: Summary;
  /** p50 of assistd − p50 of direct (and p99 likewise): the targets' reading. */
  addedAtP50: number;
  addedAtP99: number;
}

function compare(directs: number[], runs: number[]): Comparison {
  const direct = summarize(directs);
  const assistd = summarize(runs);
  return {
    direct,
    assistd,
    paired: summarize(runs.map((r, i) => r - directs[i]!)),
    addedAtP50: assistd.p50 - direct.p50,
    addedAtP99: assistd.p99 - direct.p99,
  };
}

interface FirstToken {
  kind: DatabaseKind;
  fromRequest: Comparison;
  fromWrite: Comparison;
  cpu: CpuPerRun;
}

/** Times a streamed chat completion straight from the fake: from the request, and from the fake's first write. */
function directFirstTimer(upstream: FakeUpstream, direct: OpenAI, expected: string): () => Promise<FirstSample> {
  return async () => {
    const from = upstream.requests.length;
    let firstAt: number | undefined;
    let text = '';
    const start = performance.now();
    const stream = await direct.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Say hello.' }],
      stream: true,
    });
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content ?? '';
      if (content !== '' && firstAt === undefined) firstAt = performance.now();
      text += content;
    }
    if (text !== expected || firstAt === undefined) throw new Error(`direct completion streamed ${text.length} chars`);
    return {
      fromRequest: firstAt - start,
      fromWrite: firstAt - onlyRequestSince(upstream, from, FIRST_TOKEN_CHUNKS)[0]!,
    };
  };
}

/** A streamed run on the thread through the SDK, read to its end; when the request went out and the first delta came. */
async function streamRunToEnd(
  client: OpenAI,
  threadId: string,
  assistantId: string,
  expected: string,
): Promise<{ start: number; firstAt: number }> {
  let firstAt: number | undefined;
  let text = '';
  const names: string[] = [];
  const start = performance.now();
  const stream = await client.beta.threads.runs.create(threadId, { assistant_id: assistantId, stream: true });
  for await (const event of stream) {
    names.push(event.event);
    if (event.event !== 'thread.message.delta') continue;
    firstAt ??= performance.now();
    const part = event.data.delta.content?.[0];
    if (part?.type === 'text') text += part.text?.value ?? '';
  }
  if (names.at(-1) !== 'thread.run.completed' || text !== expected || firstAt === undefined)
    throw new Error(`streamed run on ${threadId}: ${text.length} chars, events ended ${names.slice(-3).join(', ')}`);
  return { start, firstAt };
}

interface FloorFirstToken {
  fromRequest: Comparison;
  fromWrite: Comparison;
  /** The floor process's CPU per streamed run, ms; undefined without /proc. */
  cpuMs: number | undefined;
}

/**
 * Part 1 on the floor (bench/run-floor-server.ts): the same streamed runs, answered by Fastify relaying the same
 * model call with node:http and writing the run's events, with no database, validation, logging or metrics.
 */
async function measureFloorFirstToken(upstream: FakeUpstream): Promise<FloorFirstToken> {
  const reply = tokens(FIRST_TOKEN_CHUNKS);
  const expected = reply.join('');
  upstream.setDefault({ text: reply, chunkDelayMs: CHUNK_MS });
  const floor = await startFloor('./run-floor-server.ts', { FLOOR_UPSTREAM_URL: upstream.baseUrl });
  const client = new OpenAI({ baseURL: `${floor.url}/v1`, apiKey: 'bench', maxRetries: 0 });
  const direct = new OpenAI({ baseURL: upstream.baseUrl, apiKey: 'bench', maxRetries: 0 });
  const streamedRun = () => streamRunToEnd(client, 'thread_floor', 'asst_floor', expected);
  const compared = await firstTokens(directFirstTimer(upstream, direct, expected), () =>
    firstSampleOf(upstream, streamedRun),
  );
  const cpuMs = await processCpuMsPerRun(floor.pid, CPU_RUNS, streamedRun);
  // Done with it: an idle floor would still share the cores with the parts that follow.
  await floor.stop();
  return { ...compared, cpuMs };
}

/** A run's first delta, timed from its request and from the fake writing its first chunk (its one request since). */
async function firstSampleOf(
  upstream: FakeUpstream,
  run: () => Promise<{ start: number; firstAt: number }>,
): Promise<FirstSample> {
  const from = upstream.requests.length;
  const { start, firstAt } = await run();
  return {
    fromRequest: firstAt - start,
    fromWrite: firstAt - onlyRequestSince(upstream, from, FIRST_TOKEN_CHUNKS)[0]!,
  };
}

/** WARMUP_RUNS of each, then RUNS of each interleaved: the direct call and the other side, compared both ways. */
async function firstTokens(
  timeDirect: () => Promise<FirstSample>,
  timeOther: () => Promise<FirstSample>,
): Promise<{ fromRequest: Comparison; fromWrite: Comparison }> {
  // The first runs on a fresh server pay for what is loaded lazily (e.g. the tokenizer's tables).
  for (let i = 0; i < WARMUP_RUNS; i++) {
    await timeDirect();
    await timeOther();
  }
  const [directs, others] = await interleaved(RUNS, timeDirect, timeOther);
  return {
    fromRequest: compare(
      directs.map((d) => d.fromRequest),
      others.map((r) => r.fromRequest),
    ),
    fromWrite: compare(
      directs.map((d) => d.fromWrite),
      others.map((r) => r.fromWrite),
    ),
  };
}

async function measureFirstToken(kind: DatabaseKind, upstream: FakeUpstream): Promise<FirstToken> {
  const reply = tokens(FIRST_TOKEN_CHUNKS);
  const expected = reply.join('');
  upstream.setDefault({ text: reply, chunkDelayMs: CHUNK_MS });
  const assistd = await startServer(kind, upstream);
  const direct = new OpenAI({ baseURL: upstream.baseUrl, apiKey: 'bench', maxRetries: 0 });
  const newThread = async () =>
    (await assistd.client.beta.threads.create({ messages: [{ role: 'user', content: 'Say hello.' }] })).id;

  const streamedRun = (threadId: string) => streamRunToEnd(assistd.client, threadId, assistd.assistantId, expected);
  const compared = await firstTokens(directFirstTimer(upstream, direct, expected), async () => {
    const threadId = await newThread();
    return firstSampleOf(upstream, () => streamedRun(threadId));
  });

  // CPU: streamed runs alone, one after another, on threads created beforehand.
  const threads = await pool(
    Array.from({ length: CPU_RUNS }, (_, i) => i),
    4,
    newThread,
  );
  const cpu = await measureCpuPerRun(assistd, CPU_RUNS, async (i) => {
    await streamedRun(threads[i]!);
  });
  await assistd.stop();
  return { kind, ...compared, cpu };
}

// ── 2. concurrent streams ──────────────────────────────────────────────────────

const STREAM_TAG = /bench stream (\d+)\./;

interface StreamOutcome {
  /** performance.now() when the response headers arrived (the run was created), if they did. */
  openedAt: number | undefined;
  /** performance.now() as each `thread.message.delta` arrived. */
  deltaAt: number[];
  /** performance.now() when the stream ended. */
  endedAt: number;
  error?: string;
  /** Parses the stream and says what is wrong with it, if anything: called once every stream has ended. */
  verify(): string | undefined;
}

/** What marks a delta in the stream; counted as bytes arrive, the stream is parsed once it has ended. */
const DELTA_MARK = 'event: thread.message.delta\n';

/**
 * One streamed run over its own connection. Never rejects: a failure is the outcome's `error`. While the stream
 * flows, each network chunk only has its deltas counted (each gets the chunk's arrival time) and is kept; the
 * stream is parsed (eventsource-parser) and checked by `verify`, once every stream has ended. A thousand clients
 * parsing every frame as it comes would take much of a core in this process, and the fake upstream's timers and the
 * clients' clocks with it.
 */
function streamRun(agent: Agent, base: string, threadId: string, assistantId: string, expected: string) {
  return new Promise<StreamOutcome>((resolve) => {
    const deltaAt: number[] = [];
    const chunks: Buffer[] = [];
    let openedAt: number | undefined;
    let settled = false;
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ openedAt, deltaAt, endedAt: performance.now(), verify, ...(error !== undefined ? { error } : {}) });
    };
    // The deltas parsed must be the deltas counted as the bytes came, which timed them.
    const verify = () =>
      runStreamProblem(Buffer.concat(chunks).toString('utf8'), { deltas: deltaAt.length, text: expected });
    const body = JSON.stringify({ assistant_id: assistantId, stream: true });
    const req = request(`${base}/threads/${threadId}/runs`, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    const timer = setTimeout(() => {
      finish(`still open after ${STREAM_TIMEOUT_MS / 1000} s`);
      req.destroy();
    }, STREAM_TIMEOUT_MS);
    req.on('error', (error) => finish(`${error.name}: ${error.message}`));
    req.on('response', (res) => {
      openedAt = performance.now();
      // The end of the previous chunk, where a mark cut in two begins.
      let carry = '';
      res.on('data', (chunk: Buffer) => {
        const arrivedAt = performance.now();
        chunks.push(chunk);
        const seen = carry + chunk.toString('latin1');
        for (let i = seen.indexOf(DELTA_MARK); i !== -1; i = seen.indexOf(DELTA_MARK, i + 1))
          if (i + DELTA_MARK.length > carry.length) deltaAt.push(arrivedAt);
        carry = seen.slice(-(DELTA_MARK.length - 1));
      });
      res.on('error', (error) => finish(`${error.name}: ${error.message}`));
      res.on('end', () => {
        if (res.statusCode !== 200)
          return finish(`HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 200)}`);
        finish();
      });
    });
    req.end(body);
  });
}

interface ConcurrentResult {
  errors: string[];
  wallMs: number;
  /** From the first POST until every run had been created (its stream's response headers arrived). */
  allOpenedMs: number;
  /** From the first POST until every stream had its first delta. */
  allFirstDeltaMs: number;
  /** Client gap − CHUNK_MS. */
  gapVsNominal: Summary;
  /** Client gap − the fake's gap between writing the same two tokens. */
  gapVsFake: Summary;
  /** The fake's own gaps − CHUNK_MS (its timer lag in this process). */
  fakeGapLag: Summary;
  /** Client receipt − the fake's write, every token. */
  tokenLatency: Summary;
  firstTokenLatency: Summary;
  upstreamRequests: number;
  serverCpuMs: number | undefined;
  /** PostgreSQL's backends for the throwaway database, when on PostgreSQL (not counted in serverCpuMs). */
  postgresCpuMs: number | undefined;
  benchCpuMs: number;
  rssBeforeMiB: number | undefined;
  peakMiB: number | undefined;
  /** This process's event-loop delay during the streams, ms: what the fake's and the clients' clocks may lag. */
  benchLoopDelay: { p99: number; max: number };
}

/**
 * STREAMS streamed runs opened at once on `processes` API processes sharing one database (`serve`, each executing
 * the streams it receives), the streams spread over them in turn. CPU and memory are the sum and the largest over
 * the processes.
 */
async function measureConcurrent(
  upstream: FakeUpstream,
  kind: DatabaseKind = 'sqlite',
  processes = 1,
): Promise<ConcurrentResult> {
  const reply = tokens(CONCURRENT_CHUNKS);
  const expected = reply.join('');
  upstream.setDefault({ text: reply, chunkDelayMs: CHUNK_MS });
  const concurrency = { ASSISTD_WORKER_CONCURRENCY: String(STREAMS) };
  const assistd = await startServer(kind, upstream, concurrency);
  const bases = [assistd.base];
  const pids = [assistd.server.child.pid];
  for (let i = 1; i < processes; i++) {
    const more = await started(
      spawnServer({ ...assistd.database.env, ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ...concurrency }),
      `assistd serve #${i + 1}`,
    );
    cleanups.push(() => more.stop());
    bases.push(`${more.url}/v1`);
    pids.push(more.child.pid);
  }
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  cleanups.push(() => agent.destroy());
  const sum = (values: Array<number | undefined>) =>
    values.some((v) => v === undefined) ? undefined : values.reduce((a: number, b) => a + b!, 0);
  const max = (values: Array<number | undefined>) =>
    values.some((v) => v === undefined) ? undefined : Math.max(...(values as number[]));

  // Warm the fresh servers up first: their first runs pay for lazy loading.
  for (const base of bases)
    for (let i = 0; i < WARMUP_RUNS; i++) {
      const thread = await assistd.client.beta.threads.create({ messages: [{ role: 'user', content: 'Warm up.' }] });
      const warm = await streamRun(agent, base, thread.id, assistd.assistantId, expected);
      const problem = warm.error ?? warm.verify();
      if (problem) throw new Error(`warm-up stream: ${problem}`);
    }

  const seedStart = performance.now();
  const threads = await pool(
    Array.from({ length: STREAMS }, (_, i) => i),
    SEED_CONCURRENCY,
    async (i) =>
      (
        await assistd.client.beta.threads.create({
          messages: [{ role: 'user', content: `Say hello, bench stream ${i}.` }],
        })
      ).id,
  );
  log(`created ${STREAMS} threads in ${((performance.now() - seedStart) / 1000).toFixed(1)} s`);

  const requestsBefore = upstream.requests.length;
  const rssBeforeMiB = max(pids.map((pid) => memoryMiB(pid, 'VmRSS')));
  const serverCpuBefore = sum(pids.map(processCpuMs));
  const postgresBefore = await postgresBackendsCpuMs(assistd.database);
  const benchCpuBefore = process.cpuUsage();
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();
  const start = performance.now();
  const outcomes = await Promise.all(
    threads.map((threadId, i) => streamRun(agent, bases[i % bases.length]!, threadId, assistd.assistantId, expected)),
  );
  loopDelay.disable();
  const wallMs = Math.max(...outcomes.map((o) => o.endedAt)) - start;
  const serverCpuAfter = sum(pids.map(processCpuMs));
  const benchCpu = process.cpuUsage(benchCpuBefore);
  const postgresCpuMs = backendsCpuDelta(postgresBefore, await postgresBackendsCpuMs(assistd.database));
  const peakMiB = max(pids.map((pid) => memoryMiB(pid, 'VmHWM')));

  // Which upstream request served which stream: the thread's message names the stream.
  const byStream = new Map<number, RecordedRequest>();
  const received = upstream.requests.slice(requestsBefore);
  for (const r of received) {
    const match = JSON.stringify(r.body.messages).match(STREAM_TAG);
    if (match) byStream.set(Number(match[1]), r);
  }

  const errors: string[] = [];
  const gapVsNominal: number[] = [];
  const gapVsFake: number[] = [];
  const fakeGapLag: number[] = [];
  const tokenLatency: number[] = [];
  const firstTokenLatency: number[] = [];
  let allFirstDelta = 0;
  let allOpened = 0;
  for (const [i, outcome] of outcomes.entries()) {
    allOpened = Math.max(allOpened, outcome.openedAt ?? Number.NaN);
    const problem = outcome.error ?? outcome.verify();
    if (problem) {
      errors.push(`stream ${i}: ${problem}`);
      continue;
    }
    const written = byStream.get(i)?.contentWrittenAt ?? [];
    const at = outcome.deltaAt;
    if (written.length !== at.length) {
      errors.push(`stream ${i}: ${at.length} deltas, but the fake wrote ${written.length} chunks for it`);
      continue;
    }
    allFirstDelta = Math.max(allFirstDelta, at[0]!);
    firstTokenLatency.push(at[0]! - written[0]!);
    for (let k = 0; k < at.length; k++) {
      tokenLatency.push(at[k]! - written[k]!);
      if (k === 0) continue;
      const gap = at[k]! - at[k - 1]!;
      const fakeGap = written[k]! - written[k - 1]!;
      gapVsNominal.push(gap - CHUNK_MS);
      gapVsFake.push(gap - fakeGap);
      fakeGapLag.push(fakeGap - CHUNK_MS);
    }
  }
  await assistd.stop();
  agent.destroy();
  return {
    errors,
    wallMs,
    allOpenedMs: allOpened - start,
    allFirstDeltaMs: allFirstDelta - start,
    gapVsNominal: summarize(gapVsNominal),
    gapVsFake: summarize(gapVsFake),
    fakeGapLag: summarize(fakeGapLag),
    tokenLatency: summarize(tokenLatency),
    firstTokenLatency: summarize(firstTokenLatency),
    upstreamRequests: received.length,
    serverCpuMs:
      serverCpuBefore === undefined || serverCpuAfter === undefined ? undefined : serverCpuAfter - serverCpuBefore,
    postgresCpuMs,
    benchCpuMs: (benchCpu.user + benchCpu.system) / 1000,
    rssBeforeMiB,
    peakMiB,
    benchLoopDelay: { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
  };
}

// ── report ────────────────────────────────────────────────────────────────────

function verdict(met: boolean): string {
  return met ? 'met' : 'NOT met';
}

async function main(): Promise<void> {
  log(`${machine()}; load average ${loadAverage(' ')} (other processes share these cores)`);
  const postgres = DATABASES.includes('postgres') ? await postgresVersion() : undefined;
  log(
    `node ${process.version}; fake upstream in this process, a token every ${CHUNK_MS} ms; part 1 on ` +
      DATABASES.map((k) =>
        k === 'postgres' ? `PostgreSQL ${postgres} (throwaway database on ${describeAdminUrl()})` : 'SQLite',
      ).join(' and ') +
      `: ${RUNS} runs per side (after ${WARMUP_RUNS} warm-up) and ${CPU_RUNS} for CPU; ` +
      `${STREAMS} concurrent streams in part 2 (SQLite)`,
  );

  // The fake's pauses all listen on one AbortSignal, which takes its limit when created: thousands in flight is
  // expected, not a leak.
  setMaxListeners(4 * STREAMS);
  const upstream = await FakeUpstream.start({ chunkDelayMs: CHUNK_MS });
  cleanups.push(() => upstream.close());

  // 1.
  if (PARTS.has('1')) await firstTokenPart(upstream);
  // 2.
  if (PARTS.has('2')) await concurrentPart(upstream, '2');
  // 3. The same on PostgreSQL, on one process and then on several: how one machine uses more than one core.
  if (PARTS.has('3')) {
    await concurrentPart(upstream, '3a', 'postgres', 1);
    await concurrentPart(upstream, '3b', 'postgres', API_PROCESSES);
  }
}

async function firstTokenPart(upstream: FakeUpstream): Promise<void> {
  const floor = await measureFloorFirstToken(upstream);
  const firsts: FirstToken[] = [];
  for (const kind of DATABASES) firsts.push(await measureFirstToken(kind, upstream));
  log('');
  log(
    `1. first-token latency (${FIRST_TOKEN_CHUNKS}-token reply, sequential, official SDK on both sides): from the ` +
      `client sending its request, and from the fake writing its first content chunk, to the first delta`,
  );
  const row = (name: string, s: Summary) => [name, ms(s.p50), ms(s.p99), ms(s.max)];
  log('');
  log(
    'floor (bench/run-floor-server.ts: the same streamed runs relayed to the same upstream by Fastify and ' +
      'node:http, the run’s events written; no database, validation, logging or metrics):',
  );
  log('');
  log(
    table(
      ['path', 'p50 ms', 'p99 ms', 'max ms'],
      [
        row('direct: request → first chunk (chat.completions.create)', floor.fromRequest.direct),
        row('floor: request → first delta (threads.runs.create)', floor.fromRequest.assistd),
        row('paired difference (floor − direct)', floor.fromRequest.paired),
        row("floor: fake's first chunk written → first delta", floor.fromWrite.assistd),
      ],
    ),
  );
  log('');
  log(
    `floor: added first-token latency from the client's request: +${ms(floor.fromRequest.addedAtP50)} ms at p50, ` +
      `+${ms(floor.fromRequest.addedAtP99)} ms at p99; after the upstream's first chunk: ` +
      `+${ms(floor.fromWrite.addedAtP50)} ms at p50; CPU per streamed run: ${ms(floor.cpuMs)} ms`,
  );
  for (const { kind, fromRequest, fromWrite } of firsts) {
    log('');
    log(`${DATABASE_NAMES[kind]}:`);
    log('');
    log(
      table(
        ['path', 'p50 ms', 'p99 ms', 'max ms'],
        [
          row('direct: request → first chunk (chat.completions.create)', fromRequest.direct),
          row('assistd: request → first delta (threads.runs.create)', fromRequest.assistd),
          row('paired difference (assistd − direct)', fromRequest.paired),
          row("direct: fake's first chunk written → first chunk", fromWrite.direct),
          row("assistd: fake's first chunk written → first delta", fromWrite.assistd),
          row('paired difference (assistd − direct)', fromWrite.paired),
        ],
      ),
    );
  }
  log('');
  for (const { kind, fromRequest, fromWrite } of firsts) {
    const name = DATABASE_NAMES[kind];
    log(
      `${name}: added first-token latency from the client's request: +${ms(fromRequest.addedAtP50)} ms at p50 ` +
        `(target ≤ ${TARGET_REQUEST_P50_MS[kind]}) — ${verdict(fromRequest.addedAtP50 <= TARGET_REQUEST_P50_MS[kind])}; ` +
        `+${ms(fromRequest.addedAtP99)} ms at p99`,
    );
    log(
      `${name}: added after the upstream's first chunk: +${ms(fromWrite.addedAtP50)} ms at p50 ` +
        `(target ≤ ${TARGET_FIRST_P50_MS}) — ${verdict(fromWrite.addedAtP50 <= TARGET_FIRST_P50_MS)}; ` +
        `+${ms(fromWrite.addedAtP99)} ms at p99 (target ≤ ${TARGET_FIRST_P99_MS}) — ` +
        `${verdict(fromWrite.addedAtP99 <= TARGET_FIRST_P99_MS)}`,
    );
  }
  log('');
  log(
    `server CPU per streamed run (${CPU_RUNS} one after another, ${FIRST_TOKEN_CHUNKS}-token reply; utime + stime ` +
      `of the server process before and after ÷ runs)`,
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
        `÷ floor (${ms(floor.cpuMs)} ms)`,
        'PostgreSQL backends CPU ms/run (not counted)',
      ],
      firsts.map(({ kind, cpu }) => [
        DATABASE_NAMES[kind],
        String(cpu.runs),
        (cpu.wallMs / 1000).toFixed(2),
        ms(cpu.serverMs),
        `≤ ${TARGET_CPU_MS[kind]}`,
        cpu.serverMs === undefined || !floor.cpuMs ? 'n/a' : `${(cpu.serverMs / floor.cpuMs).toFixed(2)}×`,
        cpu.postgresMs === undefined ? '—' : ms(cpu.postgresMs),
      ]),
    ),
  );
  log('');
  for (const { kind, cpu } of firsts)
    log(
      `server CPU per streamed run on ${DATABASE_NAMES[kind]}: ${ms(cpu.serverMs)} ms ` +
        `(target ≤ ${TARGET_CPU_MS[kind]}) — ` +
        (cpu.serverMs === undefined ? 'not measured' : verdict(cpu.serverMs <= TARGET_CPU_MS[kind])),
    );
}

async function concurrentPart(
  upstream: FakeUpstream,
  part: string,
  kind: DatabaseKind = 'sqlite',
  processes = 1,
): Promise<void> {
  log('');
  log(`load average before part ${part}: ${loadAverage(' ')}`);
  const result = await measureConcurrent(upstream, kind, processes);
  const cpuShare = (value: number | undefined) =>
    value === undefined
      ? 'n/a'
      : `${(value / 1000).toFixed(2)} s (${((value / result.wallMs) * 100).toFixed(0)}% of one core)`;
  log('');
  const where =
    processes === 1 ? 'one server' : `${processes} API processes (\`serve\`, the streams spread over them in turn)`;
  log(
    `${part}. ${STREAMS} streamed runs opened at once on ${where} on ${DATABASE_NAMES[kind]} ` +
      `(ASSISTD_WORKER_CONCURRENCY=${STREAMS}), ${CONCURRENT_CHUNKS} tokens each`,
  );
  log('');
  log(
    `errors: ${result.errors.length} of ${STREAMS}; upstream requests: ${result.upstreamRequests}; ` +
      `wall ${(result.wallMs / 1000).toFixed(2)} s (every run created after ${ms(result.allOpenedMs / 1000)} s, ` +
      `every stream had its first delta after ` +
      `${(result.allFirstDeltaMs / 1000).toFixed(2)} s; one stream alone lasts ~${((CONCURRENT_CHUNKS + 1) * CHUNK_MS) / 1000} s)`,
  );
  for (const error of result.errors.slice(0, 5)) log(`  ${error}`);
  log('');
  log(
    table(
      ['measure (all tokens of all streams pooled)', 'samples', 'p50 ms', 'p99 ms', 'max ms'],
      [
        ['added inter-token delay: client gap − ' + `${CHUNK_MS} ms`, result.gapVsNominal],
        ["client gap − the fake's gap for the same two tokens", result.gapVsFake],
        [`the fake's own gap − ${CHUNK_MS} ms (its timer lag here)`, result.fakeGapLag],
        ["per-token latency: client receipt − fake's write", result.tokenLatency],
        ["first-token latency under load: client − fake's write", result.firstTokenLatency],
      ].map(([name, s]) => {
        const summary = s as Summary;
        return [name as string, String(summary.count), ms(summary.p50), ms(summary.p99), ms(summary.max)];
      }),
    ),
  );
  log('');
  log(
    `CPU during the streams: server${processes === 1 ? '' : `s (${processes} processes)`} ` +
      `${cpuShare(result.serverCpuMs)}; ` +
      (result.postgresCpuMs === undefined ? '' : `PostgreSQL's backends ${cpuShare(result.postgresCpuMs)}; `) +
      `this process (clients, fake upstream) ${cpuShare(result.benchCpuMs)}, its event-loop delay ` +
      `p99 ${ms(result.benchLoopDelay.p99, 1)} ms, max ${ms(result.benchLoopDelay.max, 1)} ms`,
  );
  log(
    `server memory${processes === 1 ? '' : ' (the largest process)'}: RSS ${ms(result.rssBeforeMiB, 0)} MiB ` +
      `before the streams, peak (VmHWM) ${ms(result.peakMiB, 0)} MiB`,
  );
  log('');
  const tokens = STREAMS * CONCURRENT_CHUNKS;
  log(
    `server CPU per token, all included (the runs' creation, events, commits): ` +
      (result.serverCpuMs === undefined ? 'n/a' : `${((result.serverCpuMs * 1000) / tokens).toFixed(0)} µs`) +
      ` (${tokens} tokens; what a token alone costs: npm run bench:token)`,
  );
  log('');
  const peakMet = result.peakMiB !== undefined && result.peakMiB <= TARGET_PEAK_MIB;
  log(
    `errors: ${result.errors.length} (target 0) — ${verdict(result.errors.length === 0)}; p99 of client gap − ` +
      `the fake's gap: ${ms(result.gapVsFake.p99)} ms (target ≤ ${TARGET_GAP_P99_MS}) — ` +
      `${verdict(result.gapVsFake.p99 <= TARGET_GAP_P99_MS)}; peak RSS ${ms(result.peakMiB, 0)} MiB ` +
      `(target ≤ ${TARGET_PEAK_MIB}) — ${verdict(peakMet)}`,
  );
}

await runBench(main);
