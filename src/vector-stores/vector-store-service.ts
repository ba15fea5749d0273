import type { Logger } from 'pino';
import { unixSeconds } from '../domain/clock.ts';
import { invalidRequest, notFound } from '../domain/errors.ts';
import { newId } from '../domain/ids.ts';
import type { Metadata } from '../domain/objects.ts';
import {
  type AttributeFilter,
  type Attributes,
  AUTO_CHUNKING,
  type ChunkHit,
  expirySeconds,
  type FileBatch,
  type FileBatchView,
  matchesFilter,
  type StaticChunking,
  type VectorStore,
  type VectorStoreExpiry,
  type VectorStoreFile,
  type VectorStoreView,
} from '../domain/vector-stores.ts';
import type { Embedder } from '../providers/embedder.ts';
import { reciprocalRankFusion } from '../retrieval/rank-fusion.ts';
import type { Page, PageRequest, Scope, VectorStoreFileFilter, VectorStoreRecords } from '../storage/store.ts';

export interface NewVectorStore {
  name?: string | undefined;
  description?: string | undefined;
  metadata?: Metadata | undefined;
  expires_after?: VectorStoreExpiry | undefined;
  file_ids?: readonly string[] | undefined;
  chunking_strategy?: StaticChunking | undefined;
}

export interface NewVectorStoreFile {
  file_id: string;
  chunking_strategy?: StaticChunking | undefined;
  attributes?: Attributes | null | undefined;
}

export interface SearchRequest {
  query: string | string[];
  max_num_results?: number | undefined;
  filters?: AttributeFilter | undefined;
  ranking_options?: { ranker?: string | undefined; score_threshold?: number | undefined } | undefined;
}

export interface SearchResult {
  queries: string[];
  hits: ChunkHit[];
  /** Attributes of each file with a hit. */
  attributes: Map<string, Attributes | null>;
  /**
   * How the hits were ranked: `hybrid` (keywords and vectors fused) when the store holds vectors of the server's
   * embedding model, else `keyword`.
   */
  ranking: SearchRanking;
}

export type SearchRanking = 'hybrid' | 'keyword';

/** Results fetched per query beyond the ones returned, so that merging several queries still finds the best. */
const CANDIDATES_PER_RESULT = 2;
/**
 * Candidates each index contributes to a hybrid search, at least: a chunk ranked this deep by one index still counts
 * if the other ranks it well.
 */
const MIN_FUSION_CANDIDATES = 40;
/** Vector candidates must be at least this similar to the query (cosine). */
const MIN_SIMILARITY = 1e-4;
/** A query's embedding should take a fraction of this; past it the search falls back to keywords. */
const QUERY_EMBEDDING_TIMEOUT_MS = 30_000;

/**
 * Vector stores, their files and batches: the API's rules over VectorStoreRecords. Files are only recorded here
 * (`in_progress`); the ingestion worker indexes them. `wake` tells this process's worker that there is work.
 */
export class VectorStoreService {
  private readonly records: VectorStoreRecords;
  private readonly wake: () => void;
  private readonly embedder: Embedder | undefined;
  private readonly logger: Logger | undefined;

  constructor(options: {
    records: VectorStoreRecords;
    wake?: () => void;
    /** The embedding model: without it, every search is keyword-only. */
    embedder?: Embedder | undefined;
    logger?: Logger | undefined;
  }) {
    this.records = options.records;
    this.wake = options.wake ?? (() => {});
    this.embedder = options.embedder;
    this.logger = options.logger;
  }

  async create(scope: Scope, body: NewVectorStore): Promise<VectorStoreView> {
    const fileIds = unique(body.file_ids ?? []);
    const now = unixSeconds();
    const store: VectorStore = {
      id: newId('vectorStore'),
      created_at: now,
      name: body.name ?? null,
      description: body.description ?? null,
      metadata: body.metadata ?? {},
      expires_after: body.expires_after ?? null,
      expires_at: expiresAt(body.expires_after ?? null, now),
      last_active_at: now,
      expired: false,
    };
    const chunking = body.chunking_strategy ?? AUTO_CHUNKING;
    await this.records.createVectorStore(
      scope,
      store,
      fileIds.map((id) => newFile(store.id, { file_id: id, chunking_strategy: chunking }, null, now)),
    );
    if (fileIds.length > 0) this.wake();
    return this.get(scope, store.id);
  }

