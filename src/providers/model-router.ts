import type { UpstreamConfig } from '../config.ts';
import { OpenAICompatibleProvider } from './openai-compatible/openai-compatible-provider.ts';
import type { ModelProvider } from './provider.ts';

/** Which backend serves a model name. One place to decide it; per-model routes slot in here. */
export interface ModelRouter {
  resolve(model: string): ModelProvider | undefined;
  /** Why `model` has no backend, for the run's `last_error.message`. */
  unroutedReason(model: string): string;
}

export function createModelRouter(upstream: UpstreamConfig | undefined): ModelRouter {
  const provider =
    upstream &&
    new OpenAICompatibleProvider({ baseURL: upstream.baseUrl, apiKey: upstream.apiKey, timeoutMs: upstream.timeoutMs });
  return {
    resolve: () => provider,
    unroutedReason: (model) =>
      `No model backend is configured for model '${model}': set ASSISTD_UPSTREAM_BASE_URL to an OpenAI-compatible endpoint.`,
  };
}
