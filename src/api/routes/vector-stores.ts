import type { FastifyInstance, FastifyReply } from 'fastify';
import { invalidRequest } from '../../domain/errors.ts';
import type { VectorStoreFileStatus } from '../../domain/vector-stores.ts';
import type { VectorStoreFileFilter } from '../../storage/store.ts';
import type { VectorStoreService } from '../../vector-stores/vector-store-service.ts';
import { pathId } from '../ids.ts';
import { parsePageRequest, single, toListObject } from '../pagination.ts';
import {
  createFileBatchRequest,
  createVectorStoreFileRequest,
  createVectorStoreRequest,
  FILTER_MAX_DEPTH,
  filterDepth,
  searchRequest,
  updateVectorStoreFileAttributesRequest,
  updateVectorStoreRequest,
} from '../schemas/vector-stores.ts';
import {
  serializeDeleted,
  serializeFileBatch,
  serializeVectorStore,
  serializeVectorStoreFile,
} from '../serializers.ts';
import { parseBody } from '../validation.ts';

/**
 * How soon the SDK's polling helpers (`uploadAndPoll`, `createAndPoll`) should ask again while files are indexed:
 * without the header they wait 5 s between polls.
 */
const POLL_AFTER_MS = '100';
/** A search's response header: `hybrid` (keywords and vectors fused) or `keyword` (no vectors of the server's model). */
export const RANKING_HEADER = 'x-assistd-ranking';

const FILE_STATUSES: readonly VectorStoreFileStatus[] = ['in_progress', 'completed', 'failed', 'cancelled'];

function fileFilter(query: Record<string, unknown>): VectorStoreFileFilter {
  const status = single(query, 'filter');
  if (status === undefined || status === '') return {};
  if (!(FILE_STATUSES as readonly string[]).includes(status))
    throw invalidRequest(
      `Invalid value: '${status}'. Supported values are: ${FILE_STATUSES.map((s) => `'${s}'`).join(', ')}.`,
      'filter',
      'invalid_value',
    );
  return { status: status as VectorStoreFileStatus };
}

function pollHint(reply: FastifyReply, inProgress: boolean): void {
  if (inProgress) reply.header('openai-poll-after-ms', POLL_AFTER_MS);
}

