import path from 'node:path';
import type { StreamSettings } from './api/sse.ts';
import { loadModelsConfig, type ModelsConfig, ModelsConfigError } from './models-config.ts';
import { DEFAULT_SANDBOX_SETTINGS, type SandboxSettings } from './sandbox/settings.ts';

/**
 * Environment → one validated Config. Every setting is read here and nowhere else; a bad value stops startup with
 * one line that names the setting.
 */
export type StorageConfig =
  | { kind: 'sqlite'; dataDir: string }
  | {
      kind: 'postgres';
      url: string;
      /** The most connections this process opens to PostgreSQL. */
      poolSize: number;
      /**
       * How long a connection may leave a statement or a connection attempt unanswered before it is given up as
       * dead (kysely-pool.ts): a database gone without closing its connections never answers them at all.
       */
      timeoutMs: number;
      /**
       * A URL that reaches PostgreSQL itself when `url` goes through a pooler in transaction mode: for the connection
       * that listens for other processes' signals (LISTEN needs a session of its own). Absent: `url`.
       */
      directUrl?: string;
      /** Whether statements run as named prepared statements (off for poolers that cannot keep them). */
      preparedStatements: boolean;
    };

/** ASSISTD_DATABASE_TIMEOUT_S's default: far above a run's statements (milliseconds), far below TCP's own give-up (minutes). */
export const DEFAULT_DATABASE_TIMEOUT_MS = 30_000;

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  storage: StorageConfig;
  apiKey: string | undefined;
  adminKey: string | undefined;
  /** Per API key and minute (api/rate-limits.ts); undefined: no limit. */
  rateLimits: { requestsPerMinute: number | undefined; tokensPerMinute: number | undefined };
  logLevel: LogLevel;
  /** One info line per HTTP response (ASSISTD_LOG_REQUESTS). */
  logRequests: boolean;
  /** The web origins whose pages may call the API from a browser (CORS): none, every one (`*`), or these. */
  corsOrigins: 'none' | '*' | string[];
  /** Whether chat completions, embeddings and OpenAI's other endpoints are passed on (ASSISTD_PASS_THROUGH). */
  passThrough: boolean;
  /** How streams are written: what may wait for a client not reading, and when a silent one gets a keep-alive. */
  stream: StreamSettings;
  /** How long a request's body may stop arriving before the request is answered 408 and its connection closed. */
  bodyTimeoutMs: number;
  runs: RunsConfig;
  files: FilesConfig;
  /** Which backend serves which model name (models-config.ts). */
  models: ModelsConfig;
  /** The code_interpreter sandbox: whether it runs, its programs, each session's limits. */
  sandbox: SandboxSettings;
}

export interface RunsConfig {
  /** How many runs this process executes at once. */
  workerConcurrency: number;
  /** A run expires this long after it was created unless it has ended. */
  expiresAfterSeconds: number;
  /** A worker's hold on a run; renewed while it runs, taken over by another worker once it lapses. */
  leaseMs: number;
  /** Upstream attempts after the first, for 429s, 5xx, timeouts and resets. */
  maxRetries: number;
  /**
   * How many rounds of server-side tool calls a run makes in a row (none going to the client) before its model is
   * asked to answer, allowed no call.
   */
  maxToolRounds: number;
  /**
   * Queued runs (ASSISTD_QUEUE_RUNS): a run or message created on a thread with an active run waits behind it,
   * unless the request says `x-assistd-queue: false`; off, it is refused as upstream refuses it unless `true`.
   */
  queue: boolean;
}

