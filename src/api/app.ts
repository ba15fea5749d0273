import { isUtf8 } from 'node:buffer';
import { type IncomingHttpHeaders, maxHeaderSize, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import multipart from '@fastify/multipart';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import { ApiError } from '../domain/errors.ts';
import { newId } from '../domain/ids.ts';
import type { FileService } from '../files/file-service.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { registerMetricsRoute } from '../metrics/metrics-route.ts';
import type { RunEventBus } from '../runs/run-event-bus.ts';
import type { RunService } from '../runs/run-service.ts';
import { DatabaseUnavailable, type Scope, StorageFull, type Store } from '../storage/store.ts';
import { Authenticator } from '../tenancy/authenticator.ts';
import { ProjectService } from '../tenancy/project-service.ts';
import type { VectorStoreService } from '../vector-stores/vector-store-service.ts';
import { isDiscarding } from './discard.ts';
import { PASSED_THROUGH_FORMS, PASSED_THROUGH_SEGMENTS, passedThroughRoutes } from './passed-through-paths.ts';
import { type RateLimitSettings, RateLimits } from './rate-limits.ts';
import { registerAssistantRoutes } from './routes/assistants.ts';
import { registerFileRoutes } from './routes/files.ts';
import { registerMessageRoutes } from './routes/messages.ts';
import { type ModelCatalog, registerModelRoutes } from './routes/models.ts';
import { registerOpenApiRoute } from './routes/openapi.ts';
import { registerOrganizationRoutes } from './routes/organization.ts';
import { type PassThroughTargets, registerPassThroughRoutes } from './routes/pass-through.ts';
import { registerPlaygroundRoutes } from './routes/playground.ts';
import { registerRunRoutes } from './routes/runs.ts';
import { registerThreadRoutes } from './routes/threads.ts';
import { registerVectorStoreRoutes } from './routes/vector-stores.ts';
import { DEFAULT_STREAM_SETTINGS, type StreamSettings } from './sse.ts';
import { ToolResourceHelpers } from './tool-resources.ts';
import { formatPath } from './validation.ts';

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
  /**
   * ASSISTD_API_KEY: the key of the default project. When it or `adminKey` is set, every /v1 (or /openai) request
   * must carry a key (`Authorization: Bearer <key>` or `api-key: <key>`): this one, a project's, or the admin key.
   */
  apiKey: string | undefined;
  /** ASSISTD_ADMIN_KEY: the key of the admin API (/v1/organization/…), and of nothing else. */
  adminKey?: string | undefined;
  /** ASSISTD_RATE_LIMIT_RPM / _TPM: per project key (rate-limits.ts). */
  rateLimits?: RateLimitSettings;
  logger: Logger;
  /** Served at `/metrics`, and fed by every response. */
  metrics?: Metrics;
  /** One info line per response (request id, route, status, time): ASSISTD_LOG_REQUESTS. */
  logRequests?: boolean;
  /** What `/healthz` reports besides `status: ok` (e.g. whether code_interpreter can run code here). */
  health?: () => Record<string, unknown>;
  /** ASSISTD_STREAM_BUFFER_KB and ASSISTD_STREAM_KEEPALIVE_S (sse.ts). */
  stream?: StreamSettings;
  /** ASSISTD_BODY_TIMEOUT_S, in ms (dropStalledBodies). */
  bodyTimeoutMs?: number;
  /** ASSISTD_QUEUE_RUNS: runs and messages queue on a busy thread unless `x-assistd-queue: false` (queue-header.ts). */
  queueRuns?: boolean;
  /** ASSISTD_CORS_ORIGINS: the web origins whose pages may call the API from a browser. */
  corsOrigins?: 'none' | '*' | string[];
  /** Where chat completions, embeddings and OpenAI's other endpoints are passed on to (pass-through.ts). */
  passThrough?: PassThroughTargets;
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
  adminKey,
  rateLimits = {},
  logger,
  metrics,
  logRequests = false,
  health,
  stream = DEFAULT_STREAM_SETTINGS,
  bodyTimeoutMs = DEFAULT_BODY_TIMEOUT_MS,
  queueRuns = false,
  corsOrigins = 'none',
  passThrough,
}: AppOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger,
    // Fastify's two lines per request (with the request's headers) are replaced by one of ours (logResponses).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: MAX_BODY_BYTES,
    genReqId: nextRequestId,
    requestIdHeader: false,
    routerOptions: {
      ignoreTrailingSlash: true,
      // Fastify's default (100 characters) guards regex parameters, which no route here has, and answered a longer
      // id with its own 414 before any route ran. Any id that fits in a request line now reaches its route and is
      // answered as every unknown id is (404 `No thread found with id '…'`): no id this server issues is that long.
      maxParamLength: maxHeaderSize,
    },
    rewriteUrl: (request) => pathToV1(request.url ?? '/'),
    // What the router refuses before any route or hook runs (a path that is not valid percent-encoding).
    frameworkErrors: (error, request, reply) => {
      void reply.headers(everyAnswerHeaders(request.id));
      // The path as the client sent it (`/openai/…`, `/threads/…`), not as rewritten.
      sendError(reply, routingError(error, request.method, request.originalUrl));
    },
    // What Node's HTTP parser refuses before Fastify sees a request (a request line and headers over maxHeaderSize).
    clientErrorHandler: (error, socket) => {
      const answered = answerClientError(error, socket);
      if (answered === undefined) return;
      const { status, requestId } = answered;
      // Logged and counted as every other answer, under the route 'unparsed': there is no method or path to name.
      metrics?.httpResponse('unparsed', 'unparsed', status, 0);
      if (logRequests) logger.info({ reqId: requestId, route: 'unparsed', status, err: error.message }, 'request');
    },
  }) as unknown as FastifyInstance;

  const authenticator = new Authenticator({
    projects: store.projects,
    apiKey,
    adminKey,
    onTouchError: (error) => logger.warn({ err: error }, "could not record an API key's last use"),
  });
  app.decorateRequest('scope', DEFAULT_SCOPE_PLACEHOLDER);
  const limits = new RateLimits(rateLimits, (scope, since) => store.tokensUsedSince(scope, since));
  // First of the hooks: every answer carries them, those of the hooks that answer early (a CORS preflight) too.
  app.addHook('onRequest', (request, reply, done) => {
    reply.headers(everyAnswerHeaders(request.id));
    done();
  });
  allowOrigins(app, corsOrigins);
  dropStalledBodies(app, bodyTimeoutMs);
  acceptJsonBodies(app);
  acceptMultipartUploads(app);
  app.addHook('onRequest', async (request, reply) => {
    const area = areaOf(request);
    await authorize(authenticator, request, area);
    // A project's request (the admin API and /metrics are not limited).
    if (limits.active && request.scope && area === 'project') await limits.admit(request, reply);
    // `%00` is the only way a URL can carry a NUL (Node's parser refuses a raw one).
    if (request.url.includes('%00')) throw nulCharacter(`URL (${request.method} ${request.originalUrl})`);
  });
  observeResponses(app, metrics, logRequests);
  closeUnfinishedConnections(app, closing);
  app.setErrorHandler((error, request, reply) => {
    if (error instanceof StorageFull) {
      request.log.error({ err: error.message }, 'a request failed: no room left to store');
      return sendError(
        reply,
        new ApiError(507, 'The server has no room left to store this at the moment; try again later.', {
          type: 'server_error',
          code: 'storage_full',
        }),
      );
    }
    if (!(error instanceof DatabaseUnavailable)) return sendError(reply, toApiError(error, request.log));
    request.log.warn({ err: error.message }, 'a request failed: the database is unavailable');
    // The SDKs wait as long before they try again (their own backoff is shorter than a database restart).
    reply.header('retry-after', '1');
    return sendError(
      reply,
      new ApiError(503, 'The database is unavailable at the moment; try again shortly.', {
        type: 'server_error',
        code: 'database_unavailable',
      }),
    );
  });
  handleUnknownRoutes(app);

  app.get('/healthz', async (request, reply) => {
    const problem = await databaseProblem(store);
    if (problem === undefined) return { status: 'ok', ...health?.() };
    // The reason is the operator's (the log's): this route needs no key.
    request.log.warn({ err: problem }, '/healthz: the database does not answer');
    return reply.code(503).send({ status: 'unavailable', reason: 'the database does not answer' });
  });
  if (metrics) registerMetricsRoute(app, metrics);
  const helpers = new ToolResourceHelpers(store, vectorStores);
  registerAssistantRoutes(app, store, files, helpers, models);
  registerThreadRoutes(app, store, files, helpers, bus);
  registerMessageRoutes(app, store, bus, files, helpers, queueRuns);
  registerRunRoutes(app, { store, runs, bus, files, helpers, closing, stream, queueRuns, models });
  registerModelRoutes(app, models);
  registerFileRoutes(app, files);
  registerVectorStoreRoutes(app, vectorStores);
  registerOrganizationRoutes(app, new ProjectService(store.projects));
  registerOpenApiRoute(app);
  registerPlaygroundRoutes(app);
  if (passThrough) registerPassThroughRoutes(app, passThrough);
  return app;
}

