import type { FastifyInstance } from 'fastify';
import { unixSeconds } from '../../domain/clock.ts';
import { notFound } from '../../domain/errors.ts';
import { newId } from '../../domain/ids.ts';
import type { Assistant } from '../../domain/objects.ts';
import type { FileService } from '../../files/file-service.ts';
import type { AssistantPatch, Store } from '../../storage/store.ts';
import { checkFileReferences, notReferredTo, toolResourcesFileReferences } from '../file-references.ts';
import { pathId } from '../ids.ts';
import { parsePageRequest, toListObject } from '../pagination.ts';
import { createAssistantRequest, modifyAssistantRequest } from '../schemas/assistants.ts';
import { serializeAssistant, serializeDeleted } from '../serializers.ts';
import type { ToolResourceHelpers } from '../tool-resources.ts';
import { parseBody } from '../validation.ts';
import { checkModel, type ModelCatalog } from './models.ts';

// Upstream reports these defaults on an assistant created without them.
const DEFAULT_TEMPERATURE = 1;
const DEFAULT_TOP_P = 1;

export function registerAssistantRoutes(
  app: FastifyInstance,
  store: Store,
  files: FileService,
  helpers: ToolResourceHelpers,
  models: ModelCatalog,
): void {
  app.post('/v1/assistants', async (request) => {
    const body = parseBody(createAssistantRequest, request.body);
    checkModel(models, body.model);
    await checkFileReferences(files, request.scope, toolResourcesFileReferences(body.tool_resources));
    await helpers.checkVectorStores(request.scope, body.tool_resources);
    // A `vector_stores` helper becomes a new store, named in vector_store_ids.
    const toolResources = await helpers.forAssistant(request.scope, body.tool_resources);
    const assistant: Assistant = {
      id: newId('assistant'),
      created_at: unixSeconds(),
      name: body.name ?? null,
      description: body.description ?? null,
      model: body.model,
      instructions: body.instructions ?? null,
      tools: body.tools ?? [],
      tool_resources: toolResources ?? {},
      metadata: body.metadata ?? {},
      temperature: body.temperature ?? DEFAULT_TEMPERATURE,
      top_p: body.top_p ?? DEFAULT_TOP_P,
      response_format: body.response_format ?? 'auto',
      reasoning_effort: body.reasoning_effort ?? null,
    };
    await store.createAssistant(request.scope, assistant);
    return serializeAssistant(assistant);
  });

  app.get('/v1/assistants', async (request) => {
    const page = await store.listAssistants(request.scope, parsePageRequest(request.query as Record<string, unknown>));
    return toListObject(page, serializeAssistant);
  });

  app.get('/v1/assistants/:assistant_id', async (request) => {
    const id = pathId('assistant', request.params, 'assistant_id');
    const assistant = await store.getAssistant(request.scope, id);
    if (!assistant) throw notFound('assistant', id);
    return serializeAssistant(assistant);
  });

  app.post('/v1/assistants/:assistant_id', async (request) => {
    const id = pathId('assistant', request.params, 'assistant_id');
    const body = parseBody(modifyAssistantRequest, request.body);
    checkModel(models, body.model);
    const references = toolResourcesFileReferences(body.tool_resources);
    const current = references.length > 0 ? await store.getAssistant(request.scope, id) : undefined;
    await checkFileReferences(files, request.scope, notReferredTo(references, current?.tool_resources));
    await helpers.checkVectorStores(request.scope, body.tool_resources);
    // A null resets a field to what an assistant created without it has.
    const patch: AssistantPatch = {};
    if (body.model !== undefined) patch.model = body.model;
    if (body.name !== undefined) patch.name = body.name;
    if (body.description !== undefined) patch.description = body.description;
    if (body.instructions !== undefined) patch.instructions = body.instructions;
    if (body.reasoning_effort !== undefined) patch.reasoning_effort = body.reasoning_effort;
    if (body.tools !== undefined) patch.tools = body.tools;
    if (body.tool_resources !== undefined) patch.tool_resources = body.tool_resources ?? {};
    if (body.metadata !== undefined) patch.metadata = body.metadata;
    if (body.temperature !== undefined) patch.temperature = body.temperature ?? DEFAULT_TEMPERATURE;
    if (body.top_p !== undefined) patch.top_p = body.top_p ?? DEFAULT_TOP_P;
    if (body.response_format !== undefined) patch.response_format = body.response_format ?? 'auto';
    const assistant = await store.updateAssistant(request.scope, id, patch);
    if (!assistant) throw notFound('assistant', id);
    return serializeAssistant(assistant);
  });

  app.delete('/v1/assistants/:assistant_id', async (request) => {
    const id = pathId('assistant', request.params, 'assistant_id');
    if (!(await store.deleteAssistant(request.scope, id))) throw notFound('assistant', id);
    return serializeDeleted(id, 'assistant.deleted');
  });
}
