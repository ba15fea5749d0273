/**
 * Code interpreter benchmark: what the sandbox (src/sandbox/) costs. Run with `npm run bench:code`; it needs
 * bubblewrap and a Python with numpy, pandas and matplotlib (ASSISTD_SANDBOX_PYTHON, default /usr/bin/python3).
 *
 * Measured:
 * - cold start: a sandbox process from spawn to the driver's `ready` (bwrap, Python, numpy + pandas + pyplot
 *   imported), BENCH_COLD_STARTS times one after another (p50); and `pool.session()` for a new key once the pool's
 *   spare process is ready, which is what a thread's first cell usually waits for;
 * - a warm trivial cell (`1`) round trip, BENCH_CELLS times (p50, p99);
 * - a plot cell (a line plot rendered to PNG), 10 times (p50);
 * - 8 cold starts at once: the wall time until all are ready;
 * - the idle memory of a session: PSS summed over its processes (bwrap's two and Python), from
 *   /proc/<pid>/smaps_rollup (readable as root or as the sandbox's uid), averaged over the 8.
 *
 * Targets: warm cell p50 ≤ 2 ms, cold start p50 ≤ 0.6 s.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import pino from 'pino';
import { sandboxCommand } from '../src/sandbox/bwrap-command.ts';
import { fontCacheDir } from '../src/sandbox/font-cache.ts';
import { SandboxPool } from '../src/sandbox/sandbox-pool.ts';
import { SandboxProcess } from '../src/sandbox/sandbox-process.ts';
import { DEFAULT_SANDBOX_SETTINGS, type SandboxSettings } from '../src/sandbox/settings.ts';
import { cleanups, loadAverage, log, machine, percentile, positiveInteger, runBench, table } from './support.ts';

const COLD_STARTS = positiveInteger('BENCH_COLD_STARTS', 10);
const CELLS = positiveInteger('BENCH_CELLS', 500);
const CONCURRENT = 8;
const TARGET_WARM_MS = 2;
const TARGET_COLD_MS = 600;

const settings: SandboxSettings = {
  ...DEFAULT_SANDBOX_SETTINGS,
  python: process.env.ASSISTD_SANDBOX_PYTHON ?? DEFAULT_SANDBOX_SETTINGS.python,
  maxSessions: CONCURRENT + 2,
};
const logger = pino({ level: 'silent' });

const sorted = (values: number[]) => [...values].sort((a, b) => a - b);
const ms = (value: number) => value.toFixed(value < 10 ? 2 : 0);
const verdict = (met: boolean) => (met ? 'met' : 'NOT met');

/** The processes under `root` (inclusive), from /proc. */
function tree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {}
  }
  const found = [root];
  for (let i = 0; i < found.length; i++) for (const [pid, ppid] of parent) if (ppid === found[i]) found.push(pid);
  return found;
}

/** PSS of the processes under `root`, in MiB; undefined when a smaps_rollup cannot be read. */
function pssMiB(root: number): number | undefined {
  let kB = 0;
  for (const pid of tree(root)) {
    try {
      const match = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
      kB += Number(match?.[1] ?? 0);
    } catch {
      return undefined;
    }
  }
  return kB / 1024;
}

async function main(): Promise<void> {
  log(`${machine()}; load average ${loadAverage(' ')} (other processes share these cores)`);
  const pool = new SandboxPool(settings, logger);
  cleanups.push(() => pool.close());
  const status = await pool.start();
  if (!status.available) throw new Error(`the sandbox is unavailable: ${status.reason}`);
  log(`node ${process.version}; ${status.detail}`);

  const command = sandboxCommand(
    settings,
    await readFile(new URL('../src/sandbox/driver.py', import.meta.url), 'utf8'),
    await fontCacheDir(settings.python),
  );
  const startProcess = async () => {
    const started = performance.now();
    const process = new SandboxProcess(command, logger);
    await process.ready;
    return { process, ms: performance.now() - started };
  };

  const cold: number[] = [];
  for (let i = 0; i < COLD_STARTS; i++) {
    const { process, ms: elapsed } = await startProcess();
    cold.push(elapsed);
    await process.kill('measured');
  }

  const spareTaken: number[] = [];
  for (let i = 0; i < Math.min(COLD_STARTS, 5); i++) {
    await new Promise((resolve) => setTimeout(resolve, 2_500)); // the spare started by the previous one is ready
    const started = performance.now();
    await pool.session(`bench_spare_${i}`);
    spareTaken.push(performance.now() - started);
  }

  const { session } = await pool.session('bench_warm');
  for (let i = 0; i < 20; i++) await session.runCell('1');
  const warm: number[] = [];
  for (let i = 0; i < CELLS; i++) {
    const started = performance.now();
    const result = await session.runCell('1');
    warm.push(performance.now() - started);
    if (result.logs !== '1\n') throw new Error(`the trivial cell logged ${JSON.stringify(result.logs)}`);
  }

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
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const pss = concurrent.map(({ process }) => (process.pid === undefined ? undefined : pssMiB(process.pid)));
  await Promise.all(concurrent.map(({ process }) => process.kill('measured')));
  const known = pss.filter((value): value is number => value !== undefined);
  const idleMiB = known.length ? known.reduce((a, b) => a + b, 0) / known.length : undefined;

  log('');
  log(
    table(
      ['measure', 'samples', 'p50 ms', 'p99 ms', 'min ms', 'max ms'],
      [
        ['cold start: spawn → ready', cold],
        ['pool.session(): new key, spare ready', spareTaken],
        ['warm cell `1` round trip', warm],
        ['plot cell (line plot → PNG)', plot],
      ].map(([name, samples]) => {
        const s = sorted(samples as number[]);
        return [
          name as string,
          String(s.length),
          ms(percentile(s, 50)),
          ms(percentile(s, 99)),
          ms(s[0] ?? Number.NaN),
          ms(s.at(-1) ?? Number.NaN),
        ];
      }),
    ),
  );
  log('');
  log(`${CONCURRENT} cold starts at once: all ready after ${ms(concurrentMs)} ms (wall)`);
  log(
    `idle memory per session (PSS of bwrap ×2 + python, mean of ${known.length}): ` +
      `${idleMiB === undefined ? 'n/a (smaps_rollup unreadable: run as root)' : `${idleMiB.toFixed(1)} MiB`}`,
  );
  log('');
  const warmP50 = percentile(sorted(warm), 50);
  const coldP50 = percentile(sorted(cold), 50);
  log(`warm cell p50 ${ms(warmP50)} ms (target ≤ ${TARGET_WARM_MS} ms) — ${verdict(warmP50 <= TARGET_WARM_MS)}`);
  log(`cold start p50 ${ms(coldP50)} ms (target ≤ ${TARGET_COLD_MS} ms) — ${verdict(coldP50 <= TARGET_COLD_MS)}`);
}

await runBench(main, 'sandboxes');
