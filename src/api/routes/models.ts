import type { FastifyInstance } from 'fastify';
import { ApiError } from '../../domain/errors.ts';
import type { ModelInfo } from '../../providers/model-router.ts';

/** What the models endpoints read: the routes of the model router, and what its default backend lists. */
export interface ModelCatalog {
  list(): ModelInfo[];
  defaultModels(): Promise<ModelInfo[]>;
  find(id: string): ModelInfo | undefined;
}

/**
 * Throws upstream's 400 `model_not_found` for a model no backend serves, where a request names one (an assistant's,
 * a run's override), rather than accept it and fail its runs. A server with no backend at all accepts any name: it
 * is not set up yet, and says so in its log.
 */
export function checkModel(models: ModelCatalog, model: string | null | undefined): void {
  if (model == null || models.find(model) !== undefined || models.list().length === 0) return;
  throw new ApiError(400, `The requested model '${model}' does not exist.`, {
    param: 'model',
    code: 'model_not_found',
  });
}

/** GET /v1/models and /v1/models/{id}, in the official `Model` shape. */
export function registerModelRoutes(app: FastifyInstance, models: ModelCatalog): void {
  app.get('/v1/models', async () => {
    const routed = models.list();
    const named = new Set(routed.map((model) => model.id));
    const served = (await models.defaultModels()).filter((model) => !named.has(model.id));
    return { object: 'list', data: [...routed, ...served].map(serializeModel) };
  });

  // Model ids may contain slashes (`meta-llama/Llama-3.1-8B`), as upstream's do: the id is the rest of the path, as
  // the router decoded it (once: `%2F` is a slash, `%25` a percent sign).
  app.get('/v1/models/*', async (request) => {
    const id = (request.params as { '*': string })['*'];
    const model = models.find(id);
    if (!model)
      throw new ApiError(404, `The model '${id}' does not exist or you do not have access to it.`, {
        code: 'model_not_found',
      });
    return serializeModel(model);
  });
}

function serializeModel(model: ModelInfo) {
  return { id: model.id, object: 'model', created: model.created, owned_by: 'assistd' };
}