export interface FilesConfig {
  /** Where file bytes live: a directory under the data directory, or chunked rows in the database. */
  storage: 'directory' | 'database';
  /** The directory of the `directory` storage. */
  dir: string;
  /** The largest file accepted, in bytes. */
  maxBytes: number;
  /** Threads extracting and chunking files for vector stores (each indexes two files at a time). */
  indexingThreads: number;
  /** How much the process may grow while one file is read for a vector store, in bytes; 0: no bound. */
  indexingMemoryBytes: number;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export class ConfigError extends Error {
  readonly setting: string;
  constructor(setting: string, message: string) {
    super(`${setting}: ${message}`);
    this.name = 'ConfigError';
    this.setting = setting;
  }
}

/** The settings, for `assistd --help` and the README. */
export const SETTINGS: ReadonlyArray<{ name: string; default: string; description: string }> = [
  { name: 'HOST', default: '127.0.0.1', description: 'address to listen on (0.0.0.0 for all interfaces)' },
  { name: 'PORT', default: '8787', description: 'port to listen on; the API lives under /v1' },
  { name: 'ASSISTD_DATA_DIR', default: './data', description: 'where the SQLite database (WAL mode) and files live' },
  {
    name: 'ASSISTD_DATABASE_URL',
    default: '(unset: SQLite)',
    description: 'a postgres:// URL selects PostgreSQL instead of SQLite',
  },
  {
    name: 'ASSISTD_DATABASE_POOL',
    default: '10',
    description: 'the most PostgreSQL connections this process opens (ignored with SQLite)',
  },
  {
    name: 'ASSISTD_DATABASE_TIMEOUT_S',
    default: String(DEFAULT_DATABASE_TIMEOUT_MS / 1000),
    description:
      'a PostgreSQL statement, connection attempt or wait for a free connection lasting this long fails with a 503, a silent connection given up (ignored with SQLite)',
  },
  {
    name: 'ASSISTD_DATABASE_DIRECT_URL',
    default: '(unset: ASSISTD_DATABASE_URL)',
    description:
      'a postgres:// URL reaching PostgreSQL itself, for the connection that listens for other processes: set it when ASSISTD_DATABASE_URL goes through a pooler in transaction mode',
  },
  {
    name: 'ASSISTD_DATABASE_PREPARED_STATEMENTS',
    default: 'on',
    description:
      'off: statements are not prepared by name, for a pooler in transaction mode that cannot keep them (PgBouncer before 1.21)',
  },
  {
    name: 'ASSISTD_API_KEY',
    default: '(unset: no key needed)',
    description: 'when set, every /v1 request must send Authorization: Bearer <key>',
  },
  {
    name: 'ASSISTD_ADMIN_KEY',
    default: '(unset: no admin API)',
    description:
      'the key of the admin API (/v1/organization/…: projects and their API keys); when set, every request needs a key',
  },
  {
    name: 'ASSISTD_RATE_LIMIT_RPM',
    default: '(unset: no limit)',
    description: 'requests per minute per API key; past it a 429 with retry-after (the SDK retries)',
  },
  {
    name: 'ASSISTD_RATE_LIMIT_TPM',
    default: '(unset: no limit)',
    description:
      "tokens per minute per API key: a run is refused (429) while the key's runs of the last minute used that many",
  },
  { name: 'ASSISTD_LOG_LEVEL', default: 'info', description: `one of ${LOG_LEVELS.join(', ')}` },
  {
    name: 'ASSISTD_LOG_REQUESTS',
    default: 'on',
    description: 'on: one info line per HTTP response (request id, route, status, time); off: errors only',
  },
  {
    name: 'ASSISTD_CORS_ORIGINS',
    default: '(unset: none)',
    description: "web origins whose pages may call the API from a browser: '*' or a comma-separated list",
  },
  {
    name: 'ASSISTD_PASS_THROUGH',
    default: 'on (off with ASSISTD_RATE_LIMIT_TPM)',
    description: 'on: chat completions, embeddings, moderations, speech and images are passed on to the model backends',
  },
  {
    name: 'ASSISTD_UPSTREAM_BASE_URL',
    default: '(unset: runs fail)',
    description: 'an OpenAI-compatible Chat Completions endpoint, e.g. http://127.0.0.1:11434/v1',
  },
  { name: 'ASSISTD_UPSTREAM_API_KEY', default: '(unset)', description: 'the API key sent to the upstream' },
  {
    name: 'ASSISTD_UPSTREAM_TIMEOUT_S',
    default: '120',
    description: 'seconds the upstream may stay silent before the attempt counts as failed',
  },
  {
    name: 'ASSISTD_UPSTREAM_MAX_RETRIES',
    default: '3',
    description: 'retries after a 429, 5xx, timeout, reset or invalid stream',
  },
  {
    name: 'ASSISTD_MAX_TOOL_ROUNDS',
    default: '20',
    description:
      'rounds of server-side tool calls a run makes in a row before the model must answer (tool_choice none)',
  },
  {
    name: 'ASSISTD_STREAM_BUFFER_KB',
    default: '1024',
    description:
      'KiB of a stream that may wait for a client not reading it; past this its connection is closed (the run goes on)',
  },
  {
    name: 'ASSISTD_STREAM_KEEPALIVE_S',
    default: '15',
    description: 'seconds a stream may be silent before a keep-alive comment is sent; 0: never',
  },
  {
    name: 'ASSISTD_BODY_TIMEOUT_S',
    default: '60',
    description: 'seconds a request body may stop arriving before the request is answered 408 and closed',
  },
  { name: 'ASSISTD_WORKER_CONCURRENCY', default: '64', description: 'runs executed at once by this process' },
  { name: 'ASSISTD_RUN_EXPIRES_AFTER_S', default: '600', description: 'seconds after creation a run expires' },
  {
    name: 'ASSISTD_QUEUE_RUNS',
    default: 'off',
    description:
      'on: a run or message created while its thread has an active run waits behind it instead of a 400 (header x-assistd-queue overrides)',
  },
  {
    name: 'ASSISTD_WORKER_LEASE_S',
    default: '15',
    description: 'seconds a worker holds a run without renewing; after a crash, its runs resume this long later',
  },
  {
    name: 'ASSISTD_FILE_STORAGE',
    default: '(SQLite: directory; PostgreSQL: database)',
    description: 'where uploaded files live: directory (ASSISTD_DATA_DIR/files) or database (chunked rows)',
  },
  {
    name: 'ASSISTD_INDEXING_THREADS',
    default: '1',
    description: 'threads indexing vector-store files (extraction, chunking) in this process; 0: none here',
  },
  {
    name: 'ASSISTD_INDEXING_MEMORY_MB',
    default: '2048',
    description: 'how much the process may grow while one vector-store file is read (in MiB); over it, the file fails',
  },
  { name: 'ASSISTD_MAX_FILE_MB', default: '512', description: 'the largest file accepted, in MB (1 MB = 10^6 bytes)' },
  {
    name: 'ASSISTD_CONTEXT_WINDOW',
    default: '128000',
    description: "the upstream model's context window in tokens, for truncation",
  },
  {
    name: 'ASSISTD_MODEL_FILE',
    default: '(unset)',
    description: 'a .gguf model file run in-process (CPU) for every model name, instead of an upstream',
  },
  {
    name: 'ASSISTD_LLAMA_THREADS',
    default: '(CPU cores)',
    description: 'CPU threads for GGUF models; more than the cores is very slow',
  },
  {
    name: 'ASSISTD_LLAMA_CONTEXT_SIZE',
    default: '(model, ≤ 8192)',
    description: 'context size of GGUF models in tokens',
  },
  {
    name: 'ASSISTD_MODELS_FILE',
    default: '(unset)',
    description: 'a JSON or YAML file routing model names to backends (see README, "Several models")',
  },
  {
    name: 'ASSISTD_EMBEDDINGS_MODEL',
    default: '(unset: keyword search only)',
    description: 'an embedding model of an OpenAI-compatible endpoint, for hybrid vector-store search',
  },
  {
    name: 'ASSISTD_EMBEDDINGS_BASE_URL',
    default: '(ASSISTD_UPSTREAM_BASE_URL)',
    description: 'the OpenAI-compatible endpoint serving ASSISTD_EMBEDDINGS_MODEL (POST …/embeddings)',
  },
  {
    name: 'ASSISTD_EMBEDDINGS_API_KEY',
    default: '(unset; with the upstream: its key)',
    description: 'the API key sent to the embeddings endpoint',
  },
  {
    name: 'ASSISTD_EMBEDDINGS_MODEL_FILE',
    default: '(unset)',
    description: 'a .gguf embedding model run in-process instead of an endpoint',
  },
  {
    name: 'ASSISTD_CODE_INTERPRETER',
    default: 'on',
    description: 'off: code_interpreter calls get an output saying code execution is unavailable here',
  },
  {
    name: 'ASSISTD_SANDBOX_PYTHON',
    default: '/usr/bin/python3',
    description: 'the Python (with numpy, pandas, matplotlib) that code_interpreter runs in its sandbox',
  },
  { name: 'ASSISTD_SANDBOX_BWRAP', default: 'bwrap', description: 'the bubblewrap executable' },
  {
    name: 'ASSISTD_SANDBOX_CELL_TIMEOUT_S',
    default: '120',
    description: "a code cell's time limit (interrupted, variables kept); the run's expiry shortens it",
  },
  { name: 'ASSISTD_SANDBOX_MEMORY_MB', default: '2048', description: 'address space of each sandbox process, in MiB' },
  {
    name: 'ASSISTD_SANDBOX_MAX_PROCESSES',
    default: '64',
    description: 'processes and threads of one session',
  },
  { name: 'ASSISTD_SANDBOX_MAX_FILE_MB', default: '256', description: 'the largest file a session can write, in MiB' },
  { name: 'ASSISTD_SANDBOX_DATA_MB', default: '1024', description: "size of a session's /mnt/data, in MiB" },
  { name: 'ASSISTD_SANDBOX_CPU_S', default: '1800', description: "CPU seconds of a session's life" },
  { name: 'ASSISTD_SANDBOX_OUTPUT_CHARS', default: '20000', description: 'output kept per cell (head and tail)' },
  { name: 'ASSISTD_SANDBOX_IDLE_S', default: '1800', description: 'a session unused this long is closed' },
  {
    name: 'ASSISTD_SANDBOX_LIFETIME_S',
    default: '3600',
    description: 'a session is closed this long after it started',
  },
  {
    name: 'ASSISTD_SANDBOX_MAX_SESSIONS',
    default: '8',
    description: 'live Python sessions per process (the least recently used one not in use makes room)',
  },
];

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = process.env): Config {
  const dataDir = setting(env, 'ASSISTD_DATA_DIR') ?? './data';
  const storage = parseStorage(env, dataDir);
  const apiKey = setting(env, 'ASSISTD_API_KEY');
  const adminKey = setting(env, 'ASSISTD_ADMIN_KEY');
  // The admin key opens the admin API and nothing else: as the project's key too, /v1 would refuse it.
  if (adminKey !== undefined && adminKey === apiKey)
    throw new ConfigError(
      'ASSISTD_ADMIN_KEY',
      'it must differ from ASSISTD_API_KEY (the admin key opens no /v1 route).',
    );
  const tokensPerMinute = optional(env, 'ASSISTD_RATE_LIMIT_TPM', 1, 1_000_000_000_000);
  return {
    host: setting(env, 'HOST') ?? '127.0.0.1',
    port: parsePort(setting(env, 'PORT')),
    dataDir,
    storage,
    apiKey,
    adminKey,
    rateLimits: {
      requestsPerMinute: optional(env, 'ASSISTD_RATE_LIMIT_RPM', 1, 100_000_000),
      tokensPerMinute,
    },
    logLevel: parseLogLevel(setting(env, 'ASSISTD_LOG_LEVEL')),
    logRequests: onOff(env, 'ASSISTD_LOG_REQUESTS', 'on'),
    corsOrigins: parseCorsOrigins(setting(env, 'ASSISTD_CORS_ORIGINS')),
    // What passed-on calls use is not counted: a tokens-per-minute limit is not opened a way around by default.
    passThrough: onOff(env, 'ASSISTD_PASS_THROUGH', tokensPerMinute === undefined ? 'on' : 'off'),
    stream: {
      bufferBytes: integer(env, 'ASSISTD_STREAM_BUFFER_KB', 1024, 16, 1_048_576) * 1024,
      keepAliveMs: integer(env, 'ASSISTD_STREAM_KEEPALIVE_S', 15, 0, 3600) * 1000,
    },
    bodyTimeoutMs: integer(env, 'ASSISTD_BODY_TIMEOUT_S', 60, 1, 3600) * 1000,
    runs: {
      workerConcurrency: integer(env, 'ASSISTD_WORKER_CONCURRENCY', 64, 0, 100_000),
      expiresAfterSeconds: integer(env, 'ASSISTD_RUN_EXPIRES_AFTER_S', 600, 1, 31_536_000),
      leaseMs: integer(env, 'ASSISTD_WORKER_LEASE_S', 15, 1, 3600) * 1000,
      maxRetries: integer(env, 'ASSISTD_UPSTREAM_MAX_RETRIES', 3, 0, 100),
      maxToolRounds: integer(env, 'ASSISTD_MAX_TOOL_ROUNDS', 20, 1, 10_000),
      queue: onOff(env, 'ASSISTD_QUEUE_RUNS', 'off'),
    },
    files: {
      storage: parseFileStorage(setting(env, 'ASSISTD_FILE_STORAGE'), storage),
      dir: path.join(dataDir, 'files'),
      maxBytes: integer(env, 'ASSISTD_MAX_FILE_MB', 512, 1, 1_000_000) * 1_000_000,
      indexingThreads: integer(env, 'ASSISTD_INDEXING_THREADS', 1, 0, 64),
      indexingMemoryBytes: integer(env, 'ASSISTD_INDEXING_MEMORY_MB', 2048, 0, 1_048_576) * 1024 * 1024,
    },
    models: parseModels(env),
    sandbox: parseSandbox(env),
  };
}

