/**
 * Code interpreter benchmark: what the sandbox (src/sandbox/) costs, and what a code_interpreter cell costs a user of
 * the API. Run with `npm run bench:code`; it needs bubblewrap and a Python with numpy, pandas and matplotlib
 * (ASSISTD_SANDBOX_PYTHON, default /usr/bin/python3).
 *
 * The sandbox, driven from this process (SandboxProcess, SandboxPool); the cold start and the warm cell each beside
 * a baseline measured in the same run, the two interleaved:
 * - cold start: a sandbox process from spawn to the driver's `ready` (bwrap, Python, numpy + pandas + pyplot
 *   imported), BENCH_COLD_STARTS times one after another (p50); baseline: the same Python, outside any sandbox,
 *   importing the same libraries with the same environment (Agg, the same font cache, the same thread counts), from
 *   spawn to its `ready` line. The ratio is what bwrap and the driver add to a start.
 * - `pool.session()` for a new key once the pool's spare process is ready, which is what a thread's first cell
 *   usually waits for;
 * - a warm trivial cell (`1`) round trip, BENCH_CELLS times (p50, p99); baseline: a plain Python process outside the
 *   sandbox answering a JSON line over a pipe (an echo loop). The ratio is what the driver (compile, run, capture)
 *   and the session's queue add per cell;
 * - a plot cell (a line plot rendered to PNG), 10 times (p50);
 * - 8 cold starts at once: the wall time until all are ready;
 * - the idle memory of a session: PSS summed over its processes (bwrap's two and Python), from
 *   /proc/<pid>/smaps_rollup (readable as root or as the sandbox's uid), averaged over the 8;
 * - the event loop's longest stall while a sandbox starts (spawn → ready, monitorEventLoopDelay at 1 ms), with this
 *   process holding BENCH_BALLAST_MB of heap (a server's resident memory), BENCH_COLD_STARTS times (p50);
 *   baseline: the same command spawned from this process, as the server did before the spawner (spawner.ts): its
 *   fork copies this process's page tables while the loop waits.
 *
 * End to end, from the user's side: `assistd serve` in its own process (SQLite, ASSISTD_CODE_INTERPRETER=on) and the
 * official SDK's `runs.createAndPoll`, the model played by the fake upstream in this process (no added latency):
 * - a warm thread (its session started by earlier runs): a run where the model calls `python` with `1 + 1`, then
 *   answers, BENCH_RUNS times (p50); baseline: a run where the model answers directly, on a thread of the same kind
 *   on the same server, interleaved. The difference is what one cell costs a user, the extra model turn included;
 * - a new thread's first run (its session is the pool's spare, ready: the bench waits between runs),
 *   BENCH_NEW_THREADS times, beside a direct answer on a new thread.
 *
 * Targets: warm cell p50 ≤ 2 ms, cold start p50 ≤ 0.6 s.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type OpenAI from 'openai';
import pino from 'pino';
import { type SandboxCommand, SECCOMP_FD, sandboxCommand } from '../src/sandbox/bwrap-command.ts';
import { fontCacheDir } from '../src/sandbox/font-cache.ts';
import { SandboxPool } from '../src/sandbox/sandbox-pool.ts';
import { SandboxProcess } from '../src/sandbox/sandbox-process.ts';
import { DEFAULT_SANDBOX_SETTINGS, type SandboxSettings } from '../src/sandbox/settings.ts';
import { SandboxSpawner } from '../src/sandbox/spawner.ts';
import { FakeUpstream } from '../test/support/fake-upstream.ts';
import { descendants } from '../test/support/processes.ts';
import { tempDir } from '../test/support/server.ts';
import {
  cleanups,
  interleaved,
  loadAverage,
  log,
  machine,
  percentile,
  positiveInteger,
  runBench,
  STARTUP_TIMEOUT_MS,
  startAssistd,
  table,
} from './support.ts';

const COLD_STARTS = positiveInteger('BENCH_COLD_STARTS', 10);
const CELLS = positiveInteger('BENCH_CELLS', 500);
const RUNS = positiveInteger('BENCH_RUNS', 30);
const NEW_THREADS = positiveInteger('BENCH_NEW_THREADS', 10);
const CONCURRENT = 8;
const BALLAST_MB = positiveInteger('BENCH_BALLAST_MB', 1024);
const WARMUP_RUNS = 3;
const TARGET_WARM_MS = 2;
const TARGET_COLD_MS = 600;
const MODEL = 'bench-model';
const CODE = '1 + 1';

const settings: SandboxSettings = {
  ...DEFAULT_SANDBOX_SETTINGS,
  python: process.env.ASSISTD_SANDBOX_PYTHON ?? DEFAULT_SANDBOX_SETTINGS.python,
  maxSessions: CONCURRENT + 2,
};
const logger = pino({ level: 'silent' });

const sorted = (values: number[]) => [...values].sort((a, b) => a - b);
const p50 = (values: number[]) => percentile(sorted(values), 50);
const ms = (value: number) => value.toFixed(value < 10 ? 2 : 0);
const verdict = (met: boolean) => (met ? 'met' : 'NOT met');
/** `value − base` with its sign, in ms. */
const difference = (value: number, base: number) => `${value >= base ? '+' : '−'}${ms(Math.abs(value - base))} ms`;

