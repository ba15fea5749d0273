/**
 * Streaming benchmark: what assistd adds to the tokens of a streamed run, against the fake upstream (a token every
 * 20 ms) running in this process — so the fake's write times and the clients' receive times share one clock
 * (performance.now()). assistd runs as its own process (`assistd serve`, SQLite in a temporary directory), one fresh
 * server per part. Run with `npm run bench:stream`.
 *
 * 1. First-token latency added: sequential streamed runs (`POST /v1/threads/{id}/runs`, `stream: true`, a fresh
 *    thread each, created untimed), read with the official SDK, timed from the fake writing its first content chunk
 *    to the SDK yielding the first `thread.message.delta`; beside them, the same SDK streaming
 *    `chat.completions.create({ stream: true })` straight from the fake, timed from the same write to the first
 *    content delta. The two interleaved; p50/p99 of each and of the difference (targets ≤ 2 ms / ≤ 10 ms).
 * 2. Concurrent streams on one server (ASSISTD_WORKER_CONCURRENCY = the number of streams): the threads (one
 *    message each) are created first, then every streamed run is opened at once, each on its own connection
 *    (node:http, no socket limit; SSE read with eventsource-parser). Every stream must end with
 *    `thread.run.completed` then `done` and carry the whole reply. Reported: errors, wall time, the added
 *    inter-token delay (each gap between consecutive deltas at the client minus the fake's 20 ms spacing; all gaps
 *    pooled; target p99 ≤ 50 ms), the same gaps minus the fake's actual spacing of those two tokens (what remains
 *    when the fake's own timer lag in this busy process is taken out), the per-token latency (client receipt − the
 *    fake's write, every token), CPU of both processes, and the server's peak memory (VmHWM).
 *
 * Settings: BENCH_RUNS (part 1 runs per side, default 50), BENCH_STREAMS (part 2, default 1000), BENCH_CHUNK_MS
 * (the fake's token spacing, default 20), BENCH_STREAM_TIMEOUT_S (part 2: a stream still open after this counts
 * as an error, default 120).
 */
import { setMaxListeners } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createParser } from 'eventsource-parser';
import OpenAI from 'openai';
import { FakeUpstream, type RecordedRequest } from '../test/support/fake-upstream.ts';
import { type ServerProcess, spawnServer, tempDir } from '../test/support/server.ts';
import {
  cleanups,
  interleaved,
  loadAverage,
  log,
  machine,
  percentile,
  pool,
  positiveInteger,
  processCpuMs,
  runBench,
  table,
  withTimeout,
} from './support.ts';

const RUNS = positiveInteger('BENCH_RUNS', 50);
const STREAMS = positiveInteger('BENCH_STREAMS', 1000);
const CHUNK_MS = positiveInteger('BENCH_CHUNK_MS', 20);
const STREAM_TIMEOUT_MS = positiveInteger('BENCH_STREAM_TIMEOUT_S', 120) * 1000;
const WARMUP_RUNS = 5;
const FIRST_TOKEN_CHUNKS = 30;
const CONCURRENT_CHUNKS = 25;
/** Threads are created this many at a time before part 2. */
const SEED_CONCURRENCY = 16;
const TARGET_FIRST_P50_MS = 2;
const TARGET_FIRST_P99_MS = 10;
const TARGET_GAP_P99_MS = 50;
const MODEL = 'bench-model';

/** The reply: `count` one-word tokens, each its own SSE chunk. */
function tokens(count: number): string[] {
  return Array.from({ length: count }, (_, i) => (i === 0 ? `token${i}` : ` token${i}`));
}

// ── processes ──────────────────────────────────────────────────────────────────

interface Assistd {
  server: ServerProcess;
  /** The API base, up to and including /v1. */
  base: string;
  client: OpenAI;
  assistantId: string;
  /** Stops the server and removes its data directory now (also done at exit if not called). */
  stop(): Promise<void>;
}