function onOff(env: Env, name: string, fallback: 'on' | 'off'): boolean {
  const raw = setting(env, name) ?? fallback;
  if (raw !== 'on' && raw !== 'off') throw new ConfigError(name, `'${raw}' is not one of on, off.`);
  return raw === 'on';
}

function parseSandbox(env: Env): SandboxSettings {
  const d = DEFAULT_SANDBOX_SETTINGS;
  const MiB = 1024 * 1024;
  const toggle = setting(env, 'ASSISTD_CODE_INTERPRETER') ?? 'on';
  if (toggle !== 'on' && toggle !== 'off')
    throw new ConfigError('ASSISTD_CODE_INTERPRETER', `'${toggle}' is not one of on, off.`);
  return {
    enabled: toggle === 'on',
    python: setting(env, 'ASSISTD_SANDBOX_PYTHON') ?? d.python,
    bwrap: setting(env, 'ASSISTD_SANDBOX_BWRAP') ?? d.bwrap,
    cellTimeoutMs: integer(env, 'ASSISTD_SANDBOX_CELL_TIMEOUT_S', d.cellTimeoutMs / 1000, 1, 86_400) * 1000,
    killGraceMs: d.killGraceMs,
    memoryBytes: integer(env, 'ASSISTD_SANDBOX_MEMORY_MB', d.memoryBytes / MiB, 64, 1_048_576) * MiB,
    maxProcesses: integer(env, 'ASSISTD_SANDBOX_MAX_PROCESSES', d.maxProcesses, 8, 100_000),
    maxFileBytes: integer(env, 'ASSISTD_SANDBOX_MAX_FILE_MB', d.maxFileBytes / MiB, 1, 1_048_576) * MiB,
    cpuSeconds: integer(env, 'ASSISTD_SANDBOX_CPU_S', d.cpuSeconds, 1, 31_536_000),
    dataBytes: integer(env, 'ASSISTD_SANDBOX_DATA_MB', d.dataBytes / MiB, 16, 1_048_576) * MiB,
    outputChars: integer(env, 'ASSISTD_SANDBOX_OUTPUT_CHARS', d.outputChars, 100, 10_000_000),
    idleMs: integer(env, 'ASSISTD_SANDBOX_IDLE_S', d.idleMs / 1000, 1, 31_536_000) * 1000,
    lifetimeMs: integer(env, 'ASSISTD_SANDBOX_LIFETIME_S', d.lifetimeMs / 1000, 1, 31_536_000) * 1000,
    maxSessions: integer(env, 'ASSISTD_SANDBOX_MAX_SESSIONS', d.maxSessions, 1, 10_000),
  };
}

