/**
 * A scripted OpenAI Chat Completions server on 127.0.0.1 for tests and benchmarks: real HTTP and real SSE framing,
 * so the code under test talks to it through its ordinary client. Replies are scripted per request (`enqueue`) or
 * by a default (`setDefault`); every request is recorded, including when the client hung up before the end.
 *
 * It also serves `POST /v1/embeddings` with vectors made for the test (`embed`, by default conceptEmbedding of
 * CONCEPTS: synonyms share a dimension), recorded in `embeddingRequests`; `enqueueEmbeddingErrors` makes the next
 * embedding requests fail.
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** The parsed JSON body of a `POST /v1/chat/completions`, loosely typed: tests assert on what was sent. */
export interface ChatCompletionsBody {
  model: string;
  messages: Array<Record<string, unknown>>;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  tools?: Array<{ type: string; function: { name: string; description?: string; parameters?: unknown } }>;
  [key: string]: unknown;
}

export interface UpstreamUsage {
  prompt_tokens: number;
  completion_tokens: number;
}

export interface RecordedRequest {
  body: ChatCompletionsBody;
  headers: IncomingHttpHeaders;
  /** The request's path and query, as sent. */
  url: string;
  /** Date.now() when the body had been read. */
  receivedAt: number;
  /** The reply this request was answered with. */
  reply: Reply;
  /** Date.now() when the response had been fully written. */
  finishedAt?: number;
  /** Date.now() when the client closed the connection before the response was complete. */
  abortedAt?: number;
  /**
   * performance.now() as each text content chunk of a streamed reply was handed to the socket, in order (benchmarks
   * compare it with when a client got it: same process, same clock). Absent until the first one is written.
   */
  contentWrittenAt?: number[];
}

export interface TextReply {
  /** The completion; an array is streamed one element per SSE chunk. */
  text: string | string[];
  /** `null`: the upstream reports no usage at all. Default: estimated from the request and the text (~4 chars a token). */
  usage?: UpstreamUsage | null;
  /** `null`: the stream ends without any finish_reason (with `[DONE]` unless `done` is false). */
  finishReason?: 'stop' | 'length' | 'content_filter' | 'error' | null;
  /** `false`: the body ends without `data: [DONE]`, as a stream cut short by a proxy would (default true). */
  done?: boolean;
  /** Overrides the server's `chunkDelayMs` for this reply. */
  chunkDelayMs?: number;
  /** The last piece is sent once this settles: a test keeps the stream going until it is ready for its end. */
  holdLast?: Promise<unknown>;
}

export interface ToolCallsReply {
  /** Streamed in order: each call's first delta has id/name/empty arguments, then its arguments in 2+ fragments. */
  toolCalls: Array<{ name: string; arguments: string; id?: string }>;
  usage?: UpstreamUsage | null;
  chunkDelayMs?: number;
  /** Default `tool_calls`; `length`: cut off at the token limit (the last call's arguments as given, cut). */
  finishReason?: 'tool_calls' | 'length';
  /** The stream's end (its finish_reason) is sent once this settles: the calls stay the ones being written. */
  holdLast?: Promise<unknown>;
  /** Text the model writes before its calls, one piece per chunk (streamed only). */
  textBefore?: string[];
}

export interface ErrorReply {
  status: number;
  /** Default: `{ error: { message, type, param: null, code: null } }` with a message fitting the status. */
  body?: unknown;
  headers?: Record<string, string>;
}

export interface HangReply {
  hang: true;
  /** Send `200` and the SSE headers first (the stream then stalls); by default nothing at all is sent. */
  sendHeaders?: boolean;
}

export interface ResetReply {
  /** Streams the first `resetAfterChunks` elements of `text`, then destroys the socket. */
  resetAfterChunks: number;
  text: string[];
}

/**
 * A body sent as it is, whatever the request asked for: a proxy's HTML page, a JSON body where a stream was asked
 * for, malformed or empty SSE. An array is written one element at a time, `chunkDelayMs` apart.
 */
export interface RawReply {
  raw: string | string[];
  /** No `content-type` at all when unset. */
  contentType?: string;
  /** Default 200. */
  status?: number;
}

export type Reply = TextReply | ToolCallsReply | ErrorReply | HangReply | ResetReply | RawReply;

/** vLLM's 400 when the model's chat template wants roles to alternate and the request's do not. */
export const ROLES_MUST_ALTERNATE: ErrorReply = {
  status: 400,
  body: {
    object: 'error',
    message: 'Conversation roles must alternate user/assistant/user/assistant/...',
    type: 'BadRequestError',
    param: null,
    code: 400,
  },
};

