/**
 * Long-thread benchmark: what a run costs on a thread of many messages (OpenAI allowed 100,000 per thread; a program
 * keeping one thread per user for months has thousands) against a thread just long enough to fill the same prompt.
 * assistd runs as its own process (`assistd serve`) with a model window of BENCH_WINDOW tokens, so both threads
 * send the same size of prompt (the first message and the most recent ones that fit): the difference is what the
 * rest of the long thread costs. Run with `npm run bench:long-thread`.
 *
 * On each database of BENCH_DATABASES, two threads are seeded through the API: the baseline with BENCH_BASELINE
 * messages (about what the window shows of them) and the long one with BENCH_MESSAGES; PostgreSQL then analyses its
 * tables, as autovacuum would soon. Then, interleaved, BENCH_RUNS runs of each: a user message added (not timed),
 * then the official SDK's `runs.createAndPoll`, timed from the client's request to the run's end; p50/p90 and the
 * ratio of the medians. Then BENCH_CPU_RUNS more of each, one after another, for the server's CPU time per run
 * (utime + stime from /proc; PostgreSQL's backends beside it). Last, the long thread is deleted while another
 * client asks `/healthz` one request after another: the deletion's time, and that client's p50 and longest wait,
 * beside the same client's against the idle server.
 *
 * Settings: BENCH_DATABASES (`sqlite,postgres` by default, or either alone), BENCH_DATABASE_URL (see support.ts),
 * BENCH_MESSAGES (default 20,000), BENCH_BASELINE (default 500), BENCH_WINDOW (default 16,000), BENCH_RUNS (default
 * 20), BENCH_CPU_RUNS (default 20). BENCH_SERVER_ROOT runs the servers from another checkout (bench/README.md).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type OpenAI from 'openai';
import pg from 'pg';
import { FakeUpstream } from '../test/support/fake-upstream.ts';
import {
  type Assistd,
  DATABASE_NAMES,
  databaseKinds,
  interleaved,
  loadAverage,
  log,
  machine,
  measureCpuPerRun,
  percentile,
  pool,
  positiveInteger,
  runBench,
  startAssistd,
  summarizeP50P90,
  table,
} from './support.ts';

const DATABASES = databaseKinds();
const MESSAGES = positiveInteger('BENCH_MESSAGES', 20_000);
const BASELINE = positiveInteger('BENCH_BASELINE', 500);
const WINDOW = positiveInteger('BENCH_WINDOW', 16_000);
const RUNS = positiveInteger('BENCH_RUNS', 20);
const CPU_RUNS = positiveInteger('BENCH_CPU_RUNS', 20);
const WARMUP_RUNS = 3;
/** ~40 tokens: a short line of conversation. */
const LINE = 'a line of conversation of about forty tokens, as people write them to an assistant, with a question';

/** A thread of `count` messages, the user's and the assistant's (in about that order: 8 are added at a time). */
async function seedThread(client: OpenAI, count: number): Promise<string> {
  const role = (i: number) => (i % 2 === 0 ? 'user' : 'assistant');
  const thread = await client.beta.threads.create();
  const all = Array.from({ length: count }, (_, i) => i);
  await pool(all, 8, async (i) => {
    await client.beta.threads.messages.create(thread.id, { role: role(i), content: `${i}: ${LINE}` });
  });
  return thread.id;
}

