import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import multipart from '@fastify/multipart';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, LogController } from 'fastify';
import type { Logger } from 'pino';
import { ApiError } from '../domain/errors.ts';
import { newId } from '../domain/ids.ts';
import type { FileService } from '../files/file-service.ts';
import type { RunEventBus } from '../runs/run-event-bus.ts';
import type { RunService } from '../runs/run-service.ts';
import { DEFAULT_SCOPE, type Scope, type Store } from '../storage/store.ts';
import type { VectorStoreService } from '../vector-stores/vector-store-service.ts';
import { registerAssistantRoutes } from './routes/assistants.ts';
import { registerFileRoutes } from './routes/files.ts';
import { registerMessageRoutes } from './routes/messages.ts';
import { type ModelCatalog, registerModelRoutes } from './routes/models.ts';
import { registerRunRoutes } from './routes/runs.ts';
import { registerThreadRoutes } from './routes/threads.ts';
import { registerVectorStoreRoutes } from './routes/vector-stores.ts';
import { ToolResourceHelpers } from './tool-resources.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The project every object of this request belongs to. */
    scope: Scope;
  }
}

/**
 * Request ids only need to be unique, not unguessable: a random prefix per process and a counter, which costs
 * nothing per request (object ids use newId's 142 random bits).
 */
const REQUEST_ID_PREFIX = `${newId('request')}`.slice(0, 16);
let requestCounter = 0;
function nextRequestId(): string {
  requestCounter += 1;
  return `${REQUEST_ID_PREFIX}${requestCounter.toString(36).padStart(8, '0')}`;
}

/** Large enough for 256,000-character instructions or messages in any script; larger bodies get a 413. */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;

export interface AppOptions {
  store: Store;
  runs: RunService;
  bus: RunEventBus;
  models: ModelCatalog;
  files: FileService;
  vectorStores: VectorStoreService;
  /** Aborted when the server starts shutting down. */
  closing: AbortSignal;
  /** When set, every /v1 (or /openai) request must carry `Authorization: Bearer <apiKey>` or `api-key: <apiKey>`. */
  apiKey: string | undefined;
  logger: Logger;
  /** What `/healthz` reports besides `status: ok` (e.g. whether code_interpreter can run code here). */
  health?: () => Record<string, unknown>;
}

export function buildApp({
  store,
  runs,
  bus,
  models,
  files,
  vectorStores,
  closing,
  apiKey,
  logger,
  health,
}: AppOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger,
    // Per-request log lines cost more than the requests themselves; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: MAX_BODY_BYTES,
    genReqId: nextRequestId,
    requestIdHeader: false,
    routerOptions: { ignoreTrailingSlash: true },
    rewriteUrl: (request) => azurePathToV1(request.url ?? '/'),
  }) as unknown as FastifyInstance;

  // Until API keys map to projects, every request works in the default project.
  app.decorateRequest('scope', { getter: () => DEFAULT_SCOPE });
  acceptJsonBodies(app);
  acceptMultipartUploads(app);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    // request.url is the rewritten one: /openai paths are /v1 paths here, and need the key as well.
    if (apiKey !== undefined && request.url.startsWith('/v1')) checkApiKey(apiKey, request.headers);
  });
  app.setErrorHandler((error, request, reply) => sendError(reply, toApiError(error, request.log)));
  handleUnknownRoutes(app);

  app.get('/healthz', async () => ({ status: 'ok', ...health?.() }));
  const helpers = new ToolResourceHelpers(store, vectorStores);
  registerAssistantRoutes(app, store, files, helpers);
  registerThreadRoutes(app, store, files, helpers);
  registerMessageRoutes(app, store, files, helpers);
  registerRunRoutes(app, { store, runs, bus, files, helpers, closing });
  registerModelRoutes(app, models);
  registerFileRoutes(app, files);
  registerVectorStoreRoutes(app, vectorStores);
  return app;
}

/**
 * Azure OpenAI clients (`new AzureOpenAI({ endpoint })` in the official SDKs) send every /v1 path with /openai in its
 * place, e.g. `/openai/threads/{id}/runs?api-version=2024-05-01-preview`. Rewriting the URL before routing serves
 * them with the /v1 routes as they are, with no second registration of anything; a /v1 request pays one
 * `startsWith`. Handlers and hooks see the /v1 URL; `request.originalUrl` keeps what the client sent, for messages.
 * `api-version` is left in the query: no route rejects query parameters it does not know.
 */
function azurePathToV1(url: string): string {
  // Only the whole segment (`/openai`, `/openai/…`, `/openai?…`), not `/openaix`.
  return url.startsWith('/openai') && /^\/openai(?:[/?]|$)/.test(url) ? `/v1${url.slice('/openai'.length)}` : url;
}