  async get(scope: Scope, id: string): Promise<VectorStoreView> {
    const store = await this.records.getVectorStore(scope, id);
    if (!store) throw notFound('vector store', id);
    return store;
  }

  list(scope: Scope, page: PageRequest): Promise<Page<VectorStoreView>> {
    return this.records.listVectorStores(scope, page);
  }

  async update(
    scope: Scope,
    id: string,
    body: { name?: string | null; metadata?: Metadata; expires_after?: VectorStoreExpiry | null },
  ): Promise<VectorStoreView> {
    const current = await this.get(scope, id);
    const patch: Parameters<VectorStoreRecords['updateVectorStore']>[2] = {};
    if (body.name !== undefined) patch.name = body.name;
    if (body.metadata !== undefined) patch.metadata = body.metadata;
    if (body.expires_after !== undefined) {
      // An expired store stays expired: a new expiry would only contradict its status.
      if (current.expired)
        throw invalidRequest(
          `Vector store ${id} has expired; its expiration cannot be changed. Create a new vector store.`,
          'expires_after',
          'vector_store_expired',
        );
      // expires_at follows, from the stored last_active_at (updateVectorStore).
      patch.expires_after = body.expires_after;
    }
    const updated = await this.records.updateVectorStore(scope, id, patch);
    if (!updated) throw notFound('vector store', id);
    return updated;
  }

  async delete(scope: Scope, id: string): Promise<void> {
    if (!(await this.records.deleteVectorStore(scope, id))) throw notFound('vector store', id);
  }

  /**
   * Adds a file to the store, which counts as use of it. A file the store already has, indexed or being indexed, is
   * indexed again only when the request gives a `chunking_strategy`; otherwise it stays as it is, given `attributes`
   * replacing its own. Attaching a file to a second message of a thread comes here too, and must not hide the file
   * from searches while it is indexed a second time.
   */
  async addFile(scope: Scope, vectorStoreId: string, body: NewVectorStoreFile): Promise<VectorStoreFile> {
    await this.usable(scope, vectorStoreId);
    const present = await this.records.getVectorStoreFile(scope, vectorStoreId, body.file_id);
    let added: VectorStoreFile;
    if ((present?.status === 'completed' || present?.status === 'in_progress') && body.chunking_strategy === undefined)
      added =
        body.attributes === undefined
          ? present
          : await this.updateAttributes(scope, vectorStoreId, body.file_id, body.attributes);
    else {
      await this.records.addFiles(scope, vectorStoreId, [newFile(vectorStoreId, body, null, unixSeconds())]);
      this.wake();
      added = await this.getFile(scope, vectorStoreId, body.file_id);
    }
    await this.touch(scope, [vectorStoreId]);
    return added;
  }

  async getFile(scope: Scope, vectorStoreId: string, fileId: string): Promise<VectorStoreFile> {
    const file = await this.records.getVectorStoreFile(scope, vectorStoreId, fileId);
    if (!file) {
      await this.get(scope, vectorStoreId);
      throw notFound('vector store file', fileId);
    }
    return file;
  }

  async listFiles(
    scope: Scope,
    vectorStoreId: string,
    page: PageRequest,
    filter: VectorStoreFileFilter,
  ): Promise<Page<VectorStoreFile>> {
    return this.records.listVectorStoreFiles(scope, vectorStoreId, page, filter);
  }

  async updateAttributes(
    scope: Scope,
    vectorStoreId: string,
    fileId: string,
    attributes: Attributes | null,
  ): Promise<VectorStoreFile> {
    const file = await this.records.updateFileAttributes(scope, vectorStoreId, fileId, attributes);
    if (!file) return this.getFile(scope, vectorStoreId, fileId);
    return file;
  }

  async deleteFile(scope: Scope, vectorStoreId: string, fileId: string): Promise<void> {
    if (!(await this.records.deleteVectorStoreFile(scope, vectorStoreId, fileId))) {
      await this.get(scope, vectorStoreId);
      throw notFound('vector store file', fileId);
    }
  }

  /**
   * The parsed content of a file, in its chunks' order, each chunk less what it repeats of the one before: joined,
   * they are the file's text, each part of it once. (Chunks stored before their overlap was recorded are given whole.)
   */
  async fileContent(scope: Scope, vectorStoreId: string, fileId: string): Promise<string[]> {
    await this.getFile(scope, vectorStoreId, fileId);
    const chunks = await this.records.fileChunks(scope, vectorStoreId, fileId);
    return chunks.map((chunk) => chunk.text.slice(chunk.overlap ?? 0));
  }

