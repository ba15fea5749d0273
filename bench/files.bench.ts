/**
 * Files benchmark: the throughput of `POST /v1/files` and `GET /v1/files/{id}/content` for one large file (256 MB
 * of random bytes by default), beside copying the same file on the same disk, and the server's memory meanwhile.
 * Run with `npm run bench:files`.
 *
 * The source file and the server's data directory are both temporary directories under os.tmpdir(), so the copy,
 * the upload's blob and the source share one disk. assistd runs as its own process (`assistd serve`), a fresh one
 * per store:
 *
 * - directory store on SQLite (`ASSISTD_FILE_STORAGE=directory`, the default there; targets below),
 * - database store on SQLite (`ASSISTD_FILE_STORAGE=database`: 1 MiB rows in the SQLite file),
 * - database store on PostgreSQL (its default), on a throwaway database created on the server of BENCH_DATABASE_URL
 *   (default postgres://postgres@127.0.0.1:5432/postgres) and dropped at the end; skipped, with a note, when that
 *   server cannot be reached and BENCH_DATABASES does not name it.
 *
 * Measured for each store, BENCH_REPEATS times (medians printed), after one untimed upload and download that warm
 * the server up and check that the bytes come back unchanged (SHA-256):
 *
 * - copy: the file streamed (fs.createReadStream → fs.createWriteStream with `flush`, i.e. fsync before close) to a
 *   new file: what a durable copy costs, and the write the directory store makes behind HTTP and multipart; beside it,
 *   fs.copyFile (copy_file_range, in the kernel) timed without an fsync (one follows, untimed, so its writeback does
 *   not fall on the next measurement). Copies and uploads alternate (support.ts interleaved()).
 * - upload: the official SDK's `client.files.create({ file: fs.createReadStream(path), purpose: 'assistants' })`,
 *   from the call to the file object (the user's point of view).
 * - download: `client.files.content(id)` and its body read to the end (bytes counted, nothing kept), from the call
 *   to the last byte.
 * - the server's memory during each upload and download: VmRSS from /proc/<pid>/status before, then sampled every
 *   20 ms, and VmHWM (reset before each transfer through /proc/<pid>/clear_refs, so it is the peak of that transfer
 *   alone, between samples too). The growth (peak − before) is what matters: a server that streams holds a few
 *   chunks, not the file.
 * - the CPU time per transfer of the server (utime + stime, /proc/<pid>/stat) and of this process (the SDK's side,
 *   process.cpuUsage()), and with PostgreSQL that of its backends on the throwaway database: on a machine with few
 *   cores they compete, and the busiest sets the pace.
 *
 * Targets, on the directory store: upload ≥ 0.5× and download ≥ 0.7× the copy's MB/s (1 MB = 10^6 bytes).
 *
 * Settings: BENCH_FILE_MB (default 256), BENCH_REPEATS (default 3), BENCH_DATABASES (`sqlite,postgres`, or either
 * alone; unset, PostgreSQL is measured if reachable), BENCH_DATABASE_URL.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, rmSync, writeFileSync } from 'node:fs';
import { copyFile, open, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type OpenAI from 'openai';
import { tempDir } from '../test/support/server.ts';
import {
  type Assistd,
  backendsCpuDelta,
  cleanups,
  DATABASE_NAMES,
  type DatabaseKind,
  databaseKinds,
  describeAdminUrl,
  interleaved,
  loadAverage,
  log,
  machine,
  memoryMiB,
  percentile,
  positiveInteger,
  postgresBackendsCpuMs,
  postgresVersion,
  processCpuMs,
  runBench,
  startAssistd,
  table,
} from './support.ts';

const FILE_MB = positiveInteger('BENCH_FILE_MB', 256);
const FILE_BYTES = FILE_MB * 1_000_000;
const REPEATS = positiveInteger('BENCH_REPEATS', 3);
/** The source is written in pieces of this size (1 MB), each fresh random bytes. */
const PIECE_BYTES = 1_000_000;
const SAMPLE_MS = 20;
const TARGET_UPLOAD_RATIO = 0.5;
const TARGET_DOWNLOAD_RATIO = 0.7;

type Storage = 'directory' | 'database';

interface Store {
  kind: DatabaseKind;
  storage: Storage;
}

const storeName = ({ kind, storage }: Store) => `${storage} store on ${DATABASE_NAMES[kind]}`;

