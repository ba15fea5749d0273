#!/usr/bin/env node
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { ConfigError, loadConfig, SETTINGS } from './config.ts';
import { createLogger, startServer, startWorker } from './main.ts';
import { ModelLoadError } from './providers/model-router.ts';
import { openStore } from './storage/open-store.ts';

const HELP = `assistd — a self-hosted server for the OpenAI Assistants API v2

Usage:
  assistd [serve]               the HTTP API and workers executing runs (the default command)
  assistd serve --no-workers    the HTTP API only (streamed runs still execute where their stream is)
  assistd worker                workers only, no HTTP (several processes on one PostgreSQL database)
  assistd migrate               bring the database schema up to date, then exit
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
    default:
      process.stderr.write(`assistd: unknown command '${command}'\n\n${HELP}`);
      return 2;
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