  async createBatch(
    scope: Scope,
    vectorStoreId: string,
    body: {
      file_ids?: readonly string[] | undefined;
      files?: readonly NewVectorStoreFile[] | undefined;
      chunking_strategy?: StaticChunking | undefined;
      attributes?: Attributes | null | undefined;
    },
  ): Promise<FileBatchView> {
    await this.usable(scope, vectorStoreId);
    // `chunking_strategy` and `attributes` apply to every id of `file_ids`; `files` carry their own.
    const requested: NewVectorStoreFile[] =
      body.files !== undefined
        ? [...body.files]
        : (body.file_ids ?? []).map((id) => ({
            file_id: id,
            chunking_strategy: body.chunking_strategy,
            attributes: body.attributes,
          }));
    const byId = new Map(requested.map((file) => [file.file_id, file]));
    const now = unixSeconds();
    const batch: FileBatch = {
      id: newId('fileBatch'),
      vector_store_id: vectorStoreId,
      created_at: now,
      cancelled: false,
    };
    await this.records.addFiles(
      scope,
      vectorStoreId,
      [...byId.values()].map((file) => newFile(vectorStoreId, file, batch.id, now)),
      batch,
    );
    this.wake();
    await this.touch(scope, [vectorStoreId]);
    return this.getBatch(scope, vectorStoreId, batch.id);
  }

  async getBatch(scope: Scope, vectorStoreId: string, batchId: string): Promise<FileBatchView> {
    const batch = await this.records.getFileBatch(scope, vectorStoreId, batchId);
    if (!batch) {
      await this.get(scope, vectorStoreId);
      throw notFound('vector store file batch', batchId);
    }
    return batch;
  }

  /**
   * Cancels what a batch still has in progress. One that has ended (completed, failed, cancelled already) is
   * answered as it is: OpenAI only "attempts to cancel … as soon as possible", and its slow indexing left a client
   * that cancels right after creating a batch (OpenAI-DotNet's tests, a program giving up) a batch still in
   * progress, where a few small files indexed here may already be done.
   */
  async cancelBatch(scope: Scope, vectorStoreId: string, batchId: string): Promise<FileBatchView> {
    return (
      (await this.records.cancelFileBatch(scope, vectorStoreId, batchId)) ??
      this.getBatch(scope, vectorStoreId, batchId)
    );
  }

  async listBatchFiles(
    scope: Scope,
    vectorStoreId: string,
    batchId: string,
    page: PageRequest,
    filter: VectorStoreFileFilter,
  ): Promise<Page<VectorStoreFile>> {
    await this.getBatch(scope, vectorStoreId, batchId);
    return this.records.listVectorStoreFiles(scope, vectorStoreId, page, { ...filter, batchId });
  }

