import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { buildApp } from './api/app.ts';
import { type Config, ConfigError } from './config.ts';
import { FileService } from './files/file-service.ts';
import { FileSweeper } from './files/file-sweeper.ts';
import { Metrics } from './metrics/metrics.ts';
import type { Embedder } from './providers/embedder.ts';
import { openEmbedder } from './providers/embedders.ts';
import { createModelRouter, type ModelRouter } from './providers/model-router.ts';
import { RunEventBus } from './runs/run-event-bus.ts';
import { RunExecutor } from './runs/run-executor.ts';
import { RunService } from './runs/run-service.ts';
import { TurnGate } from './runs/turn-gate.ts';
import { SandboxPool } from './sandbox/sandbox-pool.ts';
import type { BlobStore } from './storage/blobs/blob-store.ts';
import { DirectoryBlobStore } from './storage/blobs/directory-blob-store.ts';
import { openStore } from './storage/open-store.ts';
import { StorageFull, type Store } from './storage/store.ts';
import { codeInterpreterBackend } from './tools/code-interpreter/code-interpreter-backend.ts';
import { codeInterpreterTool } from './tools/code-interpreter/code-interpreter-tool.ts';
import { fileSearchTool } from './tools/file-search/file-search-tool.ts';
import { vectorStoreBackend } from './tools/file-search/vector-store-backend.ts';
import { type ServerTool, ToolRegistry } from './tools/tool.ts';
import { ThreadIndexer } from './vector-stores/indexer.ts';
import { VectorStoreService } from './vector-stores/vector-store-service.ts';
import { IngestionWorker } from './worker/ingestion-worker.ts';
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

/** `destination`: where lines go (default stdout); a test captures them. */
export function createLogger(config: Pick<Config, 'logLevel'>, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level: config.logLevel,
    base: { name: 'assistd' },
    // Request lines are our own (app.ts) and hold no header; what else logs a request's headers has its key censored:
    // @fastify/multipart logs them at trace, as `busboyOptions.headers`. Any object one or two levels down.
    redact: {
      paths: ['authorization', 'api-key'].flatMap((header) => [
        `headers["${header}"]`,
        `*.headers["${header}"]`,
        `*.*.headers["${header}"]`,
      ]),
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}

interface Core {
  store: Store;
  router: ModelRouter;
  bus: RunEventBus;
  worker: RunWorker;
  runs: RunService;
  files: FileService;
  sweeper: FileSweeper;
  vectorStores: VectorStoreService;
  ingestion: IngestionWorker;
  embedder: Embedder | undefined;
  /** code_interpreter's sessions; probed and used only by a process that executes runs. */
  sandbox: SandboxPool;
  metrics: Metrics;
}

function openBlobStore(config: Config, store: Store): BlobStore {
  return config.files.storage === 'directory' ? new DirectoryBlobStore(config.files.dir) : store.databaseBlobs();
}

/**
 * Before any request, what file bytes need: where they are written can be written (a folder of another user would
 * fail every upload while /healthz said ok), the bytes there are this database's (else the orphan sweep would
 * delete them all: DirectoryBlobStore.belongTo), and this SQLite database's files have their bytes there
 * (backup.ts).
 */
async function checkFileStorage(config: Config, store: Store, blobs: BlobStore): Promise<void> {
  if (blobs instanceof DirectoryBlobStore) {
    await proveWritable(blobs, config.files.dir);
    const another = await blobs.belongTo(await store.databaseId(), store.createdNow, (ids) =>
      store.files.rowStates(ids),
    );
    if (another !== undefined)
      throw new ConfigError(
        config.storage.kind === 'sqlite' ? 'ASSISTD_DATA_DIR' : 'ASSISTD_DATABASE_URL',
        `${config.files.dir} is not this database's: ${another} (their database was lost, moved, or is not the ` +
          'one named), and starting would delete them as leftovers. Restore their database, or move ' +
          `${config.files.dir} away to start afresh.`,
      );
  }
  if (config.storage.kind !== 'sqlite') return;
  const { fileBytesMissing } = await import('./storage/backup.ts');
  const missing = await fileBytesMissing(config.storage.dataDir, blobs);
  // Bytes missing from a directory: most likely the data directory was restored without its files/ folder.
  if (missing !== undefined)
    throw new ConfigError(config.files.storage === 'directory' ? 'ASSISTD_DATA_DIR' : 'ASSISTD_FILE_STORAGE', missing);
}

/**
 * An empty file written and deleted as an upload's bytes are. A crash in between leaves an orphan the sweep removes;
 * and the sweep of another process starting on the same directory may remove the probe under it (it has no row),
 * which fails its write with ENOENT: tried again then, the race is not lost three times running.
 */
async function proveWritable(blobs: BlobStore, dir: string, attempts = 3): Promise<void> {
  const probe = `startup-check-${randomBytes(9).toString('hex')}`;
  try {
    await blobs.write(probe, (async function* nothing() {})());
    await blobs.delete(probe);
  } catch (error) {
    // A full disk is no setting to fix: the server starts, and answers uploads that it is full.
    if (error instanceof StorageFull) return;
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && attempts > 1)
      return proveWritable(blobs, dir, attempts - 1);
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(
      'ASSISTD_DATA_DIR',
      `cannot write files in ${dir} (${reason}): the server's user must be able to write it and the folders in it.`,
    );
  }
}

