import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig } from '../../src/config.ts';
import { createLogger, type RunningServer, startServer } from '../../src/main.ts';
import type { ServerTool } from '../../src/tools/tool.ts';
import { assertValidResponse } from './openapi.ts';
import { ROOT } from './root.ts';

export { ROOT } from './root.ts';

export function tempDir(prefix = 'assistd-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

export interface ApiResponse<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T;
}

/** An HTTP client for the tests: every JSON response is validated against the official schema before it returns. */
export class ApiClient {
  readonly baseUrl: string;
  private readonly headers: Record<string, string>;

  constructor(baseUrl: string, headers: Record<string, string> = {}) {
    this.baseUrl = baseUrl;
    this.headers = headers;
  }

  async request<T = Record<string, unknown>>(
    method: string,
    url: string,
    body?: unknown,
    init: { headers?: Record<string, string>; raw?: string; validate?: boolean } = {},
  ): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { ...this.headers, ...init.headers };
    let payload: string | undefined = init.raw;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['content-type'] ??= 'application/json';
    }
    const response = await fetch(this.baseUrl + url, { method, headers, body: payload ?? null });
    const text = await response.text();
    const parsed = text === '' ? undefined : (JSON.parse(text) as T);
    if (init.validate !== false) assertValidResponse(method, url.split('?')[0]!, response.status, parsed);
    return { status: response.status, headers: response.headers, body: parsed as T };
  }

  get<T = Record<string, unknown>>(url: string) {
    return this.request<T>('GET', url);
  }
  post<T = Record<string, unknown>>(url: string, body?: unknown) {
    return this.request<T>('POST', url, body);
  }
  delete<T = Record<string, unknown>>(url: string) {
    return this.request<T>('DELETE', url);
  }

  /** Uploads a file as the SDK does (multipart, purpose `assistants`); answers the file object, schema-checked. */
  async upload(content: string | Buffer, filename: string): Promise<Record<string, unknown>> {
    const form = new FormData();
    form.append('purpose', 'assistants');
    form.append('file', new Blob([content]), filename);
    const response = await fetch(`${this.baseUrl}/v1/files`, { method: 'POST', headers: this.headers, body: form });
    const file = (await response.json()) as Record<string, unknown>;
    assertValidResponse('POST', '/v1/files', response.status, file);
    assert.equal(response.status, 200, JSON.stringify(file));
    return file;
  }
}

/**
 * Test servers run no code_interpreter sandbox unless a test asks for one (`ASSISTD_CODE_INTERPRETER: 'on'`): each
 * would otherwise probe it and keep a Python process ready, for nothing, in every test that starts a server.
 */
const SANDBOX_OFF = { ASSISTD_CODE_INTERPRETER: 'off' };

export interface TestServer {
  url: string;
  api: ApiClient;
  server: RunningServer;
  dataDir: string;
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** The server-side tools to register (e.g. test-tools.ts addTool()). */
  tools?: ServerTool[];
  /**
   * false: an API-only process (`serve --no-workers`): it claims no queued run and ingests no file, but executes the
   * runs it streams. Default true.
   */
  workers?: boolean;
  /** Where the server's log lines (info and above) go, one JSON line per entry; by default nothing is logged. */
  logLines?: string[];
}

