import type { Logger } from 'pino';
import type { Metrics } from '../metrics/metrics.ts';
import { ggufModelName, type ModelsConfig, type RouteConfig, routePrefix } from '../models-config.ts';
import { listModels } from './openai-compatible/list-models.ts';
import { OpenAICompatibleProvider } from './openai-compatible/openai-compatible-provider.ts';
import type { ModelProvider } from './provider.ts';

/** A model as GET /v1/models lists it. */
export interface ModelInfo {
  id: string;
  /** Unix seconds: a GGUF file's modification time; for an upstream route, when this process started. */
  created: number;
}

/** Which backend serves a model name: the one place that decides it, from the models config. */
export interface ModelRouter {
  resolve(model: string): ModelProvider | undefined;
  /** Why `model` has no backend, for the run's `last_error.message`. */
  unroutedReason(model: string): string;
  /** The models to list: the named routes, then a default GGUF model under its file name. */
  list(): ModelInfo[];
  /**
   * The models the default backend lists, when it is an OpenAI-compatible endpoint: every name it serves is served
   * here too. Asked of it at most once a minute; one that does not answer lists none (and the log says why).
   */
  defaultModels(): Promise<ModelInfo[]>;
  /** `id` as GET /v1/models/{id} shows it: any name that has a route, named or through the default. */
  find(id: string): ModelInfo | undefined;
  /**
   * Where a request passed through as it is (api/routes/pass-through.ts) goes for `model` (undefined: a request that
   * names none, which the default route serves): the OpenAI-compatible endpoint serving it; `in-process` for a GGUF
   * model (`resolve` gives it); undefined when no route serves it. For `embeddings`, the embedding model of vector
   * stores comes first: its endpoint, or `embedder` when it is a GGUF file run in-process.
   */
  endpoint(
    model: string | undefined,
    kind: 'chat' | 'embeddings',
  ): UpstreamEndpoint | 'in-process' | 'embedder' | undefined;
  /** Releases the backends (embedded models' memory). */
  close(): Promise<void>;
}

/** An OpenAI-compatible endpoint, as a request for one of its models is passed on to it. */
export interface UpstreamEndpoint {
  /** Up to and including `/v1` (or an Azure deployment's URL with its `api-version`). */
  baseUrl: string;
  apiKey: string | undefined;
  /** The model name to send: the route's name for it upstream, else the request's own (undefined: it named none). */
  model: string | undefined;
  /** How long it may stay silent (before its first byte or between two). */
  timeoutMs: number;
}

/** Thrown at startup when a GGUF route's file cannot be used; `setting` names where it was configured. */
export class ModelLoadError extends Error {
  readonly setting: string;
  constructor(setting: string, message: string) {
    super(message);
    this.name = 'ModelLoadError';
    this.setting = setting;
  }
}

/**
 * Builds every route's backend. GGUF models are loaded here, at startup, so that a missing, truncated or corrupt
 * file stops the server with a clear message rather than failing runs later; node-llama-cpp itself is imported
 * only when there is a GGUF route (llama-cpp/llama-runtime.ts). Routes with the same backend settings share one
 * backend (one loaded model).
 */