/** A table row: samples, p50, p`high`, min and max, in ms. */
function statsRow(name: string, samples: number[], high = 99): string[] {
  const s = sorted(samples);
  const cells = [percentile(s, 50), percentile(s, high), s[0] ?? Number.NaN, s.at(-1) ?? Number.NaN];
  return [name, String(s.length), ...cells.map(ms)];
}

/** PSS of `root` and the processes under it, in MiB; undefined when a smaps_rollup cannot be read. */
function pssMiB(root: number): number | undefined {
  let kB = 0;
  for (const pid of [root, ...descendants(root)]) {
    try {
      const match = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      kB += Number(match?.[1] ?? 0);
    } catch {
      return undefined;
    }
  }
  return kB / 1024;
}

// ── baselines: the same Python outside any sandbox ───────────────────────────────

/** What the driver imports before `ready` (driver.py's preload), then the line the baseline is timed to. */
const PLAIN_PRELOAD = [
  'import matplotlib',
  'matplotlib.use("Agg")',
  'import matplotlib.pyplot',
  'import numpy',
  'import pandas',
  'print("ready", flush=True)',
].join('\n');

/** The least a JSON-lines peer can do: read a request, answer it with a reply shaped like a cell's result. */
const PLAIN_ECHO = [
  'import json, sys',
  'read, out = sys.stdin.buffer.readline, sys.stdout.buffer',
  'while line := read():',
  '    request = json.loads(line)',
  '    out.write(json.dumps({"id": request["id"], "type": "result", "logs": "1\\n"}).encode() + b"\\n")',
  '    out.flush()',
].join('\n');

/**
 * The sandbox's environment (bwrap-command.ts's --setenv), outside it: the same backend, thread counts and font
 * cache (copied into a directory of its own, as the driver copies it into its MPLCONFIGDIR), so the imports do the
 * same work.
 */
function plainEnvironment(fontCache: string): NodeJS.ProcessEnv {
  const home = tempDir('assistd-bench-code-');
  cleanups.push(() => rmSync(home, { recursive: true, force: true }));
  for (const name of readdirSync(fontCache))
    if (name.endsWith('.json')) copyFileSync(`${fontCache}/${name}`, `${home}/${name}`);
  const threads = String(Math.min(4, os.availableParallelism()));
  return {
    PATH: '/usr/bin:/bin',
    HOME: home,
    LANG: 'C.UTF-8',
    TZ: 'UTC',
    MPLBACKEND: 'Agg',
    MPLCONFIGDIR: home,
    OPENBLAS_NUM_THREADS: threads,
    OMP_NUM_THREADS: threads,
  };
}