/**
 * Every scope is set by `authorize`; a request that reaches no route needing one (healthz, an unknown path) keeps
 * this. Fastify decorates requests with primitives only, and the default project's scope is a frozen object.
 */
const DEFAULT_SCOPE_PLACEHOLDER = null as unknown as Scope;

/** Which key a request needs: the admin API's, /metrics', a project's (the rest of /v1), or none. */
type Area = 'admin' | 'metrics' | 'project' | 'open';

/**
 * A request's area, by the route it matched: the route's template, since the router decodes the path (`/%761/…` is
 * routed to `/v1/…`, and `/v1/%6Frganization` to the admin API), and rewritten /openai paths are /v1 routes. A
 * request that matched no route (answered 404 or 405, no handler runs) by its URL, so an unknown /v1 path without a
 * key is a 401 as upstream.
 */
function areaOf(request: FastifyRequest): Area {
  const path = request.routeOptions.url ?? request.url;
  if (path.startsWith('/metrics')) return 'metrics';
  if (!path.startsWith('/v1')) return 'open';
  return /^\/v1\/organization(?:[/?]|$)/.test(path) ? 'admin' : 'project';
}

/**
 * Who may call what: the admin key opens the admin API and /metrics, and nothing else; a project's key (or
 * ASSISTD_API_KEY, the default project's) opens the rest of /v1 with that project's scope. /metrics is
 * server-wide, so no project key opens it, only ASSISTD_API_KEY (with no admin key, the one key of the server) and
 * the admin key. /healthz needs no key.
 */
