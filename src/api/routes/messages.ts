import type { FastifyInstance, FastifyRequest } from 'fastify';
import { unixSeconds } from '../../domain/clock.ts';
import { type ApiError, messagesLockedByRun, notFound } from '../../domain/errors.ts';
import { newClientMessage } from '../../domain/messages.ts';
import type { FileService } from '../../files/file-service.ts';
import type { RunEventBus } from '../../runs/run-event-bus.ts';
import type { Store } from '../../storage/store.ts';
import { checkFileReferences, messageFileReferences } from '../file-references.ts';
import { pathId } from '../ids.ts';
import { parsePageRequest, single, toListJson } from '../pagination.ts';
import { queueRequested } from '../queue-header.ts';
import { createMessageRequest, modifyMessageRequest } from '../schemas/messages.ts';
import { serializeDeleted, serializeMessage } from '../serializers.ts';
import type { ToolResourceHelpers } from '../tool-resources.ts';
import { parseBody } from '../validation.ts';

export function registerMessageRoutes(
  app: FastifyInstance,
  store: Store,
  /** What a run's turn has begun and announced is read once stored (RunEventBus.writing). */
  bus: Pick<RunEventBus, 'written'>,
  files: FileService,
  helpers: ToolResourceHelpers,
  /** ASSISTD_QUEUE_RUNS: whether a message added during a run is stored without `x-assistd-queue` (queue-header.ts). */
  queueRuns: boolean,
): void {
  /** A message that is not there: say which of thread or message is missing, as upstream does. */
  async function missing(request: FastifyRequest, threadId: string, messageId: string): Promise<ApiError> {
    return (await store.getThread(request.scope, threadId))
      ? notFound('message', messageId)
      : notFound('thread', threadId);
  }

  app.post('/v1/threads/:thread_id/messages', async (request) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const queue = queueRequested(request.headers, queueRuns);
    const body = parseBody(createMessageRequest, request.body);
    await checkFileReferences(files, request.scope, messageFileReferences(body));
    // Files attached for file_search go into the thread's vector store (made if the thread has none).
    await helpers.attachToThread(request.scope, threadId, [body], queue ? undefined : messagesLockedByRun);
    const message = newClientMessage(threadId, body, unixSeconds());
    await store.createMessage(request.scope, message, { queue });
    return serializeMessage(message);
  });

  app.get('/v1/threads/:thread_id/messages', async (request, reply) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const query = request.query as Record<string, unknown>;
    await bus.written(threadId);
    const page = await store.listMessagesJson(request.scope, threadId, parsePageRequest(query), {
      runId: single(query, 'run_id'),
    });
    return reply.type('application/json; charset=utf-8').send(toListJson(page));
  });

  app.get('/v1/threads/:thread_id/messages/:message_id', async (request) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const id = pathId('message', request.params, 'message_id');
    await bus.written(threadId);
    const message = await store.getMessage(request.scope, threadId, id);
    if (!message) throw await missing(request, threadId, id);
    return serializeMessage(message);
  });

  app.post('/v1/threads/:thread_id/messages/:message_id', async (request) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const id = pathId('message', request.params, 'message_id');
    const body = parseBody(modifyMessageRequest, request.body);
    const patch = body.metadata !== undefined ? { metadata: body.metadata } : {};
    await bus.written(threadId);
    const message = await store.updateMessage(request.scope, threadId, id, patch);
    if (!message) throw await missing(request, threadId, id);
    return serializeMessage(message);
  });

  app.delete('/v1/threads/:thread_id/messages/:message_id', async (request) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const id = pathId('message', request.params, 'message_id');
    await bus.written(threadId);
    if (!(await store.deleteMessage(request.scope, threadId, id))) throw await missing(request, threadId, id);
    return serializeDeleted(id, 'thread.message.deleted');
  });
}
