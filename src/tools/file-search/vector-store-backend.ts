import { ApiError } from '../../domain/errors.ts';
import type { ChunkHit } from '../../domain/vector-stores.ts';
import type { Store } from '../../storage/store.ts';
import type { VectorStoreService } from '../../vector-stores/vector-store-service.ts';
import { expiredStore, type FileSearchBackend } from './file-search-tool.ts';

/**
 * What a search of store `id` throwing means: a store deleted meanwhile is skipped (undefined); one that expired
 * meanwhile fails the run as one found expired does; anything else is the tool failing.
 */
function gone(id: string) {
  return (error: unknown): undefined => {
    if (error instanceof ApiError && error.status === 404) return undefined;
    if (error instanceof ApiError && error.code === 'vector_store_expired') throw expiredStore(id);
    throw error;
  };
}

/**
 * file_search over assistd's own vector stores: the stores are named by the run's assistant and thread (read
 * through the Store), their state comes from VectorStoreRecords, and each is searched by the VectorStoreService —
 * the same search as `POST /vector_stores/{id}/search`, which also keeps a store in use from expiring.
 */
export function vectorStoreBackend(deps: {
  store: Pick<Store, 'getAssistant' | 'getThread' | 'vectorStores'>;
  vectorStores: Pick<VectorStoreService, 'search' | 'touch'>;
}): FileSearchBackend {
  const { store, vectorStores } = deps;
  return {
    async resolveStores(scope, run) {
      const [assistant, thread] = await Promise.all([
        store.getAssistant(scope, run.assistant_id),
        store.getThread(scope, run.thread_id),
      ]);
      return {
        assistant: assistant?.tool_resources?.file_search?.vector_store_ids ?? [],
        thread: thread?.tool_resources?.file_search?.vector_store_ids ?? [],
      };
    },

    markUsed: (scope, ids) => vectorStores.touch(scope, ids),

    getStore: (scope, id) => store.vectorStores.getVectorStore(scope, id),

    async search(scope, vectorStoreIds, queries, options) {
      const best = new Map<string, ChunkHit>();
      for (const id of vectorStoreIds) {
        const found = await vectorStores
          .search(scope, id, {
            query: [...queries],
            max_num_results: options.maxNumResults,
            ranking_options: { score_threshold: options.scoreThreshold },
          })
          .catch(gone(id));
        // Deleted since the call named it (a thread store's ingestion is waited for): not searched, as one deleted
        // before (fileSearchTool's `usable`).
        if (!found) continue;
        const { hits } = found;
        // A file in both stores is one source: the same text of it counts once, with its best score.
        for (const hit of hits) {
          const key = `${hit.file_id}\u0000${hit.text}`;
          const seen = best.get(key);
          if (!seen || seen.score < hit.score) best.set(key, hit);
        }
      }
      return [...best.values()].sort((a, b) => b.score - a.score).slice(0, options.maxNumResults);
    },
  };
}
