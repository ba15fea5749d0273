/**
 * The small interface every embedding backend implements: texts in, one vector each out. Implementations:
 * openai-compatible/openai-compatible-embedder.ts (any `POST /v1/embeddings` endpoint) and
 * llama-cpp/llama-cpp-embedder.ts (a GGUF embedding model in-process); embedders.ts builds the configured one.
 * Vector stores record the `model` that embedded them, so a store is never searched with another model's vectors.
 */
/**
 * What texts are embedded for: a file's chunks (`document`, the default) or a search's queries (`query`). Asymmetric
 * models embed the two differently, and some endpoints want to be told which (OpenAICompatibleEmbedder).
 */
export type EmbeddingPurpose = 'document' | 'query';

export interface Embedder {
  /** The model's name, as recorded on the vector stores it embeds. */
  readonly model: string;
  /** The vectors' length: known after the first call (or once the model is loaded). */
  readonly dimensions: number | undefined;
  /**
   * One vector per text, in order, all of `dimensions` numbers. Batching and retries are the embedder's own;
   * throws EmbeddingError once they are exhausted, or the signal's reason when it is aborted.
   */
  embed(texts: readonly string[], signal: AbortSignal, purpose?: EmbeddingPurpose): Promise<Float32Array[]>;
  close(): Promise<void>;
}

/** Embedding failed: `message` says why, for a file's `last_error` and the log. */
export class EmbeddingError extends Error {
  /** Whether the same request may succeed if sent again (429, 5xx, timeouts, resets). */
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  /** The endpoint's own words for a refusal (4xx, or a 5xx that names the request's size), when it gave any. */
  readonly refusal: string | undefined;

  constructor(
    message: string,
    options: { retryable: boolean; retryAfterMs?: number | undefined; refusal?: string | undefined },
  ) {
    super(message);
    this.name = 'EmbeddingError';
    this.retryable = options.retryable;
    this.retryAfterMs = options.retryAfterMs;
    this.refusal = options.refusal;
  }
}
