/**
 * Which backend serves which model name: the `ASSISTD_MODELS_FILE` (JSON or YAML), or the single-backend settings
 * `ASSISTD_MODEL_FILE` (a GGUF for every model name) and `ASSISTD_UPSTREAM_BASE_URL` (an OpenAI-compatible
 * endpoint for every model name). The embedding model of vector stores too: the models file's `embeddings` entry,
 * or `ASSISTD_EMBEDDINGS_MODEL` (an OpenAI-compatible endpoint) / `ASSISTD_EMBEDDINGS_MODEL_FILE` (a GGUF). Read
 * once at startup by loadConfig; every mistake stops startup with a message that names the setting, the route and
 * the field.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

export type RouteConfig = OpenAICompatibleRouteConfig | GgufRouteConfig;

export interface OpenAICompatibleRouteConfig {
  type: 'openai-compatible';
  /** The endpoint's base URL, up to and including `/v1`, without a trailing slash. */
  baseUrl: string;
  apiKey: string | undefined;
  /** The model name sent upstream; undefined: the run's own model name. */
  model: string | undefined;
  /** How long the upstream may stay silent (before its first byte or between chunks). */
  timeoutMs: number;
  /** The model's context window in tokens, for truncation. */
  contextWindow: number;
  /**
   * The model's chat template opens its reasoning in the prompt (`<think>`), so the answer streams as
   * `reasoning…</think>answer` with no opening tag: its content is reasoning up to `</think>` (LeadingThinking).
   */
  reasoningOpened: boolean;
}

export interface GgufRouteConfig {
  type: 'gguf';
  /** Absolute path of the .gguf file. */
  path: string;
  /** Context size in tokens; undefined: the model's trained context length, at most DEFAULT_GGUF_CONTEXT_SIZE. */
  contextSize: number | undefined;
  threads: number;
  /** Where this route was configured, for startup errors: the setting, and in a models file which route. */
  origin: RouteOrigin;
}

export interface RouteOrigin {
  setting: string;
  /** `model 'name'` or `default`, for a route of a models file. */
  label?: string;
}

/** `model 'x': ` — the prefix of a message about a route. */
export function routePrefix(origin: RouteOrigin): string {
  return origin.label === undefined ? '' : `${origin.label}: `;
}

export interface ModelsConfig {
  /** Routes by model name, in the order the models file lists them. */
  routes: ReadonlyMap<string, RouteConfig>;
  /** Where every other model name goes; undefined: runs on other models fail with a clear error. */
  fallback: RouteConfig | undefined;
  /** The embedding model of vector stores; undefined: their search is keyword-only. */
  embeddings?: EmbeddingsConfig | undefined;
}

export type EmbeddingsConfig = OpenAICompatibleEmbeddingsConfig | GgufEmbeddingsConfig;

/** An OpenAI-compatible `POST {baseUrl}/embeddings` endpoint. */
export interface OpenAICompatibleEmbeddingsConfig {
  type: 'openai-compatible';
  /** Up to and including `/v1`, without a trailing slash. */
  baseUrl: string;
  apiKey: string | undefined;
  /** The model name sent upstream, and recorded on the stores it embeds. */
  model: string;
  /** How long one request may take. */
  timeoutMs: number;
}

/** A GGUF embedding model run in this process. */
export interface GgufEmbeddingsConfig {
  type: 'gguf';
  /** Absolute path of the .gguf file. */
  path: string;
  /** Context size in tokens (longer chunks are cut); undefined: the model's trained context length. */
  contextSize: number | undefined;
  threads: number;
  origin: RouteOrigin;
}

/** A GGUF file's model name, where it has no other: the file's name without `.gguf`. */
export function ggufModelName(file: string): string {
  return path.basename(file).replace(/\.gguf$/i, '');
}

/** Without a configured size, a GGUF model gets its trained context length, up to this (KV-cache memory grows with it). */
export const DEFAULT_GGUF_CONTEXT_SIZE = 8192;

/** A mistake in a setting: `setting` names the environment variable, `message` says what is wrong. */
export class ModelsConfigError extends Error {
  readonly setting: string;
  constructor(setting: string, message: string) {
    super(message);
    this.name = 'ModelsConfigError';
    this.setting = setting;
  }
}

export interface ModelsEnv {
  modelsFile: string | undefined;
  modelFile: string | undefined;
  upstreamBaseUrl: string | undefined;
  upstreamApiKey: string | undefined;
  upstreamTimeoutMs: number;
  contextWindow: number;
  llamaThreads: number | undefined;
  llamaContextSize: number | undefined;
  /** ASSISTD_EMBEDDINGS_BASE_URL, …_MODEL, …_API_KEY, …_MODEL_FILE. */
  embeddingsBaseUrl?: string | undefined;
  embeddingsModel?: string | undefined;
  embeddingsApiKey?: string | undefined;
  embeddingsModelFile?: string | undefined;
  /** The whole environment, for the `api_key_env` of routes. */
  env: Record<string, string | undefined>;
}