export function registerVectorStoreRoutes(app: FastifyInstance, stores: VectorStoreService): void {
  const storeId = (params: unknown) => pathId('vectorStore', params, 'vector_store_id');
  const fileId = (params: unknown) => pathId('file', params, 'file_id');
  const batchId = (params: unknown) => pathId('fileBatch', params, 'batch_id');
  const query = (request: { query: unknown }) => request.query as Record<string, unknown>;

  app.post('/v1/vector_stores', async (request) => {
    const body = parseBody(createVectorStoreRequest, request.body);
    return serializeVectorStore(await stores.create(request.scope, body));
  });

  app.get('/v1/vector_stores', async (request) => {
    const page = await stores.list(request.scope, parsePageRequest(query(request)));
    return toListObject(page, serializeVectorStore);
  });

  app.get('/v1/vector_stores/:vector_store_id', async (request) => {
    return serializeVectorStore(await stores.get(request.scope, storeId(request.params)));
  });

  app.post('/v1/vector_stores/:vector_store_id', async (request) => {
    const id = storeId(request.params);
    const body = parseBody(updateVectorStoreRequest, request.body);
    return serializeVectorStore(await stores.update(request.scope, id, body));
  });

  app.delete('/v1/vector_stores/:vector_store_id', async (request) => {
    const id = storeId(request.params);
    await stores.delete(request.scope, id);
    return serializeDeleted(id, 'vector_store.deleted');
  });

  app.post('/v1/vector_stores/:vector_store_id/search', async (request, reply) => {
    const id = storeId(request.params);
    const filters = (request.body as { filters?: unknown } | undefined)?.filters;
    if (filterDepth(filters) > FILTER_MAX_DEPTH)
      throw invalidRequest(
        `Invalid 'filters': nested deeper than ${FILTER_MAX_DEPTH} levels.`,
        'filters',
        'invalid_value',
      );
    const body = parseBody(searchRequest, request.body);
    const result = await stores.search(request.scope, id, body);
    // How the results were ranked (the page's schema has no field for it): `hybrid` or `keyword`.
    void reply.header(RANKING_HEADER, result.ranking);
    return {
      object: 'vector_store.search_results.page',
      search_query: result.queries,
      data: result.hits.map((hit) => ({
        file_id: hit.file_id,
        filename: hit.filename,
        score: hit.score,
        // An object even for a file with none, as OpenAI sent it: async-openai and openai-php take no null here.
        attributes: result.attributes.get(hit.file_id) ?? {},
        content: [{ type: 'text', text: hit.text }],
      })),
      has_more: false,
      next_page: null,
    };
  });

  // ── files ──────────────────────────────────────────────────────────────────

  app.post('/v1/vector_stores/:vector_store_id/files', async (request, reply) => {
    const id = storeId(request.params);
    const body = parseBody(createVectorStoreFileRequest, request.body);
    const file = await stores.addFile(request.scope, id, body);
    pollHint(reply, file.status === 'in_progress');
    return serializeVectorStoreFile(file);
  });

  app.get('/v1/vector_stores/:vector_store_id/files', async (request) => {
    const id = storeId(request.params);
    const page = await stores.listFiles(
      request.scope,
      id,
      parsePageRequest(query(request)),
      fileFilter(query(request)),
    );
    return toListObject(page, serializeVectorStoreFile);
  });

  app.get('/v1/vector_stores/:vector_store_id/files/:file_id', async (request, reply) => {
    const file = await stores.getFile(request.scope, storeId(request.params), fileId(request.params));
    pollHint(reply, file.status === 'in_progress');
    return serializeVectorStoreFile(file);
  });

  app.post('/v1/vector_stores/:vector_store_id/files/:file_id', async (request) => {
    const id = storeId(request.params);
    const file = fileId(request.params);
    const body = parseBody(updateVectorStoreFileAttributesRequest, request.body);
    return serializeVectorStoreFile(await stores.updateAttributes(request.scope, id, file, body.attributes));
  });

  app.delete('/v1/vector_stores/:vector_store_id/files/:file_id', async (request) => {
    const file = fileId(request.params);
    await stores.deleteFile(request.scope, storeId(request.params), file);
    return serializeDeleted(file, 'vector_store.file.deleted');
  });

  app.get('/v1/vector_stores/:vector_store_id/files/:file_id/content', async (request) => {
    const texts = await stores.fileContent(request.scope, storeId(request.params), fileId(request.params));
    return {
      object: 'vector_store.file_content.page',
      data: texts.map((text) => ({ type: 'text', text })),
      has_more: false,
      next_page: null,
    };
  });

  // ── file batches ───────────────────────────────────────────────────────────

  app.post('/v1/vector_stores/:vector_store_id/file_batches', async (request, reply) => {
    const id = storeId(request.params);
    const body = parseBody(createFileBatchRequest, request.body);
    const batch = await stores.createBatch(request.scope, id, body);
    pollHint(reply, batch.file_counts.in_progress > 0);
    return serializeFileBatch(batch);
  });

  app.get('/v1/vector_stores/:vector_store_id/file_batches/:batch_id', async (request, reply) => {
    const batch = await stores.getBatch(request.scope, storeId(request.params), batchId(request.params));
    pollHint(reply, batch.file_counts.in_progress > 0);
    return serializeFileBatch(batch);
  });

  app.post('/v1/vector_stores/:vector_store_id/file_batches/:batch_id/cancel', async (request) => {
    return serializeFileBatch(
      await stores.cancelBatch(request.scope, storeId(request.params), batchId(request.params)),
    );
  });

  app.get('/v1/vector_stores/:vector_store_id/file_batches/:batch_id/files', async (request) => {
    const page = await stores.listBatchFiles(
      request.scope,
      storeId(request.params),
      batchId(request.params),
      parsePageRequest(query(request)),
      fileFilter(query(request)),
    );
    return toListObject(page, serializeVectorStoreFile);
  });
}