/** Files live beside the data: in the data directory with SQLite, in the database every process shares with PostgreSQL. */
function parseFileStorage(raw: string | undefined, storage: StorageConfig): FilesConfig['storage'] {
  if (raw === undefined) return storage.kind === 'sqlite' ? 'directory' : 'database';
  if (raw !== 'directory' && raw !== 'database')
    throw new ConfigError('ASSISTD_FILE_STORAGE', `'${raw}' is not one of directory, database.`);
  return raw;
}

function parseModels(env: Env): ModelsConfig {
  try {
    return loadModelsConfig({
      modelsFile: setting(env, 'ASSISTD_MODELS_FILE'),
      modelFile: setting(env, 'ASSISTD_MODEL_FILE'),
      upstreamBaseUrl: setting(env, 'ASSISTD_UPSTREAM_BASE_URL'),
      upstreamApiKey: setting(env, 'ASSISTD_UPSTREAM_API_KEY'),
      upstreamTimeoutMs: integer(env, 'ASSISTD_UPSTREAM_TIMEOUT_S', 120, 1, 86_400) * 1000,
      contextWindow: integer(env, 'ASSISTD_CONTEXT_WINDOW', 128_000, 256, 100_000_000),
      llamaThreads: optional(env, 'ASSISTD_LLAMA_THREADS', 1, 1024),
      llamaContextSize: optional(env, 'ASSISTD_LLAMA_CONTEXT_SIZE', 256, 10_000_000),
      embeddingsBaseUrl: setting(env, 'ASSISTD_EMBEDDINGS_BASE_URL'),
      embeddingsModel: setting(env, 'ASSISTD_EMBEDDINGS_MODEL'),
      embeddingsApiKey: setting(env, 'ASSISTD_EMBEDDINGS_API_KEY'),
      embeddingsModelFile: setting(env, 'ASSISTD_EMBEDDINGS_MODEL_FILE'),
      env,
    });
  } catch (error) {
    if (error instanceof ModelsConfigError) throw new ConfigError(error.setting, error.message);
    throw error;
  }
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = setting(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max)
    throw new ConfigError(name, `'${raw}' is not an integer from ${min} to ${max}.`);
  return value;
}

