import type { ModelInfo, UpstreamEndpoint } from '../model-router.ts';
import { endpointUrl, keyHeader, withoutKey } from './chat-completions-client.ts';

/** How long the model list may take, at most: it is asked while a client waits for GET /v1/models. */
const LIST_TIMEOUT_MS = 10_000;

/**
 * The models an OpenAI-compatible endpoint lists (`GET {base}/models`), by id; `created` where it gives none. Throws
 * when it does not answer with a list, saying why (without its key).
 */
export async function listModels(endpoint: Omit<UpstreamEndpoint, 'model'>, created: number): Promise<ModelInfo[]> {
  const { baseUrl, apiKey, timeoutMs } = endpoint;
  let response: Response;
  try {
    response = await fetch(endpointUrl(baseUrl, 'models'), {
      headers: { accept: 'application/json', ...keyHeader(baseUrl, apiKey ?? 'unused') },
      signal: AbortSignal.timeout(Math.min(timeoutMs, LIST_TIMEOUT_MS)),
    });
  } catch (error) {
    throw new Error(withoutKey(`GET models failed: ${(error as Error).message}`, apiKey));
  }
  if (!response.ok) throw new Error(`GET models answered ${response.status}`);
  const body = (await response.json().catch(() => undefined)) as { data?: unknown } | undefined;
  if (!Array.isArray(body?.data)) throw new Error('GET models answered without a list of models');
  return body.data.flatMap((model: { id?: unknown; created?: unknown }) =>
    typeof model?.id === 'string' && model.id !== ''
      ? [{ id: model.id, created: Number.isSafeInteger(model.created) ? (model.created as number) : created }]
      : [],
  );
}
