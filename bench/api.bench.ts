/**
 * HTTP benchmark: requests/s and p50/p99 latency of create-message and list-messages (limit 20 on a 10,000-message
 * thread), beside the floor — Fastify answering a constant route of about the same size (bench/floor-server.ts).
 * assistd and the floor each run in their own process; autocannon runs here. Run with `npm run bench`.
 *
 * Settings: BENCH_SECONDS (per scenario, default 5), BENCH_CONNECTIONS (default 10).
 */
import { rmSync } from 'node:fs';
import autocannon from 'autocannon';
import { type ServerProcess, spawnServer, tempDir } from '../test/support/server.ts';
import {
  cleanups,
  loadAverage,
  log,
  machine,
  percentile,
  positiveNumber,
  runBench,
  startFloor,
  table,
  withTimeout,
} from './support.ts';

const SECONDS = positiveNumber('BENCH_SECONDS', 5);
const CONNECTIONS = positiveNumber('BENCH_CONNECTIONS', 10);
const WARMUP_SECONDS = Math.min(2, SECONDS);
const SEED_MESSAGES = 10_000;
const SEED_CONCURRENCY = 16;
const TARGET_RATIO = 2;

// ── processes ──────────────────────────────────────────────────────────────────

async function startAssistd(): Promise<ServerProcess> {
  const dataDir = tempDir('assistd-bench-');
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  // Level info: spawnServer waits for the "assistd listening on" line, which is logged at info. Request logging is
  // left at its production default (ASSISTD_LOG_REQUESTS=on, src/config.ts): one JSON line per HTTP response, which
  // the figures include, as a deployed server pays for it. This process reads those lines from the server's stdout.
  const server = await withTimeout(spawnServer({ ASSISTD_DATA_DIR: dataDir, ASSISTD_LOG_LEVEL: 'info' }), 'assistd');
  cleanups.push(() => server.stop());
  return server;
}

// ── seeding ───────────────────────────────────────────────────────────────────

const JSON_HEADERS = { 'content-type': 'application/json' };

async function post(url: string, body: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(url, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(body) });
  const text = await response.text();
  if (!response.ok) throw new Error(`POST ${url} → ${response.status}: ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

async function createThread(base: string): Promise<string> {
  return (await post(`${base}/v1/threads`, {}))['id'] as string;
}

async function seedMessages(base: string, threadId: string, count: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      await post(`${base}/v1/threads/${threadId}/messages`, { role: 'user', content: `Benchmark message number ${i}` });
    }
  };
  await Promise.all(Array.from({ length: SEED_CONCURRENCY }, worker));
}

// ── measuring ─────────────────────────────────────────────────────────────────

interface Scenario {
  name: string;
  url: string;
  method?: 'GET' | 'POST';
  body?: string;
  headers?: Record<string, string>;
}

interface Measurement {
  name: string;
  requestsPerSecond: number;
  p50: number;
  p99: number;
  bytesPerResponse: number;
}

/**
 * One autocannon run. Latencies are taken from the `response` events (sub-millisecond, from process.hrtime)
 * rather than from autocannon's histogram, which rounds to whole milliseconds — too coarse beside a ~1 ms floor.
 */
function run(scenario: Scenario, seconds: number): Promise<Measurement> {
  const latencies: number[] = [];
  let bytes = 0;
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: scenario.url,
        method: scenario.method ?? 'GET',
        connections: CONNECTIONS,
        duration: seconds,
        ...(scenario.body !== undefined ? { body: scenario.body } : {}),
        ...(scenario.headers !== undefined ? { headers: scenario.headers } : {}),
      },
      (error, result) => {
        if (error) return reject(error);
        const failures = result.non2xx + result.errors + result.timeouts;
        if (failures > 0 || latencies.length === 0)
          return reject(
            new Error(
              `${scenario.name}: ${result.non2xx} non-2xx responses, ${result.errors} errors, ${result.timeouts} ` +
                `timeouts out of ${result.requests.total} requests (4xx ${result['4xx']}, 5xx ${result['5xx']})`,
            ),
          );
        latencies.sort((a, b) => a - b);
        resolve({
          name: scenario.name,
          requestsPerSecond: latencies.length / result.duration,
          p50: percentile(latencies, 50),
          p99: percentile(latencies, 99),
          bytesPerResponse: bytes / latencies.length,
        });
      },
    );
    instance.on('response', (_client, statusCode, resBytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) {
        latencies.push(responseTime);
        bytes += resBytes;
      }
    });
  });
}

// ── report ────────────────────────────────────────────────────────────────────

function measurementTable(rows: Measurement[], floor: Measurement): string {
  const header = ['scenario', 'req/s', 'p50 ms', 'p99 ms', 'p50 ÷ floor p50', 'floor req/s ÷ req/s', 'bytes/resp'];
  const lines = rows.map((r) => [
    r.name,
    r.requestsPerSecond.toFixed(0),
    r.p50.toFixed(2),
    r.p99.toFixed(2),
    `${(r.p50 / floor.p50).toFixed(2)}×`,
    `${(floor.requestsPerSecond / r.requestsPerSecond).toFixed(2)}×`,
    r.bytesPerResponse.toFixed(0),
  ]);
  return table(header, lines);
}

async function main(): Promise<void> {
  log(`${machine()}; load average ${loadAverage(' ')} (other processes share these cores)`);
  log(
    `node ${process.version}; ${CONNECTIONS} connections, ${SECONDS} s per scenario after ${WARMUP_SECONDS} s warm-up`,
  );

  const [assistd, { url: floorUrl }] = await Promise.all([startAssistd(), startFloor('./floor-server.ts')]);
  const base = assistd.url;

  const listThread = await createThread(base);
  const createThreadId = await createThread(base);
  const seedStart = performance.now();
  await seedMessages(base, listThread, SEED_MESSAGES);
  log(`seeded ${SEED_MESSAGES} messages in ${((performance.now() - seedStart) / 1000).toFixed(1)} s`);

  const check = await fetch(`${base}/v1/threads/${listThread}/messages?limit=20`);
  const page = (await check.json()) as { data?: unknown[]; has_more?: boolean };
  if (!check.ok || page.data?.length !== 20 || page.has_more !== true)
    throw new Error(`list-messages did not return a full page: ${check.status} ${JSON.stringify(page).slice(0, 300)}`);

  const scenarios: Scenario[] = [
    { name: 'floor (Fastify, constant route)', url: `${floorUrl}/floor` },
    { name: 'list-messages (limit 20, 10k thread)', url: `${base}/v1/threads/${listThread}/messages?limit=20` },
    {
      name: 'create-message',
      url: `${base}/v1/threads/${createThreadId}/messages`,
      method: 'POST',
      headers: JSON_HEADERS,
      body: JSON.stringify({ role: 'user', content: 'Hello from the benchmark' }),
    },
  ];

  for (const scenario of scenarios) await run(scenario, WARMUP_SECONDS);
  const results: Measurement[] = [];
  for (const scenario of scenarios) {
    results.push(await run(scenario, SECONDS));
    log(`measured ${scenario.name}`);
  }

  const [floor, list] = results as [Measurement, Measurement, Measurement];
  log('');
  log(measurementTable(results, floor));
  log('');
  const ratio = list.p50 / floor.p50;
  log(
    `list-messages p50 ratio to floor: ${ratio.toFixed(1)}× (target ≤ ${TARGET_RATIO}×) — ` +
      (ratio <= TARGET_RATIO ? 'met' : 'NOT met'),
  );
  log(`load average at end: ${loadAverage(' ')}`);
}

await runBench(main);