async function measure(assistd: Assistd, upstream: FakeUpstream, name: string): Promise<void> {
  const { client } = assistd;
  const seedStart = performance.now();
  const [baseline, long] = [await seedThread(client, BASELINE), await seedThread(client, MESSAGES)];
  log(`seeded ${BASELINE} + ${MESSAGES} messages in ${((performance.now() - seedStart) / 1000).toFixed(1)} s`);
  // What autovacuum does within a minute of such a load: until then PostgreSQL plans as for an empty table (a sort of
  // the whole thread for the first of its messages), which is not what a thread that grew over months meets.
  const url = assistd.database.env['ASSISTD_DATABASE_URL'];
  if (url) {
    const admin = new pg.Client(url);
    await admin.connect();
    await admin.query('analyze');
    await admin.end();
  }
  const assistant = await client.beta.assistants.create({ model: 'bench-model', instructions: 'Be brief.' });

  const sentMessages = new Map<string, number>();
  const runOn = (threadId: string) => async (): Promise<number> => {
    await client.beta.threads.messages.create(threadId, { role: 'user', content: LINE });
    const start = performance.now();
    const run = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistant.id });
    const ms = performance.now() - start;
    if (run.status !== 'completed') throw new Error(`run ${run.id}: ${run.status} ${JSON.stringify(run.last_error)}`);
    sentMessages.set(threadId, upstream.requests.at(-1)!.body.messages.length);
    return ms;
  };
  for (let i = 0; i < WARMUP_RUNS; i++) {
    await runOn(baseline)();
    await runOn(long)();
  }
  const [short, longer] = await interleaved(RUNS, runOn(baseline), runOn(long));
  const cpuShort = await measureCpuPerRun(assistd, CPU_RUNS, async () => void (await runOn(baseline)()));
  const cpuLong = await measureCpuPerRun(assistd, CPU_RUNS, async () => void (await runOn(long)()));
  const a = summarizeP50P90(short);
  const b = summarizeP50P90(longer);
  const cpu = (c: typeof cpuShort) =>
    `${c.serverMs?.toFixed(1) ?? 'n/a'}${c.postgresMs === undefined ? '' : ` (+ PostgreSQL ${c.postgresMs.toFixed(1)})`}`;
  log(`\n${name}: createAndPoll, ${RUNS} runs of each interleaved; server CPU over ${CPU_RUNS} more of each`);
  log(
    table(
      ['thread', 'messages sent', 'p50 ms', 'p90 ms', 'server CPU ms/run'],
      [
        [`${BASELINE} messages`, String(sentMessages.get(baseline)), a.p50.toFixed(1), a.p90.toFixed(1), cpu(cpuShort)],
        [`${MESSAGES} messages`, String(sentMessages.get(long)), b.p50.toFixed(1), b.p90.toFixed(1), cpu(cpuLong)],
      ],
    ),
  );
  const cpuRatio =
    cpuShort.serverMs && cpuLong.serverMs
      ? ` ; server CPU ratio ${(cpuLong.serverMs / cpuShort.serverMs).toFixed(2)}`
      : '';
  log(`ratio of the p50s (long ÷ baseline): ${(b.p50 / a.p50).toFixed(2)}${cpuRatio}`);

  // Deleting the long thread, while another client asks /healthz again and again: how long that client waits.
  const idle = await healthzLatencies(assistd, () => sleep(300));
  let deleteMs = 0;
  const during = await healthzLatencies(assistd, async () => {
    const start = performance.now();
    await client.beta.threads.delete(long);
    deleteMs = performance.now() - start;
  });
  log(
    `deleting the ${MESSAGES}-message thread: ${deleteMs.toFixed(0)} ms; meanwhile /healthz p50 ${percentile(during, 50).toFixed(1)} ms, max ${Math.max(...during).toFixed(1)} ms (idle: p50 ${percentile(idle, 50).toFixed(1)}, max ${Math.max(...idle).toFixed(1)})`,
  );
}

/** /healthz asked again and again, one at a time, until `meanwhile` ends: each request's latency, sorted. */
async function healthzLatencies(assistd: Assistd, meanwhile: () => Promise<unknown>): Promise<number[]> {
  const latencies: number[] = [];
  let done = false;
  const asking = (async () => {
    while (!done) {
      const start = performance.now();
      await (await fetch(`${assistd.server.url}/healthz`)).arrayBuffer();
      latencies.push(performance.now() - start);
    }
  })();
  await meanwhile();
  done = true;
  await asking;
  return latencies.sort((x, y) => x - y);
}

await runBench(async () => {
  log(machine());
  log(`load average at start: ${loadAverage()}`);
  log(`window ${WINDOW} tokens; baseline ${BASELINE} messages, long ${MESSAGES}`);
  const upstream = await FakeUpstream.start();
  upstream.setDefault({ text: 'Noted.' });
  for (const kind of DATABASES) {
    const assistd = await startAssistd(kind, upstream.baseUrl, {
      prefix: 'assistd-long-thread-',
      env: { ASSISTD_CONTEXT_WINDOW: String(WINDOW), ASSISTD_LOG_REQUESTS: 'off' },
    });
    await measure(assistd, upstream, DATABASE_NAMES[kind]);
    await assistd.stop();
  }
  await upstream.close();
});
