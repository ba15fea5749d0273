import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { buildApp } from './api/app.ts';
import type { Config } from './config.ts';
import { openStore } from './storage/open-store.ts';
import type { Store } from './storage/store.ts';

/** The composition root: config → store → HTTP server. Nothing else decides which implementation is used. */
export interface RunningServer {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly store: Store;
  close(): Promise<void>;
}

export function createLogger(config: Pick<Config, 'logLevel'>): Logger {
  return pino({ level: config.logLevel, base: { name: 'assistd' } });
}

export async function startServer(config: Config, logger: Logger = createLogger(config)): Promise<RunningServer> {
  const store = await openStore(config.storage);
  const app = buildApp({ store, apiKey: config.apiKey, logger });
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await store.close();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  logger.info({ url, store: store.description }, `assistd listening on ${url}/v1`);
  if (config.apiKey === undefined)
    logger.warn('ASSISTD_API_KEY is not set: requests need no API key. Set it before exposing the server.');

  let closing: Promise<void> | undefined;
  return {
    url,
    app,
    store,
    close: () => {
      closing ??= (async () => {
        await app.close();
        await store.close();
      })();
      return closing;
    },
  };
}