/** A Python process outside any sandbox, read line by line from its stdout as SandboxProcess reads the driver. */
class PlainPython {
  readonly exited: Promise<void>;
  private readonly child: ChildProcess;
  private buffered = '';
  private readonly lines: string[] = [];
  private waiting: { resolve(line: string): void; reject(error: Error): void } | undefined;
  private stderr = '';
  private ended = false;

  constructor(code: string, env: NodeJS.ProcessEnv) {
    this.child = spawn(settings.python, ['-I', '-c', code], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (text: string) => {
      const parts = (this.buffered + text).split('\n');
      this.buffered = parts.pop() ?? '';
      this.lines.push(...parts);
      this.deliver();
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (text: string) => {
      this.stderr = (this.stderr + text).slice(-4000);
    });
    this.child.stdin!.on('error', () => {});
    this.exited = new Promise((resolve) =>
      this.child.once('close', (code, signal) => {
        this.ended = true;
        this.waiting?.reject(new Error(`${settings.python} exited (${signal ?? code}): ${this.stderr.trim()}`));
        this.waiting = undefined;
        resolve();
      }),
    );
  }

  /** The next line it writes. */
  nextLine(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      if (this.ended) this.waiting.reject(new Error(`${settings.python} has exited: ${this.stderr.trim()}`));
      else this.deliver();
    });
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  stop(): Promise<void> {
    this.child.stdin!.end();
    if (!this.ended) this.child.kill('SIGKILL');
    return this.exited;
  }

  private deliver(): void {
    const line = this.lines.shift();
    if (line === undefined || this.waiting === undefined) {
      if (line !== undefined) this.lines.unshift(line);
      return;
    }
    const { resolve } = this.waiting;
    this.waiting = undefined;
    resolve(line);
  }
}

// ── end to end: createAndPoll against `assistd serve` ────────────────────────────

interface EndToEnd {
  warmCode: number[];
  warmDirect: number[];
  newCode: number[];
  newDirect: number[];
  spareWaitMs: number;
}

/** Waits for the server's /healthz to say that code_interpreter can run code (its startup probe has passed). */
async function sandboxProbed(url: string): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    const health = (await (await fetch(`${url}/healthz`)).json()) as {
      code_interpreter?: { available: boolean; reason?: string };
    };
    const status = health.code_interpreter;
    if (status?.available) return;
    if (status && status.reason !== 'the sandbox is still being probed')
      throw new Error(`the server's code_interpreter is unavailable: ${status.reason}`);
    if (Date.now() > deadline) throw new Error(`the server's sandbox probe did not finish in ${STARTUP_TIMEOUT_MS} ms`);
    await sleep(100);
  }
}