async function authorize(authenticator: Authenticator, request: FastifyRequest, area: Area): Promise<void> {
  if (area === 'open') return;
  const isMetrics = area === 'metrics';
  if (isMetrics && authenticator.open) return;
  const caller = await authenticator.authenticate(presentedApiKey(request.headers));
  if (area === 'admin') {
    if (caller.kind !== 'admin')
      throw new ApiError(
        403,
        authenticator.hasAdminKey
          ? 'The admin API (/v1/organization/…) needs the admin key (ASSISTD_ADMIN_KEY); a project key cannot manage projects.'
          : 'The admin API (/v1/organization/…) is off: ASSISTD_ADMIN_KEY is not set. `assistd projects …` and `assistd keys …` manage projects without it.',
        { code: 'insufficient_permissions' },
      );
    return;
  }
  if (caller.kind === 'admin') {
    if (isMetrics) return;
    throw new ApiError(
      403,
      'The admin key opens only the admin API (/v1/organization/…) and /metrics: use a project API key here.',
      { code: 'insufficient_permissions' },
    );
  }
  if (isMetrics && caller.scope.keyId !== undefined)
    throw new ApiError(403, "A project key cannot read the server's metrics.", { code: 'insufficient_permissions' });
  request.scope = caller.scope;
}

const DEFAULT_BODY_TIMEOUT_MS = 60_000;

