import type { FastifyInstance } from 'fastify';
import { unixSeconds } from '../../domain/clock.ts';
import { invalidRequest, notFound } from '../../domain/errors.ts';
import { newId } from '../../domain/ids.ts';
import { newClientMessage } from '../../domain/messages.ts';
import type { Thread } from '../../domain/objects.ts';
import type { FileService } from '../../files/file-service.ts';
import type { RunEventBus } from '../../runs/run-event-bus.ts';
import type { Store, ThreadFilter, ThreadOrderBy, ThreadPatch } from '../../storage/store.ts';
import {
  checkFileReferences,
  messagesFileReferences,
  notReferredTo,
  toolResourcesFileReferences,
} from '../file-references.ts';
import { pathId } from '../ids.ts';
import { parseMetadataFilter } from '../metadata-filter.ts';
import { parsePageRequest, single, toListObject } from '../pagination.ts';
import { createThreadRequest, modifyThreadRequest } from '../schemas/threads.ts';
import { serializeDeleted, serializeThread } from '../serializers.ts';
import type { ToolResourceHelpers } from '../tool-resources.ts';
import { parseBody } from '../validation.ts';

export function registerThreadRoutes(
  app: FastifyInstance,
  store: Store,
  files: FileService,
  helpers: ToolResourceHelpers,
  bus: RunEventBus,
): void {
  app.post('/v1/threads', async (request) => {
    const body = parseBody(createThreadRequest, request.body);
    await checkFileReferences(files, request.scope, [
      ...messagesFileReferences(body.messages, 'messages'),
      ...toolResourcesFileReferences(body.tool_resources),
    ]);
    await helpers.checkVectorStores(request.scope, body.tool_resources);
    const now = unixSeconds();
    const id = newId('thread');
    // The `vector_stores` helper and the files attached for file_search make the thread's vector store.
    const toolResources = await helpers.forNewThread(request.scope, id, body.tool_resources, body.messages);
    const thread: Thread = { id, created_at: now, tool_resources: toolResources ?? {}, metadata: body.metadata ?? {} };
    const messages = (body.messages ?? []).map((m) => newClientMessage(thread.id, m, now));
    await store.createThread(request.scope, thread, messages);
    return serializeThread(thread);
  });

  // An assistd extension: the official API has no thread list (OpenAI's dashboard had one).
  app.get('/v1/threads', async (request) => {
    const query = request.query as Record<string, unknown>;
    const filter: ThreadFilter = { metadata: parseMetadataFilter(query), orderBy: parseThreadOrderBy(query) };
    const page = await store.listThreads(request.scope, parsePageRequest(query), filter);
    return toListObject(page, serializeThread);
  });

  app.get('/v1/threads/:thread_id', async (request) => {
    const id = pathId('thread', request.params, 'thread_id');
    const thread = await store.getThread(request.scope, id);
    if (!thread) throw notFound('thread', id);
    return serializeThread(thread);
  });

  app.post('/v1/threads/:thread_id', async (request) => {
    const id = pathId('thread', request.params, 'thread_id');
    const body = parseBody(modifyThreadRequest, request.body);
    const references = toolResourcesFileReferences(body.tool_resources);
    const current = references.length > 0 ? await store.getThread(request.scope, id) : undefined;
    await checkFileReferences(files, request.scope, notReferredTo(references, current?.tool_resources));
    await helpers.checkVectorStores(request.scope, body.tool_resources);
    const patch: ThreadPatch = {};
    if (body.tool_resources !== undefined) patch.tool_resources = body.tool_resources ?? {};
    if (body.metadata !== undefined) patch.metadata = body.metadata;
    const thread = await store.updateThread(request.scope, id, patch);
    if (!thread) throw notFound('thread', id);
    return serializeThread(thread);
  });

  app.delete('/v1/threads/:thread_id', async (request) => {
    const id = pathId('thread', request.params, 'thread_id');
    const runsGoing = await store.deleteThread(request.scope, id);
    if (!runsGoing) throw notFound('thread', id);
    bus.runsDeleted(id, runsGoing);
    return serializeDeleted(id, 'thread.deleted');
  });
}

/** `order_by` (extension): `created_at` (the default, as every list) or `last_active_at`, the latest activity. */
function parseThreadOrderBy(query: Record<string, unknown>): ThreadOrderBy {
  const orderBy = single(query, 'order_by') ?? 'created_at';
  if (orderBy !== 'created_at' && orderBy !== 'last_active_at')
    throw invalidRequest(
      `Invalid value: '${orderBy}'. Supported values are: 'created_at' and 'last_active_at'.`,
      'order_by',
      'invalid_value',
    );
  return orderBy;
}
