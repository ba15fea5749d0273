import type { FastifyInstance } from 'fastify';
import { unixSeconds } from '../../domain/clock.ts';
import { notFound } from '../../domain/errors.ts';
import { newId } from '../../domain/ids.ts';
import { newClientMessage } from '../../domain/messages.ts';
import type { Thread } from '../../domain/objects.ts';
import type { FileService } from '../../files/file-service.ts';
import type { Store, ThreadPatch } from '../../storage/store.ts';
import { checkFileReferences, messagesFileReferences, toolResourcesFileReferences } from '../file-references.ts';
import { pathId } from '../ids.ts';
import { createThreadRequest, modifyThreadRequest } from '../schemas/threads.ts';
import { serializeDeleted, serializeThread } from '../serializers.ts';
import type { ToolResourceHelpers } from '../tool-resources.ts';
import { parseBody } from '../validation.ts';

export function registerThreadRoutes(
  app: FastifyInstance,
  store: Store,
  files: FileService,
  helpers: ToolResourceHelpers,
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

  app.get('/v1/threads/:thread_id', async (request) => {
    const id = pathId('thread', request.params, 'thread_id');
    const thread = await store.getThread(request.scope, id);
    if (!thread) throw notFound('thread', id);
    return serializeThread(thread);
  });

  app.post('/v1/threads/:thread_id', async (request) => {
    const id = pathId('thread', request.params, 'thread_id');
    const body = parseBody(modifyThreadRequest, request.body);
    await checkFileReferences(files, request.scope, toolResourcesFileReferences(body.tool_resources));
    await helpers.checkVectorStores(request.scope, body.tool_resources);
    const patch: ThreadPatch = {};
    if (body.tool_resources !== undefined) patch.tool_resources = body.tool_resources ?? {};
    if (body.metadata !== undefined) patch.metadata = body.metadata ?? {};
    const thread = await store.updateThread(request.scope, id, patch);
    if (!thread) throw notFound('thread', id);
    return serializeThread(thread);
  });

  app.delete('/v1/threads/:thread_id', async (request) => {
    const id = pathId('thread', request.params, 'thread_id');
    if (!(await store.deleteThread(request.scope, id))) throw notFound('thread', id);
    return serializeDeleted(id, 'thread.deleted');
  });
}