/**
 * What every process role shares: the store, the bus (with the database's signals between processes), and a run
 * worker — which claims runs only when `claimRuns` (serve, worker), and otherwise just executes the streamed runs
 * this process adopts (serve --no-workers).
 */
async function startCore(config: Config, logger: Logger, claimRuns: boolean, toolList: ServerTool[]): Promise<Core> {
  // Models first: a GGUF file that cannot be loaded stops startup before anything else is opened.
  const metrics = new Metrics();
  const router = await createModelRouter(config.models, logger, metrics);
  let embedder: Embedder | undefined;
  let store: Store | undefined;
  let blobs: BlobStore;
  try {
    embedder = await openEmbedder(config.models.embeddings, { logger, maxRetries: config.runs.maxRetries });
    store = await openStore(config.storage, { onMigrationWait: (message) => logger.warn(message) });
    blobs = openBlobStore(config, store);
    await checkFileStorage(config, store, blobs);
  } catch (error) {
    await store?.close();
    await embedder?.close();
    await router.close();
    metrics.close();
    throw error;
  }
  if (store.poolUse) metrics.watchPool(() => store.poolUse!());
  logEmbeddings(logger, config, embedder);
  const bus = new RunEventBus({ signals: store.signals, findRun: (runId) => store.findRun(runId), metrics });
  // A run ended with queued runs behind it: the next may start, and a worker here or elsewhere should claim it now.
  store.onWaitingRunsFreed(() => bus.workAvailable());
  const files = new FileService({
    records: store.files,
    blobs,
    maxBytes: config.files.maxBytes,
    leaseMs: config.runs.leaseMs,
    logger,
  });
  const sweeper = new FileSweeper({ records: store.files, blobs, logger, intervalMs: config.runs.leaseMs });
  const threads = claimRuns ? config.files.indexingThreads : 0;
  const ingestion = new IngestionWorker({
    records: store.vectorStores,
    readFile: (scope, id) => files.readAll(scope, id),
    indexer: new ThreadIndexer(threads, { memoryBudgetBytes: config.files.indexingMemoryBytes }),
    embedder,
    logger,
    // Two files per thread: one is read or committed while the other is extracted.
    concurrency: threads * 2,
    leaseMs: config.runs.leaseMs,
  });
  const vectorStores = new VectorStoreService({
    records: store.vectorStores,
    wake: () => ingestion.wake(),
    embedder,
    logger,
  });
  const sandbox = new SandboxPool(config.sandbox, logger);
  // A deleted thread's session (code_interpreter's key is the thread id) would keep its variables and /mnt/data
  // files, and a place in the pool, until it idled out.
  bus.onThreadDeleted((threadId) => void sandbox.closeSession(threadId, 'thread deleted'));
  const builtIn = [
    fileSearchTool({ backend: vectorStoreBackend({ store, vectorStores }) }),
    codeInterpreterTool({
      sandbox,
      backend: codeInterpreterBackend({ store, files }),
      logger,
      cellTimeoutMs: config.sandbox.cellTimeoutMs,
      maxFileBytes: config.files.maxBytes,
      sandboxFileBytes: config.sandbox.maxFileBytes,
    }),
  ];
  // A tool given by the caller (a test's) replaces the built-in one of its type.
  const tools = new ToolRegistry([
    ...builtIn.filter((tool) => !toolList.some((given) => given.type === tool.type)),
    ...toolList,
  ]);
  // One gate for both: runs' creations and their turns' beginnings and ends take turns with each other (turn-gate.ts).
  const gate = new TurnGate();
  const worker = new RunWorker({
    store,
    bus,
    logger,
    concurrency: claimRuns ? config.runs.workerConcurrency : 0,
    leaseMs: config.runs.leaseMs,
    metrics,
    executor: new RunExecutor({
      store,
      bus,
      logger,
      router,
      tools,
      files,
      maxRetries: config.runs.maxRetries,
      maxToolRounds: config.runs.maxToolRounds,
      leaseMs: config.runs.leaseMs,
      gate,
    }),
  });
  const runs = new RunService({
    store,
    bus,
    tools,
    expiresAfterSeconds: config.runs.expiresAfterSeconds,
    local: worker,
    gate,
  });
  if (config.models.routes.size === 0 && !config.models.fallback)
    logger.warn(
      'No model backend is configured (ASSISTD_UPSTREAM_BASE_URL, ASSISTD_MODEL_FILE or ASSISTD_MODELS_FILE): runs will fail.',
    );
  // The probe runs in the background: startup does not wait for it, and says what it found when it is done. An
  // API-only process (serve --no-workers) probes too: it executes the runs it streams, code included.
  void sandbox.start();
  return { store, router, bus, worker, runs, files, sweeper, vectorStores, ingestion, embedder, sandbox, metrics };
}