/** The routes that take a multipart/form-data body; every other route takes JSON. */
const MULTIPART_ROUTES = new Set(['POST /v1/files']);

/**
 * Multipart bodies are streamed by @fastify/multipart (request.parts()), never buffered: only the upload routes
 * read them. Anywhere else a multipart body is a 415 before the handler runs, rather than an empty JSON body.
 */
function acceptMultipartUploads(app: FastifyInstance): void {
  void app.register(multipart);
  app.addHook('preValidation', async (request) => {
    if (request.isMultipart() && !MULTIPART_ROUTES.has(`${request.method} ${request.routeOptions.url}`))
      throw new ApiError(
        415,
        `Invalid Content-Type header (multipart/form-data): ${request.method} ${request.routeOptions.url ?? request.url} takes a JSON body.`,
        { code: 'unsupported_content_type' },
      );
  });
}

/**
 * Bodies are parsed as JSON whatever their content type, so `curl -d '{…}'` (form-encoded by default) works as it
 * does upstream; an empty body is an empty object, as the SDK sends none for some POSTs.
 */
function acceptJsonBodies(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    const text = body as string;
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch {
      done(
        new ApiError(
          400,
          'We could not parse the JSON body of your request. The server expects a JSON payload, but what was sent was not valid JSON.',
        ),
        undefined,
      );
    }
  });
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/**
 * The key a request presents: a Bearer token (OpenAI clients), else an `api-key` header (Azure OpenAI clients, which
 * send no Authorization header). A request with a Bearer token is judged on it alone, exactly as before `api-key` was
 * accepted; a blank `api-key` counts as none.
 */
function presentedApiKey(headers: IncomingHttpHeaders): string | undefined {
  const bearer = headers.authorization?.match(/^Bearer\s+(.+)$/i);
  if (bearer) return bearer[1]!.trim();
  const azure = headers['api-key'];
  return typeof azure === 'string' && azure.trim() !== '' ? azure.trim() : undefined;
}

function checkApiKey(expected: string, headers: IncomingHttpHeaders): void {
  const given = presentedApiKey(headers);
  if (given === undefined)
    throw new ApiError(
      401,
      "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
      { code: 'invalid_api_key' },
    );
  // Compare digests: constant time, and equal lengths whatever the key given.
  if (!timingSafeEqual(digest(given), digest(expected)))
    throw new ApiError(401, `Incorrect API key provided: ${maskKey(given)}.`, { code: 'invalid_api_key' });
}

function maskKey(key: string): string {
  return key.length <= 8 ? '*'.repeat(key.length) : `${key.slice(0, 3)}${'*'.repeat(key.length - 7)}${key.slice(-4)}`;
}

/** An unknown path is a 404 `Invalid URL (…)`, as upstream; a known path with the wrong method is a 405. */
function handleUnknownRoutes(app: FastifyInstance): void {
  const routes: Array<{ method: string; pattern: RegExp }> = [];
  app.addHook('onRoute', (route) => {
    const pattern = new RegExp(`^${route.url.replace(/:[^/]+/g, '[^/]+')}/?$`);
    for (const method of [route.method].flat()) routes.push({ method, pattern });
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? request.url;
    // The path as the client sent it (`/openai/…` for an Azure client), not as routed.
    const sent = request.originalUrl.split('?')[0] ?? request.originalUrl;
    const allowed = [...new Set(routes.filter((r) => r.pattern.test(path)).map((r) => r.method))];
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      return sendError(
        reply,
        new ApiError(405, `Method ${request.method} is not allowed for ${sent}. Allowed: ${allowed.join(', ')}.`, {
          code: 'method_not_allowed',
        }),
      );
    }
    return sendError(reply, new ApiError(404, `Invalid URL (${request.method} ${sent})`));
  });
}

function toApiError(error: unknown, log: Logger | FastifyInstance['log']): ApiError {
  if (error instanceof ApiError) return error;
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return new ApiError(413, `Request body too large: the limit is ${MAX_BODY_BYTES} bytes.`, {
      code: 'request_too_large',
    });
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500)
    return new ApiError(status, fastifyError.message ?? 'Bad request.');
  log.error({ err: error }, 'unexpected error while handling a request');
  return new ApiError(500, 'The server had an error while processing your request. Sorry about that!', {
    type: 'server_error',
  });
}

export function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  return reply
    .code(error.status)
    .send({ error: { message: error.message, type: error.type, param: error.param, code: error.code } });
}