async function measureEndToEnd(coldP50Ms: number): Promise<EndToEnd> {
  const upstream = await FakeUpstream.start();
  cleanups.push(() => upstream.close());
  const assistd = await startAssistd('sqlite', upstream.baseUrl, {
    prefix: 'assistd-bench-code-',
    // Room for every thread's session, so that no eviction (a process killed) falls inside a measured run.
    env: { ASSISTD_CODE_INTERPRETER: 'on', ASSISTD_SANDBOX_MAX_SESSIONS: String(NEW_THREADS + 4) },
  });
  await sandboxProbed(assistd.server.url);
  const { client } = assistd;
  const assistant = await client.beta.assistants.create({ model: MODEL, tools: [{ type: 'code_interpreter' }] });
  const newThread = async () =>
    (await client.beta.threads.create({ messages: [{ role: 'user', content: 'What is 1 + 1?' }] })).id;

  /** One createAndPoll on `threadId`, timed; the model calls python first when `code`. Checks what the run did. */
  const timeRun = async (threadId: string, code: boolean): Promise<number> => {
    if (code) upstream.enqueue({ toolCalls: [{ name: 'python', arguments: JSON.stringify({ code: CODE }) }] });
    upstream.enqueue({ text: 'done' });
    const started = performance.now();
    const run = await client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistant.id });
    const elapsed = performance.now() - started;
    if (run.status !== 'completed') throw new Error(`run ${run.id} ended ${run.status}: ${JSON.stringify(run)}`);
    if (code) await checkCell(client, threadId, run.id);
    return elapsed;
  };
  /** A run on a thread that has had runs before: a new user message (not timed), then the run. */
  const timeFollowUp = async (threadId: string, code: boolean): Promise<number> => {
    await client.beta.threads.messages.create(threadId, { role: 'user', content: 'And again?' });
    return timeRun(threadId, code);
  };

  const codeThread = await newThread();
  const directThread = await newThread();
  for (let i = 0; i < WARMUP_RUNS; i++) {
    await (i === 0 ? timeRun(codeThread, true) : timeFollowUp(codeThread, true));
    await (i === 0 ? timeRun(directThread, false) : timeFollowUp(directThread, false));
  }
  const [warmCode, warmDirect] = await interleaved(
    RUNS,
    () => timeFollowUp(codeThread, true),
    () => timeFollowUp(directThread, false),
  );

  // A new thread's session is the spare the pool started when the previous one was taken: give it time to be ready.
  const spareWaitMs = Math.max(2_500, Math.ceil(3 * coldP50Ms));
  const [newCode, newDirect] = await interleaved(
    NEW_THREADS,
    async () => {
      const threadId = await newThread();
      await sleep(spareWaitMs);
      return timeRun(threadId, true);
    },
    async () => timeRun(await newThread(), false),
  );
  await assistd.stop();
  return { warmCode, warmDirect, newCode, newDirect, spareWaitMs };
}

/** Checks that the run's code_interpreter call ran `CODE` and logged its value. */
async function checkCell(client: OpenAI, threadId: string, runId: string): Promise<void> {
  const steps = await client.beta.threads.runs.steps.list(runId, { thread_id: threadId });
  for (const step of steps.data)
    if (step.step_details.type === 'tool_calls')
      for (const call of step.step_details.tool_calls)
        if (call.type === 'code_interpreter') {
          const logs = call.code_interpreter.outputs.map((o) => (o.type === 'logs' ? o.logs : '')).join('');
          if (call.code_interpreter.input === CODE && logs === '2\n') return;
          throw new Error(`run ${runId}: the cell ${JSON.stringify(call.code_interpreter)}`);
        }
  throw new Error(`run ${runId} made no code_interpreter call`);
}

// ── main ───────────────────────────────────────────────────────────────────────

/**
 * The event loop's longest stall (ms) from the start of a sandbox to its driver's `ready`, started through the
 * spawner and, as the baseline, spawned by this process; with BALLAST_MB of heap held meanwhile.
 */
async function measureStartStalls(
  command: SandboxCommand,
  spawner: SandboxSpawner,
): Promise<{ spawner: number[]; direct: number[] }> {
  const ballast = Array.from({ length: BALLAST_MB }, () => Buffer.alloc(1024 * 1024, 1));
  const stall = async (start: () => Promise<() => Promise<unknown>>) => {
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    await sleep(20); // its first tick only starts the count: a stall before it would not be seen
    const stop = await start();
    delay.disable();
    await stop();
    return delay.max / 1e6;
  };
  const [viaSpawner, direct] = await interleaved(
    COLD_STARTS,
    () =>
      stall(async () => {
        const sandbox = new SandboxProcess(command, spawner, logger);
        await sandbox.ready;
        return () => sandbox.kill('measured');
      }),
    () =>
      stall(async () => {
        const child = spawn(command.command, command.args, {
          ...command.spawn,
          stdio: ['ignore', 'pipe', 'ignore', 'pipe'],
          detached: true,
        });
        (child.stdio[SECCOMP_FD] as Writable).end(command.seccomp);
        await once(child.stdout!, 'data'); // the driver's `ready`
        return async () => {
          process.kill(-child.pid!, 'SIGKILL');
          await once(child, 'close');
        };
      }),
  );
  ballast.length = 0;
  return { spawner: viaSpawner, direct };
}