/** llama.cpp's server's error reply: `{ error: { code, message, type } }`, its code the status. */
export function llamaCppError(status: number, message: string): ErrorReply {
  return {
    status,
    body: { error: { code: status, message, type: status >= 500 ? 'server_error' : 'invalid_request_error' } },
  };
}

export interface FakeUpstreamOptions {
  /** Delay before the first byte of every response. */
  latencyMs?: number;
  /** Delay between two SSE chunks. */
  chunkDelayMs?: number;
}

const DEFAULT_REPLY: Reply = { text: 'OK' };

/** The parsed body of a `POST /v1/embeddings`. */
export interface EmbeddingsBody {
  model: string;
  input: string | string[];
  [key: string]: unknown;
}

/**
 * A tiny concept vocabulary for embedding tests: each entry is a dimension, and every word listed under it maps
 * there, so "automobile maintenance" and "car servicing" are one vector while sharing no word.
 */
export const CONCEPTS: Record<string, readonly string[]> = {
  vehicle: ['car', 'cars', 'automobile', 'automobiles', 'vehicle', 'vehicles'],
  upkeep: ['maintenance', 'servicing', 'service', 'repair', 'repairs'],
  food: ['pizza', 'pasta', 'recipe', 'recipes', 'dinner'],
  weather: ['rain', 'storm', 'forecast', 'weather'],
  money: ['invoice', 'invoices', 'payment', 'billing', 'salary'],
};

/**
 * A bag-of-concepts embedding: each word of a concept adds 1 to its dimension; other words add nothing, so a text
 * with no concept word is the zero vector (it has no direction and matches nothing).
 */
export function conceptEmbedding(concepts: Record<string, readonly string[]>): (text: string) => number[] {
  const names = Object.keys(concepts);
  const dimension = new Map<string, number>();
  for (const [i, name] of names.entries()) for (const word of concepts[name]!) dimension.set(word, i);
  return (text) => {
    const vector = new Array<number>(names.length).fill(0);
    for (const word of text.toLowerCase().match(/\p{L}+/gu) ?? []) {
      const at = dimension.get(word);
      if (at !== undefined) vector[at]! += 1;
    }
    return vector;
  };
}

function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

function defaultErrorMessage(status: number): { message: string; type: string } {
  if (status === 429) return { message: 'Rate limit reached. Please try again later.', type: 'requests' };
  if (status >= 500) return { message: 'The server had an error while processing your request.', type: 'server_error' };
  return { message: `Request failed with status ${status}.`, type: 'invalid_request_error' };
}

/** Splits a string into `count` consecutive fragments (some possibly empty when the string is shorter). */
function fragments(value: string, count: number): string[] {
  const size = Math.ceil(value.length / count);
  return Array.from({ length: count }, (_, i) => value.slice(i * size, (i + 1) * size));
}

export class FakeUpstream {
  readonly baseUrl: string;
  readonly requests: RecordedRequest[] = [];
  /** TCP connections accepted so far (a client that keeps its connections alive opens few). */
  connections = 0;
  /** Called for every request once recorded, before its reply is chosen (it may `enqueue`). */
  onRequest: ((request: RecordedRequest) => void) | undefined;
  /** The vector `POST /v1/embeddings` answers for a text. */
  embed: (text: string) => number[] = conceptEmbedding(CONCEPTS);
  /** What `GET /v1/models` lists; undefined: it is not served (404), as many endpoints do not serve it. */
  models: Array<{ id: string; created?: number; owned_by?: string }> | undefined;
  /** How many `GET /v1/models` came. */
  modelListRequests = 0;
  /** Every `POST /v1/embeddings`, answered or not. */
  readonly embeddingRequests: Array<{ body: EmbeddingsBody; headers: IncomingHttpHeaders }> = [];
  private readonly embeddingErrors: ErrorReply[] = [];

  private readonly server: Server;
  private readonly options: FakeUpstreamOptions;
  private readonly sockets = new Set<Socket>();
  private readonly closing = new AbortController();
  private readonly queue: Reply[] = [];
  private fallback: Reply | ((request: RecordedRequest) => Reply) = DEFAULT_REPLY;
  private readonly waiters = new Set<() => void>();

  private constructor(server: Server, options: FakeUpstreamOptions) {
    this.server = server;
    this.options = options;
    const { port } = server.address() as AddressInfo;
    this.baseUrl = `http://127.0.0.1:${port}/v1`;
    // Every reply's pauses listen for the fake's close, as many at once as streams are open.
    setMaxListeners(0, this.closing.signal);
  }