// ── memory ────────────────────────────────────────────────────────────────────

/** A `Vm…` line of /proc/<pid>/status in MiB (VmHWM: peak resident set; VmRSS: now); undefined off Linux. */
/** Sets VmHWM back to the current VmRSS (Linux ≥ 4.0); false where that is not allowed. */
function resetPeak(pid: number | undefined): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

interface Memory {
  beforeMiB: number | undefined;
  peakMiB: number | undefined;
}

/**
 * Watches the server's resident set while `task` runs: VmRSS before, sampled every SAMPLE_MS, and VmHWM after
 * (the true peak, if it could be reset first; this process is busy as a client meanwhile, so samples may be late).
 */
async function watchMemory<T>(pid: number | undefined, task: () => Promise<T>): Promise<{ result: T } & Memory> {
  const beforeMiB = memoryMiB(pid, 'VmRSS');
  const hwmReset = resetPeak(pid);
  let sampled = beforeMiB;
  const sample = () => {
    const now = memoryMiB(pid, 'VmRSS');
    if (now !== undefined) sampled = Math.max(sampled ?? 0, now);
  };
  const timer = setInterval(sample, SAMPLE_MS);
  try {
    const result = await task();
    sample();
    const hwm = hwmReset ? memoryMiB(pid, 'VmHWM') : undefined;
    return { result, beforeMiB, peakMiB: hwm === undefined ? sampled : Math.max(hwm, sampled ?? 0) };
  } finally {
    clearInterval(timer);
  }
}

// ── the source and the copies ─────────────────────────────────────────────────

