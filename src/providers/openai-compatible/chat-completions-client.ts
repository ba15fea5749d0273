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

/**
 * The answer is not a valid event stream, or its stream failed: a 2xx or 3xx that is not `text/event-stream` (a
 * proxy's login page, a JSON body), an `error` object in its data, a chunk that is not a JSON object, or a
 * connection that broke. The message says what the upstream sent, with at most a short excerpt of it.
 */
export class UpstreamStreamError extends Error {
  /**
   * For an `error` object in the stream, the HTTP status its `code` (or `status`) gives, when it gives one (vLLM sends
   * `code: 400` for a prompt longer than the model's context).
   */
  readonly status: number | undefined;

  constructor(message: string, options?: { cause?: unknown; status?: number | undefined }) {
    super(message, options);
    this.name = 'UpstreamStreamError';
    this.status = options?.status;
  }
}

/** The request never got an answer: the connection could not be made, or broke before the response began. */
export class UpstreamConnectionError extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
    this.name = 'UpstreamConnectionError';
  }
}

/** A body that is not an event stream (an error, a page, a whole completion) is read up to this size; the rest is dropped. */
const MAX_BODY = 1024 * 1024;
/** How much of what the upstream sent instead of a chunk an error message quotes; its own error messages, more. */
const MAX_EXCERPT = 100;
const MAX_QUOTED_ERROR = 500;

export class ChatCompletionsClient {
  private readonly endpoint: URL;
  private readonly apiKey: string;
  private readonly key: Record<string, string>;
  private readonly agent: http.Agent;
  private readonly send: typeof http.request;

  constructor(baseURL: string, apiKey: string) {
    this.endpoint = endpointUrl(baseURL, 'chat/completions');
    this.apiKey = apiKey;
    this.key = keyHeader(baseURL, apiKey);
    const secure = this.endpoint.protocol === 'https:';
    this.agent = secure ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
    this.send = secure ? https.request : http.request;
  }

  /**
   * Sends the request; resolves once the response headers are in, with the stream of chunks. Rejects with
   * UpstreamHttpError for an error status, UpstreamStreamError for an answer that is not an event stream, and
   * UpstreamConnectionError when no response came; the iterator throws UpstreamStreamError. Aborting `signal`
   * destroys the request at once. `onActivity` is called as each piece of the stream arrives, keep-alive comments
   * included (`: OPENROUTER PROCESSING`, sent while a slow model has not begun): the upstream is not silent.
   */
  async stream(
    body: ChatCompletionCreateParamsStreaming,
    signal: AbortSignal,
    onActivity?: () => void,
  ): Promise<ChunkStream> {
    const payload = JSON.stringify(body);
    signal.throwIfAborted();
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const request = this.send(this.endpoint, {
        method: 'POST',
        agent: this.agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          accept: 'text/event-stream',
          ...this.key,
        },
      });
      // Not http.request's `signal` option: it destroys the socket with an AbortError, which, once the whole
      // response is in but unread, is emitted on a socket that no longer listens for errors and crashes the
      // process. Destroyed without an error, the socket just closes; the caller knows why from its signal.
      const onAbort = () => request.destroy();
      signal.addEventListener('abort', onAbort, { once: true });
      request.once('close', () => {
        signal.removeEventListener('abort', onAbort);
        // Closed with neither a response nor an error (destroyed by the abort before one came): the answer is no.
        reject(signal.aborted ? signal.reason : new UpstreamConnectionError(new Error('the connection closed')));
      });
      request.once('response', resolve);
      request.on('error', (error) => reject(signal.aborted ? signal.reason : new UpstreamConnectionError(error)));
      request.end(payload);
    });
    const status = response.statusCode ?? 0;
    if (status >= 400) throw new UpstreamHttpError(status, response.headers, await readBody(response));
    // A missing content type is let through (some small servers send none): the stream's own checks still apply.
    const type = response.headers['content-type'];
    if (status < 300 && type !== undefined && /^\s*application\/json\s*(;|$)/i.test(type)) {
      // An endpoint that ignores `stream` (some do when tools are sent) answers with the whole completion at once.
      const body = await readBody(response);
      const chunk = completionAsChunk(body);
      if (chunk) return single(chunk);
      throw new UpstreamStreamError(this.notAStream(status, type, body));
    }
    if (status >= 300 || (type !== undefined && !/^\s*text\/event-stream\s*(;|$)/i.test(type)))
      throw new UpstreamStreamError(this.notAStream(status, type, await readBody(response)));
    return chunks(response, (text, max) => this.excerpt(text, max), onActivity);
  }

  /** What an answer that is not an event stream was, for a run's last_error. */
  private notAStream(status: number, type: string | undefined, body: unknown): string {
    if (status >= 300) return `The model backend answered ${status} (a redirect) instead of an event stream`;
    const what = `The model backend answered ${status} with ${type?.split(';')[0]?.trim()} instead of an event stream`;
    const message = upstreamMessage(body);
    if (message !== undefined) return `${what}, with the error: ${this.excerpt(message, MAX_QUOTED_ERROR)}`;
    if (typeof body !== 'string') return what;
    // An HTML page is named by its title alone: its body may hold a login form's tokens.
    const title = /<title[^>]*>([^<]*)</i.exec(body)?.[1];
    if (title !== undefined) return `${what}: a page titled "${this.excerpt(title)}"`;
    if (/^\s*</.test(body)) return `${what}: a page without a title`;
    return `${what}: "${this.excerpt(body)}"`;
  }

  /** The start of what the upstream sent, on one line, without the API key should the upstream echo it. */
  private excerpt(text: string, max = MAX_EXCERPT): string {
    let line = text.replace(/\s+/g, ' ').trim();
    line = withoutKey(line, this.apiKey);
    return line.length > max ? `${line.slice(0, max)}…` : line;
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * A response's body as text, read to its end: its first MAX_BODY characters (and the rest of the piece that reached
 * them), decoded as UTF-8 across pieces. A connection that fails midway gives what arrived.
 */