export function loadModelsConfig(settings: ModelsEnv): ModelsConfig {
  const envFallback = fallbackFromEnv(settings);
  const envEmbeddings = embeddingsFromEnv(settings);
  if (settings.modelsFile === undefined) return { routes: new Map(), fallback: envFallback, embeddings: envEmbeddings };

  const file = readModelsFile(settings.modelsFile);
  const dir = path.dirname(path.resolve(settings.modelsFile));
  const routes = new Map<string, RouteConfig>();
  for (const [name, route] of Object.entries(file.models ?? {}))
    routes.set(name, toRoute(route, settings, dir, `model '${name}'`));

  let fallback: RouteConfig | undefined;
  if (typeof file.default === 'string') {
    fallback = routes.get(file.default);
    if (!fallback)
      throw new ModelsConfigError(
        'ASSISTD_MODELS_FILE',
        `default: '${file.default}' is not one of the models in ${settings.modelsFile} (${[...routes.keys()].join(', ') || 'none'}).`,
      );
  } else if (file.default !== undefined) {
    fallback = toRoute(file.default, settings, dir, 'default');
  }
  if (fallback && envFallback)
    throw new ModelsConfigError(
      'ASSISTD_MODELS_FILE',
      `${settings.modelsFile} has a default route, and ${settings.modelFile !== undefined ? 'ASSISTD_MODEL_FILE' : 'ASSISTD_UPSTREAM_BASE_URL'} sets another: keep one.`,
    );
  let embeddings: EmbeddingsConfig | undefined;
  if (file.embeddings !== undefined) {
    if (envEmbeddings)
      throw new ModelsConfigError(
        'ASSISTD_MODELS_FILE',
        `${settings.modelsFile} has an embeddings entry, and ${envEmbeddings.type === 'gguf' ? 'ASSISTD_EMBEDDINGS_MODEL_FILE' : 'ASSISTD_EMBEDDINGS_MODEL'} sets another: keep one.`,
      );
    embeddings = toEmbeddings(file.embeddings, settings, dir);
  }
  return { routes, fallback: fallback ?? envFallback, embeddings: embeddings ?? envEmbeddings };
}

/**
 * ASSISTD_EMBEDDINGS_MODEL names a model of an OpenAI-compatible endpoint: ASSISTD_EMBEDDINGS_BASE_URL, or by
 * default the chat upstream (ASSISTD_UPSTREAM_BASE_URL with its key), which often serves embeddings too (OpenAI,
 * Ollama, vLLM, LiteLLM). ASSISTD_EMBEDDINGS_MODEL_FILE is a GGUF embedding model run in this process instead.
 */
function embeddingsFromEnv(settings: ModelsEnv): EmbeddingsConfig | undefined {
  const { embeddingsBaseUrl, embeddingsModel, embeddingsModelFile } = settings;
  if (embeddingsModelFile !== undefined) {
    if (embeddingsModel !== undefined || embeddingsBaseUrl !== undefined)
      throw new ModelsConfigError(
        'ASSISTD_EMBEDDINGS_MODEL_FILE',
        `both ASSISTD_EMBEDDINGS_MODEL_FILE and ${embeddingsModel !== undefined ? 'ASSISTD_EMBEDDINGS_MODEL' : 'ASSISTD_EMBEDDINGS_BASE_URL'} are set: keep one embedding model.`,
      );
    const origin = { setting: 'ASSISTD_EMBEDDINGS_MODEL_FILE' };
    const gguf = ggufRoute(embeddingsModelFile, undefined, undefined, settings, process.cwd(), origin);
    return { type: 'gguf', path: gguf.path, contextSize: undefined, threads: gguf.threads, origin };
  }
  if (embeddingsModel === undefined) {
    if (embeddingsBaseUrl !== undefined)
      throw new ModelsConfigError(
        'ASSISTD_EMBEDDINGS_MODEL',
        'is required with ASSISTD_EMBEDDINGS_BASE_URL: the name of the embedding model, e.g. text-embedding-3-small.',
      );
    return undefined;
  }
  const own = embeddingsBaseUrl !== undefined;
  const baseUrl = embeddingsBaseUrl ?? settings.upstreamBaseUrl;
  if (baseUrl === undefined)
    throw new ModelsConfigError(
      'ASSISTD_EMBEDDINGS_BASE_URL',
      `is required with ASSISTD_EMBEDDINGS_MODEL when ASSISTD_UPSTREAM_BASE_URL is not set: the OpenAI-compatible endpoint serving '${embeddingsModel}', e.g. http://127.0.0.1:11434/v1.`,
    );
  return {
    type: 'openai-compatible',
    baseUrl: checkBaseUrl(own ? 'ASSISTD_EMBEDDINGS_BASE_URL' : 'ASSISTD_UPSTREAM_BASE_URL', '', baseUrl),
    apiKey: own ? settings.embeddingsApiKey : (settings.embeddingsApiKey ?? settings.upstreamApiKey),
    model: embeddingsModel,
    timeoutMs: settings.upstreamTimeoutMs,
  };
}

