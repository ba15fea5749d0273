/**
 * Embedder for any OpenAI-compatible `POST {base}/embeddings` endpoint (OpenAI, Ollama, vLLM, llama.cpp's server,
 * LiteLLM…), over node:http with a keep-alive agent like the chat client (chat-completions-client.ts): the request
 * is `{ model, input: string[] }`, the answer `{ data: [{ index, embedding: number[] }] }`. Texts go in batches of
 * BATCH_SIZE; a batch that fails with a 429, a 5xx, a timeout or a reset is retried with the run executor's policy
 * (exponential backoff from 500 ms up to 8 s, or the upstream's retry-after up to 60 s), `maxRetries` times.
 */
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Embedder, EmbeddingError, type EmbeddingPurpose } from '../embedder.ts';
import { retryDelayMs } from '../retry-delay.ts';
import { endpointUrl, keyHeader, upstreamMessage, withoutKey } from './chat-completions-client.ts';
import { retryAfterMs, retryHintMs } from './openai-compatible-provider.ts';

export interface OpenAICompatibleEmbedderOptions {
  /** Up to and including `/v1`. */
  baseURL: string;
  apiKey?: string | undefined;
  model: string;
  /** Bound on one request, from sending it to the end of the answer. */
  timeoutMs: number;
  /** Attempts after the first for a batch that failed with a retryable error. */
  maxRetries: number;
  /** Texts per request (default BATCH_SIZE). */
  batchSize?: number | undefined;
}

/**
 * Texts per request: OpenAI takes up to 2048 inputs, but local servers embed a request as one batch of tokens, and
 * 64 chunks of 800 tokens (the default chunking) is already 51,200 tokens.
 */
export const BATCH_SIZE = 64;
/** How servers say a request holds too many inputs, or too many tokens in all (`OpenAICompatibleEmbedder.learn`). */
const REFUSES_BATCH =
  /batch size|maximum allowed batch|too many (?:inputs|tokens overall|tokens in batch)|split into more batches|should not be larger than/i;
