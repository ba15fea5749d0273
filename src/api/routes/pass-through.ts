import type { IncomingMessage } from 'node:http';
import { type Readable, Transform } from 'node:stream';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { ApiError, invalidRequest } from '../../domain/errors.ts';
import type { Embedder } from '../../providers/embedder.ts';
import type { ModelRouter, UpstreamEndpoint } from '../../providers/model-router.ts';
import { readText, upstreamMessage, withoutKey } from '../../providers/openai-compatible/chat-completions-client.ts';
import { type ForwardedBody, Forwarder } from '../../providers/openai-compatible/forwarder.ts';
import { clientGone, untilClientGone } from '../client-gone.ts';
import { PASSED_THROUGH, PASSED_THROUGH_FORMS, passedThroughRoutes } from '../passed-through-paths.ts';
import { completeInProcess } from './in-process-completions.ts';
import { embedInProcess } from './in-process-embeddings.ts';

/**
 * OpenAI's endpoints beside the Assistants API that a program's one client also calls (a title from
 * `chat.completions`, its own `embeddings`, a moderation, speech, a transcription, images): passed on, as they are,
 * to the OpenAI-compatible endpoint that serves the request's model, so that changing the client's base URL to
 * assistd's keeps them working; answered here for a model run in-process. Which endpoints: passed-through-paths.ts.
 */

/** The largest form passed on (OpenAI took recordings up to 25 MB, and images up to 50 MB each). */
const MAX_FORM_BYTES = 256 * 1024 * 1024;

/** What an error body may be, read whole to be passed on. */
const MAX_ERROR_BODY = 1024 * 1024;

/** The upstream's response headers given to the client: what the body is, and what an SDK's retries read. */
const PASSED_HEADERS = new Set([
  'content-type',
  'cache-control',
  'retry-after',
  'retry-after-ms',
  'x-should-retry',
  'openai-processing-ms',
]);

export interface PassThroughTargets {
  /** Which backend serves a model. */
  models: Pick<ModelRouter, 'endpoint' | 'unroutedReason' | 'resolve'>;
  /** The embedding model of vector stores: it answers embeddings itself when it runs in-process (`embedder`). */
  embedder?: Embedder | undefined;
}

export function registerPassThroughRoutes(app: FastifyInstance, targets: PassThroughTargets): void {
  const forwarder = new Forwarder();
  app.addHook('onClose', async () => forwarder.close());
  const deploymentOf = (params: unknown) => (params as { deployment?: string }).deployment;

  /** Sends the request on, and passes the answer back. */
  const forward = async (
    reply: FastifyReply,
    target: UpstreamEndpoint,
    path: string,
    body: ForwardedBody,
    accept: string | undefined,
  ) => {
    const gone = untilClientGone(reply);
    const response = await forwarder.post(target, path, body, accept, gone).catch((error: unknown) => {
      throw gone.aborted ? clientGone() : error;
    });
    return answer(reply, response, target.apiKey);
  };

  for (const path of PASSED_THROUGH)
    for (const route of passedThroughRoutes(path))
      app.post(route, async (request, reply) => {
        const body = request.body;
        if (typeof body !== 'object' || body === null || Array.isArray(body))
          throw invalidRequest(`POST /v1/${path} takes a JSON object.`, null, 'invalid_value');
        const model = deploymentOf(request.params) ?? (body as Record<string, unknown>)['model'];
        if (model !== undefined && typeof model !== 'string')
          throw invalidRequest(`Invalid type for 'model': expected a string.`, 'model', 'invalid_type');
        const given = model === undefined ? body : { ...body, model };
        const target = targets.models.endpoint(model, path === 'embeddings' ? 'embeddings' : 'chat');
        if (target === undefined) throw noBackend(path, model, targets);
        if (target === 'embedder' && targets.embedder)
          return embedInProcess(targets.embedder, given, untilClientGone(reply));
        if (target === 'in-process' || target === 'embedder') {
          const provider =
            path === 'chat/completions' && model !== undefined ? targets.models.resolve(model) : undefined;
          if (provider) return completeInProcess(provider, given, reply, untilClientGone(reply));
          throw inProcessOnly(path, model);
        }
        const json = JSON.stringify(target.model === undefined ? given : { ...given, model: target.model });
        return forward(reply, target, path, { json }, request.headers.accept);
      });

  for (const path of PASSED_THROUGH_FORMS)
    for (const route of passedThroughRoutes(path))
      app.post(route, async (request, reply) => {
        const type = request.headers['content-type'];
        if (!request.isMultipart() || type === undefined)
          throw new ApiError(415, `Invalid Content-Type header: POST /v1/${path} takes a multipart/form-data body.`, {
            code: 'unsupported_content_type',
          });
        // The form names its model inside it: the default backend, or the deployment's.
        const model = deploymentOf(request.params);
        const target = targets.models.endpoint(model, 'chat');
        if (target === undefined) throw noBackend(path, model, targets);
        if (target === 'in-process' || target === 'embedder') throw inProcessOnly(path, model);
        const form = { type, length: request.headers['content-length'], stream: atMost(request.raw, MAX_FORM_BYTES) };
        return forward(reply, target, path, { form }, request.headers.accept);
      });
}