export async function createModelRouter(config: ModelsConfig, logger: Logger, metrics?: Metrics): Promise<ModelRouter> {
  const started = Math.floor(Date.now() / 1000);
  const backends = new Map<string, Promise<Backend>>();
  const open = (route: RouteConfig): Promise<Backend> => {
    const key = JSON.stringify(route.type === 'gguf' ? { ...route, origin: undefined } : route);
    let backend = backends.get(key);
    if (!backend) {
      // Observed here, around whichever backend it is: model calls are measured alike for all of them.
      backend = openBackend(route, logger, started).then((opened) =>
        metrics ? { ...opened, provider: metrics.observeProvider(opened.provider) } : opened,
      );
      backends.set(key, backend);
    }
    return backend;
  };

  const routes = new Map<string, { provider: ModelProvider; info: ModelInfo }>();
  let fallback: Backend | undefined;
  try {
    for (const [name, route] of config.routes) {
      const { provider, created } = await open(route);
      routes.set(name, { provider, info: { id: name, created } });
    }
    if (config.fallback) fallback = await open(config.fallback);
  } catch (error) {
    await closeAll(backends);
    throw error;
  }

  const listed = [...routes.values()].map((route) => route.info);
  if (config.fallback?.type === 'gguf' && fallback) {
    const id = ggufModelName(config.fallback.path);
    if (!routes.has(id)) listed.push({ id, created: fallback.created });
  }

  let asked: { at: number; models: Promise<ModelInfo[]> } | undefined;
  const defaultModels = (): Promise<ModelInfo[]> => {
    const route = config.fallback;
    if (route?.type !== 'openai-compatible') return Promise.resolve([]);
    if (asked === undefined || Date.now() - asked.at >= DEFAULT_MODELS_TTL_MS) {
      const models = listModels(route, started).catch((error: unknown) => {
        logger.warn({ err: error, via: route.baseUrl }, "the default model backend's list of models could not be read");
        return [];
      });
      asked = { at: Date.now(), models };
    }
    return asked.models;
  };

  return {
    resolve: (model) => routes.get(model)?.provider ?? fallback?.provider,
    defaultModels,
    unroutedReason: (model) =>
      config.routes.size === 0
        ? `No model backend is configured for model '${model}': set ASSISTD_UPSTREAM_BASE_URL to an OpenAI-compatible endpoint, ASSISTD_MODEL_FILE to a GGUF model, or route models with ASSISTD_MODELS_FILE.`
        : `No backend serves model '${model}': the models file routes ${[...config.routes.keys()].map((n) => `'${n}'`).join(', ')} and has no default route.`,
    list: () => listed,
    find: (id) => {
      const route = routes.get(id);
      if (route) return route.info;
      const listedOne = listed.find((model) => model.id === id);
      if (listedOne) return listedOne;
      return fallback ? { id, created: fallback.created } : undefined;
    },
    endpoint: (model, kind) => {
      const embeddings = kind === 'embeddings' ? config.embeddings : undefined;
      if (embeddings?.type === 'gguf' && model === ggufModelName(embeddings.path)) return 'embedder';
      if (embeddings?.type === 'openai-compatible' && model === embeddings.model) {
        const { baseUrl, apiKey, timeoutMs } = embeddings;
        return { baseUrl, apiKey, timeoutMs, model };
      }
      const route = (model === undefined ? undefined : config.routes.get(model)) ?? config.fallback;
      if (route === undefined) return undefined;
      if (route.type === 'gguf') return 'in-process';
      const { baseUrl, apiKey, timeoutMs } = route;
      return { baseUrl, apiKey, timeoutMs, model: route.model ?? model };
    },
    close: () => closeAll(backends),
  };
}

/** How long the default backend's list of models is kept. */
const DEFAULT_MODELS_TTL_MS = 60_000;

interface Backend {
  provider: ModelProvider;
  /** For GET /v1/models: a GGUF file's modification time; else when this process started. */
  created: number;
}

async function openBackend(route: RouteConfig, logger: Logger, started: number): Promise<Backend> {
  if (route.type === 'openai-compatible') {
    const provider = new OpenAICompatibleProvider({
      baseURL: route.baseUrl,
      apiKey: route.apiKey,
      timeoutMs: route.timeoutMs,
      contextWindow: route.contextWindow,
      model: route.model,
      reasoningOpened: route.reasoningOpened,
    });
    return { provider, created: started };
  }
  // Imported here, not at the top: loading the module loads nothing of node-llama-cpp, but this keeps the
  // embedded backend entirely out of servers that have no GGUF route.
  const { LlamaCppProvider, GgufLoadError } = await import('./llama-cpp/llama-cpp-provider.ts');
  try {
    const provider = await LlamaCppProvider.open(route, logger);
    return { provider, created: provider.createdAt };
  } catch (error) {
    if (!(error instanceof GgufLoadError)) throw error;
    throw new ModelLoadError(route.origin.setting, `${routePrefix(route.origin)}${error.message}`);
  }
}

async function closeAll(backends: Map<string, Promise<Backend>>) {
  await Promise.all(
    [...backends.values()].map(async (opening) => {
      const backend = await opening.catch(() => undefined);
      await backend?.provider.close?.();
    }),
  );
}