/** How long /healthz waits for the database: a pool that busy is as good as down to a load balancer. */
const HEALTH_DATABASE_TIMEOUT_MS = 5_000;

/**
 * Why the database cannot serve requests now, or undefined when it answered a trivial query: a process whose database
 * went away (a restarted PostgreSQL, revoked connections) is then reported unhealthy instead of answering every
 * request with a 500 behind an `ok`.
 */
async function databaseProblem(store: Store): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${HEALTH_DATABASE_TIMEOUT_MS} ms`)),
      HEALTH_DATABASE_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([store.ping(), timeout]);
    return undefined;
  } catch (error) {
    return error;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * CORS, for pages that call the API from a browser (the SDK's `dangerouslyAllowBrowser`), from the origins
 * ASSISTD_CORS_ORIGINS allows. Every answer to such an origin says so, errors and streams included (the hook runs
 * first, before authentication, and openSse writes the headers set here), so that a page reads a 401's message
 * rather than an opaque network failure; a preflight (`OPTIONS` with `access-control-request-method`, which carries
 * no credentials) is answered 204 here. The key still comes in a header, never a cookie: no credentials mode.
 */
function allowOrigins(app: FastifyInstance, origins: 'none' | '*' | string[]): void {
  if (origins === 'none') return;
  const allowed = (origin: string) => origins === '*' || origins.includes(origin);
  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin;
    if (origins !== '*') reply.header('vary', 'origin');
    if (origin === undefined || !allowed(origin)) return;
    reply.header('access-control-allow-origin', origins === '*' ? '*' : origin);
    reply.header('access-control-expose-headers', 'x-request-id, retry-after');
    const method = request.headers['access-control-request-method'];
    if (request.method !== 'OPTIONS' || method === undefined) return;
    reply.header('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS');
    const headers = request.headers['access-control-request-headers'];
    if (headers) reply.header('access-control-allow-headers', headers);
    reply.header('access-control-max-age', '86400');
    await reply.code(204).send();
  });
}

/**
 * A request whose body stops arriving for `idleMs` is answered 408 and its connection closed. Node and Fastify wait
 * for a body for ever: a client that sent part of one and went quiet held its buffer (up to the body limit), or an
 * upload's temporary file, row and lease, for as long as it kept the socket open. Only the body is timed — the
 * socket's idle timer runs from the request's headers to the body's end — so an answer may then take as long as it
 * takes (a held poll, a stream between two tokens, a search waiting for the embeddings endpoint). The 408 is
 * written to the socket as Node writes its own refusals, since the request is still Fastify's.
 */
function dropStalledBodies(app: FastifyInstance, idleMs: number): void {
  const body = JSON.stringify({
    error: {
      message: `The request body stopped arriving: nothing came for ${idleMs / 1000} s.`,
      type: 'invalid_request_error',
      param: null,
      code: 'request_timeout',
    },
  });
  const refusal =
    'HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
  app.addHook('onRequest', (request, reply, done) => {
    const req = request.raw;
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length']) > 0;
    if (hasBody && !req.complete) {
      const { socket } = req;
      // A 'timeout' listener on the request tells Node's own handler to leave the socket to it.
      const stalled = () => {
        if (reply.raw.headersSent) socket.destroy();
        else socket.end(refusal, () => socket.destroy());
      };
      const stop = () => {
        socket.setTimeout(0);
        req.off('timeout', stalled);
      };
      req.on('timeout', stalled);
      req.once('end', stop);
      req.once('close', stop);
      socket.setTimeout(idleMs);
    }
    done();
  });
}

/**
 * A response sent before its request's body was read (a 413, a 415 for a multipart body, a 401 before an upload)
 * closes the connection: Node would otherwise read and drop the rest of the body, up to gigabytes, to keep the
 * connection. Not when a route drops the rest itself, for a bounded time (`discardRest`): that connection ends once
 * the body has, and closing it under a client still sending would reset it before the client read the answer. So does every response once the server is closing: a keep-alive connection busy when the close began
 * would otherwise stay open, idle, until its keep-alive timeout (72 s), and delay the shutdown that long.
 */
function closeUnfinishedConnections(app: FastifyInstance, closing: AbortSignal): void {
  app.addHook('onSend', (request, reply, payload, done) => {
    if (closing.aborted || (!request.raw.complete && !isDiscarding(request.raw))) reply.header('connection', 'close');
    done(null, payload);
  });
}

/**
 * Every response, once it is sent (a stream's once it ends), in the HTTP metrics and, when `log`, in one log line:
 * the request id (the request logger's `reqId`), method, route template, status and time. The template, never the
 * URL: no query string, and one metrics series per route; and the id of the project key used, if any. Nothing else
 * of the request is logged — its headers hold the API key, its body whatever the client sent.
 */
function observeResponses(app: FastifyInstance, metrics: Metrics | undefined, log: boolean): void {
  if (!metrics && !log) return;
  const observed = new WeakSet<FastifyRequest>();
  const observe = (request: FastifyRequest, reply: FastifyReply, aborted: boolean) => {
    if (observed.has(request)) return;
    observed.add(request);
    const route = request.routeOptions.url ?? 'unmatched';
    // A client that left before any answer was sent: 499, as proxies count it.
    const status = aborted && !reply.raw.headersSent ? 499 : reply.statusCode;
    metrics?.httpResponse(request.method, route, status, reply.elapsedTime / 1000);
    // A project key by its id (`key_…`), never its value.
    if (log)
      request.log.info(
        {
          method: request.method,
          route,
          status,
          responseTime: reply.elapsedTime,
          key: request.scope?.keyId,
          ...(aborted ? { aborted: true } : {}),
        },
        'request',
      );
  };
  app.addHook('onResponse', (request, reply, done) => {
    observe(request, reply, false);
    done();
  });
  // A response whose connection closed before it was all written (a stream its client stopped following, a held poll
  // it gave up on): Fastify calls no onResponse for it.
  app.addHook('onRequest', (request, reply, done) => {
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) observe(request, reply, true);
    });
    done();
  });
}

/**
 * Two other spellings of the /v1 paths are served by the /v1 routes, the URL rewritten before routing (no second
 * registration of anything; a /v1 request pays one `startsWith`):
 * - Azure OpenAI clients (`new AzureOpenAI({ endpoint })` in the official SDKs) send every /v1 path with /openai in
 *   its place, e.g. `/openai/threads/{id}/runs?api-version=2024-05-01-preview`; `api-version` is left in the query
 *   (no route rejects query parameters it does not know). Azure's "v1 API" base URL, `…/openai/v1/`, is /v1 itself.
 * - A client whose base URL lacks `/v1` sends `/threads/…`: LiteLLM's assistants calls take the base URL as given,
 *   and its OpenAI pass-through adds `/v1` itself, so one base URL serves both only if both spellings work (as
 *   LiteLLM's own proxy serves them). Only the paths assistd serves are taken so (pass-through.ts's among them).
 * Slashes doubled in a path are taken as one, as OpenAI took them: programs join a base URL ending in `/` to paths
 * starting with one (`'https://api.openai.com/v1/' + '/threads'`).
 * Handlers and hooks see the /v1 URL; `request.originalUrl` keeps what the client sent, for messages.
 */
function pathToV1(sent: string): string {
  if (sent.startsWith('/v1/') && !sent.includes('//')) return sent;
  const query = sent.indexOf('?');
  const url =
    query === -1 ? sent.replace(/\/{2,}/g, '/') : sent.slice(0, query).replace(/\/{2,}/g, '/') + sent.slice(query);
  if (url.startsWith('/v1/')) return url;
  // Only whole segments (`/openai`, `/openai/…`, `/openai?…`), not `/openaix`.
  if (url.startsWith('/openai') && /^\/openai(?:[/?]|$)/.test(url)) {
    const rest = url.slice('/openai'.length);
    return /^\/v1(?:[/?]|$)/.test(rest) ? rest : `/v1${rest}`;
  }
  return UNVERSIONED.test(url) ? `/v1${url}` : url;
}

const UNVERSIONED = new RegExp(
  `^/(?:${['assistants', 'threads', 'files', 'vector_stores', 'models', ...PASSED_THROUGH_SEGMENTS].join('|')})(?:[/?]|$)`,
);

/** The routes that take a multipart/form-data body; every other route takes JSON. */
const MULTIPART_ROUTES = new Set([
  'POST /v1/files',
  ...PASSED_THROUGH_FORMS.flatMap(passedThroughRoutes).map((route) => `POST ${route}`),
]);

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
 * How deeply arrays and objects may nest in a JSON body. The deepest request a real client sends is a JSON Schema
 * (a function's `parameters`, `response_format.json_schema.schema`): OpenAI's structured outputs allow 10 levels
 * of schema nesting, two JSON levels each (`properties` → name → schema), plus the request's own 4 or 5 levels
 * around it — about 30. 100 leaves room for any hand-written schema, and keeps every recursive walk of the body
 * (validation, error messages, JSON.stringify on storage) thousands of frames below a stack overflow.
 */
export const MAX_JSON_DEPTH = 100;

/**
 * At most this many values (each array, object, element and member counts once) in a JSON body. JSON.parse holds
 * the event loop while it builds them, and values are what it spends its time on, not bytes: on this project's
 * 2-core VM, 500,000 members of one object (5.9 MB) took 535 ms and 2.6 million empty objects (7.8 MB) 830 ms,
 * where 100,000 members take 90 ms and 100,000 objects 19 ms. No request of the API needs more: an assistant with
 * the maximum 128 function tools, each with a 100-property schema, has about 40,000.
 */
export const MAX_JSON_VALUES = 100_000;

/**
 * Bodies are parsed as JSON whatever their content type, so `curl -d '{…}'` (form-encoded by default) works as it
 * does upstream; an empty body is an empty object, as the SDK sends none for some POSTs. A body nested deeper than
 * MAX_JSON_DEPTH, or holding more than MAX_JSON_VALUES values, is refused here, before it is parsed, so no later code
 * ever sees one and the event loop is never held by the parse for long.
 */
function acceptJsonBodies(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => {
    // JSON is UTF-8 (RFC 8259): bytes that are not are refused, not stored as U+FFFD.
    if (!isUtf8(body as Buffer)) return done(notJson('not UTF-8 text, as JSON is'), undefined);
    const text = (body as Buffer).toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    const shape = jsonShapeOverLimit(text);
    if (shape === 'depth')
      return done(
        new ApiError(
          400,
          `The JSON body of your request is nested too deeply: at most ${MAX_JSON_DEPTH} levels of arrays and objects are accepted.`,
          { code: 'json_too_deeply_nested' },
        ),
        undefined,
      );
    if (shape === 'values')
      return done(
        new ApiError(
          400,
          `The JSON body of your request holds too many values: at most ${MAX_JSON_VALUES.toLocaleString('en-US')} (arrays, objects, their elements and members) are accepted.`,
          { code: 'json_too_many_values' },
        ),
        undefined,
      );
    if (hasNulEscape(text)) return done(nulCharacter('JSON body'), undefined);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return done(notJson('not valid JSON'), undefined);
    }
    // A lone surrogate can only come from a `\u` escape (UTF-8 text cannot hold one), and `__proto__` is written out
    // or has one (the only escape its letters can have): without either, no walk of the value.
    const escapes = text.includes('\\u');
    if (escapes) value = wellFormed(value);
    const proto = escapes || text.includes('__proto__') ? protoKeyPath(value) : undefined;
    if (proto !== undefined)
      return done(
        new ApiError(400, `Invalid '${proto}': '__proto__' cannot be used as a key.`, {
          param: proto,
          code: 'invalid_value',
        }),
        undefined,
      );
    done(null, value);
  });
}

/** Upstream's wording, and what was wrong with the body. */
function notJson(what: string): ApiError {
  return new ApiError(
    400,
    `We could not parse the JSON body of your request. The server expects a JSON payload, but what was sent was ${what}.`,
  );
}

/**
 * Whether JSON text opens more than MAX_JSON_DEPTH arrays or objects inside each other (`depth`), or holds more than
 * MAX_JSON_VALUES values (`values`), read from the text itself: JSON.parse of such a body is the slow part (seconds
 * for the millions of levels or values an 8 MB body can hold), and this stops at the first one too many. The values
 * are counted as the document's root, each array or object opened and each comma between elements or members (an
 * empty array or object counts one more than it holds). Strings are skipped with indexOf, so a long string costs
 * next to nothing; text that is not JSON is left for JSON.parse to refuse.
 */
function jsonShapeOverLimit(text: string): 'depth' | 'values' | undefined {
  let depth = 0;
  let values = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      let end = i;
      do end = text.indexOf('"', end + 1);
      while (end !== -1 && isEscaped(text, end));
      if (end === -1) return undefined;
      i = end;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      depth += 1;
      if (depth > MAX_JSON_DEPTH) return 'depth';
      if (++values > MAX_JSON_VALUES) return 'values';
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) depth -= 1;
    else if (c === COMMA && ++values > MAX_JSON_VALUES) return 'values';
  }
  return undefined;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const COMMA = 0x2c;

/**
 * PostgreSQL's text and jsonb cannot hold U+0000: a NUL in an id, a cursor or a field would be a 500 there and stored
 * as sent in SQLite. Refused where it enters, for both stores alike: the URL, a JSON body (where it can only be
 * written `\u0000`). No id, name or text a client means holds one.
 */
function nulCharacter(where: string): ApiError {
  return new ApiError(
    400,
    `Your request's ${where} contains a NUL character (\\u0000 or %00), which is not accepted.`,
    {
      code: 'invalid_value',
    },
  );
}