  static async start(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const upstream = new FakeUpstream(server, options);
    server.on('connection', (socket) => {
      upstream.connections += 1;
      upstream.sockets.add(socket);
      socket.once('close', () => upstream.sockets.delete(socket));
    });
    server.on('request', (req, res) => {
      upstream.handle(req, res).catch((error: unknown) => {
        if (!res.headersSent && !res.destroyed) {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { message: String(error), type: 'server_error', param: null, code: null } }));
        } else res.destroy();
      });
    });
    return upstream;
  }

  /** Replies for the next requests, consumed in order, one per request. */
  enqueue(...replies: Reply[]): void {
    this.queue.push(...replies);
  }

  /** The reply when the queue is empty (initially the text "OK"). */
  setDefault(reply: Reply | ((request: RecordedRequest) => Reply)): void {
    this.fallback = reply;
  }

  /** The next embedding requests fail with these replies, one each, in order. */
  enqueueEmbeddingErrors(...replies: ErrorReply[]): void {
    this.embeddingErrors.push(...replies);
  }

  /** Resolves once at least `count` requests have been recorded. */
  waitForRequests(count: number, timeoutMs = 2000): Promise<RecordedRequest[]> {
    return this.waitFor(() => this.requests.length >= count, timeoutMs, `${count} upstream request(s)`).then(() =>
      this.requests.slice(0, count),
    );
  }

  /** Resolves once the client has closed `request`'s connection before the response was complete. */
  waitForAbort(request: RecordedRequest, timeoutMs = 2000): Promise<number> {
    return this.waitFor(() => request.abortedAt !== undefined, timeoutMs, 'the client to abort the request').then(
      () => request.abortedAt!,
    );
  }

  /**
   * Resolves once `request`'s response is over, with how it ended: `aborted` when the client closed the connection
   * before it was complete, `finished` when it was written whole. A test asserts that a stream was cut without
   * asserting how long anything took.
   */
  waitForEnd(request: RecordedRequest, timeoutMs = 10_000): Promise<'aborted' | 'finished'> {
    return this.waitFor(
      () => request.abortedAt !== undefined || request.finishedAt !== undefined,
      timeoutMs,
      'the response to end',
    ).then(() => (request.abortedAt !== undefined ? 'aborted' : 'finished'));
  }

  /** Stops listening and destroys every open connection, hanging ones included. */
  async close(): Promise<void> {
    this.closing.abort();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!condition()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** `POST /v1/embeddings` in OpenAI's shape: `{ object: 'list', data: [{ object, index, embedding }], model, usage }`. */
  private embeddings(req: IncomingMessage, res: ServerResponse, raw: Buffer): void {
    let body: EmbeddingsBody;
    try {
      body = JSON.parse(raw.toString('utf8')) as EmbeddingsBody;
    } catch {
      sendJson(res, 400, { error: { message: 'bad JSON', type: 'invalid_request_error', param: null, code: null } });
      return;
    }
    this.embeddingRequests.push({ body, headers: req.headers });
    const input: unknown = body?.input;
    if (!(typeof input === 'string' || (Array.isArray(input) && input.every((text) => typeof text === 'string')))) {
      const message = "'input' must be a string or an array of strings.";
      sendJson(res, 400, { error: { message, type: 'invalid_request_error', param: 'input', code: null } });
      return;
    }
    const failure = this.embeddingErrors.shift();
    if (failure) {
      const error = failure.body ?? { error: { ...defaultErrorMessage(failure.status), param: null, code: null } };
      sendJson(res, failure.status, error, failure.headers);
      return;
    }
    const inputs = Array.isArray(body.input) ? body.input : [body.input];
    const tokens = inputs.reduce((n, text) => n + estimateTokens(text), 0);
    sendJson(res, 200, {
      object: 'list',
      data: inputs.map((text, index) => ({ object: 'embedding', index, embedding: this.embed(text) })),
      model: body.model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'POST' && path === '/v1/embeddings') return this.embeddings(req, res, Buffer.concat(chunks));
    if (req.method === 'GET' && path === '/v1/models' && this.models !== undefined) {
      this.modelListRequests += 1;
      return sendJson(res, 200, { object: 'list', data: this.models.map((model) => ({ object: 'model', ...model })) });
    }
    if (req.method !== 'POST' || path !== '/v1/chat/completions') {
      return sendJson(res, 404, {
        error: {
          message: `Unknown request URL: ${req.method} ${path}`,
          type: 'invalid_request_error',
          param: null,
          code: 'unknown_url',
        },
      });
    }
    let body: ChatCompletionsBody;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ChatCompletionsBody;
    } catch {
      return sendJson(res, 400, {
        error: {
          message: 'We could not parse the JSON body of your request.',
          type: 'invalid_request_error',
          param: null,
          code: null,
        },
      });
    }

    const recorded: RecordedRequest = {
      body,
      headers: req.headers,
      url: req.url ?? '',
      receivedAt: Date.now(),
      reply: DEFAULT_REPLY,
    };
    this.requests.push(recorded);
    this.onRequest?.(recorded);
    const queued = this.queue.shift();
    const fallback = this.fallback;
    const reply = queued ?? (typeof fallback === 'function' ? fallback(recorded) : fallback);
    recorded.reply = reply;

    let resetByUs = false;
    res.once('close', () => {
      if (res.writableFinished) recorded.finishedAt = Date.now();
      else if (!resetByUs && !this.closing.signal.aborted) recorded.abortedAt = Date.now();
      this.notify();
    });
    this.notify();

    const writer = new ReplyWriter(
      res,
      body,
      this.closing.signal,
      () => {
        resetByUs = true;
      },
      () => {
        recorded.contentWrittenAt ??= [];
        recorded.contentWrittenAt.push(performance.now());
      },
    );
    if (!(await writer.pause(this.options.latencyMs))) return;
    await writer.write(reply, this.options.chunkDelayMs ?? 0);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

/** Writes one reply, as SSE when the request asked for a stream, and stops quietly once the connection is gone. */
class ReplyWriter {
  private readonly id = `chatcmpl-${randomUUID().replaceAll('-', '').slice(0, 24)}`;
  private readonly created = Math.floor(Date.now() / 1000);

  constructor(
    private readonly res: ServerResponse,
    private readonly body: ChatCompletionsBody,
    private readonly closing: AbortSignal,
    private readonly markReset: () => void,
    /** Called just before each text content chunk of a stream is written. */
    private readonly markContent: () => void = () => {},
  ) {}

  private get gone(): boolean {
    return this.res.destroyed || this.closing.aborted;
  }

  /** Waits `ms`; false when the connection went away meanwhile. */
  async pause(ms: number | undefined): Promise<boolean> {
    if (ms && ms > 0) {
      try {
        await sleep(ms, undefined, { signal: this.closing });
      } catch {
        return false;
      }
    }
    return !this.gone;
  }

  async write(reply: Reply, serverChunkDelayMs: number): Promise<void> {
    if ('raw' in reply) return this.raw(reply, serverChunkDelayMs);
    if ('status' in reply) return this.error(reply);
    if ('hang' in reply) {
      if (reply.sendHeaders) this.startStream();
      return; // never finishes; close() or the client ends it
    }
    const streaming = this.body.stream === true;
    if ('resetAfterChunks' in reply) {
      if (streaming) {
        this.startStream();
        await this.send({ role: 'assistant', content: '' }, null);
        for (const piece of reply.text.slice(0, reply.resetAfterChunks)) {
          if (!(await this.pause(serverChunkDelayMs))) return;
          this.markContent();
          await this.send({ content: piece }, null);
        }
        await this.pause(10); // let the client read what was sent before the reset
      }
      this.markReset();
      this.res.destroy();
      return;
    }
    const delay = reply.chunkDelayMs ?? serverChunkDelayMs;
    if ('toolCalls' in reply) return streaming ? this.streamToolCalls(reply, delay) : this.completeToolCalls(reply);
    return streaming ? this.streamText(reply, delay) : this.completeText(reply);
  }

  private error(reply: ErrorReply): void {
    const body = reply.body ?? { error: { ...defaultErrorMessage(reply.status), param: null, code: null } };
    sendJson(this.res, reply.status, body, reply.headers);
  }

  private async raw(reply: RawReply, delay: number): Promise<void> {
    this.res.writeHead(
      reply.status ?? 200,
      reply.contentType === undefined ? {} : { 'content-type': reply.contentType },
    );
    this.res.flushHeaders();
    for (const piece of typeof reply.raw === 'string' ? [reply.raw] : reply.raw) {
      if (!(await this.pause(delay))) return;
      await new Promise<void>((resolve) => this.res.write(piece, () => resolve()));
    }
    if (!this.gone) this.res.end();
  }

  private usage(reply: TextReply | ToolCallsReply, completion: string): UpstreamUsage | null {
    if (reply.usage !== undefined) return reply.usage;
    return {
      prompt_tokens: estimateTokens(JSON.stringify(this.body.messages ?? [])),
      completion_tokens: estimateTokens(completion),
    };
  }

  private usageField(usage: UpstreamUsage | null): ({ total_tokens: number } & UpstreamUsage) | undefined {
    return usage ? { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } : undefined;
  }

  private get includeUsage(): boolean {
    return this.body.stream_options?.include_usage === true;
  }

  private startStream(): void {
    this.res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-request-id': `req_${randomUUID().replaceAll('-', '')}`,
    });
    this.res.flushHeaders();
  }

  private frame(payload: unknown): Promise<void> {
    if (this.gone) return Promise.resolve();
    return new Promise((resolve) => this.res.write(`data: ${JSON.stringify(payload)}\n\n`, () => resolve()));
  }

  private chunk(choices: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.created,
      model: this.body.model,
      system_fingerprint: 'fp_fake',
      choices,
      ...(this.includeUsage ? { usage: null } : {}),
      ...extra,
    };
  }

  private send(delta: Record<string, unknown>, finishReason: string | null): Promise<void> {
    return this.frame(this.chunk([{ index: 0, delta, logprobs: null, finish_reason: finishReason }]));
  }

  private async finishStream(
    finishReason: string | null,
    usage: UpstreamUsage | null,
    delay: number,
    done = true,
  ): Promise<void> {
    if (!(await this.pause(delay))) return;
    if (finishReason !== null) await this.send({}, finishReason);
    if (this.includeUsage && usage) await this.frame(this.chunk([], { usage: this.usageField(usage) }));
    if (this.gone) return;
    this.res.end(done ? 'data: [DONE]\n\n' : undefined);
  }

  private async streamText(reply: TextReply, delay: number): Promise<void> {
    const pieces = typeof reply.text === 'string' ? [reply.text] : reply.text;
    this.startStream();
    await this.send({ role: 'assistant', content: '', refusal: null }, null);
    for (const [i, piece] of pieces.entries()) {
      if (!(await this.pause(delay))) return;
      if (i === pieces.length - 1 && reply.holdLast) await reply.holdLast;
      this.markContent();
      await this.send({ content: piece }, null);
    }
    await this.finishStream(
      reply.finishReason === undefined ? 'stop' : reply.finishReason,
      this.usage(reply, pieces.join('')),
      delay,
      reply.done,
    );
  }

  private async streamToolCalls(reply: ToolCallsReply, delay: number): Promise<void> {
    this.startStream();
    await this.send({ role: 'assistant', content: null }, null);
    for (const piece of reply.textBefore ?? []) {
      if (!(await this.pause(delay))) return;
      this.markContent();
      await this.send({ content: piece }, null);
    }
    for (const [index, call] of reply.toolCalls.entries()) {
      if (!(await this.pause(delay))) return;
      const id = call.id ?? `call_${randomUUID().replaceAll('-', '').slice(0, 24)}`;
      await this.send(
        { tool_calls: [{ index, id, type: 'function', function: { name: call.name, arguments: '' } }] },
        null,
      );
      for (const fragment of fragments(call.arguments, call.arguments.length >= 6 ? 3 : 2)) {
        if (!(await this.pause(delay))) return;
        await this.send({ tool_calls: [{ index, function: { arguments: fragment } }] }, null);
      }
    }
    const completion = reply.toolCalls.map((call) => call.name + call.arguments).join('');
    if (reply.holdLast) await reply.holdLast;
    await this.finishStream(reply.finishReason ?? 'tool_calls', this.usage(reply, completion), delay);
  }

  private completion(message: Record<string, unknown>, finishReason: string, usage: UpstreamUsage | null): unknown {
    return {
      id: this.id,
      object: 'chat.completion',
      created: this.created,
      model: this.body.model,
      system_fingerprint: 'fp_fake',
      choices: [{ index: 0, message: { refusal: null, ...message }, logprobs: null, finish_reason: finishReason }],
      ...(usage ? { usage: this.usageField(usage) } : {}),
    };
  }

  private completeText(reply: TextReply): void {
    const text = typeof reply.text === 'string' ? reply.text : reply.text.join('');
    const body = this.completion(
      { role: 'assistant', content: text },
      reply.finishReason ?? 'stop',
      this.usage(reply, text),
    );
    sendJson(this.res, 200, body);
  }

  private completeToolCalls(reply: ToolCallsReply): void {
    const toolCalls = reply.toolCalls.map((call) => ({
      id: call.id ?? `call_${randomUUID().replaceAll('-', '').slice(0, 24)}`,
      type: 'function',
      function: { name: call.name, arguments: call.arguments },
    }));
    const completion = reply.toolCalls.map((call) => call.name + call.arguments).join('');
    const body = this.completion(
      { role: 'assistant', content: null, tool_calls: toolCalls },
      reply.finishReason ?? 'tool_calls',
      this.usage(reply, completion),
    );
    sendJson(this.res, 200, body);
  }
}