export async function readText(response: IncomingMessage): Promise<string> {
  response.setEncoding('utf8');
  let text = '';
  try {
    // Not destroyed on `break`: after `[DONE]` the connection goes back to the agent (see `finally`).
    for await (const piece of response.iterator({ destroyOnReturn: false })) {
      if (text.length < MAX_BODY) text += piece;
    }
  } catch {
    // What arrived is all there is.
  }
  return text;
}

/** A response's body that is not an event stream (an error, a page, a whole completion): JSON if it parses. */
async function readBody(response: IncomingMessage): Promise<unknown> {
  const text = await readText(response);
  try {
    return JSON.parse(text);
  } catch {
    return text === '' ? undefined : text;
  }
}

/**
 * Text from or about an upstream (its error message, what it sent instead of a stream) without the API key sent to
 * it, should the upstream echo it: such text reaches logs and objects every user of the API reads (a run's or a
 * vector store file's `last_error`). Not a key shorter than 8 characters, such as the placeholder sent when none is
 * configured (`unused`): that is no secret, and may be a word.
 */
export function withoutKey(text: string, apiKey: string | undefined): string {
  return apiKey !== undefined && apiKey.length >= 8 ? text.replaceAll(apiKey, '[api key]') : text;
}

/** Azure OpenAI's hosts (an Azure OpenAI resource, or an AI Foundry / AI Services one). */
const AZURE_HOST = /\.(openai\.azure\.com|cognitiveservices\.azure\.com|services\.ai\.azure\.com)$/i;

/** Whether a base URL is Azure OpenAI's. */
export function isAzure(baseURL: string): boolean {
  return AZURE_HOST.test(new URL(baseURL).hostname);
}

/**
 * The header an endpoint takes its key in: `api-key` for Azure OpenAI (its deployment paths take no other; its v1
 * path takes it too), as Azure's own clients send it; `Authorization: Bearer` for any other endpoint.
 */
export function keyHeader(baseURL: string, apiKey: string): Record<string, string> {
  return isAzure(baseURL) ? { 'api-key': apiKey } : { authorization: `Bearer ${apiKey}` };
}

/**
 * `path` under a base URL, its query kept where it belongs: an Azure deployment's base URL carries its
 * `?api-version=…`, which must follow the path, not have the path appended to it.
 */
