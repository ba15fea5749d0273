import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { pipeline, type Readable } from 'node:stream';
import { ApiError } from '../../domain/errors.ts';
import type { UpstreamEndpoint } from '../model-router.ts';
import { endpointUrl, keyHeader } from './chat-completions-client.ts';

/** A request body as it is sent on: JSON, or a client's multipart form as it arrives. */
export type ForwardedBody = { json: string } | { form: { type: string; length: string | undefined; stream: Readable } };

/**
 * Sends requests on to OpenAI-compatible endpoints as they are (api/routes/pass-through.ts), over keep-alive
 * connections, each endpoint's URL and key header worked out once.
 */
export class Forwarder {
  private readonly agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
  private readonly urls = new Map<string, URL>();
  private readonly keys = new Map<string, Record<string, string>>();

  /**
   * POSTs `body` to `path` under the endpoint; resolves with the response once its headers are in. Rejects with a
   * 502 when the endpoint cannot be reached, a 504 when it stays silent for its timeout before its headers (after
   * them, the response ends short), and with the signal's reason once `signal` is aborted.
   */
  post(
    target: UpstreamEndpoint,
    path: string,
    body: ForwardedBody,
    accept: string | undefined,
    signal: AbortSignal,
  ): Promise<IncomingMessage> {
    const url = this.url(target.baseUrl, path);
    const secure = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const outgoing = (secure ? https.request : http.request)(url, {
        method: 'POST',
        agent: secure ? this.agents.https : this.agents.http,
        headers: {
          ...('json' in body
            ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body.json) }
            : {
                'content-type': body.form.type,
                ...(body.form.length === undefined ? {} : { 'content-length': body.form.length }),
              }),
          ...(accept === undefined ? {} : { accept }),
          ...this.key(target),
        },
      });
      const abort = () => outgoing.destroy(signal.reason);
      if (signal.aborted) abort();
      else signal.addEventListener('abort', abort, { once: true });
      outgoing.once('close', () => signal.removeEventListener('abort', abort));
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
          error instanceof ApiError || error === signal.reason
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

  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  private url(baseUrl: string, path: string): URL {
    return once(this.urls, `${baseUrl} ${path}`, () => endpointUrl(baseUrl, path));
  }

  private key({ baseUrl, apiKey = 'unused' }: UpstreamEndpoint): Record<string, string> {
    return once(this.keys, `${baseUrl} ${apiKey}`, () => keyHeader(baseUrl, apiKey));
  }
}

/** The value of `key` in `cache`, made the first time. */
function once<T>(cache: Map<string, T>, key: string, make: () => T): T {
  let value = cache.get(key);
  if (value === undefined) {
    value = make();
    cache.set(key, value);
  }
  return value;
}
