#!/usr/bin/env node
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { type Config, ConfigError, loadConfig, SETTINGS } from './config.ts';
import { createLogger, startServer, startWorker } from './main.ts';
import { ModelLoadError } from './providers/model-router.ts';
import { BackupError, backupSqlite } from './storage/backup.ts';
import { DirectoryBlobStore } from './storage/blobs/directory-blob-store.ts';
import { openStore } from './storage/open-store.ts';

const HELP = `assistd — a self-hosted server for the OpenAI Assistants API v2

Usage:
  assistd [serve]               the HTTP API and workers executing runs (the default command)
  assistd serve --no-workers    the HTTP API only (streamed runs still execute where their stream is)
  assistd worker                workers only, no HTTP (several processes on one PostgreSQL database)
  assistd migrate               bring the database schema up to date, then exit
  assistd backup DIR            write a backup of a SQLite deployment, running or not, as a new data directory DIR
  assistd --help                show this help

Point the official SDK at it:  new OpenAI({ baseURL: 'http://127.0.0.1:8787/v1', apiKey: '…' })

Settings (environment variables):
${SETTINGS.map((s) => `  ${s.name.padEnd(28)} ${s.description} [default: ${s.default}]`).join('\n')}
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { help: { type: 'boolean', short: 'h' }, 'no-workers': { type: 'boolean' } },
  });
  const command = positionals[0] ?? 'serve';
  if (values.help || command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  const config = loadConfig();
  switch (command) {
    case 'serve': {
      const logger = createLogger(config);
      const server = await startServer(config, logger, { workers: !values['no-workers'] });
      await untilSignal(logger, () => server.close());
      return 0;
    }
    case 'worker': {
      const logger = createLogger(config);
      const worker = await startWorker(config, logger);
      await untilSignal(logger, () => worker.close());
      return 0;
    }
    case 'migrate': {
      const store = await openStore(config.storage);
      process.stdout.write(`assistd: ${store.description} is up to date\n`);
      await store.close();
      return 0;
    }
    case 'backup':
      return backup(config, positionals[1]);
    default:
      process.stderr.write(`assistd: unknown command '${command}'\n\n${HELP}`);
      return 2;
  }
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
  // The backup is a data directory: its file bytes go where they are in this one, relative to it.
  const filesDir = path.relative(config.dataDir, config.files.dir);
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

/** Waits for SIGINT or SIGTERM, then shuts down gracefully: stop taking work, hand back runs in flight, close. */
function untilSignal(logger: Logger, close: () => Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info(`${signal} received, shutting down`);
      close().then(resolve, resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError) process.stderr.write(`assistd: invalid setting ${error.message}\n`);
    else if (error instanceof ModelLoadError)
      process.stderr.write(`assistd: cannot load the model of ${error.setting}: ${error.message}\n`);
    else if (error instanceof Error && 'code' in error && (error.code === 'EADDRINUSE' || error.code === 'EACCES'))
      process.stderr.write(`assistd: cannot listen (HOST/PORT): ${error.message}\n`);
    else process.stderr.write(`assistd: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
