/**
 * Embedder for a GGUF embedding model (nomic-embed-text, bge, all-MiniLM, …) run in this process by llama.cpp
 * (node-llama-cpp's embedding context), on the CPU. The model's own pooling (mean, CLS, last token) is used, as the
 * GGUF file declares it. One text at a time: a context evaluates one sequence, and the CPU threads are the limit.
 * A text longer than the context is cut to its first tokens (as OpenAI-compatible servers such as Ollama do),
 * rather than failing the file.
 */
import type { LlamaEmbeddingContext, LlamaModel, Token } from 'node-llama-cpp';
import type { Logger } from 'pino';
import { type GgufEmbeddingsConfig, ggufModelName } from '../../models-config.ts';
import { type Embedder, EmbeddingError } from '../embedder.ts';
import { GgufLoadError } from './llama-cpp-provider.ts';
import { llamaRuntime } from './llama-runtime.ts';

/** Tokens kept free of a text in the context: the beginning and end tokens the context adds itself. */
const RESERVED_TOKENS = 2;

export class LlamaCppEmbedder implements Embedder {
  readonly model: string;
  readonly dimensions: number;
  private readonly llamaModel: LlamaModel;
  private readonly context: LlamaEmbeddingContext;
  private readonly contextSize: number;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    name: string,
    dimensions: number,
    model: LlamaModel,
    context: LlamaEmbeddingContext,
    contextSize: number,
  ) {
    this.model = name;
    this.dimensions = dimensions;
    this.llamaModel = model;
    this.context = context;
    this.contextSize = contextSize;
  }

  /**
   * Loads the model and its embedding context, and embeds one text to learn the dimension. Throws GgufLoadError
   * when the file is not a usable GGUF embedding model. The model's name on the stores is the file's name without
   * `.gguf`.
   */
  static async open(config: GgufEmbeddingsConfig, logger: Logger): Promise<LlamaCppEmbedder> {
    const runtime = await llamaRuntime(logger);
    const { lib, llama } = runtime;
    const started = performance.now();
    try {
      await lib.readGgufFileInfo(config.path, { readTensorInfo: false, logWarnings: false });
    } catch (error) {
      throw new GgufLoadError(`${config.path} is not a GGUF model file: ${(error as Error).message}`);
    }
    let model: LlamaModel;
    let context: LlamaEmbeddingContext;
    try {
      model = await llama.loadModel({ modelPath: config.path, gpuLayers: 0 });
    } catch (error) {
      const why = runtime.recentProblems().join('; ');
      throw new GgufLoadError(
        `${config.path} cannot be loaded (truncated or corrupt?): ${(error as Error).message}${why ? ` (llama.cpp: ${why})` : ''}`,
      );
    }
    const contextSize = Math.max(16, Math.min(config.contextSize ?? model.trainContextSize, model.trainContextSize));
    try {
      context = await model.createEmbeddingContext({ contextSize, threads: config.threads });
    } catch (error) {
      await model.dispose();
      throw new GgufLoadError(`${config.path} cannot compute embeddings: ${(error as Error).message}`);
    }
    const name = ggufModelName(config.path);
    const probe = await context.getEmbeddingFor('dimension probe');
    const embedder = new LlamaCppEmbedder(name, probe.vector.length, model, context, contextSize);
    if (embedder.dimensions === 0) {
      await embedder.close();
      throw new GgufLoadError(`${config.path} gives empty embeddings: is it an embedding model?`);
    }
    logger.info(
      {
        model: config.path,
        dimensions: embedder.dimensions,
        contextSize,
        threads: config.threads,
        ms: Math.round(performance.now() - started),
      },
      'GGUF embedding model loaded',
    );
    return embedder;
  }

  embed(texts: readonly string[], signal: AbortSignal): Promise<Float32Array[]> {
    // One caller at a time on the context; a caller that gave up while waiting is skipped.
    const run = this.queue.then(async () => {
      const vectors: Float32Array[] = [];
      for (const text of texts) {
        signal.throwIfAborted();
        vectors.push(await this.one(text));
      }
      return vectors;
    });
    this.queue = run.catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.context.dispose();
    await this.llamaModel.dispose();
  }

  private async one(text: string): Promise<Float32Array> {
    let tokens: Token[] = this.llamaModel.tokenize(text);
    const room = this.contextSize - RESERVED_TOKENS - 1;
    if (tokens.length > room) tokens = tokens.slice(0, room);
    try {
      const embedding = await this.context.getEmbeddingFor(tokens);
      // An empty text (no tokens) has no embedding: a zero vector, which matches nothing.
      if (embedding.vector.length === 0) return new Float32Array(this.dimensions);
      return Float32Array.from(embedding.vector);
    } catch (error) {
      throw new EmbeddingError(`the GGUF embedding model failed: ${(error as Error).message}`, { retryable: false });
    }
  }
}