async function startAssistd(upstream: FakeUpstream, env: Record<string, string> = {}): Promise<Assistd> {
  const dataDir = tempDir('assistd-bench-stream-');
  let removed = false;
  const remove = () => {
    if (!removed) rmSync(dataDir, { recursive: true, force: true });
    removed = true;
  };
  cleanups.push(remove);
  const server = await withTimeout(
    spawnServer({ ASSISTD_DATA_DIR: dataDir, ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ...env }),
    'assistd',
  );
  cleanups.push(() => server.stop());
  const base = `${server.url}/v1`;
  const client = new OpenAI({ baseURL: base, apiKey: 'bench', maxRetries: 0 });
  const assistant = await client.beta.assistants.create({ model: MODEL });
  return {
    server,
    base,
    client,
    assistantId: assistant.id,
    stop: async () => {
      await server.stop();
      remove();
    },
  };
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
function memoryMiB(pid: number | undefined, field: 'VmHWM' | 'VmRSS'): number | undefined {
  try {
    const match = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return match ? Number(match[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

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

// ── 1. first-token latency ─────────────────────────────────────────────────────

interface FirstToken {
  direct: Summary;
  assistd: Summary;
  added: Summary;
  /** p50 of assistd − p50 of direct (and p99 likewise): the targets' reading. */
  addedAtP50: number;
  addedAtP99: number;
}

async function measureFirstToken(upstream: FakeUpstream): Promise<FirstToken> {
  const reply = tokens(FIRST_TOKEN_CHUNKS);
  const expected = reply.join('');
  upstream.setDefault({ text: reply, chunkDelayMs: CHUNK_MS });
  const assistd = await startAssistd(upstream);
  const direct = new OpenAI({ baseURL: upstream.baseUrl, apiKey: 'bench', maxRetries: 0 });

  const timeDirect = async (): Promise<number> => {
    const from = upstream.requests.length;
    let firstAt: number | undefined;
    let text = '';
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
    return firstAt - onlyRequestSince(upstream, from, FIRST_TOKEN_CHUNKS)[0]!;
  };

  const timeAssistd = async (): Promise<number> => {
    const thread = await assistd.client.beta.threads.create({ messages: [{ role: 'user', content: 'Say hello.' }] });
    const from = upstream.requests.length;
    let firstAt: number | undefined;
    let text = '';
    const names: string[] = [];
    const stream = await assistd.client.beta.threads.runs.create(thread.id, {
      assistant_id: assistd.assistantId,
      stream: true,
    });
    for await (const event of stream) {
      names.push(event.event);
      if (event.event !== 'thread.message.delta') continue;
      firstAt ??= performance.now();
      const part = event.data.delta.content?.[0];
      if (part?.type === 'text') text += part.text?.value ?? '';
    }
    if (names.at(-1) !== 'thread.run.completed' || text !== expected || firstAt === undefined)
      throw new Error(`streamed run on ${thread.id}: ${text.length} chars, events ended ${names.slice(-3).join(', ')}`);
    return firstAt - onlyRequestSince(upstream, from, FIRST_TOKEN_CHUNKS)[0]!;
  };

  // The first runs on a fresh server pay for what is loaded lazily (e.g. the tokenizer's tables).
  for (let i = 0; i < WARMUP_RUNS; i++) {
    await timeDirect();
    await timeAssistd();
  }
  const [directs, runs] = await interleaved(RUNS, timeDirect, timeAssistd);
  await assistd.stop();
  const d = summarize(directs);
  const a = summarize(runs);
  return {
    direct: d,
    assistd: a,
    added: summarize(runs.map((r, i) => r - directs[i]!)),
    addedAtP50: a.p50 - d.p50,
    addedAtP99: a.p99 - d.p99,
  };
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
}

/**
 * One streamed run over its own connection, read with eventsource-parser. Never rejects: a failure is the outcome's
 * `error`. Every event parsed from one network chunk gets that chunk's arrival time.
 */
function streamRun(agent: Agent, base: string, threadId: string, assistantId: string, expected: string) {
  return new Promise<StreamOutcome>((resolve) => {
    const deltaAt: number[] = [];
    const names: string[] = [];
    let text = '';
    let arrivedAt = 0;
    let openedAt: number | undefined;
    let settled = false;
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ openedAt, deltaAt, endedAt: performance.now(), ...(error !== undefined ? { error } : {}) });
    };
    const parser = createParser({
      onEvent: (message) => {
        names.push(message.event ?? 'message');
        if (message.event !== 'thread.message.delta') return;
        deltaAt.push(arrivedAt);
        const data = JSON.parse(message.data) as { delta: { content?: Array<{ text?: { value?: string } }> } };
        text += data.delta.content?.[0]?.text?.value ?? '';
      },
    });
    const body = JSON.stringify({ assistant_id: assistantId, stream: true });
    const req = request(`${base}/threads/${threadId}/runs`, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    const timer = setTimeout(() => {
      finish(`still open after ${STREAM_TIMEOUT_MS / 1000} s (${names.length} events)`);
      req.destroy();
    }, STREAM_TIMEOUT_MS);
    req.on('error', (error) => finish(`${error.name}: ${error.message}`));
    req.on('response', (res) => {
      openedAt = performance.now();
      const decoder = new TextDecoder();
      let raw = '';
      res.on('data', (chunk: Buffer) => {
        arrivedAt = performance.now();
        if (res.statusCode !== 200) raw += chunk.toString();
        else parser.feed(decoder.decode(chunk, { stream: true }));
      });
      res.on('error', (error) => finish(`${error.name}: ${error.message}`));
      res.on('end', () => {
        if (res.statusCode !== 200) return finish(`HTTP ${res.statusCode}: ${raw.slice(0, 200)}`);
        const ending = names.slice(-2).join(', ');
        if (ending !== 'thread.run.completed, done') return finish(`events ended ${names.slice(-3).join(', ')}`);
        if (text !== expected) return finish(`streamed ${text.length} chars, not ${expected.length}`);
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
  benchCpuMs: number;
  rssBeforeMiB: number | undefined;
  peakMiB: number | undefined;
  /** This process's event-loop delay during the streams, ms: what the fake's and the clients' clocks may lag. */
  benchLoopDelay: { p99: number; max: number };
}

async function measureConcurrent(upstream: FakeUpstream): Promise<ConcurrentResult> {
  const reply = tokens(CONCURRENT_CHUNKS);
  const expected = reply.join('');
  upstream.setDefault({ text: reply, chunkDelayMs: CHUNK_MS });
  const assistd = await startAssistd(upstream, { ASSISTD_WORKER_CONCURRENCY: String(STREAMS) });
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  cleanups.push(() => agent.destroy());
  const pid = assistd.server.child.pid;

  // Warm the fresh server up first: its first runs pay for lazy loading.
  for (let i = 0; i < WARMUP_RUNS; i++) {
    const thread = await assistd.client.beta.threads.create({ messages: [{ role: 'user', content: 'Warm up.' }] });
    const warm = await streamRun(agent, assistd.base, thread.id, assistd.assistantId, expected);
    if (warm.error) throw new Error(`warm-up stream: ${warm.error}`);
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
  const rssBeforeMiB = memoryMiB(pid, 'VmRSS');
  const serverCpuBefore = processCpuMs(pid);
  const benchCpuBefore = process.cpuUsage();
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();
  const start = performance.now();
  const outcomes = await Promise.all(
    threads.map((threadId) => streamRun(agent, assistd.base, threadId, assistd.assistantId, expected)),
  );
  loopDelay.disable();
  const wallMs = Math.max(...outcomes.map((o) => o.endedAt)) - start;
  const serverCpuAfter = processCpuMs(pid);
  const benchCpu = process.cpuUsage(benchCpuBefore);
  const peakMiB = memoryMiB(pid, 'VmHWM');

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
    if (outcome.error) {
      errors.push(`stream ${i}: ${outcome.error}`);
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
  log(
    `node ${process.version}; fake upstream in this process, a token every ${CHUNK_MS} ms; ` +
      `${RUNS} runs per side in part 1 (after ${WARMUP_RUNS} warm-up), ${STREAMS} concurrent streams in part 2`,
  );

  // The fake's pauses all listen on one AbortSignal, which takes its limit when created: thousands in flight is
  // expected, not a leak.
  setMaxListeners(4 * STREAMS);
  const upstream = await FakeUpstream.start({ chunkDelayMs: CHUNK_MS });
  cleanups.push(() => upstream.close());

  // 1.
  const first = await measureFirstToken(upstream);
  log('');
  log(
    `1. first-token latency: the fake's first content chunk written → the client's first delta ` +
      `(${FIRST_TOKEN_CHUNKS}-token reply, sequential, official SDK on both sides)`,
  );
  log('');
  log(
    table(
      ['path', 'p50 ms', 'p99 ms', 'max ms'],
      [
        ['direct: chat.completions.create (stream)', ms(first.direct.p50), ms(first.direct.p99), ms(first.direct.max)],
        ['assistd: threads.runs.create (stream)', ms(first.assistd.p50), ms(first.assistd.p99), ms(first.assistd.max)],
        ['paired difference (assistd − direct)', ms(first.added.p50), ms(first.added.p99), ms(first.added.max)],
      ],
    ),
  );
  log('');
  log(
    `added first-token latency: +${ms(first.addedAtP50)} ms at p50 (target ≤ ${TARGET_FIRST_P50_MS}) — ` +
      `${verdict(first.addedAtP50 <= TARGET_FIRST_P50_MS)}; +${ms(first.addedAtP99)} ms at p99 ` +
      `(target ≤ ${TARGET_FIRST_P99_MS}) — ${verdict(first.addedAtP99 <= TARGET_FIRST_P99_MS)}`,
  );

  // 2.
  log('');
  log(`load average before part 2: ${loadAverage(' ')}`);
  const result = await measureConcurrent(upstream);
  const cpuShare = (value: number | undefined) =>
    value === undefined
      ? 'n/a'
      : `${(value / 1000).toFixed(2)} s (${((value / result.wallMs) * 100).toFixed(0)}% of one core)`;
  log('');
  log(
    `2. ${STREAMS} streamed runs opened at once on one server (ASSISTD_WORKER_CONCURRENCY=${STREAMS}), ` +
      `${CONCURRENT_CHUNKS} tokens each`,
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
    `CPU during the streams: server ${cpuShare(result.serverCpuMs)}; ` +
      `this process (clients, fake upstream) ${cpuShare(result.benchCpuMs)}, its event-loop delay ` +
      `p99 ${ms(result.benchLoopDelay.p99, 1)} ms, max ${ms(result.benchLoopDelay.max, 1)} ms`,
  );
  log(
    `server memory: RSS ${ms(result.rssBeforeMiB, 0)} MiB before the streams, peak (VmHWM) ` +
      `${ms(result.peakMiB, 0)} MiB`,
  );
  log('');
  log(
    `errors: ${result.errors.length} (target 0) — ${verdict(result.errors.length === 0)}; added inter-token delay ` +
      `p99 ${ms(result.gapVsNominal.p99)} ms (target ≤ ${TARGET_GAP_P99_MS}) — ` +
      `${verdict(result.gapVsNominal.p99 <= TARGET_GAP_P99_MS)}`,
  );
}

await runBench(main);
