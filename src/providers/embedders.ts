import type { Logger } from 'pino';
import { type EmbeddingsConfig, routePrefix } from '../models-config.ts';
import type { Embedder } from './embedder.ts';
import { ModelLoadError } from './model-router.ts';
import { OpenAICompatibleEmbedder } from './openai-compatible/openai-compatible-embedder.ts';

/**
 * The configured embedding model, or undefined (vector stores are then searched by keywords only). A GGUF model is
 * loaded here, at startup, so that a file that cannot be used stops the server with a clear message; node-llama-cpp
 * is imported only then (llama-cpp/llama-runtime.ts).
 */
export async function openEmbedder(
  config: EmbeddingsConfig | undefined,
  options: { logger: Logger; maxRetries: number },
): Promise<Embedder | undefined> {
  if (config === undefined) return undefined;
  if (config.type === 'openai-compatible')
    return new OpenAICompatibleEmbedder({
      baseURL: config.baseUrl,
      apiKey: config.apiKey,
      model: config.model,
      timeoutMs: config.timeoutMs,
      maxRetries: options.maxRetries,
    });
  const { LlamaCppEmbedder } = await import('./llama-cpp/llama-cpp-embedder.ts');
  const { GgufLoadError } = await import('./llama-cpp/llama-cpp-provider.ts');
  try {
    return await LlamaCppEmbedder.open(config, options.logger);
  } catch (error) {
    if (!(error instanceof GgufLoadError)) throw error;
    throw new ModelLoadError(config.origin.setting, `${routePrefix(config.origin)}${error.message}`);
  }
}