/** FILE_BYTES of random bytes at `file`, fsynced; returns their SHA-256. */
async function writeSource(file: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(file, 'wx');
  try {
    for (let written = 0; written < FILE_BYTES; written += PIECE_BYTES) {
      const piece = randomBytes(Math.min(PIECE_BYTES, FILE_BYTES - written));
      hash.update(piece);
      await handle.write(piece);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

interface Copy {
  /** Streamed and fsynced. */
  streamMs: number;
  /** fs.copyFile, without its fsync. */
  copyFileMs: number;
}

async function copyTwice(source: string, dir: string): Promise<Copy> {
  const target = path.join(dir, 'copy');
  try {
    let start = performance.now();
    // `flush`: fsync before close, as the directory store writes a blob.
    await pipeline(createReadStream(source), createWriteStream(target, { flags: 'wx', flush: true }));
    const streamMs = performance.now() - start;
    await rm(target);

    start = performance.now();
    await copyFile(source, target);
    const copyFileMs = performance.now() - start;
    const handle = await open(target, 'r+');
    await handle.sync().finally(() => handle.close());
    return { streamMs, copyFileMs };
  } finally {
    await rm(target, { force: true });
  }
}

// ── transfers ─────────────────────────────────────────────────────────────────

interface Transfer extends Memory {
  ms: number;
  serverCpuMs: number | undefined;
  /** PostgreSQL's backends on the server's database; undefined for SQLite. */
  postgresCpuMs: number | undefined;
  /** This process: the SDK's client side of the transfer. */
  clientCpuMs: number;
}

async function measured(assistd: Assistd, task: () => Promise<void>): Promise<Transfer> {
  const pid = assistd.server.child.pid;
  const postgresBefore = await postgresBackendsCpuMs(assistd.database);
  const cpuBefore = processCpuMs(pid);
  const clientBefore = process.cpuUsage();
  const { result: ms, ...memory } = await watchMemory(pid, async () => {
    const start = performance.now();
    await task();
    return performance.now() - start;
  });
  const cpuAfter = processCpuMs(pid);
  const client = process.cpuUsage(clientBefore);
  const postgres = backendsCpuDelta(postgresBefore, await postgresBackendsCpuMs(assistd.database));
  return {
    ms,
    serverCpuMs: cpuBefore === undefined || cpuAfter === undefined ? undefined : cpuAfter - cpuBefore,
    postgresCpuMs: postgres,
    clientCpuMs: (client.user + client.system) / 1000,
    ...memory,
  };
}

async function upload(client: OpenAI, source: string): Promise<string> {
  const file = await client.files.create({ file: createReadStream(source), purpose: 'assistants' });
  if (file.bytes !== FILE_BYTES) throw new Error(`upload: the server stored ${file.bytes} bytes, not ${FILE_BYTES}`);
  return file.id;
}

/** Reads the file's content to the end; returns its size, and its SHA-256 if asked (untimed checks only). */
async function download(client: OpenAI, id: string, hashed = false): Promise<{ bytes: number; sha256?: string }> {
  const response = await client.files.content(id);
  if (!response.body) throw new Error('download: no body');
  const hash = hashed ? createHash('sha256') : undefined;
  let bytes = 0;
  for await (const chunk of response.body) {
    bytes += chunk.byteLength;
    hash?.update(chunk);
  }
  if (bytes !== FILE_BYTES) throw new Error(`download: ${bytes} bytes, not ${FILE_BYTES}`);
  return hash ? { bytes, sha256: hash.digest('hex') } : { bytes };
}

interface StoreResult {
  store: Store;
  copies: Copy[];
  uploads: Transfer[];
  downloads: Transfer[];
  idleMiB: number | undefined;
}

async function measureStore(store: Store, source: string, sourceHash: string, scratch: string): Promise<StoreResult> {
  log(`${storeName(store)}: load average ${loadAverage(' ')}`);
  // No run is made: the server needs no model backend (it warns that runs would fail).
  const assistd: Assistd = await startAssistd(store.kind, '', {
    prefix: 'assistd-bench-files-',
    env: { ASSISTD_FILE_STORAGE: store.storage, ASSISTD_MAX_FILE_MB: String(Math.max(512, FILE_MB)) },
  });
  try {
    const { client } = assistd;
    const pid = assistd.server.child.pid;
    const idleMiB = memoryMiB(pid, 'VmRSS');

    const warmUp = await upload(client, source);
    const back = await download(client, warmUp, true);
    if (back.sha256 !== sourceHash) throw new Error(`${storeName(store)}: the downloaded bytes differ from the source`);
    await client.files.delete(warmUp);

    const ids: string[] = [];
    const [copies, uploads] = await interleaved(
      REPEATS,
      () => copyTwice(source, scratch),
      () =>
        measured(assistd, async () => {
          ids.push(await upload(client, source));
        }),
    );
    const downloads: Transfer[] = [];
    for (const id of ids)
      downloads.push(
        await measured(assistd, async () => {
          await download(client, id);
        }),
      );
    return { store, copies, uploads, downloads, idleMiB };
  } finally {
    await assistd.stop();
  }
}

// ── report ────────────────────────────────────────────────────────────────────

/** The middle sample (of an even count, the lower of the two middle ones). */
const median = (values: number[]) =>
  percentile(
    [...values].sort((a, b) => a - b),
    50,
  );

const mbPerS = (ms: number) => FILE_BYTES / 1e6 / (ms / 1000);
const fixed = (value: number | undefined, digits = 0) =>
  value === undefined || Number.isNaN(value) ? 'n/a' : value.toFixed(digits);

function verdict(met: boolean): string {
  return met ? 'met' : 'NOT met';
}

interface Figures {
  copy: number;
  copyFile: number;
  upload: number;
  download: number;
}

function figures(result: StoreResult): Figures {
  return {
    copy: mbPerS(median(result.copies.map((c) => c.streamMs))),
    copyFile: mbPerS(median(result.copies.map((c) => c.copyFileMs))),
    upload: mbPerS(median(result.uploads.map((t) => t.ms))),
    download: mbPerS(median(result.downloads.map((t) => t.ms))),
  };
}

function report(result: StoreResult): Figures {
  const f = figures(result);
  const range = (ms: number[]) => {
    const rates = ms.map(mbPerS);
    return `${fixed(Math.min(...rates))}–${fixed(Math.max(...rates))}`;
  };
  const ratio = (rate: number) => `${(rate / f.copy).toFixed(2)}×`;
  const streamMs = result.copies.map((c) => c.streamMs);
  const copyFileMs = result.copies.map((c) => c.copyFileMs);
  // The copies run in this process and have no server: the CPU and memory columns stay empty.
  const copyRow = (name: string, ms: number[], rate: number) => [
    ...[name, fixed(rate), range(ms), ratio(rate)],
    ...Array<string>(6).fill(''),
  ];
  // Memory: the resident set before the first transfer of the kind, the highest peak of all of them, and the
  // difference, so that growth that creeps from one transfer to the next is counted too.
  const transferRow = (name: string, transfers: Transfer[], rate: number) => {
    const known = (values: Array<number | undefined>) => values.filter((v): v is number => v !== undefined);
    const cpu = known(transfers.map((t) => t.serverCpuMs));
    const postgres = known(transfers.map((t) => t.postgresCpuMs));
    const before = transfers[0]?.beforeMiB;
    const peaks = known(transfers.map((t) => t.peakMiB));
    const peak = peaks.length ? Math.max(...peaks) : undefined;
    return [
      name,
      fixed(rate),
      range(transfers.map((t) => t.ms)),
      ratio(rate),
      cpu.length ? fixed(median(cpu) / 1000, 2) : 'n/a',
      postgres.length ? fixed(median(postgres) / 1000, 2) : '—',
      fixed(median(transfers.map((t) => t.clientCpuMs)) / 1000, 2),
      fixed(before),
      fixed(peak),
      before === undefined || peak === undefined ? 'n/a' : fixed(peak - before),
    ];
  };
  log('');
  log(`${storeName(result.store)} (server RSS when idle after start: ${fixed(result.idleMiB)} MiB):`);
  log('');
  log(
    table(
      [
        'measure',
        'MB/s (median)',
        'MB/s (min–max)',
        '÷ copy',
        'server CPU s',
        'PostgreSQL CPU s',
        'client CPU s',
        'server RSS before MiB',
        'peak MiB',
        'growth MiB',
      ],
      [
        copyRow('copy: stream + fsync', streamMs, f.copy),
        copyRow('copy: fs.copyFile, no fsync', copyFileMs, f.copyFile),
        transferRow('upload: files.create', result.uploads, f.upload),
        transferRow('download: files.content', result.downloads, f.download),
      ],
    ),
  );
  return f;
}

// ── main ──────────────────────────────────────────────────────────────────────

/** BENCH_DATABASES if set (PostgreSQL must then be reachable); otherwise SQLite, and PostgreSQL if reachable. */
async function chooseStores(): Promise<{ stores: Store[]; postgres: string }> {
  const explicit = (process.env.BENCH_DATABASES?.trim() ?? '') !== '';
  const kinds = databaseKinds();
  const stores: Store[] = [];
  if (kinds.includes('sqlite'))
    stores.push({ kind: 'sqlite', storage: 'directory' }, { kind: 'sqlite', storage: 'database' });
  let postgres = 'not measured (BENCH_DATABASES)';
  if (kinds.includes('postgres')) {
    try {
      postgres = `PostgreSQL ${await postgresVersion()} (throwaway database on ${describeAdminUrl()})`;
      stores.push({ kind: 'postgres', storage: 'database' });
    } catch (error) {
      if (explicit) throw error;
      postgres = `skipped: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  return { stores, postgres };
}

async function main(): Promise<void> {
  log(`${machine()}; load average ${loadAverage(' ')} (other processes share these cores)`);
  const { stores, postgres } = await chooseStores();
  log(
    `node ${process.version}; a ${FILE_MB} MB file (random bytes), ${REPEATS} of each measurement per store ` +
      `(medians), after one untimed warm-up upload and checked download; PostgreSQL: ${postgres}`,
  );

  const dir = tempDir('assistd-bench-files-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const source = path.join(dir, 'source.bin');
  const start = performance.now();
  const sourceHash = await writeSource(source);
  log(`source written to ${dir} in ${((performance.now() - start) / 1000).toFixed(1)} s`);
  log('');

  const results: StoreResult[] = [];
  for (const store of stores) results.push(await measureStore(store, source, sourceHash, dir));

  const all = results.map((result) => ({ store: result.store, f: report(result) }));
  log('');
  for (const { store, f } of all) {
    const upload = f.upload / f.copy;
    const download = f.download / f.copy;
    const targets = store.storage === 'directory' && store.kind === 'sqlite';
    log(
      `${storeName(store)}: upload ${fixed(f.upload)} MB/s = ${upload.toFixed(2)}× the copy (${fixed(f.copy)} MB/s)` +
        (targets ? ` (target ≥ ${TARGET_UPLOAD_RATIO}) — ${verdict(upload >= TARGET_UPLOAD_RATIO)}` : '') +
        `; download ${fixed(f.download)} MB/s = ${download.toFixed(2)}×` +
        (targets ? ` (target ≥ ${TARGET_DOWNLOAD_RATIO}) — ${verdict(download >= TARGET_DOWNLOAD_RATIO)}` : ''),
    );
  }
}

await runBench(main);