/** Said once at startup: how vector stores are searched. */
function logEmbeddings(logger: Logger, config: Config, embedder: Embedder | undefined): void {
  const embeddings = config.models.embeddings;
  if (!embedder || !embeddings)
    logger.info(
      { ranking: 'keyword' },
      'No embedding model is configured (ASSISTD_EMBEDDINGS_MODEL, ASSISTD_EMBEDDINGS_MODEL_FILE or embeddings in ASSISTD_MODELS_FILE): vector stores are searched by keywords only.',
    );
  else
    logger.info(
      {
        ranking: 'hybrid',
        model: embedder.model,
        via: embeddings.type === 'gguf' ? embeddings.path : embeddings.baseUrl,
      },
      `Embedding model ${embedder.model}: vector stores embedded with it are searched by keywords and vectors (hybrid).`,
    );
}

export interface ServerOptions {
  /** Claim and execute queued runs here (`assistd serve`); false for an API-only process (`--no-workers`). */
  workers?: boolean;
  /** The server-side tools runs may use (src/tools). */
  tools?: ServerTool[];
}

/** How long a closing server waits for the requests in flight before it closes their connections. */
const CLOSE_GRACE_MS = 2_000;

/** `assistd serve`: the HTTP API, and (unless `workers: false`) workers executing runs. */
export async function startServer(
  config: Config,
  logger: Logger = createLogger(config),
  { workers = true, tools = [] }: ServerOptions = {},
): Promise<RunningServer> {
  const { store, router, bus, worker, runs, files, sweeper, vectorStores, ingestion, embedder, sandbox, metrics } =
    await startCore(config, logger, workers, tools);
  const closing = new AbortController();
  // Every open stream and held poll listens for the close, each while it lasts: thousands at once are expected.
  setMaxListeners(0, closing.signal);
  const app = buildApp({
    store,
    runs,
    bus,
    models: router,
    passThrough: config.passThrough ? { models: router, embedder } : undefined,
    files,
    vectorStores,
    closing: closing.signal,
    apiKey: config.apiKey,
    adminKey: config.adminKey,
    rateLimits: config.rateLimits,
    logger,
    metrics,
    logRequests: config.logRequests,
    corsOrigins: config.corsOrigins,
    stream: config.stream,
    bodyTimeoutMs: config.bodyTimeoutMs,
    queueRuns: config.runs.queue,
    health: () => ({ code_interpreter: codeInterpreterHealth(sandbox) }),
  });
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await store.close();
    await embedder?.close();
    await router.close();
    metrics.close();
    throw error;
  }
  worker.start();
  sweeper.start();
  ingestion.start();
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  logger.info({ url, store: store.description, workers }, `assistd listening on ${url}/v1`);
  if (config.apiKey === undefined && config.adminKey === undefined)
    logger.warn(
      'Neither ASSISTD_API_KEY nor ASSISTD_ADMIN_KEY is set: requests need no API key. Set one before exposing the server.',
    );

  let shutdown: Promise<void> | undefined;
  return {
    url,
    app,
    store,
    close: () => {
      shutdown ??= (async () => {
        closing.abort();
        // Requests in flight get a grace period to finish; then whatever connection is still open is closed, idle
        // or not (a keep-alive connection Node still counts as busy would otherwise hold the close for 72 s).
        const grace = setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS);
        await app.close();
        clearTimeout(grace);
        // Executions in flight are stopped and their runs handed back: another worker or the next start resumes them.
        await worker.close();
        await sandbox.close();
        await ingestion.close();
        await sweeper.close();
        await store.close();
        await embedder?.close();
        await router.close();
        metrics.close();
      })();
      return shutdown;
    },
  };
}

/** `/healthz`'s word on code_interpreter in this process. */
function codeInterpreterHealth(sandbox: SandboxPool): Record<string, unknown> {
  const status = sandbox.status;
  if (!status) return { available: false, reason: 'the sandbox is still being probed' };
  return status.available ? { available: true } : { available: false, reason: status.reason };
}

/** `assistd worker`: executes runs, serves no HTTP. */
export async function startWorker(
  config: Config,
  logger: Logger = createLogger(config),
  { tools = [] }: Pick<ServerOptions, 'tools'> = {},
): Promise<{ close(): Promise<void> }> {
  const { store, router, worker, sweeper, ingestion, embedder, sandbox, metrics } = await startCore(
    config,
    logger,
    true,
    tools,
  );
  worker.start();
  sweeper.start();
  ingestion.start();
  logger.info(
    { worker: worker.id, store: store.description, concurrency: config.runs.workerConcurrency },
    `assistd worker ${worker.id} running`,
  );
  let shutdown: Promise<void> | undefined;
  return {
    close: () => {
      shutdown ??= (async () => {
        await worker.close();
        await sandbox.close();
        await ingestion.close();
        await sweeper.close();
        await store.close();
        await embedder?.close();
        await router.close();
        metrics.close();
      })();
      return shutdown;
    },
  };
}
