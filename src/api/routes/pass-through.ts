import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { pipeline, type Readable, Transform } from 'node:stream';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { ApiError, invalidRequest } from '../../domain/errors.ts';
import type { Embedder } from '../../providers/embedder.ts';
import type { ModelRouter, UpstreamEndpoint } from '../../providers/model-router.ts';
import {
  endpointUrl,
  keyHeader,
  upstreamMessage,
  withoutKey,
} from '../../providers/openai-compatible/chat-completions-client.ts';
import { clientGone, untilClientGone } from '../client-gone.ts';
import { completeInProcess } from './in-process-completions.ts';
import { embedInProcess } from './in-process-embeddings.ts';

/**
 * OpenAI's endpoints beside the Assistants API that a program's one client also calls (a title from
 * `chat.completions`, its own `embeddings`, `moderations`, speech, images): passed on, as they are, to the
 * OpenAI-compatible endpoint that serves the request's model, so that changing the client's base URL to assistd's
 * keeps them working. Their bodies are JSON.
 */
export const PASSED_THROUGH = [
  'chat/completions',
  'completions',
  'embeddings',
  'moderations',
  'audio/speech',
  'images/generations',
] as const;

/**
 * OpenAI's endpoints whose bodies are multipart forms (a recording to transcribe, an image to edit): passed on as they
 * come, byte for byte, to the default backend, since their model is named inside the form.
 */
export const PASSED_THROUGH_FORMS = [
  'audio/transcriptions',
  'audio/translations',
  'images/edits',
  'images/variations',
] as const;

/** The largest form passed on (OpenAI took recordings up to 25 MB, and images up to 50 MB each). */
export const MAX_FORM_BYTES = 256 * 1024 * 1024;

/** What an answer that is not the upstream's own may quote of its body, and what an error body may be. */
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
  /** The embedding model of vector stores when it runs in-process (a GGUF file): it answers embeddings itself. */
  embedder?: Embedder | undefined;
}

export function registerPassThroughRoutes(app: FastifyInstance, targets: PassThroughTargets): void {
  const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
  app.addHook('onClose', async () => {
    agents.http.destroy();
    agents.https.destroy();
  });

  /**
   * Each path is also served under `/deployments/{deployment}/`, as Azure OpenAI's clients send it (`/openai/…` is
   * served as `/v1/…`, app.ts): the deployment is then the model.
   */
  const routes = (path: string) => [`/v1/${path}`, `/v1/deployments/:deployment/${path}`];
  const deploymentOf = (params: unknown) => (params as { deployment?: string }).deployment;

  for (const path of PASSED_THROUGH)
    for (const route of routes(path))
      app.post(route, async (request, reply) => {
        const body = request.body;
        if (typeof body !== 'object' || body === null || Array.isArray(body))
          throw invalidRequest(`POST /v1/${path} takes a JSON object.`, null, 'invalid_value');
        const model = deploymentOf(request.params) ?? (body as Record<string, unknown>)['model'];
        if (model !== undefined && typeof model !== 'string')
          throw invalidRequest(`Invalid type for 'model': expected a string.`, 'model', 'invalid_type');
        const given = model === undefined ? body : { ...body, model };
        const embedder = targets.embedder;
        if (path === 'embeddings' && embedder !== undefined && model === embedder.model)
          return embedInProcess(embedder, given, untilClientGone(reply));
        const target = targets.models.endpoint(model, path === 'embeddings' ? 'embeddings' : 'chat');
        if (target === undefined)
          throw new ApiError(404, targets.models.unroutedReason(model ?? ''), {
            param: 'model',
            code: 'model_not_found',
          });
        if (target === 'in-process') {
          const provider =
            path === 'chat/completions' && model !== undefined ? targets.models.resolve(model) : undefined;
          if (provider) return completeInProcess(provider, given, reply, untilClientGone(reply));
          throw invalidRequest(
            `The model '${model ?? ''}' runs inside assistd (a GGUF file), which answers runs and chat completions only: POST /v1/${path} is passed on to OpenAI-compatible endpoints.`,
            'model',
            'model_not_supported',
          );
        }
        const json = JSON.stringify(target.model === undefined ? given : { ...given, model: target.model });
        const url = endpointUrl(target.baseUrl, path);
        const response = await send(url, target, { json }, request.headers.accept, reply, agents);
        return answer(reply, response, target.apiKey);
      });

  for (const path of PASSED_THROUGH_FORMS)
    for (const route of routes(path))
      app.post(route, async (request, reply) => {
        const type = request.headers['content-type'];
        if (!request.isMultipart() || type === undefined)
          throw new ApiError(415, `Invalid Content-Type header: POST /v1/${path} takes a multipart/form-data body.`, {
            code: 'unsupported_content_type',
          });
        // The form names its model inside it: the default backend, or the deployment's.
        const model = deploymentOf(request.params);
        const target = targets.models.endpoint(model, 'chat');
        if (target === undefined)
          throw new ApiError(
            404,
            model !== undefined
              ? targets.models.unroutedReason(model)
              : `No default model backend is configured: POST /v1/${path} names its model inside its form, and is passed on to the default backend (ASSISTD_UPSTREAM_BASE_URL, or the models file's default route).`,
            { code: 'model_not_found' },
          );
        if (target === 'in-process')
          throw invalidRequest(
            `The model runs inside assistd (a GGUF file): POST /v1/${path} is passed on to OpenAI-compatible endpoints only.`,
            null,
            'model_not_supported',
          );
        const length = request.headers['content-length'];
        const form = { type, length, stream: atMost(request.raw, MAX_FORM_BYTES) };
        const url = endpointUrl(target.baseUrl, path);
        const response = await send(url, target, { form }, request.headers.accept, reply, agents);
        return answer(reply, response, target.apiKey);
      });
}