/** The real server in this process, on a free port, with its own temporary data directory. */
export async function startTestServer(
  env: Record<string, string> = {},
  options: TestServerOptions = {},
): Promise<TestServer> {
  const dataDir = tempDir();
  const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', ASSISTD_DATA_DIR: dataDir, ...SANDBOX_OFF, ...env });
  const lines = options.logLines;
  const logger = lines
    ? createLogger(
        { logLevel: 'info' },
        new Writable({
          write(chunk: Buffer, _encoding, done) {
            lines.push(...chunk.toString().split('\n').filter(Boolean));
            done();
          },
        }),
      )
    : createLogger({ logLevel: 'silent' });
  const server = await startServer(config, logger, {
    tools: options.tools ?? [],
    workers: options.workers ?? true,
  });
  return {
    url: server.url,
    api: new ApiClient(server.url),
    server,
    dataDir,
    close: async () => {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

interface CliProcess {
  child: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface ServerProcess extends CliProcess {
  url: string;
}

export interface WorkerProcess extends CliProcess {
  /** The worker id it logged (`worker_<host>_<pid>_…`), as runs' leases name it. */
  id: string;
}

const CLI_ENTRY = 'src/cli.ts';
/**
 * Where spawned servers and workers run from: this checkout, or (benchmarks only) another one named by
 * BENCH_SERVER_ROOT, e.g. a `git worktree` of an older commit, to measure what a change bought in one run.
 */
export const SERVER_ROOT = process.env.BENCH_SERVER_ROOT ? path.resolve(process.env.BENCH_SERVER_ROOT) : ROOT;
/** Node flags for the server processes of benchmarks, e.g. `--cpu-prof --cpu-prof-dir=DIR` to profile them. */
const SERVER_NODE_ARGS = process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
/** `assistd serve` with the test tool registered (see that file for its TEST_TOOL_* settings). */
const TOOL_SERVER_ENTRY = 'test/support/tool-server.ts';
/**
 * ASSISTD_TEST_BUILT=1 (set by `npm test`, which builds first): the CLI's processes run the build, `dist/cli.js`, as
 * `npm start` does, which starts in half the CPU time of the source through tsx. Otherwise (a test file run alone)
 * they run the source.
 */
const RUN_BUILT = process.env.ASSISTD_TEST_BUILT === '1' && SERVER_ROOT === ROOT;

/**
 * The Node arguments that start `entry` (a .ts path from the root): the build of the CLI; another entry as npm test
 * compiled it (.test-build, scripts/run-tests.mjs), when it did; else the source via tsx.
 */
function entryArgs(root: string, entry: string): string[] {
  if (RUN_BUILT && entry === CLI_ENTRY) return [path.join(root, 'dist/cli.js')];
  const compiled = path.join(root, '.test-build', entry.replace(/\.ts$/, '.js'));
  if (RUN_BUILT && existsSync(compiled)) return [compiled];
  return ['--import', 'tsx', path.join(root, entry)];
}

/** The Node arguments that start the CLI, as runCli starts it: for a test that spawns it its own way. */
export function cliEntryArgs(): string[] {
  return entryArgs(ROOT, CLI_ENTRY);
}

/**
 * The CLI from source through tsx (or another entry with the same logging, such as the tool server), as its own
 * process. Resolves with what `ready` captures from the first line that matches it; rejects with the process's output
 * if it exits first. The harness waits for info-level lines, so the log level is never raised above info here.
 */
function spawnCli(args: string[], env: Record<string, string>, ready: RegExp, what: string, entry = CLI_ENTRY) {
  const root = SERVER_ROOT;
  const child = spawn(process.execPath, [...SERVER_NODE_ARGS, ...entryArgs(root, entry), ...args], {
    cwd: root,
    env: { ...process.env, ...SANDBOX_OFF, ...env, ASSISTD_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise<CliProcess & { captured: string }>((resolve, reject) => {
    let waiting = true;
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      // A server logging every request (a benchmark's load) would otherwise grow this without end: the latest half.
      if (output.length > MAX_OUTPUT_CHARS) output = output.slice(-MAX_OUTPUT_CHARS / 2);
      // Matched until ready only: a server logging every request would otherwise be re-scanned whole per chunk.
      const match = waiting ? output.match(ready) : null;
      if (match) {
        waiting = false;
        resolve({
          captured: match[1]!,
          child,
          output: () => output,
          stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    exited.then((code) => reject(new Error(`${what} exited with ${code} before it was ready:\n${output}`)));
  });
}

/** How much of a spawned process's output is kept (output()): more than any test reads. */
const MAX_OUTPUT_CHARS = 16 * 1024 * 1024;

/** An HTTP server process of `entry` on a free port; resolves once it logs its address. */
async function spawnListening(
  entry: string,
  args: string[],
  env: Record<string, string>,
  what: string,
): Promise<ServerProcess> {
  const { captured, ...cli } = await spawnCli(
    args,
    { HOST: '127.0.0.1', PORT: '0', ...env },
    /assistd listening on (http:\/\/[^\s"]+)\/v1/,
    what,
    entry,
  );
  return { ...cli, url: captured };
}

/** `assistd serve` (or the given command) on a free port; resolves once the server logs its address. */
export function spawnServer(env: Record<string, string>, args: string[] = ['serve']): Promise<ServerProcess> {
  return spawnListening(CLI_ENTRY, args, env, 'assistd');
}

/**
 * `assistd serve` with the test tool `add` registered (test/support/tool-server.ts), on a free port; resolves once
 * the server logs its address. TEST_TOOL_DELAY_MS and TEST_TOOL_LOG in `env` configure the tool.
 */
export function spawnToolServer(env: Record<string, string>): Promise<ServerProcess> {
  return spawnListening(TOOL_SERVER_ENTRY, [], env, 'the tool server');
}

/** Runs the CLI to completion, for startup errors and one-shot commands. */
export function runCli(env: Record<string, string>, args: string[] = ['serve'], timeoutMs = 20_000) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [...entryArgs(ROOT, CLI_ENTRY), ...args], {
      cwd: ROOT,
      env: { ...process.env, HOST: '127.0.0.1', PORT: '0', ...SANDBOX_OFF, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`assistd ${args.join(' ')} did not exit within ${timeoutMs} ms:\n${stdout}${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `assistd worker`: workers only, no HTTP; resolves once it logs `assistd worker <id> running`. */
export async function spawnWorker(env: Record<string, string>): Promise<WorkerProcess> {
  const { captured, ...cli } = await spawnCli(['worker'], env, /assistd worker (\S+) running/, 'assistd worker');
  return { ...cli, id: captured };
}