function fallbackFromEnv(settings: ModelsEnv): RouteConfig | undefined {
  if (settings.modelFile !== undefined && settings.upstreamBaseUrl !== undefined)
    throw new ModelsConfigError(
      'ASSISTD_MODEL_FILE',
      'both ASSISTD_MODEL_FILE and ASSISTD_UPSTREAM_BASE_URL are set, and each sends every model to its backend: ' +
        'keep one, or route model names to each with ASSISTD_MODELS_FILE.',
    );
  if (settings.modelFile !== undefined)
    return ggufRoute(settings.modelFile, undefined, undefined, settings, process.cwd(), {
      setting: 'ASSISTD_MODEL_FILE',
    });
  if (settings.upstreamBaseUrl !== undefined)
    return {
      type: 'openai-compatible',
      baseUrl: checkBaseUrl('ASSISTD_UPSTREAM_BASE_URL', '', settings.upstreamBaseUrl),
      apiKey: settings.upstreamApiKey,
      model: undefined,
      timeoutMs: settings.upstreamTimeoutMs,
      contextWindow: settings.contextWindow,
      reasoningOpened: false,
    };
  return undefined;
}

const positiveInt = (max: number) => z.number().int().min(1).max(max);

const openAICompatibleRoute = z
  .object({
    type: z.literal('openai-compatible'),
    base_url: z.string().min(1),
    api_key_env: z.string().min(1).optional(),
    model: z.string().min(1).optional(),
    context_window: z.number().int().min(256).max(100_000_000).optional(),
    timeout_s: positiveInt(86_400).optional(),
    reasoning_opened: z.boolean({ error: 'must be true or false' }).optional(),
  })
  .strict();

const ggufRouteSchema = z
  .object({
    type: z.literal('gguf'),
    path: z.string().min(1),
    context_size: z.number().int().min(256).max(10_000_000).optional(),
    threads: positiveInt(1024).optional(),
  })
  .strict();

const routeSchema = z.discriminatedUnion('type', [openAICompatibleRoute, ggufRouteSchema]);
type RouteInput = z.infer<typeof routeSchema>;

const openAICompatibleEmbeddings = z
  .object({
    type: z.literal('openai-compatible'),
    base_url: z.string().min(1),
    model: z.string().min(1),
    api_key_env: z.string().min(1).optional(),
    timeout_s: positiveInt(86_400).optional(),
  })
  .strict();

const ggufEmbeddings = z
  .object({
    type: z.literal('gguf'),
    path: z.string().min(1),
    context_size: z.number().int().min(16).max(10_000_000).optional(),
    threads: positiveInt(1024).optional(),
  })
  .strict();

const embeddingsSchema = z.discriminatedUnion('type', [openAICompatibleEmbeddings, ggufEmbeddings]);

const modelsFileSchema = z
  .object({
    models: z.record(z.string().min(1), routeSchema).optional(),
    default: z.union([z.string().min(1), routeSchema]).optional(),
    embeddings: embeddingsSchema.optional(),
  })
  .strict();

function readModelsFile(file: string): z.infer<typeof modelsFileSchema> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ModelsConfigError('ASSISTD_MODELS_FILE', `cannot read ${file}: ${(error as Error).message}`);
  }
  let data: unknown;
  try {
    // YAML is a superset of JSON, but JSON's own parser gives the clearer message for a .json file.
    data = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new ModelsConfigError(
      'ASSISTD_MODELS_FILE',
      `${file} does not parse as ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${(error as Error).message.split('\n')[0]}`,
    );
  }
  const parsed = modelsFileSchema.safeParse(data ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? issue.path.join('.') : 'the file';
    throw new ModelsConfigError(
      'ASSISTD_MODELS_FILE',
      `${file}: ${where}: ${issueMessage(issue)} (expected { models: { <name>: { type: "openai-compatible" | "gguf", … } }, default?: …, embeddings?: … }).`,
    );
  }
  return parsed.data;
}

