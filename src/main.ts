import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { buildApp } from './api/app.ts';
import type { Config } from './config.ts';
import { createModelRouter } from './providers/model-router.ts';
import { RunEventBus } from './runs/run-event-bus.ts';
import { RunExecutor } from './runs/run-executor.ts';
import { RunService } from './runs/run-service.ts';
import { openStore } from './storage/open-store.ts';
import type { Store } from './storage/store.ts';
import { RunWorker } from './worker/run-worker.ts';

/**
 * The composition root: config → store, event bus, model router → HTTP server and run workers. Nothing else decides
 * which implementation is used.
 */
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
  const bus = new RunEventBus();
  const runs = new RunService({ store, bus, expiresAfterSeconds: config.runs.expiresAfterSeconds });
  const closing = new AbortController();
  const app = buildApp({ store, runs, bus, closing: closing.signal, apiKey: config.apiKey, logger });
  const worker =
    config.runs.workerConcurrency > 0
      ? new RunWorker({
          store,
          bus,
          logger,
          concurrency: config.runs.workerConcurrency,
          leaseMs: config.runs.leaseMs,
          executor: new RunExecutor({
            store,
            bus,
            logger,
            router: createModelRouter(config.upstream),
            contextWindow: config.runs.contextWindow,
            maxRetries: config.runs.maxRetries,
          }),
        })
      : undefined;
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await store.close();
    throw error;
  }
  worker?.start();
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  logger.info({ url, store: store.description }, `assistd listening on ${url}/v1`);
  if (!config.upstream)
    logger.warn('ASSISTD_UPSTREAM_BASE_URL is not set: runs will fail until a model backend is configured.');
  if (config.apiKey === undefined)
    logger.warn('ASSISTD_API_KEY is not set: requests need no API key. Set it before exposing the server.');

  let shutdown: Promise<void> | undefined;
  return {
    url,
    app,
    store,
    close: () => {
      shutdown ??= (async () => {
        closing.abort();
        await app.close();
        // Executions in flight are stopped and their runs handed back: the next start picks them up.
        await worker?.close();
        await store.close();
      })();
      return shutdown;
    },
  };
}