/** How servers say one input is longer than the model takes. */
const REFUSES_LENGTH =
  /input length exceeds|too large to process|maximum context length|must have less than \d+ tokens|exceeds the (?:model'?s? )?(?:maximum )?context/i;
/** Inputs are not cut shorter than this, in characters: an endpoint refusing those refuses for another reason. */
const MIN_INPUT_CHARS = 256;

/** Answers are read up to this size (64 × 3072 floats as JSON text is ~4 MB). */
const MAX_BODY = 256 * 1024 * 1024;

export class OpenAICompatibleEmbedder implements Embedder {
  readonly model: string;
  private dims: number | undefined;
  private readonly endpoint: URL;
  private readonly apiKey: string;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  /** Texts per request: as configured, or fewer once the endpoint refused as many (`learn`). */
  private batchSize: number;
  /** The longest input sent, in characters, once the endpoint refused a longer one (`learn`). */
  private maxChars: number | undefined;
  /** Each request says what it embeds (`input_type`), once the endpoint asked for it (`learn`). */
  private inputType = false;
  private readonly agent: http.Agent;
  private readonly send: typeof http.request;

  constructor(options: OpenAICompatibleEmbedderOptions) {
    this.model = options.model;
    this.endpoint = endpointUrl(options.baseURL, 'embeddings');
    this.apiKey = options.apiKey ?? 'unused';
    this.timeoutMs = options.timeoutMs;
    this.maxRetries = options.maxRetries;
    this.batchSize = Math.max(1, options.batchSize ?? BATCH_SIZE);
    const secure = this.endpoint.protocol === 'https:';
    this.agent = secure ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
    this.send = secure ? https.request : http.request;
  }

  get dimensions(): number | undefined {
    return this.dims;
  }

  async embed(
    texts: readonly string[],
    signal: AbortSignal,
    purpose: EmbeddingPurpose = 'document',
  ): Promise<Float32Array[]> {
    const vectors: Float32Array[] = [];
    // The batch size may shrink meanwhile (`learn`): each batch is cut at the size learnt so far.
    for (let i = 0; i < texts.length; ) {
      const size = this.batchSize;
      vectors.push(...(await this.batch(texts.slice(i, i + size), signal, purpose)));
      i += size;
    }
    return vectors;
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }

  private async batch(
    input: readonly string[],
    signal: AbortSignal,
    purpose: EmbeddingPurpose,
  ): Promise<Float32Array[]> {
    for (let attempt = 0; ; attempt++) {
      signal.throwIfAborted();
      const max = this.maxChars;
      const sent = max === undefined ? input : input.map((text) => (text.length > max ? text.slice(0, max) : text));
      // NVIDIA NIM's values: `passage` for what is searched, `query` for what searches it.
      const told = this.inputType ? { input_type: purpose === 'query' ? 'query' : 'passage' } : {};
      try {
        const answer = await this.post({ model: this.model, input: sent, ...told }, signal);
        // One embedding for a list of inputs (FastFlowLM, older llama-box: the list embedded as one text): one input
        // per request from then on.
        const data = (answer as { data?: unknown }).data;
        if (input.length > 1 && Array.isArray(data) && data.length === 1) {
          this.batchSize = 1;
          return this.embed(input, signal, purpose);
        }
        return this.vectors(answer, input.length);
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        if (error instanceof EmbeddingError && error.refusal !== undefined) {
          const learnt = this.learn(error.refusal, sent);
          // Smaller batches: this one is sent again cut at the new size; shorter inputs: sent again at once.
          if (learnt === 'batch') return this.embed(input, signal, purpose);
          if (learnt === 'length' || learnt === 'input_type') {
            attempt--;
            continue;
          }
        }
        if (!(error instanceof EmbeddingError) || !error.retryable || attempt >= this.maxRetries) throw error;
        await sleep(retryDelayMs(attempt, error.retryAfterMs), undefined, { signal });
      }
    }
  }

  /**
   * Learns from the endpoint's refusal of `sent` what it takes, for this and every later request: fewer inputs per
   * request, or shorter inputs. Servers limit both below what OpenAI takes, and say so only in their errors:
   * - a batch: TEI's 422 "batch size 64 > maximum allowed batch size 32" (its default), Mistral's "Too many tokens
   *   overall, split into more batches", DashScope's "should not be larger than 10";
   * - an input: an embedding model's context is often 512 tokens, under the 800 of a default chunk (counted with
   *   OpenAI's tokenizer, fewer than a BERT model's): Ollama's 400 "the input length exceeds the context length",
   *   llama.cpp's 500 "input (992 tokens) is too large to process. increase the physical batch size", vLLM's "maximum
   *   context length is 512 tokens", TEI's "must have less than 512 tokens". An input is then embedded by its start
   *   (its text is stored and searched by keywords whole).
   * Each step halves what it bounds (or takes the number the error names), so the adapting ends.
   */
  private learn(refusal: string, sent: readonly string[]): 'batch' | 'length' | 'input_type' | undefined {
    // An asymmetric model that must be told what it embeds: NVIDIA NIM's 400 "'input_type' parameter is required for
    // asymmetric models".
    if (!this.inputType && /input_type/i.test(refusal) && /required/i.test(refusal)) {
      this.inputType = true;
      return 'input_type';
    }
    // Length first: llama.cpp's refusal of a long input also speaks of its own "physical batch size".
    if (REFUSES_LENGTH.test(refusal)) {
      const longest = Math.max(...sent.map((text) => text.length));
      if (longest <= MIN_INPUT_CHARS) return undefined;
      this.maxChars = Math.max(MIN_INPUT_CHARS, Math.floor(longest / 2));
      return 'length';
    }
    if (sent.length > 1 && REFUSES_BATCH.test(refusal)) {
      const named = Number(
        /maximum allowed batch size (\d+)|not be larger than (\d+)/i.exec(refusal)?.slice(1).find(Boolean),
      );
      this.batchSize = Number.isInteger(named) && named > 0 && named < sent.length ? named : Math.ceil(sent.length / 2);
      return 'batch';
    }
    return undefined;
  }

  /** The answer's vectors by `index`, checked: one per input, every one of the same length. */
  private vectors(body: unknown, count: number): Float32Array[] {
    const data = (body as { data?: unknown } | null)?.data;
    const invalid = (why: string) =>
      new EmbeddingError(`the embeddings endpoint ${this.endpoint.href} answered with ${why}`, { retryable: false });
    if (!Array.isArray(data)) throw invalid('no `data` list');
    if (data.length !== count) throw invalid(`${data.length} embeddings for ${count} inputs`);
    const vectors = new Array<Float32Array>(count);
    for (const [position, item] of data.entries()) {
      const { index, embedding } = (item ?? {}) as { index?: unknown; embedding?: unknown };
      const at = typeof index === 'number' ? index : position;
      if (!Array.isArray(embedding) || embedding.length === 0 || !embedding.every((x) => typeof x === 'number'))
        throw invalid('an embedding that is not a list of numbers (base64 answers are not supported)');
      if (at < 0 || at >= count || vectors[at] !== undefined) throw invalid(`a duplicate or out-of-range index ${at}`);
      vectors[at] = Float32Array.from(embedding as number[]);
    }
    const dims = vectors[0]!.length;
    if (vectors.some((v) => v.length !== dims)) throw invalid('embeddings of different lengths');
    if (this.dims !== undefined && this.dims !== dims)
      throw invalid(`${dims}-dimensional embeddings after ${this.dims}-dimensional ones`);
    this.dims = dims;
    return vectors;
  }

  /**
   * One request: the parsed JSON answer, or an EmbeddingError saying whether a retry may help. Stopped by `signal`
   * (the ingestion worker's, which lives as long as the server) or the timeout, each listened to only while the
   * request lasts: AbortSignal.any would keep every request's combination for as long as `signal` lives
   * (nodejs/node#55351).
   */
  private async post(body: unknown, signal: AbortSignal): Promise<unknown> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const both = new AbortController();
    const abort = () => both.abort(signal.aborted ? signal.reason : timeout.reason);
    signal.addEventListener('abort', abort);
    timeout.addEventListener('abort', abort);
    if (signal.aborted) abort();
    try {
      return await this.postWithin(body, signal, timeout, both.signal);
    } finally {
      signal.removeEventListener('abort', abort);
      timeout.removeEventListener('abort', abort);
    }
  }

  private async postWithin(
    body: unknown,
    signal: AbortSignal,
    timeout: AbortSignal,
    both: AbortSignal,
  ): Promise<unknown> {
    const payload = JSON.stringify(body);
    let response: IncomingMessage;
    try {
      response = await new Promise<IncomingMessage>((resolve, reject) => {
        const request = this.send(this.endpoint, {
          method: 'POST',
          agent: this.agent,
          signal: both,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
            accept: 'application/json',
            ...keyHeader(this.endpoint.href, this.apiKey),
          },
        });
        request.once('response', resolve);
        request.once('error', reject);
        request.end(payload);
      });
    } catch (error) {
      throw this.failure(error, signal, timeout);
    }
    let text: string;
    try {
      text = await readBody(response);
    } catch (error) {
      throw this.failure(error, signal, timeout);
    }
    const status = response.statusCode ?? 0;
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = text;
    }
    if (status >= 400) {
      const said = upstreamMessage(parsed);
      const detail = withoutKey(said ?? (typeof parsed === 'string' ? parsed.slice(0, 200) : ''), this.apiKey);
      const message = `the embeddings endpoint ${this.endpoint.href} returned ${status}${detail ? `: ${detail}` : ''}`;
      if (status === 429)
        throw new EmbeddingError(message, {
          retryable: true,
          retryAfterMs: retryAfterMs(response.headers) ?? retryHintMs(parsed, said),
        });
      throw new EmbeddingError(message, {
        retryable: status >= 500 || status === 408 || status === 409,
        refusal: said,
      });
    }
    if (typeof parsed !== 'object' || parsed === null)
      throw new EmbeddingError(
        `the embeddings endpoint ${this.endpoint.href} answered with something other than JSON`,
        {
          retryable: false,
        },
      );
    return parsed;
  }

  private failure(error: unknown, signal: AbortSignal, timeout: AbortSignal): unknown {
    if (signal.aborted) return signal.reason;
    if (timeout.aborted)
      return new EmbeddingError(
        `the embeddings endpoint ${this.endpoint.href} did not answer within ${this.timeoutMs} ms`,
        { retryable: true },
      );
    const reason = withoutKey(error instanceof Error ? error.message : String(error), this.apiKey);
    return new EmbeddingError(`the embeddings endpoint ${this.endpoint.href} could not be reached: ${reason}`, {
      retryable: true,
    });
  }
}

async function readBody(response: IncomingMessage): Promise<string> {
  response.setEncoding('utf8');
  let text = '';
  for await (const piece of response) {
    text += piece as string;
    if (text.length > MAX_BODY) {
      response.destroy();
      throw new Error(`the answer is larger than ${MAX_BODY} bytes`);
    }
  }
  if (!response.complete) throw new Error('the connection closed before the answer was complete');
  return text;
}