/** An integer setting whose absence means "none" (no limit). */
function optional(env: Env, name: string, min: number, max: number): number | undefined {
  return setting(env, name) === undefined ? undefined : integer(env, name, 0, min, max);
}

/** An empty variable counts as unset, so `PORT= assistd` behaves like no PORT at all. */
function setting(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

function parsePort(raw: string | undefined): number {
  if (raw === undefined) return 8787;
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port > 65535)
    throw new ConfigError('PORT', `'${raw}' is not a port number (expected an integer from 0 to 65535).`);
  return port;
}

function parseStorage(env: Env, dataDir: string): StorageConfig {
  const url = postgresUrl(env, 'ASSISTD_DATABASE_URL', 'leave it unset to use SQLite in ASSISTD_DATA_DIR');
  if (url === undefined) return { kind: 'sqlite', dataDir };
  const directUrl = postgresUrl(env, 'ASSISTD_DATABASE_DIRECT_URL', 'or leave it unset');
  return {
    kind: 'postgres',
    url,
    poolSize: integer(env, 'ASSISTD_DATABASE_POOL', 10, 1, 1000),
    timeoutMs: integer(env, 'ASSISTD_DATABASE_TIMEOUT_S', DEFAULT_DATABASE_TIMEOUT_MS / 1000, 1, 3600) * 1000,
    ...(directUrl === undefined ? {} : { directUrl }),
    preparedStatements: onOff(env, 'ASSISTD_DATABASE_PREPARED_STATEMENTS', 'on'),
  };
}