/**
 * Where parsed JSON has a key `__proto__`, if anywhere (its path). JSON.parse makes it an ordinary key, but the
 * validation's objects are built by assignment, where it would set the prototype: the key would be lost, silently.
 */
function protoKeyPath(root: unknown): string | undefined {
  const stack: Array<[unknown, PropertyKey[]]> = [[root, []]];
  while (stack.length > 0) {
    const [value, path] = stack.pop()!;
    if (value === null || typeof value !== 'object') continue;
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--)
        if (value[i] !== null && typeof value[i] === 'object') stack.push([value[i], [...path, i]]);
      continue;
    }
    if (Object.hasOwn(value, '__proto__')) return formatPath([...path, '__proto__']);
    for (const [key, inner] of Object.entries(value))
      if (inner !== null && typeof inner === 'object') stack.push([inner, [...path, key]]);
  }
  return undefined;
}

/**
 * The parsed body with every lone surrogate (`"\ud800"`: half of a character, as text sliced by UTF-16 units leaves
 * it) replaced by U+FFFD, in strings and keys. JSON allows one, Unicode does not: PostgreSQL refuses it in its JSON
 * functions (a 500 for every metadata-filtered list once one thread held it), SQLite stores bytes that read back as
 * three replacement characters. Replaced at the door, the value is the same in the answer, in storage and on both
 * databases, and a request that a cut emoji ends is not refused for it.
 */