/** No backend serves the model; or, for a request naming none, there is no default backend. */
function noBackend(path: string, model: string | undefined, targets: PassThroughTargets): ApiError {
  return new ApiError(
    404,
    model !== undefined
      ? targets.models.unroutedReason(model)
      : `No default model backend is configured: POST /v1/${path} names no model, and is passed on to the default backend (ASSISTD_UPSTREAM_BASE_URL, or the models file's default route).`,
    { param: 'model', code: 'model_not_found' },
  );
}

function inProcessOnly(path: string, model: string | undefined): ApiError {
  return invalidRequest(
    `The model${model === undefined ? '' : ` '${model}'`} runs inside assistd (a GGUF file), which answers runs, chat completions and embeddings only: POST /v1/${path} is passed on to OpenAI-compatible endpoints.`,
    'model',
    'model_not_supported',
  );
}

/** `source`, failing with a 413 once more than `max` bytes came. */
export function atMost(source: Readable, max: number): Readable {
  let bytes = 0;
  return source.pipe(
    new Transform({
      transform(chunk: Buffer, _encoding, done) {
        bytes += chunk.byteLength;
        if (bytes <= max) return done(null, chunk);
        done(
          new ApiError(413, `Request body too large: a form passed on may take at most ${max} bytes.`, {
            code: 'request_too_large',
          }),
        );
      },
    }),
  );
}

/**
 * The upstream's answer, passed on: a success as it comes (a stream piece by piece); an error read whole, without
 * the key should the upstream echo it, and in OpenAI's shape when the upstream's own is another (Ollama's, vLLM's).
 * A redirect or a refusal of assistd's own key is the backend's failure, said so: the client did nothing wrong.
 */
async function answer(reply: FastifyReply, response: IncomingMessage, apiKey: string | undefined) {
  const status = response.statusCode ?? 502;
  if (status < 200 || (status >= 300 && status < 400) || status === 401) {
    response.resume();
    // The SDKs retry a 5xx unless told not to; a backend's configuration does not mend in a second.
    void reply.header('x-should-retry', 'false');
    const what = status === 401 ? "refused assistd's key for it" : 'answered with a redirect';
    throw new ApiError(502, `The model backend ${what} (HTTP ${status}).`, {
      type: 'server_error',
      code: status === 401 ? 'upstream_auth_failed' : 'upstream_redirect',
    });
  }
  for (const [name, value] of Object.entries(response.headers))
    if (PASSED_HEADERS.has(name) && value !== undefined) reply.header(name, value);
  reply.code(status);
  if (status < 300) return reply.send(response);
  const text = withoutKey(await readText(response), apiKey).slice(0, MAX_ERROR_BODY);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  if (isOpenAIError(parsed)) return reply.type('application/json').send(text);
  const message = upstreamMessage(parsed) ?? (text.trim() === '' ? `The model backend answered ${status}.` : text);
  return reply.type('application/json').send({
    error: {
      message,
      type: status >= 500 ? 'server_error' : 'invalid_request_error',
      param: null,
      code: null,
    },
  });
}

function isOpenAIError(body: unknown): boolean {
  const error = (body as { error?: unknown } | null)?.error;
  return typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string';
}