/** The setting `name`, a postgres:// URL, if set. */
function postgresUrl(env: Env, name: string, otherwise: string): string | undefined {
  const url = setting(env, name);
  if (url === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(name, `'${redact(url)}' is not a valid URL (expected postgres://user@host:5432/db).`);
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:')
    throw new ConfigError(name, `unsupported scheme '${parsed.protocol}' (expected postgres://…; ${otherwise}).`);
  return url;
}

/** `*`, or origins as a browser sends them (`https://app.example.com`, `http://localhost:3000`): scheme, host, port. */
function parseCorsOrigins(raw: string | undefined): Config['corsOrigins'] {
  if (raw === undefined) return 'none';
  if (raw === '*') return '*';
  return raw.split(',').map((entry) => {
    const origin = entry.trim();
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {}
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || parsed.origin !== origin)
      throw new ConfigError(
        'ASSISTD_CORS_ORIGINS',
        `'${origin}' is not an origin (expected '*' or a comma-separated list like https://app.example.com,http://localhost:3000).`,
      );
    return origin;
  });
}

function parseLogLevel(raw: string | undefined): LogLevel {
  if (raw === undefined) return 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(raw))
    throw new ConfigError('ASSISTD_LOG_LEVEL', `'${raw}' is not one of ${LOG_LEVELS.join(', ')}.`);
  return raw as LogLevel;
}

/** Never print a password from a connection URL. */
function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}