function wellFormed(value: unknown): unknown {
  if (typeof value === 'string') return value.isWellFormed() ? value : value.toWellFormed();
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = wellFormed(value[i]);
    return value;
  }
  const object = value as Record<string, unknown>;
  if (Object.keys(object).every((key) => key.isWellFormed())) {
    for (const key of Object.keys(object)) object[key] = wellFormed(object[key]);
    return object;
  }
  return Object.fromEntries(Object.entries(object).map(([key, inner]) => [key.toWellFormed(), wellFormed(inner)]));
}

/** Whether JSON text holds a `\u0000` escape (one that is not itself an escaped backslash followed by `u0000`). */
function hasNulEscape(text: string): boolean {
  for (let at = text.indexOf('\\u0000'); at !== -1; at = text.indexOf('\\u0000', at + 1))
    if (!isEscaped(text, at)) return true;
  return false;
}

/** A character preceded by an odd number of backslashes is escaped by them. */
function isEscaped(text: string, at: number): boolean {
  let backslashes = 0;
  while (text.charCodeAt(at - 1 - backslashes) === BACKSLASH) backslashes += 1;
  return backslashes % 2 === 1;
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
  // A Content-Type header that is not a media type (`;;;`, or empty) where a body was sent.
  if (fastifyError.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return new ApiError(
      415,
      'Invalid Content-Type header: it names no media type. Send the JSON body with Content-Type: application/json.',
      { code: 'unsupported_media_type' },
    );
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500)
    return new ApiError(status, fastifyError.message ?? 'Bad request.');
  log.error({ err: error }, 'unexpected error while handling a request');
  return new ApiError(500, 'The server had an error while processing your request. Sorry about that!', {
    type: 'server_error',
  });
}

