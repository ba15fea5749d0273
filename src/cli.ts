#!/usr/bin/env node
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { type Config, ConfigError, loadConfig, SETTINGS } from './config.ts';
import { ApiError } from './domain/errors.ts';
import type { Page } from './storage/store.ts';

// Each command imports what it uses when it runs: `--help`, a setting refused at startup, or `assistd keys create`
// need not load the server (0.9 s of CPU less for a refused setting, measured through tsx).

const HELP = `assistd — a self-hosted server for the OpenAI Assistants API v2

Usage:
  assistd [serve]               the HTTP API and workers executing runs (the default command)
  assistd serve --no-workers    the HTTP API only (streamed runs still execute where their stream is)
  assistd worker                workers only, no HTTP (several processes on one PostgreSQL database)
  assistd migrate               bring the database schema up to date, then exit
  assistd backup DIR            write a backup of a SQLite deployment, running or not, as a new data directory DIR
  assistd projects create NAME  create a project (prints it as the admin API does)
  assistd projects list [--all] list the projects (--all: archived ones too)
  assistd projects archive ID   archive a project: its keys stop working at once, its objects stay
  assistd keys create PROJECT_ID [--name NAME]
                                create an API key of a project; its value is printed this once, never again
  assistd keys list PROJECT_ID  list a project's keys (redacted)
  assistd keys delete PROJECT_ID KEY_ID
                                delete a key: every server refuses it from its next request on
  assistd --help                show this help

Point the official SDK at it:  new OpenAI({ baseURL: 'http://127.0.0.1:8787/v1', apiKey: '…' })

Settings (environment variables):
${SETTINGS.map((s) => `  ${s.name.padEnd(28)} ${s.description} [default: ${s.default}]`).join('\n')}
`;

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(argv);
  } catch (error) {
    // A mistyped option (unknown, or without its value) is a usage error, said in a line.
    if (!(error instanceof Error && String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_')))
      throw error;
    process.stderr.write(`assistd: ${error.message}; see assistd --help\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const command = positionals[0] ?? 'serve';
  if (values.help || command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  const config = loadConfig();
  switch (command) {
    case 'serve': {
      const { createLogger, startServer } = await import('./main.ts');
      const logger = createLogger(config);
      const server = await startServer(config, logger, { workers: !values['no-workers'] });
      return untilSignal(logger, () => server.close());
    }
    case 'worker': {
      const { createLogger, startWorker } = await import('./main.ts');
      const logger = createLogger(config);
      const worker = await startWorker(config, logger);
      return untilSignal(logger, () => worker.close());
    }
    case 'migrate': {
      const { openStore } = await import('./storage/open-store.ts');
      const store = await openStore(config.storage, { onMigrationWait: tellMigrationWait });
      process.stdout.write(`assistd: ${store.description} is up to date\n`);
      await store.close();
      return 0;
    }
    case 'backup':
      return backup(config, positionals[1]);
    case 'projects':
    case 'keys':
      return manageProjects(config, positionals, values);
    default:
      process.stderr.write(`assistd: unknown command '${command}'\n\n${HELP}`);
      return 2;
  }
}

/** A command that opens the store says it waits for another process's migrations (PostgreSQL), on stderr. */
function tellMigrationWait(message: string): void {
  process.stderr.write(`assistd: ${message}\n`);
}

function parseCommandLine(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      'no-workers': { type: 'boolean' },
      all: { type: 'boolean' },
      name: { type: 'string' },
    },
  });
}

/** `assistd backup DIR`: see storage/backup.ts. Run with the server's settings, so it finds what the server writes. */
async function backup(config: Config, destination: string | undefined): Promise<number> {
  if (destination === undefined) {
    process.stderr.write('assistd backup: name the directory to write, e.g. assistd backup /backups/assistd-1\n');
    return 2;
  }
  if (config.storage.kind === 'postgres') {
    const blobs =
      config.files.storage === 'directory' ? `, and copy ${config.files.dir} (ASSISTD_FILE_STORAGE=directory)` : '';
    process.stderr.write(
      `assistd backup: this deployment is on PostgreSQL (ASSISTD_DATABASE_URL), which assistd does not back up: use pg_dump${blobs}. See the README, "Operations".\n`,
    );
    return 1;
  }
  const { BackupError, backupSqlite } = await import('./storage/backup.ts');
  const { DirectoryBlobStore } = await import('./storage/blobs/directory-blob-store.ts');
  // The backup is a data directory: its file bytes go where they are in this one, relative to it.
  const filesDir = path.relative(config.dataDir, config.files.dir);
  // Interrupted, it removes what it wrote so far (backupSqlite) and exits as a signal would have ended it.
  const stopped = new AbortController();
  const stop = (signal: NodeJS.Signals) => {
    stopped.abort();
    process.stderr.write(`assistd backup: stopped by ${signal}; nothing was written to ${path.resolve(destination)}\n`);
    process.exit(signalExitCode(signal));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const summary = await backupSqlite(
      {
        dataDir: config.dataDir,
        blobs:
          config.files.storage === 'directory'
            ? {
                source: new DirectoryBlobStore(config.files.dir),
                target: (dataDir) => new DirectoryBlobStore(path.join(dataDir, filesDir)),
              }
            : undefined,
      },
      destination,
      stopped.signal,
    );
    process.stdout.write(
      `assistd: backup written to ${path.resolve(destination)} (database ${summary.databaseBytes} bytes, ${summary.files} file${summary.files === 1 ? '' : 's'})\n`,
    );
    return 0;
  } catch (error) {
    if (!(error instanceof BackupError)) throw error;
    process.stderr.write(`assistd backup: ${error.message}\n`);
    return 1;
  }
}

/** The positional arguments of each `assistd projects …` and `assistd keys …` action. */
const ACTION_ARGUMENTS: Record<string, number> = {
  'projects create': 1,
  'projects list': 0,
  'projects archive': 1,
  'keys create': 1,
  'keys list': 1,
  'keys delete': 2,
};

/**
 * `assistd projects …` and `assistd keys …`: the admin API's operations on the database directly, for a first key
 * without HTTP (or without an admin key). Each prints what the admin API would answer, as JSON.
 */
async function manageProjects(
  config: Config,
  [command, action, ...args]: string[],
  options: { all?: boolean | undefined; name?: string | undefined },
): Promise<number> {
  const usage = `assistd ${command}: see assistd --help for its actions\n`;
  // What each action takes, exactly: an unquoted name's second word would otherwise be dropped without a word.
  const takes = ACTION_ARGUMENTS[`${command} ${action}`];
  if (takes === undefined || args.length !== takes) {
    process.stderr.write(usage);
    return 2;
  }
  const { MAX_LIMIT } = await import('./api/pagination.ts');
  const { createApiKeyRequest, createProjectRequest } = await import('./api/schemas/organization.ts');
  const { serializeApiKey, serializeProject } = await import('./api/serializers.ts');
  const { parseBody } = await import('./api/validation.ts');
  const { openStore } = await import('./storage/open-store.ts');
  const { ProjectService } = await import('./tenancy/project-service.ts');
  const store = await openStore(config.storage, { existing: true, onMigrationWait: tellMigrationWait });
  const projects = new ProjectService(store.projects);
  const print = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  const all = { limit: MAX_LIMIT } as const;
  try {
    const [first = '', second = ''] = args;
    // Names are checked as the admin API checks them.
    if (command === 'projects' && action === 'create')
      print(serializeProject(await projects.create(parseBody(createProjectRequest, { name: first }).name)));
    else if (command === 'projects' && action === 'list')
      print(await listAll((after) => projects.list({ ...all, after }, options.all === true), serializeProject));
    else if (command === 'projects' && action === 'archive') print(serializeProject(await projects.archive(first)));
    else if (command === 'keys' && action === 'create') {
      const name = parseBody(createApiKeyRequest, options.name === undefined ? {} : { name: options.name }).name;
      const { key, value } = await projects.createKey(first, name ?? 'Secret key');
      print({ ...serializeApiKey(key), value });
      process.stderr.write('assistd: keep the key now: its value is not stored and cannot be shown again.\n');
    } else if (command === 'keys' && action === 'list')
      print(await listAll((after) => projects.listKeys(first, { ...all, after }), serializeApiKey));
    else if (command === 'keys' && action === 'delete') {
      await projects.deleteKey(first, second);
      print({ object: 'organization.project.api_key.deleted', id: second, deleted: true });
    }
    return 0;
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    process.stderr.write(`assistd ${command}: ${error.message}\n`);
    return 1;
  } finally {
    await store.close();
  }
}

/** Every page of a list, as one array. */
async function listAll<T extends { id: string }, W>(
  page: (after: string | undefined) => Promise<Page<T>>,
  serialize: (item: T) => W,
): Promise<W[]> {
  const out: W[] = [];
  for (let after: string | undefined, more = true; more; ) {
    const next = await page(after);
    out.push(...next.data.map(serialize));
    after = next.data.at(-1)?.id;
    more = next.hasMore;
  }
  return out;
}

/** The exit code of a process a signal ended, as a shell reports it (128 + the signal's number). */
function signalExitCode(signal: NodeJS.Signals): number {
  return signal === 'SIGINT' ? 130 : 143;
}

/**
 * Waits for SIGINT or SIGTERM, then shuts down gracefully (stop taking work, hand back runs in flight, close): 0
 * once closed, 1 if closing failed (logged). A second signal, of either kind, while closing ends the process at once,
 * as an impatient operator means.
 */
function untilSignal(logger: Logger, close: () => Promise<void>): Promise<number> {
  return new Promise<number>((resolve) => {
    let closing = false;
    const stop = (signal: NodeJS.Signals) => {
      if (closing) {
        logger.warn(`${signal} received again: exiting without waiting for the shutdown`);
        process.exit(signalExitCode(signal));
      }
      closing = true;
      logger.info(`${signal} received, shutting down`);
      close().then(
        () => resolve(0),
        (error: unknown) => {
          logger.error({ err: error }, 'the shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/**
 * What listening on HOST:PORT fails with: the port taken or privileged, HOST no address of this machine, or a name
 * that does not resolve. Nothing else at startup reaches the network unhandled (a database's errors are ConfigErrors).
 */
const LISTEN_ERRORS = new Set(['EADDRINUSE', 'EACCES', 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL']);

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  async (error: unknown) => {
    // Loaded by then if the server's startup threw it.
    const { ModelLoadError } = await import('./providers/model-router.ts');
    if (error instanceof ConfigError) process.stderr.write(`assistd: invalid setting ${error.message}\n`);
    else if (error instanceof ModelLoadError)
      process.stderr.write(`assistd: cannot load the model of ${error.setting}: ${error.message}\n`);
    else if (error instanceof Error && LISTEN_ERRORS.has(String((error as NodeJS.ErrnoException).code)))
      process.stderr.write(`assistd: cannot listen (HOST/PORT): ${error.message}\n`);
    else process.stderr.write(`assistd: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
