/**
 * What one streamed token costs the server: the upstream's chunk read and parsed, turned into a run event, framed
 * as SSE and written to a client that reads and discards it — assistd's whole path — beside the floor
 * (bench/stream-floor-server.ts: the same upstream read and parsed, a pre-built frame written per chunk). Run with
 * `npm run bench:token`.
 *
 * Both servers run as their own processes against the fake upstream in this process, which writes each token as
 * its own chunk, BENCH_CHUNK_MS apart, so that every token is its own read and its own write, as in a live stream.
 * BENCH_TOKEN_STREAMS streams at once, first with a short reply (SHORT_TOKENS) and then with a long one
 * (BENCH_TOKENS); the server process's CPU time (utime + stime from /proc) is taken around each batch. What a run
 * costs apart from its tokens (creating it, its events, its commits) is the same in both batches, so the
 * difference divided by the extra tokens is the cost of a token alone. BENCH_ROUNDS rounds, the two servers
 * interleaved; the figures are totals over all rounds.
 *
 * Target: ≤ 25 µs of server CPU per token.
 *
 * Settings: BENCH_TOKEN_STREAMS (default 20), BENCH_TOKENS (the long reply, default 400), BENCH_ROUNDS (default 5),
 * BENCH_CHUNK_MS (default 2).
 */
import { setMaxListeners } from 'node:events';
import { Agent, request } from 'node:http';
import { FakeUpstream } from '../test/support/fake-upstream.ts';
import {
  cleanups,
  loadAverage,
  log,
  machine,
  positiveInteger,
  positiveNumber,
  processCpu,
  runBench,
  runStreamProblem,
  startAssistd,
  startFloor,
  table,
  tokens,
} from './support.ts';

const STREAMS = positiveInteger('BENCH_TOKEN_STREAMS', 20);
const LONG_TOKENS = positiveInteger('BENCH_TOKENS', 400);
const ROUNDS = positiveInteger('BENCH_ROUNDS', 5);
const CHUNK_MS = positiveNumber('BENCH_CHUNK_MS', 2);
const SHORT_TOKENS = 20;
const TARGET_US = 25;
const MODEL = 'bench-model';

/**
 * One POST whose SSE answer is read to its end and kept as it came (no parsing while the batch is timed: the
 * client's work would compete with the server for the cores); rejects unless it is a 200. What it streamed is
 * checked once the batch is over (`runStreamProblem`).
 */
function readStream(agent: Agent, url: string, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const sse = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode === 200) resolve(sse);
        else reject(new Error(`HTTP ${res.statusCode}: ${sse.slice(0, 200)}`));
      });
    });
    req.end(body);
  });
}

interface Path {
  name: string;
  pid: number;
  /** The requests of one batch (one per stream), made before the batch is timed. */
  prepare(count: number): Promise<Array<{ url: string; body: string }>>;
  /** The text a stream of `count` tokens must carry, where the path streams the upstream's (the floor does not). */
  text?: (count: number) => string;
  cpu: { short: Cpu; long: Cpu };
}

interface Cpu {
  user: number;
  system: number;
}

/** A process's CPU time so far in ms, in user space and in the kernel (its syscalls: much of a token's cost). */
function cpuOf(pid: number): Cpu {
  const cpu = processCpu(pid);
  if (!cpu) throw new Error('no /proc: CPU time cannot be read here');
  return cpu;
}

/**
 * One batch of STREAMS streams of `count` tokens; the server's CPU over it. Every stream must have completed its run
 * with `count` deltas: a stream cut short, or a run that failed (assistd still ends its stream with `done`), would
 * make a token look cheaper than it is.
 */
async function batch(path: Path, upstream: FakeUpstream, agent: Agent, count: number): Promise<Cpu> {
  const requests = await path.prepare(STREAMS);
  upstream.setDefault({ text: tokens(count), chunkDelayMs: CHUNK_MS });
  const before = cpuOf(path.pid);
  const streams = await Promise.all(requests.map((r) => readStream(agent, r.url, r.body)));
  const after = cpuOf(path.pid);
  const expected = { deltas: count, ...(path.text ? { text: path.text(count) } : {}) };
  for (const [i, sse] of streams.entries()) {
    const problem = runStreamProblem(sse, expected);
    if (problem) throw new Error(`${path.name}, stream ${i} of ${streams.length} (${count} tokens): ${problem}`);
  }
  return { user: after.user - before.user, system: after.system - before.system };
}