/** A request body as it is sent on: JSON, or a client's multipart form as it arrives. */
type Body = { json: string } | { form: { type: string; length: string | undefined; stream: Readable } };

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
 * Sends the request; resolves with the response once its headers are in. The request is given up when the client
 * goes away, and when the upstream stays silent for its timeout (before its headers, or between two pieces of the
 * body, which then ends the client's response short).
 */
function send(
  url: URL,
  target: UpstreamEndpoint,
  body: Body,
  accept: string | undefined,
  reply: FastifyReply,
  agents: { http: http.Agent; https: https.Agent },
): Promise<IncomingMessage> {
  const secure = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const outgoing = (secure ? https.request : http.request)(url, {
      method: 'POST',
      agent: secure ? agents.https : agents.http,
      headers: {
        ...('json' in body
          ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body.json) }
          : {
              'content-type': body.form.type,
              ...(body.form.length === undefined ? {} : { 'content-length': body.form.length }),
            }),
        ...(accept === undefined ? {} : { accept }),
        ...keyHeader(target.baseUrl, target.apiKey ?? 'unused'),
      },
    });
    // The client's answer is done with (sent, or its connection gone): nothing more is wanted from the upstream.
    untilClientGone(reply).addEventListener('abort', () => outgoing.destroy(clientGone()), { once: true });
    outgoing.setTimeout(target.timeoutMs, () =>
      outgoing.destroy(
        new ApiError(504, `The model backend did not answer within ${target.timeoutMs / 1000} s.`, {
          type: 'server_error',
          code: 'upstream_timeout',
        }),
      ),
    );
    outgoing.once('response', resolve);
    outgoing.on('error', (error: Error & { code?: string }) =>
      reject(
        error instanceof ApiError
          ? error
          : new ApiError(502, `The model backend could not be reached (${error.code ?? error.message}).`, {
              type: 'server_error',
              code: 'upstream_unavailable',
            }),
      ),
    );
    if ('json' in body) outgoing.end(body.json);
    else pipeline(body.form.stream, outgoing, (error) => error && outgoing.destroy(error));
  });
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
  response.setEncoding('utf8');
  let text = '';
  for await (const piece of response) if (text.length <= MAX_ERROR_BODY) text += piece;
  text = withoutKey(text, apiKey).slice(0, MAX_ERROR_BODY);
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