export function endpointUrl(baseURL: string, path: string): URL {
  const url = new URL(baseURL);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${path}`;
  return url;
}

/**
 * The upstream's own error message, when its body had one: OpenAI's `{ error: { message } }`, and the shapes of
 * other servers — `{ error: "…" }` (Hugging Face TGI), `{ object: "error", message }` (older vLLM), an array around
 * OpenAI's (Gemini's endpoint), and a request's validation errors, `{ detail: [{ loc, msg }] }` (a FastAPI server's
 * 422), also as the `message` of Mistral's `{ object: "error", message: { detail } }`; `{ message, code, type }`
 * (Hugging Face TEI), and `{ detail: "…" }` (NVIDIA NIM and other FastAPI servers). Not a web framework's own
 * answer: a FastAPI server's 404 for a wrong path says `Not Found`, which is no API's answer.
 */
export function upstreamMessage(body: unknown): string | undefined {
  const wrapped = Array.isArray(body) && body.length === 1 ? body[0] : body;
  if (typeof wrapped !== 'object' || wrapped === null) return undefined;
  const { error, object, message, detail, code, type } = wrapped as Record<string, unknown>;
  if (typeof error === 'object' && error !== null && 'message' in error && typeof error.message === 'string')
    return error.message;
  if (typeof error === 'string' && error !== '') return error;
  if ((object === 'error' || code !== undefined || type !== undefined) && typeof message === 'string' && message !== '')
    return message;
  if (object === 'error' && typeof message === 'object' && message !== null)
    return validationErrors((message as { detail?: unknown }).detail);
  if (typeof detail === 'string' && detail !== '' && !FRAMEWORK_DETAIL.test(detail)) return detail;
  return validationErrors(detail);
}

/** How servers say a prompt is longer than the model's context, or otherwise not valid for it. */
const PROMPT_REFUSED =
  /context length|context size|context window|does not fit|maximum context|input validation error/i;

/** What a web framework (FastAPI, Starlette) answers for a path or method it has no route for. */
const FRAMEWORK_DETAIL = /^(not found|method not allowed)$/i;

/** A FastAPI (pydantic) server's validation errors as one line: `body.stream_options: Extra inputs are not permitted`. */
function validationErrors(detail: unknown): string | undefined {
  if (!Array.isArray(detail) || detail.length === 0) return undefined;
  const lines: string[] = [];
  for (const item of detail as unknown[]) {
    const { loc, msg } = (item ?? {}) as { loc?: unknown; msg?: unknown };
    if (typeof msg !== 'string') return undefined;
    lines.push(Array.isArray(loc) ? `${loc.join('.')}: ${msg}` : msg);
  }
  return lines.join('; ');
}

/**
 * A whole `chat.completion` (an answer that is not streamed) as the one chunk a stream of it would add up to, or
 * undefined when `body` is not one.
 */
function completionAsChunk(body: unknown): ChatCompletionChunk | undefined {
  if (typeof body !== 'object' || body === null || !('choices' in body) || !Array.isArray(body.choices))
    return undefined;
  const choices: ChatCompletionChunk.Choice[] = [];
  for (const choice of body.choices as unknown[]) {
    if (typeof choice !== 'object' || choice === null) return undefined;
    const { index, message, finish_reason } = choice as Record<string, unknown>;
    if (typeof message !== 'object' || message === null) return undefined;
    const { content, tool_calls, refusal, reasoning_content, reasoning, reasoning_details, thinking_blocks } =
      message as Record<string, unknown>;
    const calls = Array.isArray(tool_calls) ? (tool_calls as unknown[]) : [];
    choices.push({
      index: typeof index === 'number' ? index : 0,
      delta: {
        role: 'assistant',
        // A list of parts (Mistral's) as it is: the provider reads both.
        content: typeof content === 'string' || Array.isArray(content) ? (content as string) : null,
        ...(typeof refusal === 'string' ? { refusal } : {}),
        ...(typeof reasoning_content === 'string' ? { reasoning_content } : {}),
        ...(typeof reasoning === 'string' ? { reasoning } : {}),
        ...(Array.isArray(reasoning_details) ? { reasoning_details } : {}),
        ...(Array.isArray(thinking_blocks) ? { thinking_blocks } : {}),
        ...(calls.length === 0
          ? {}
          : {
              tool_calls: calls.map((call, i) => {
                const { id, function: fn } = (call ?? {}) as { id?: unknown; function?: Record<string, unknown> };
                const args = fn?.['arguments'];
                return {
                  index: i,
                  ...(typeof id === 'string' ? { id } : {}),
                  type: 'function' as const,
                  function: {
                    name: typeof fn?.['name'] === 'string' ? fn['name'] : '',
                    // A string of JSON, as OpenAI sends; some endpoints send the object itself.
                    arguments: typeof args === 'string' ? args : args === undefined ? '' : JSON.stringify(args),
                  },
                };
              }),
            }),
      },
      finish_reason: (typeof finish_reason === 'string'
        ? finish_reason
        : null) as ChatCompletionChunk.Choice['finish_reason'],
    });
  }
  const { usage } = body as { usage?: ChatCompletionChunk['usage'] };
  return {
    id: '',
    object: 'chat.completion.chunk',
    created: 0,
    model: '',
    choices,
    ...(typeof usage === 'object' && usage !== null ? { usage } : {}),
  };
}

/** A whole completion, as the one chunk of a stream that ended as `[DONE]` would end it. */
async function* single(chunk: ChatCompletionChunk): ChunkStream {
  yield chunk;
  return true;
}

/** Chunks parsed but not yet taken: past this many, the response is paused until the consumer catches up. */
const HIGH_WATER_CHUNKS = 256;

/**
 * The chunks of an answer; their iteration returns whether the stream ended with `data: [DONE]`, the server's word
 * that the answer is whole (rather than with the end of the body, as a stream cut short also ends).
 */
export type ChunkStream = AsyncIterableIterator<ChatCompletionChunk, boolean>;

/**
 * The chunks of a `text/event-stream` response, until `data: [DONE]` or the end of the body. `excerpt` quotes what
 * came instead of a chunk.
 *
 * Fed by the response's `data` events rather than read through its async iterator: a token is one network read
 * and one chunk, and this is the path every token of every stream takes, so it holds one promise per chunk at
 * most (none when chunks are already waiting) — no stream iterator, no generator.
 */
function chunks(
  response: IncomingMessage,
  excerpt: (text: string, max?: number) => string,
  onActivity: (() => void) | undefined,
): ChunkStream {
  response.setEncoding('utf8'); // decodes characters split across network chunks
  let ready: ChatCompletionChunk[] = [];
  let taken = 0;
  let failure: UpstreamStreamError | undefined;
  let done = false;
  let ended = false;
  let finished = false;
  let waiting:
    | { resolve: (result: IteratorResult<ChatCompletionChunk>) => void; reject: (e: unknown) => void }
    | undefined;
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
        failure = new UpstreamStreamError(
          `The model backend sent a stream chunk that is not JSON: "${excerpt(event.data)}"`,
        );
        return;
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        failure = new UpstreamStreamError(
          `The model backend sent a stream chunk that is not a chat completion chunk: "${excerpt(event.data)}"`,
        );
        return;
      }
      const { error, object } = parsed as { error?: unknown; object?: unknown };
      if ((error !== undefined && error !== null) || object === 'error') {
        const message = upstreamMessage(parsed) ?? JSON.stringify(error ?? parsed);
        const { code, status } = (typeof error === 'object' && error !== null ? error : parsed) as Record<
          string,
          unknown
        >;
        // Without a status, a refusal of the prompt is told by its words (LM Studio's `event: error` for a prompt
        // over the context; TGI's `error_type: "validation"`): sending it again would not help.
        const refused =
          (parsed as { error_type?: unknown }).error_type === 'validation' || PROMPT_REFUSED.test(message)
            ? 400
            : undefined;
        failure = new UpstreamStreamError(
          `The model backend reported an error in its stream: ${excerpt(message, MAX_QUOTED_ERROR)}`,
          { status: [code, status].map(Number).find((n) => Number.isInteger(n) && n >= 400 && n < 600) ?? refused },
        );
        return;
      }
      ready.push(parsed as ChatCompletionChunk);
    },
  });

  // Stops listening. After `[DONE]` the rest of the body is read away, so the connection goes back to the agent; an
  // early exit (a failure, the consumer stopped) closes it.
  const finish = () => {
    if (finished) return;
    finished = true;
    response.off('data', onData);
    if (done) response.resume();
    else if (!response.complete) response.destroy();
  };
  /** The next step of the iteration, if one can be told now. */
  const settled = (): IteratorResult<ChatCompletionChunk> | UpstreamStreamError | undefined => {
    if (taken < ready.length) {
      const value = ready[taken++]!;
      if (taken === ready.length) {
        ready = [];
        taken = 0;
        if (response.isPaused() && !finished) response.resume();
      }
      return { value, done: false };
    }
    if (failure) return failure;
    if (done || ended) return { value: done, done: true };
    return undefined;
  };
  /** Settles one `next()` with what was told: a chunk, the end, or the failure (the last two stop the reading). */
  const deliver = (
    next: IteratorResult<ChatCompletionChunk, boolean> | UpstreamStreamError,
    { resolve, reject }: NonNullable<typeof waiting>,
  ) => {
    if (next instanceof UpstreamStreamError) {
      finish();
      reject(next);
    } else {
      if (next.done) finish();
      resolve(next);
    }
  };
  /** Settles the waiting `next()`, if there is one and something to tell it. */
  const wake = () => {
    if (!waiting) return;
    const next = settled();
    if (next === undefined) return;
    const caller = waiting;
    waiting = undefined;
    deliver(next, caller);
  };
  const onData = (piece: string) => {
    onActivity?.();
    parser.feed(piece);
    if (ready.length - taken >= HIGH_WATER_CHUNKS) response.pause();
    wake();
  };
  response.on('data', onData);
  response.once('end', () => {
    ended = true;
    wake();
  });
  // Kept for good, as an error after the end must not go unhandled.
  response.on('error', (error) => {
    failure ??= new UpstreamStreamError(`The connection to the model backend broke mid-stream (${error.message})`, {
      cause: error,
    });
    wake();
  });
  response.once('close', () => {
    if (!done && !response.complete)
      failure ??= new UpstreamStreamError('The connection to the model backend closed before its stream ended');
    ended = true;
    wake();
  });

  return {
    next: () =>
      new Promise((resolve, reject) => {
        const next = settled();
        if (next === undefined) waiting = { resolve, reject };
        else deliver(next, { resolve, reject });
      }),
    return: () => {
      finish();
      return Promise.resolve({ value: false, done: true });
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