function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown field ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
  if (issue.code === 'invalid_union')
    return issue.path.length === 1 && issue.path[0] === 'default'
      ? 'must be the name of one of the models, or a route { type: "openai-compatible" | "gguf", … }'
      : 'type must be "openai-compatible" or "gguf"';
  return issue.message;
}

function toEmbeddings(input: z.infer<typeof embeddingsSchema>, settings: ModelsEnv, dir: string): EmbeddingsConfig {
  const origin = { setting: 'ASSISTD_MODELS_FILE', label: 'embeddings' };
  if (input.type === 'gguf') {
    const gguf = ggufRoute(input.path, input.context_size, input.threads, settings, dir, origin);
    return { type: 'gguf', path: gguf.path, contextSize: input.context_size, threads: gguf.threads, origin };
  }
  return {
    type: 'openai-compatible',
    baseUrl: checkBaseUrl('ASSISTD_MODELS_FILE', 'embeddings: base_url: ', input.base_url),
    apiKey: apiKeyFromEnv(input.api_key_env, settings, 'embeddings'),
    model: input.model,
    timeoutMs: input.timeout_s === undefined ? settings.upstreamTimeoutMs : input.timeout_s * 1000,
  };
}

function apiKeyFromEnv(name: string | undefined, settings: ModelsEnv, label: string): string | undefined {
  if (name === undefined) return undefined;
  // A key pasted where its variable's name goes: said without the value, which startup errors would print.
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
    throw new ModelsConfigError(
      'ASSISTD_MODELS_FILE',
      `${label}: api_key_env is not the name of an environment variable (letters, digits and _): it names the variable that holds the key, never the key itself.`,
    );
  const apiKey = settings.env[name]?.trim() || undefined;
  if (apiKey === undefined)
    throw new ModelsConfigError(
      'ASSISTD_MODELS_FILE',
      `${label}: api_key_env names the environment variable ${name}, which is not set.`,
    );
  return apiKey;
}

function toRoute(input: RouteInput, settings: ModelsEnv, dir: string, label: string) {
  if (input.type === 'gguf')
    return ggufRoute(input.path, input.context_size, input.threads, settings, dir, {
      setting: 'ASSISTD_MODELS_FILE',
      label,
    });
  const apiKey = apiKeyFromEnv(input.api_key_env, settings, label);
  const route: OpenAICompatibleRouteConfig = {
    type: 'openai-compatible',
    baseUrl: checkBaseUrl('ASSISTD_MODELS_FILE', `${label}: base_url: `, input.base_url),
    apiKey,
    model: input.model,
    timeoutMs: input.timeout_s === undefined ? settings.upstreamTimeoutMs : input.timeout_s * 1000,
    contextWindow: input.context_window ?? settings.contextWindow,
    reasoningOpened: input.reasoning_opened ?? false,
  };
  return route;
}

function ggufRoute(
  file: string,
  contextSize: number | undefined,
  threads: number | undefined,
  settings: ModelsEnv,
  dir: string,
  origin: RouteOrigin,
): GgufRouteConfig {
  const where = routePrefix(origin);
  const absolute = path.resolve(dir, file);
  if (!existsSync(absolute))
    throw new ModelsConfigError(origin.setting, `${where}the GGUF model file ${absolute} does not exist.`);
  if (!statSync(absolute).isFile())
    throw new ModelsConfigError(origin.setting, `${where}${absolute} is not a file: a GGUF model file is needed.`);
  return {
    type: 'gguf',
    path: absolute,
    contextSize: contextSize ?? settings.llamaContextSize,
    threads: threads ?? settings.llamaThreads ?? availableParallelism(),
    origin,
  };
}

function checkBaseUrl(setting: string, where: string, raw: string): string {
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    // Shown without what stands before an '@', which may be a password.
    const shown = raw.replace(/\/\/[^/]*@/, '//…@');
    throw new ModelsConfigError(
      setting,
      `${where}'${shown}' is not a valid URL (expected e.g. http://127.0.0.1:11434/v1).`,
    );
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw new ModelsConfigError(
      setting,
      `${where}unsupported scheme '${parsed.protocol}' (expected http:// or https://).`,
    );
  // Every request sends the API key in a header, which would replace the URL's credentials, and fetch refuses such a
  // URL: refused here, where the mistake is plain, rather than a password repeated in logs and errors.
  if (parsed.username !== '' || parsed.password !== '')
    throw new ModelsConfigError(
      setting,
      `${where}a base URL cannot carry a user or password: give the key as ASSISTD_UPSTREAM_API_KEY, ASSISTD_EMBEDDINGS_API_KEY or a route's api_key_env.`,
    );
  return raw.replace(/\/+$/, '');
}