async function main(): Promise<void> {
  log(`${machine()}; load average ${loadAverage(' ')} (other processes share these cores)`);
  const pool = new SandboxPool(settings, logger);
  cleanups.push(() => pool.close());
  const status = await pool.start();
  if (!status.available) throw new Error(`the sandbox is unavailable: ${status.reason}`);
  log(`node ${process.version}; ${status.detail}`);

  const fontCache = await fontCacheDir(settings.python);
  const command = sandboxCommand(
    settings,
    await readFile(new URL('../src/sandbox/driver.py', import.meta.url), 'utf8'),
    fontCache,
  );
  const plainEnv = plainEnvironment(fontCache);
  const spawner = new SandboxSpawner();
  cleanups.push(() => spawner.close());
  const startProcess = async () => {
    const started = performance.now();
    const process = new SandboxProcess(command, spawner, logger);
    await process.ready;
    return { process, ms: performance.now() - started };
  };

  const [cold, plainCold] = await interleaved(
    COLD_STARTS,
    async () => {
      const { process, ms: elapsed } = await startProcess();
      await process.kill('measured');
      return elapsed;
    },
    async () => {
      const started = performance.now();
      const python = new PlainPython(PLAIN_PRELOAD, plainEnv);
      const line = await python.nextLine();
      const elapsed = performance.now() - started;
      if (line !== 'ready') throw new Error(`the plain Python printed ${JSON.stringify(line)}`);
      await python.exited;
      return elapsed;
    },
  );

  const spareTaken: number[] = [];
  for (let i = 0; i < Math.min(COLD_STARTS, 5); i++) {
    await sleep(2_500); // the spare started by the previous one is ready
    const started = performance.now();
    await pool.session(`bench_spare_${i}`);
    spareTaken.push(performance.now() - started);
  }

  const { session } = await pool.session('bench_warm');
  const echo = new PlainPython(PLAIN_ECHO, plainEnv);
  cleanups.push(() => echo.stop());
  let echoId = 0;
  const echoRoundTrip = async () => {
    const started = performance.now();
    const id = ++echoId;
    echo.send(JSON.stringify({ id, op: 'run', code: '1' }));
    const reply = JSON.parse(await echo.nextLine()) as { id: number };
    const elapsed = performance.now() - started;
    if (reply.id !== id) throw new Error(`the echo answered ${reply.id} to ${id}`);
    return elapsed;
  };
  const cellRoundTrip = async () => {
    const started = performance.now();
    const result = await session.runCell('1');
    const elapsed = performance.now() - started;
    if (result.logs !== '1\n') throw new Error(`the trivial cell logged ${JSON.stringify(result.logs)}`);
    return elapsed;
  };
  for (let i = 0; i < 20; i++) {
    await cellRoundTrip();
    await echoRoundTrip();
  }
  const [warm, plainWarm] = await interleaved(CELLS, cellRoundTrip, echoRoundTrip);
  await echo.stop();

  const plot: number[] = [];
  await session.runCell('import matplotlib.pyplot as plt\nimport numpy as np\nx = np.linspace(0, 10, 200)');
  for (let i = 0; i < 10; i++) {
    const started = performance.now();
    const result = await session.runCell('plt.plot(x, np.sin(x + 0.1))\nplt.title("sin");');
    plot.push(performance.now() - started);
    if (result.images.length !== 1) throw new Error('the plot cell returned no image');
  }
  await pool.close();

  const started = performance.now();
  const concurrent = await Promise.all(Array.from({ length: CONCURRENT }, () => startProcess()));
  const concurrentMs = performance.now() - started;
  await sleep(1_000);
  const pss = concurrent.map(({ process }) => (process.pid === undefined ? undefined : pssMiB(process.pid)));
  await Promise.all(concurrent.map(({ process }) => process.kill('measured')));
  const known = pss.filter((value): value is number => value !== undefined);
  const idleMiB = known.length ? known.reduce((a, b) => a + b, 0) / known.length : undefined;

  const stalls = await measureStartStalls(command, spawner);

  const coldP50 = p50(cold);
  const e2e = await measureEndToEnd(coldP50);

  log('');
  log('The sandbox, driven from this process:');
  log('');
  log(
    table(
      ['measure', 'samples', 'p50 ms', 'p99 ms', 'min ms', 'max ms'],
      [
        statsRow('cold start: spawn → ready', cold),
        statsRow('  baseline: same Python + imports, no sandbox', plainCold),
        statsRow('pool.session(): new key, spare ready', spareTaken),
        statsRow('warm cell `1` round trip', warm),
        statsRow('  baseline: JSON line echo, no sandbox', plainWarm),
        statsRow('plot cell (line plot → PNG)', plot),
        statsRow(`event loop stall, sandbox start (${BALLAST_MB} MB heap)`, stalls.spawner),
        statsRow('  baseline: the same start forked by this process', stalls.direct),
      ],
    ),
  );
  log('');
  const warmP50 = p50(warm);
  const ratio = (value: number, base: number) => `${(value / base).toFixed(2)}× (${difference(value, base)})`;
  log(`cold start p50 ÷ baseline p50: ${ratio(coldP50, p50(plainCold))}, what bwrap and the driver add to a start`);
  log(`warm cell p50 ÷ baseline p50: ${ratio(warmP50, p50(plainWarm))}, what the driver and the session add per cell`);
  log(`${CONCURRENT} cold starts at once: all ready after ${ms(concurrentMs)} ms (wall)`);
  log(
    `event loop stall while a sandbox starts, p50 ÷ baseline p50: ${ratio(p50(stalls.spawner), p50(stalls.direct))}` +
      ', what the spawner saves every stream of the server at each new sandbox',
  );
  log(
    `idle memory per session (PSS of bwrap ×2 + python, mean of ${known.length}): ` +
      `${idleMiB === undefined ? 'n/a (smaps_rollup unreadable: run as root)' : `${idleMiB.toFixed(1)} MiB`}`,
  );
  log('');
  log(`End to end: runs.createAndPoll against assistd serve (SQLite), the model faked with no latency:`);
  log('');
  log(
    table(
      ['run', 'samples', 'p50 ms', 'p90 ms', 'min ms', 'max ms'],
      [
        statsRow(`warm thread: python \`${CODE}\`, then answer`, e2e.warmCode, 90),
        statsRow('  baseline: warm thread, answer directly', e2e.warmDirect, 90),
        statsRow(`new thread: python \`${CODE}\` (spare session)`, e2e.newCode, 90),
        statsRow('  baseline: new thread, answer directly', e2e.newDirect, 90),
      ],
    ),
  );
  log('');
  log(
    `one cell on a warm thread costs the user ${difference(p50(e2e.warmCode), p50(e2e.warmDirect))} at p50 ` +
      `(${(p50(e2e.warmCode) / p50(e2e.warmDirect)).toFixed(2)}× the direct run; the second model turn included)`,
  );
  log(
    `the first cell of a new thread costs ${difference(p50(e2e.newCode), p50(e2e.newDirect))} at p50 ` +
      `(the pool's spare was given ${e2e.spareWaitMs} ms to be ready before each)`,
  );
  log('');
  log(`warm cell p50 ${ms(warmP50)} ms (target ≤ ${TARGET_WARM_MS} ms) — ${verdict(warmP50 <= TARGET_WARM_MS)}`);
  log(`cold start p50 ${ms(coldP50)} ms (target ≤ ${TARGET_COLD_MS} ms) — ${verdict(coldP50 <= TARGET_COLD_MS)}`);
}

await runBench(main, 'sandboxes');