function add(total: Cpu, more: Cpu): void {
  total.user += more.user;
  total.system += more.system;
}

const sum = (cpu: Cpu) => cpu.user + cpu.system;

async function main(): Promise<void> {
  log(`${machine()}; load average ${loadAverage(' ')} (other processes share these cores)`);
  log(
    `node ${process.version}; ${STREAMS} streams at once, ${SHORT_TOKENS} then ${LONG_TOKENS} tokens each, a token ` +
      `every ${CHUNK_MS} ms per stream; ${ROUNDS} rounds`,
  );
  setMaxListeners(4 * STREAMS);
  const upstream = await FakeUpstream.start({ chunkDelayMs: CHUNK_MS });
  cleanups.push(() => upstream.close());
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  cleanups.push(() => agent.destroy());

  const assistd = await startAssistd('sqlite', upstream.baseUrl, {
    prefix: 'assistd-bench-token-',
    env: { ASSISTD_WORKER_CONCURRENCY: String(STREAMS) },
  });
  const assistant = await assistd.client.beta.assistants.create({ model: MODEL });
  const floor = await startFloor('./stream-floor-server.ts', { FLOOR_UPSTREAM_URL: upstream.baseUrl });

  const paths: Path[] = [
    {
      name: 'assistd: upstream → provider → run events → SSE (SQLite)',
      pid: assistd.server.child.pid!,
      prepare: async (n) =>
        Promise.all(
          Array.from({ length: n }, async () => {
            const thread = await assistd.client.beta.threads.create({ messages: [{ role: 'user', content: 'Hi' }] });
            return {
              url: `${assistd.base}/threads/${thread.id}/runs`,
              body: JSON.stringify({ assistant_id: assistant.id, stream: true }),
            };
          }),
        ),
      text: (count) => tokens(count).join(''),
      cpu: { short: { user: 0, system: 0 }, long: { user: 0, system: 0 } },
    },
    {
      name: 'floor: upstream read and parsed, a pre-built frame written',
      pid: floor.pid,
      prepare: async (n) => Array.from({ length: n }, () => ({ url: `${floor.url}/floor`, body: '{}' })),
      cpu: { short: { user: 0, system: 0 }, long: { user: 0, system: 0 } },
    },
  ];

  // Warm-up: lazy loading, the JIT, the upstream connections.
  for (const path of paths) for (let i = 0; i < 2; i++) await batch(path, upstream, agent, LONG_TOKENS);
  for (let round = 0; round < ROUNDS; round++)
    for (const path of paths) {
      add(path.cpu.short, await batch(path, upstream, agent, SHORT_TOKENS));
      add(path.cpu.long, await batch(path, upstream, agent, LONG_TOKENS));
    }

  const extraTokens = ROUNDS * STREAMS * (LONG_TOKENS - SHORT_TOKENS);
  const perToken = (path: Path, part: (cpu: Cpu) => number = sum) =>
    ((part(path.cpu.long) - part(path.cpu.short)) * 1000) / extraTokens;
  const floorUs = perToken(paths[1]!);
  log('');
  log(
    table(
      [
        'path',
        `CPU, ${SHORT_TOKENS}-token batches ms`,
        `CPU, ${LONG_TOKENS}-token batches ms`,
        'µs per token',
        'of which in the kernel',
        'ratio to floor',
      ],
      paths.map((path) => [
        path.name,
        sum(path.cpu.short).toFixed(0),
        sum(path.cpu.long).toFixed(0),
        perToken(path).toFixed(1),
        perToken(path, (cpu) => cpu.system).toFixed(1),
        `${(perToken(path) / floorUs).toFixed(2)}×`,
      ]),
    ),
  );
  log('');
  log(`(${extraTokens} extra tokens per path; CPU from /proc in 10 ms ticks; load average now ${loadAverage(' ')})`);
  const us = perToken(paths[0]!);
  log(
    `assistd: ${us.toFixed(1)} µs of server CPU per token (target ≤ ${TARGET_US}) — ${us <= TARGET_US ? 'met' : 'NOT met'}; ` +
      `${(us / floorUs).toFixed(2)}× the floor's ${floorUs.toFixed(1)} µs`,
  );
}

await runBench(main);