  /**
   * A search of one store: each query searched, hits merged by their best score, then the threshold and the count
   * applied. A filter first narrows the files to those whose attributes pass it.
   *
   * Keyword-only unless the store holds vectors of the server's embedding model: then each query is embedded too,
   * and its keyword hits and its nearest chunks by cosine are fused by reciprocal rank fusion (retrieval/
   * rank-fusion.ts) into 0..1 scores — 1 for a chunk both rank first. A store embedded by another model (the
   * server's model changed) is searched by keywords, never with vectors of a model it was not embedded with; so
   * is every store when the query cannot be embedded (the endpoint is down), which the log says.
   */
  async search(scope: Scope, vectorStoreId: string, body: SearchRequest): Promise<SearchResult> {
    const store = await this.usable(scope, vectorStoreId);
    const queries = (Array.isArray(body.query) ? body.query : [body.query]).filter((q) => q.trim() !== '');
    if (queries.length === 0)
      throw invalidRequest("Invalid 'query': the query must not be empty.", 'query', 'invalid_value');
    const limit = body.max_num_results ?? 10;
    const files = await this.records.storeFiles(scope, vectorStoreId);
    const attributes = new Map(files.map((file) => [file.fileId, file.attributes]));
    const fileIds =
      body.filters === undefined
        ? undefined
        : files.filter((file) => matchesFilter(file.attributes, body.filters!)).map((file) => file.fileId);
    const best = new Map<string, ChunkHit>();
    const vectors = await this.queryVectors(scope, vectorStoreId, queries);
    if (fileIds === undefined || fileIds.length > 0)
      for (const [i, query] of queries.entries()) {
        const candidates = vectors
          ? Math.max(limit * CANDIDATES_PER_RESULT, MIN_FUSION_CANDIDATES)
          : limit * CANDIDATES_PER_RESULT;
        const keyword = await this.records.searchChunks(scope, {
          vectorStoreIds: [vectorStoreId],
          query,
          fileIds,
          limit: candidates,
        });
        let hits = keyword;
        if (vectors) {
          // A chunk at a right angle to the query (or beyond) is unrelated to it, not near: it is no candidate
          // (the margin absorbs float32 rounding: sqlite-vec's L2 distance of orthogonal unit vectors is ~√2).
          const nearest = (
            await this.records.searchVectors(scope, {
              vectorStoreId,
              model: vectors.model,
              vector: vectors.vectors[i]!,
              fileIds,
              limit: candidates,
            })
          ).filter((hit) => hit.score > MIN_SIMILARITY);
          hits = reciprocalRankFusion([keyword, nearest], chunkKey).map(({ item, score }) => ({ ...item, score }));
        }
        for (const hit of hits) {
          const key = chunkKey(hit);
          const seen = best.get(key);
          if (!seen || seen.score < hit.score) best.set(key, hit);
        }
      }
    const threshold = body.ranking_options?.score_threshold ?? 0;
    const hits = [...best.values()]
      .filter((hit) => hit.score >= threshold)
      .sort((a, b) => b.score - a.score)
      .slice(0, limit);
    // Used this second already: nothing to write (one search after another, each a write on SQLite's one writer).
    if (store.last_active_at !== unixSeconds()) await this.touch(scope, [vectorStoreId]);
    return { queries, hits, attributes, ranking: vectors ? 'hybrid' : 'keyword' };
  }

  /** The queries' vectors when the store holds vectors of the server's embedding model; else undefined. */
  private async queryVectors(
    scope: Scope,
    vectorStoreId: string,
    queries: readonly string[],
  ): Promise<{ model: string; vectors: Float32Array[] } | undefined> {
    const embedder = this.embedder;
    if (!embedder) return undefined;
    const held = await this.records.storeEmbedding(scope, vectorStoreId);
    if (!held || held.model !== embedder.model) return undefined;
    try {
      const vectors = await embedder.embed(queries, AbortSignal.timeout(QUERY_EMBEDDING_TIMEOUT_MS), 'query');
      if (vectors.some((vector) => vector.length !== held.dimensions)) return undefined;
      return { model: embedder.model, vectors };
    } catch (error) {
      this.logger?.warn(
        { err: error instanceof Error ? error.message : String(error), vectorStoreId },
        'embedding a search query failed: the store is searched by keywords only',
      );
      return undefined;
    }
  }

  /**
   * Use of stores — a search, or a run that can search them — moves their `last_active_at`, and with it the expiry:
   * upstream's stores expire counting from "the last time the vector store was part of a run".
   */
  async touch(scope: Scope, ids: readonly string[]): Promise<void> {
    await this.records.touchVectorStores(scope, ids, unixSeconds());
  }

  /** The store, which must exist and not have expired. */
  private async usable(scope: Scope, vectorStoreId: string): Promise<VectorStoreView> {
    const store = await this.get(scope, vectorStoreId);
    if (store.expired)
      throw invalidRequest(
        `Vector store ${vectorStoreId} has expired. Create a new vector store to add files or search.`,
        'vector_store_id',
        'vector_store_expired',
      );
    return store;
  }
}

function chunkKey(hit: ChunkHit): string {
  return `${hit.file_id}\u0000${hit.chunk_index}`;
}

function unique(ids: readonly string[]): string[] {
  return [...new Set(ids)];
}

function expiresAt(expiry: VectorStoreExpiry | null, anchor: number): number | null {
  return expiry === null ? null : anchor + expirySeconds(expiry);
}

function newFile(
  vectorStoreId: string,
  body: NewVectorStoreFile,
  batchId: string | null,
  now: number,
): VectorStoreFile {
  return {
    id: body.file_id,
    vector_store_id: vectorStoreId,
    created_at: now,
    status: 'in_progress',
    last_error: null,
    usage_bytes: 0,
    chunking_strategy: body.chunking_strategy ?? AUTO_CHUNKING,
    attributes: body.attributes ?? null,
    batch_id: batchId,
  };
}
