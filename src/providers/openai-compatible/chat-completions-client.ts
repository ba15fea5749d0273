import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { createParser } from 'eventsource-parser';
import type { ChatCompletionChunk, ChatCompletionCreateParamsStreaming } from 'openai/resources/chat/completions';

/**
 * A streamed Chat Completions request over node:http with a keep-alive agent, its server-sent events parsed by
 * eventsource-parser. Measured on the run path (bench/README.md): the official SDK's client — fetch, web streams,
 * its own SSE decoder — took 1.5–3.5 ms from the call to the request reaching the upstream and 2–4 ms more to
 * hand over a five-chunk reply that had already arrived, CPU time spent on every model turn; this takes a fraction
 * of that. The SDK's types still describe the wire format.
 */

/** The upstream answered with an error status; `body` is its parsed JSON, if it sent any. */
export class UpstreamHttpError extends Error {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: unknown;

  constructor(status: number, headers: IncomingHttpHeaders, body: unknown) {
    super(`upstream returned ${status}`);
    this.name = 'UpstreamHttpError';
    this.status = status;
    this.headers = headers;
    this.body = body;
  }
}

/** The stream itself failed: an `error` object in its data, unparseable data, or a connection that broke. */
export class UpstreamStreamError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpstreamStreamError';
  }
}

/** The request never got an answer: the connection could not be made, or broke before the response began. */
export class UpstreamConnectionError extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
    this.name = 'UpstreamConnectionError';
  }
}

/** Error bodies are read up to this size; the rest is dropped. */
const MAX_ERROR_BODY = 1024 * 1024;

export class ChatCompletionsClient {
  private readonly endpoint: URL;
  private readonly apiKey: string;
  private readonly agent: http.Agent;
  private readonly send: typeof http.request;

  constructor(baseURL: string, apiKey: string) {
    this.endpoint = new URL(`${baseURL.replace(/\/+$/, '')}/chat/completions`);
    this.apiKey = apiKey;
    const secure = this.endpoint.protocol === 'https:';
    this.agent = secure ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
    this.send = secure ? https.request : http.request;
  }

  /**
   * Sends the request; resolves once the response headers are in, with the stream of chunks. Rejects with
   * UpstreamHttpError for an error status and UpstreamConnectionError when no response came; the iterator throws
   * UpstreamStreamError. Aborting `signal` destroys the request at once.
   */
  async stream(
    body: ChatCompletionCreateParamsStreaming,
    signal: AbortSignal,
  ): Promise<AsyncIterable<ChatCompletionChunk>> {
    const payload = JSON.stringify(body);
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const request = this.send(this.endpoint, {
        method: 'POST',
        agent: this.agent,
        signal,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          accept: 'text/event-stream',
          authorization: `Bearer ${this.apiKey}`,
        },
      });
      request.once('response', resolve);
      request.once('error', (error) => reject(signal.aborted ? signal.reason : new UpstreamConnectionError(error)));
      request.end(payload);
    });
    const status = response.statusCode ?? 0;
    if (status >= 400) throw new UpstreamHttpError(status, response.headers, await readErrorBody(response));
    return chunks(response);
  }

  close(): void {
    this.agent.destroy();
  }
}

async function readErrorBody(response: IncomingMessage): Promise<unknown> {
  let text = '';
  try {
    // Not destroyed on `break`: after `[DONE]` the connection goes back to the agent (see `finally`).
    for await (const piece of response.iterator({ destroyOnReturn: false })) {
      if (text.length < MAX_ERROR_BODY) text += piece.toString();
    }
  } catch {
    // What arrived is all there is.
  }
  try {
    return JSON.parse(text);
  } catch {
    return text === '' ? undefined : text;
  }
}

/** The chunks of a `text/event-stream` response, until `data: [DONE]` or the end of the body. */
async function* chunks(response: IncomingMessage): AsyncGenerator<ChatCompletionChunk> {
  response.setEncoding('utf8'); // decodes characters split across network chunks
  const ready: ChatCompletionChunk[] = [];
  let failure: UpstreamStreamError | undefined;
  let done = false;
  const parser = createParser({
    onEvent: (event) => {
      if (done || failure) return;
      if (event.data === '[DONE]') {
        done = true;
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(event.data);
      } catch {
        failure = new UpstreamStreamError(`could not parse a chunk: ${event.data.slice(0, 200)}`);
        return;
      }
      const error = (parsed as { error?: unknown }).error;
      if (error !== undefined && error !== null) {
        const message =
          typeof error === 'object' && 'message' in error && typeof error.message === 'string'
            ? error.message
            : JSON.stringify(error);
        failure = new UpstreamStreamError(message);
        return;
      }
      ready.push(parsed as ChatCompletionChunk);
    },
  });
  try {
    // Not destroyed on `break`: after `[DONE]` the connection goes back to the agent (see `finally`).
    for await (const piece of response.iterator({ destroyOnReturn: false })) {
      parser.feed(piece as string);
      yield* ready.splice(0);
      if (failure) throw failure;
      if (done) break;
    }
  } catch (error) {
    if (error instanceof UpstreamStreamError) throw error;
    throw new UpstreamStreamError(error instanceof Error ? error.message : String(error), { cause: error });
  } finally {
    // After `[DONE]` the rest of the body is read away, so the connection goes back to the agent; an early exit
    // (a failure, the consumer stopped) closes it.
    if (done) response.resume();
    else if (!response.complete) response.destroy();
  }
  if (!done && !response.complete)
    throw new UpstreamStreamError('the connection closed before the response was complete');
}