/**
 * The router's own refusals. A path that does not decode (`/v1/threads/thread_%FF`) is the client's malformed
 * request: a 400 naming it, in the words upstream uses for a path it cannot serve.
 */
function routingError(error: FastifyError, method: string, url: string): ApiError {
  const path = url.split('?')[0] ?? url;
  if (error.code === 'FST_ERR_BAD_URL')
    return new ApiError(400, `Invalid URL (${method} ${path}): the path is not valid percent-encoded UTF-8.`, {
      code: 'invalid_url',
    });
  return new ApiError(400, `Invalid URL (${method} ${path}).`, { code: 'invalid_url' });
}

/**
 * Node's HTTP parser refused the request (its request line and headers over maxHeaderSize → 431, a request that is
 * not HTTP → 400, headers not received in time → 408). There is no request or reply object yet: the response is
 * written to the socket as it is, OpenAI-shaped and with a request id like every other, and the connection is closed, as Node's own
 * handler does, since the rest of what the client sent cannot be read as a request. Returns the status answered.
 */
function answerClientError(
  error: Error & { code?: string },
  socket: Duplex,
): { status: number; requestId: string } | undefined {
  if (error.code === 'ECONNRESET' || socket.destroyed) return undefined;
  const refusal = clientErrorToApiError(error.code);
  const requestId = nextRequestId();
  const body = JSON.stringify(errorBody(refusal));
  const headers = Object.entries(everyAnswerHeaders(requestId)).map(([name, value]) => `${name}: ${value}\r\n`);
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status]}\r\nContent-Type: application/json\r\n` +
        `${headers.join('')}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  socket.destroy();
  return { status: refusal.status, requestId };
}

/**
 * The headers of every answer, whatever answers: its request id, and nosniff (a browser never reads an answer as
 * another type than the one it says: a file's bytes, an error).
 */
function everyAnswerHeaders(requestId: string): Record<string, string> {
  return { 'x-request-id': requestId, 'x-content-type-options': 'nosniff' };
}

function clientErrorToApiError(code: string | undefined): ApiError {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return new ApiError(
        431,
        `Request header fields too large: the request line and headers may take at most ${maxHeaderSize} bytes.`,
        { code: 'request_header_fields_too_large' },
      );
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new ApiError(408, 'The request was not received in time.', { code: 'request_timeout' });
    default:
      return new ApiError(400, 'The request is not valid HTTP/1.1.', { code: 'invalid_http_request' });
  }
}

function errorBody(error: ApiError) {
  return { error: { message: error.message, type: error.type, param: error.param, code: error.code } };
}

export function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  return reply.code(error.status).send(errorBody(error));
}
