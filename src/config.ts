/**
 * Environment → one validated Config. Every setting is read here and nowhere else; a bad value stops startup with
 * one line that names the setting.
 */
export type StorageConfig = { kind: 'sqlite'; dataDir: string } | { kind: 'postgres'; url: string };

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  storage: StorageConfig;
  apiKey: string | undefined;
  logLevel: LogLevel;
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
    name: 'ASSISTD_API_KEY',
    default: '(unset: no key needed)',
    description: 'when set, every /v1 request must send Authorization: Bearer <key>',
  },
  { name: 'ASSISTD_LOG_LEVEL', default: 'info', description: `one of ${LOG_LEVELS.join(', ')}` },
];

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = process.env): Config {
  const dataDir = setting(env, 'ASSISTD_DATA_DIR') ?? './data';
  return {
    host: setting(env, 'HOST') ?? '127.0.0.1',
    port: parsePort(setting(env, 'PORT')),
    dataDir,
    storage: parseStorage(setting(env, 'ASSISTD_DATABASE_URL'), dataDir),
    apiKey: setting(env, 'ASSISTD_API_KEY'),
    logLevel: parseLogLevel(setting(env, 'ASSISTD_LOG_LEVEL')),
  };
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

function parseStorage(url: string | undefined, dataDir: string): StorageConfig {
  if (url === undefined) return { kind: 'sqlite', dataDir };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(
      'ASSISTD_DATABASE_URL',
      `'${redact(url)}' is not a valid URL (expected postgres://user@host:5432/db).`,
    );
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:')
    throw new ConfigError(
      'ASSISTD_DATABASE_URL',
      `unsupported scheme '${parsed.protocol}' (expected postgres://…; leave it unset to use SQLite in ASSISTD_DATA_DIR).`,
    );
  return { kind: 'postgres', url };
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
