import { setImmediate as nextTurn } from 'node:timers/promises';
import { type ExpressionBuilder, type Kysely, type RawBuilder, type Selectable, sql } from 'kysely';
import { notFound } from '../../domain/errors.ts';
import type { ToolResources } from '../../domain/objects.ts';
import {
  type Attributes,
  type Chunk,
  type ChunkHit,
  expirySeconds,
  type FileBatch,
  type FileBatchView,
  type FileCounts,
  type StaticChunking,
  type VectorStore,
  type VectorStoreFile,
  type VectorStoreFileError,
  type VectorStoreFileStatus,
  type VectorStoreView,
} from '../../domain/vector-stores.ts';
import type {
  ChunkQuery,
  ChunkVectors,
  ClaimedIngestion,
  Page,
  PageRequest,
  Scope,
  StoreEmbedding,
  VectorQuery,
  VectorStoreFileFilter,
  VectorStorePatch,
  VectorStoreRecords,
} from '../store.ts';
import type { QueryRunner, SqlCapabilities } from './capabilities.ts';
import { ChunkStatistics } from './chunk-statistics.ts';
import { createFtsTable, ftsTableExists, ftsTableOf } from './fts5-tables.ts';
import { fromJson, fromNullableJson, toJson } from './json-column.ts';
import { keywordText, queryTerms } from './keyword-text.ts';
import { bury, deleteAndBury } from './list-tombstones.ts';
import { liveFile, notExpired } from './live-file.ts';
import { applyPage, finishPage, resolveCursors } from './pagination.ts';
import type { Database, VectorStoreFileBatchesTable, VectorStoreFilesTable, VectorStoresTable } from './schema.ts';
import {
  completedChunks,
  MatrixCacheIndex,
  SqliteVecIndex,
  toBlob,
  unitVector,
  type VectorIndex,
} from './vector-index.ts';

/**
 * Written as literals so that SQLite can use the partial indexes `vector_store_files_claimable` and
 * `vector_stores_expiring` (with a bound status it cannot prove the index applies).
 */
const IN_PROGRESS = sql<boolean>`status = 'in_progress'`;
const EXPIRING = sql<boolean>`expired = 0 and expires_at is not null`;

/** A store's file, as a condition on `vector_store_files`. */
function theFile(scope: Scope, vectorStoreId: string, fileId: string) {
  return (eb: ExpressionBuilder<Database, 'vector_store_files'>) =>
    eb.and([
      eb('project_id', '=', scope.projectId),
      eb('vector_store_id', '=', vectorStoreId),
      eb('file_id', '=', fileId),
    ]);
}

/** The fence of every write of an ingestion: the file is still in progress and leased to this worker. */
function heldBy(scope: Scope, vectorStoreId: string, fileId: string, workerId: string) {
  return (eb: ExpressionBuilder<Database, 'vector_store_files'>) =>
    eb.and([theFile(scope, vectorStoreId, fileId)(eb), IN_PROGRESS, eb('locked_by', '=', workerId)]);
}

/**
 * Whether `workerId` still holds the file's ingestion, checked by writing its row: on PostgreSQL the row stays
 * locked until the transaction ends, so a re-add, a cancel or a delete of the file waits for the chunks written
 * under the check and then drops them (they see them: each statement reads what was committed before it began).
 */
async function holdLease(trx: Db, scope: Scope, vectorStoreId: string, fileId: string, workerId: string) {
  const result = await trx
    .updateTable('vector_store_files')
    .set((eb) => ({ locked_until: eb.ref('locked_until') }))
    .where(heldBy(scope, vectorStoreId, fileId, workerId))
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Deletes the chunks of the files `fileIds` of a store (with their keyword and vector entries: triggers). */
async function deleteChunks(trx: Db, vectorStoreId: string, fileIds: readonly string[]): Promise<void> {
  for (let i = 0; i < fileIds.length; i += INSERT_CHUNK)
    await trx
      .deleteFrom('chunks')
      .where('vector_store_id', '=', vectorStoreId)
      .where('file_id', 'in', fileIds.slice(i, i + INSERT_CHUNK))
      .execute();
}

/** Multi-row inserts of files in groups: SQLite allows 32,766 bound values per statement (13 columns × 500). */
const INSERT_CHUNK = 500;
/** SQLite's chunks go in groups this small, each with its FTS5 entries (a 9 MB CJK text: 75 groups of ~30 ms). */
const FTS_INSERT_CHUNK = 100;
/**
 * How many chunks one transaction of a file's completion writes (completeIngestion): 200 took about 40 ms on
 * SQLite (an 8 MB text's 5,511 chunks took one second in one transaction).
 */
const COMMIT_CHUNKS = 200;
/**
 * Chunks deleted per transaction where statements hold the event loop (deleteChunksInParts): at the rate of one
 * cascade over 20,000 chunks (435 ms), about 11 ms.
 */
const DELETED_CHUNKS_PER_PART = 500;

type Db = Kysely<Database>;

/**
 * Vector stores, their files, batches and chunks (see VectorStoreRecords in store.ts), over SQLite or PostgreSQL.
 *
 * What follows from a store's files — its file counts and usage, a batch's counts — is aggregated from
 * `vector_store_files` when read, never stored twice. A file in progress is an ingestion job leased exactly like a
 * run (SqlStore.claimRuns): one claim statement picks and leases, every later write is fenced on
 * `status = 'in_progress' and locked_by = worker`, so a worker that lost its lease, or whose batch was cancelled,
 * writes nothing. Chunks are only written by the fenced completion (a large file's in several transactions, each
 * fenced), whose first write deletes the file's old ones: a retried or duplicated ingestion never indexes a chunk
 * twice (the unique index `chunks_by_file` is the backstop), and readers take a file's chunks once it is completed.
 */
export class SqlVectorStoreRecords implements VectorStoreRecords {
  private readonly db: Db;
  private readonly rowLocks: boolean;
  private readonly statementsOnEventLoop: boolean;
  private readonly index: KeywordIndex;
  /**
   * Runs the searches' heavy reads — the keyword search, and the vector index's (vector-index.ts) — off the event
   * loop where the database needs that (SqlCapabilities.searchReader), else on the store's connections. Only reads
   * made outside any transaction go there: they see what was committed before they began.
   */
  private readonly searches: QueryRunner;
  /** Keeps the planner's statistics of `chunks` current where the database plans on them (PostgreSQL). */
  readonly chunkStatistics: ChunkStatistics | undefined;
  /** Exposed for tests (the PostgreSQL cache's loads). */
  readonly vectorIndex: VectorIndex;

  constructor(db: Db, capabilities: SqlCapabilities) {
    this.db = db;
    this.rowLocks = capabilities.rowLocks;
    this.statementsOnEventLoop = capabilities.statementsOnEventLoop;
    this.index = capabilities.keywordIndex === 'fts5' ? fts5Index() : TSVECTOR_INDEX;
    this.searches = capabilities.searchReader ?? db;
    this.chunkStatistics = this.index.plansOnStatistics ? new ChunkStatistics() : undefined;
    this.vectorIndex = capabilities.vectorIndex === 'sqlite-vec' ? new SqliteVecIndex() : new MatrixCacheIndex();
  }

  // ── stores ──────────────────────────────────────────────────────────────────

  async createVectorStore(scope: Scope, store: VectorStore, files: readonly VectorStoreFile[]): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await requireFiles(trx, scope, files, this.rowLocks);
      await trx.insertInto('vector_stores').values(storeToRow(scope, store)).execute();
      await upsertFiles(trx, scope, store.id, files);
    });
  }

  async getVectorStore(scope: Scope, id: string): Promise<VectorStoreView | undefined> {
    const row = await this.db
      .selectFrom('vector_stores')
      .selectAll()
      .where('project_id', '=', scope.projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) return undefined;
    const totals = await storeTotals(this.db, scope, [id]);
    return storeView(row, totals);
  }

  async listVectorStores(scope: Scope, page: PageRequest): Promise<Page<VectorStoreView>> {
    const cursors = await resolveCursors(this.db, 'vector_stores', scope, page);
    const query = this.db.selectFrom('vector_stores').selectAll().where('project_id', '=', scope.projectId);
    const rows = await applyPage(query, page, cursors).execute();
    const totals = await storeTotals(
      this.db,
      scope,
      rows.map((row) => row.id),
    );
    return finishPage(rows, page, (row) => storeView(row, totals));
  }

  async updateVectorStore(scope: Scope, id: string, patch: VectorStorePatch): Promise<VectorStoreView | undefined> {
    const changes: Partial<Selectable<VectorStoresTable>> = {};
    if (patch.name !== undefined) changes.name = patch.name;
    if (patch.metadata !== undefined) changes.metadata = toJson(patch.metadata);
    if (patch.expires_after !== undefined)
      changes.expires_after = patch.expires_after === null ? null : toJson(patch.expires_after);
    if (patch.expires_at !== undefined) changes.expires_at = patch.expires_at;
    if (patch.last_active_at !== undefined) changes.last_active_at = patch.last_active_at;
    if (Object.keys(changes).length === 0) return this.getVectorStore(scope, id);
    const anchored =
      patch.expires_after === undefined || patch.expires_at !== undefined
        ? {}
        : {
            expires_at:
              patch.expires_after === null
                ? null
                : sql<number>`coalesce(last_active_at, created_at) + ${expirySeconds(patch.expires_after)}`,
          };
    const row = await this.db
      .updateTable('vector_stores')
      .set({ ...changes, ...anchored })
      .where('project_id', '=', scope.projectId)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    if (!row) return undefined;
    return storeView(row, await storeTotals(this.db, scope, [id]));
  }

  async touchVectorStores(scope: Scope, ids: readonly string[], now: number): Promise<void> {
    if (ids.length === 0) return;
    // While a store has an expiry, expires_at − last_active_at is its `days` (create, update and this keep it so):
    // moving both by the same amount in one statement keeps the expiry as stored then, whatever changed it since
    // the caller read the store.
    await this.db
      .updateTable('vector_stores')
      .set({
        last_active_at: now,
        expires_at: sql<number | null>`expires_at - coalesce(last_active_at, created_at) + ${now}`,
      })
      .where('project_id', '=', scope.projectId)
      .where('id', 'in', [...ids])
      .where('expired', '=', 0)
      // Past its expires_at it has expired, whether or not the sweep has marked it yet.
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .where((eb) => eb.or([eb('last_active_at', 'is', null), eb('last_active_at', '<', now)]))
      .execute();
  }

  async deleteVectorStore(scope: Scope, id: string): Promise<boolean> {
    await deleteChunksInParts(this.db, this.statementsOnEventLoop, scope, id);
    // Files and batches go with the store, chunks with their files (ON DELETE CASCADE), and on SQLite each chunk's
    // FTS5 entry with it (its project table's delete trigger, fired for cascaded deletes too: fts5-tables.ts).
    return deleteAndBury(this.db, 'vector_stores', scope.projectId, id, (trx) => forgetStore(trx, scope.projectId, id));
  }

  // ── files ───────────────────────────────────────────────────────────────────

  async addFiles(
    scope: Scope,
    vectorStoreId: string,
    files: readonly VectorStoreFile[],
    batch?: FileBatch,
  ): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await requireStore(trx, scope, vectorStoreId, this.rowLocks);
      await requireFiles(trx, scope, files, this.rowLocks);
      if (batch)
        await trx
          .insertInto('vector_store_file_batches')
          .values(batchToRow(scope, vectorStoreId, batch))
          .execute();
      // The upsert takes each replaced file's row lock first (on PostgreSQL), so an ingestion completing at this
      // moment either committed before — and its chunks are deleted below, by a statement that sees them — or
      // finds the file back in progress without its lease and writes nothing.
      const ids = await upsertFiles(trx, scope, vectorStoreId, files);
      await deleteChunks(trx, vectorStoreId, ids);
      if (ids.length > 0) await bumpVectors(trx, scope, [vectorStoreId]);
    });
  }

  async getVectorStoreFile(scope: Scope, vectorStoreId: string, fileId: string): Promise<VectorStoreFile | undefined> {
    const row = await this.db
      .selectFrom('vector_store_files')
      .selectAll()
      .where(theFile(scope, vectorStoreId, fileId))
      .executeTakeFirst();
    return row && rowToFile(row);
  }

  async listVectorStoreFiles(
    scope: Scope,
    vectorStoreId: string,
    page: PageRequest,
    filter: VectorStoreFileFilter = {},
  ): Promise<Page<VectorStoreFile>> {
    const storeMustExist = async () => {
      if (!(await storeExists(this.db, scope, vectorStoreId))) throw notFound('vector store', vectorStoreId);
    };
    const cursors = await resolveCursors(this.db, 'vector_store_files', scope, page, {
      column: 'vector_store_id',
      value: vectorStoreId,
      mustExist: storeMustExist,
    });
    let query = this.db
      .selectFrom('vector_store_files')
      .selectAll()
      .where('vector_store_id', '=', vectorStoreId)
      .where('project_id', '=', scope.projectId);
    if (filter.status !== undefined) query = query.where('status', '=', filter.status);
    if (filter.batchId !== undefined) query = query.where('batch_id', '=', filter.batchId);
    const rows = await applyPage(query, page, cursors).execute();
    // Only an empty page can hide a missing store: the common case costs one query.
    if (rows.length === 0) await storeMustExist();
    return finishPage(rows, page, rowToFile);
  }

  async updateFileAttributes(
    scope: Scope,
    vectorStoreId: string,
    fileId: string,
    attributes: Attributes | null,
  ): Promise<VectorStoreFile | undefined> {
    const row = await this.db
      .updateTable('vector_store_files')
      .set({ attributes: attributes === null ? null : toJson(attributes) })
      .where(theFile(scope, vectorStoreId, fileId))
      .returningAll()
      .executeTakeFirst();
    return row && rowToFile(row);
  }

  async deleteVectorStoreFile(scope: Scope, vectorStoreId: string, fileId: string): Promise<boolean> {
    await deleteChunksInParts(this.db, this.statementsOnEventLoop, scope, vectorStoreId, fileId);
    // Its chunks go with it (ON DELETE CASCADE, and the FTS5 and vec0 triggers on SQLite).
    return this.db.transaction().execute(async (trx) => {
      await lockStores(trx, scope.projectId, [vectorStoreId], this.rowLocks);
      const rows = await trx
        .deleteFrom('vector_store_files')
        .where(theFile(scope, vectorStoreId, fileId))
        .returning(BURIED_STORE_FILE)
        .execute();
      if (rows.length === 0) return false;
      await bury(trx, 'vector_store_files', rows);
      await bumpVectors(trx, scope, [vectorStoreId]);
      return true;
    });
  }

  async storeFiles(
    scope: Scope,
    vectorStoreId: string,
  ): Promise<Array<{ fileId: string; attributes: Attributes | null; status: VectorStoreFileStatus }>> {
    const rows = await this.db
      .selectFrom('vector_store_files')
      .select(['file_id', 'attributes', 'status'])
      .where('project_id', '=', scope.projectId)
      .where('vector_store_id', '=', vectorStoreId)
      .orderBy('created_at')
      .orderBy('seq')
      .execute();
    return rows.map((row) => ({
      fileId: row.file_id,
      attributes: fromNullableJson<Attributes>(row.attributes),
      status: row.status as VectorStoreFileStatus,
    }));
  }

  // ── batches ─────────────────────────────────────────────────────────────────

  async getFileBatch(scope: Scope, vectorStoreId: string, batchId: string): Promise<FileBatchView | undefined> {
    const row = await this.db
      .selectFrom('vector_store_file_batches')
      .selectAll()
      .where('project_id', '=', scope.projectId)
      .where('vector_store_id', '=', vectorStoreId)
      .where('id', '=', batchId)
      .executeTakeFirst();
    return row && batchView(row, await batchCounts(this.db, scope, vectorStoreId, batchId));
  }

  async cancelFileBatch(scope: Scope, vectorStoreId: string, batchId: string): Promise<FileBatchView | undefined> {
    return this.db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom('vector_store_file_batches')
        .selectAll()
        .where('project_id', '=', scope.projectId)
        .where('vector_store_id', '=', vectorStoreId)
        .where('id', '=', batchId)
        .executeTakeFirst();
      if (!row) return undefined;
      // Clearing the lease is what stops an ingestion in flight: its completion's fence no longer holds. The chunks
      // it wrote before (a large file's first transactions) go with it.
      const files = await trx
        .updateTable('vector_store_files')
        .set({ status: 'cancelled', locked_by: null, locked_until: null })
        .where('project_id', '=', scope.projectId)
        .where('vector_store_id', '=', vectorStoreId)
        .where('batch_id', '=', batchId)
        .where(IN_PROGRESS)
        .returning('file_id')
        .execute();
      await deleteChunks(
        trx,
        vectorStoreId,
        files.map((f) => f.file_id),
      );
      // A batch is in progress while any of its files is (fileBatchStatus): one that is not stays as it is.
      const cancelled = files.length > 0;
      if (cancelled)
        await trx
          .updateTable('vector_store_file_batches')
          .set({ cancelled: 1 })
          .where('project_id', '=', scope.projectId)
          .where('id', '=', batchId)
          .execute();
      const counts = await batchCounts(trx, scope, vectorStoreId, batchId);
      return batchView(cancelled ? { ...row, cancelled: 1 } : row, counts);
    });
  }

  // ── ingestion ───────────────────────────────────────────────────────────────

  /**
   * One statement picks and leases, as SqlStore.claimRuns does: on PostgreSQL the picking query takes
   * `for update skip locked`, so concurrent claims skip each other's files instead of waiting for them and leasing
   * them again; SQLite runs one write at a time. The pick is a materialised CTE, not `seq in (subquery … limit n)`:
   * PostgreSQL planned that subquery as the inner side of a nested-loop semi-join (EXPLAIN ANALYZE: Limit ←
   * LockRows, loops=3), re-running it per outer row, and a re-run skips the rows this very statement has just
   * updated — so `limit 2` leased 3 files. A CTE with a locking clause runs once. The update repeats the
   * conditions so that a row re-read after a concurrent commit (READ COMMITTED's re-check) is leased only if it is
   * still free.
   */
  async claimIngestions(workerId: string, now: number, leaseUntil: number, limit: number): Promise<ClaimedIngestion[]> {
    if (limit <= 0) return [];
    const free = sql<boolean>`(locked_until is null or locked_until < ${now})`;
    const rows = await this.db
      .with(
        (cte) => cte('picked').materialized(),
        (db) =>
          db
            .selectFrom('vector_store_files')
            .select('seq')
            .where(IN_PROGRESS)
            .where(free)
            .orderBy('created_at')
            .orderBy('seq')
            .limit(limit)
            .$if(this.rowLocks, (qb) => qb.forUpdate().skipLocked()),
      )
      .updateTable('vector_store_files')
      .set({ locked_by: workerId, locked_until: leaseUntil })
      .where('seq', 'in', (eb) => eb.selectFrom('picked').select('picked.seq'))
      .where(IN_PROGRESS)
      .where(free)
      .returning(['seq', 'created_at', 'project_id', 'vector_store_id', 'file_id', 'chunking_strategy'])
      .execute();
    // RETURNING follows no order in either database; the interface promises oldest first.
    rows.sort((a, b) => a.created_at - b.created_at || Number(a.seq) - Number(b.seq));
    return rows.map((row) => ({
      scope: { projectId: row.project_id },
      vectorStoreId: row.vector_store_id,
      fileId: row.file_id,
      chunking: fromJson<StaticChunking>(row.chunking_strategy),
    }));
  }

  async renewIngestion(
    scope: Scope,
    vectorStoreId: string,
    fileId: string,
    workerId: string,
    leaseUntil: number,
  ): Promise<boolean> {
    const result = await this.db
      .updateTable('vector_store_files')
      .set({ locked_until: leaseUntil })
      .where(heldBy(scope, vectorStoreId, fileId, workerId))
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async completeIngestion(
    scope: Scope,
    vectorStoreId: string,
    fileId: string,
    workerId: string,
    chunks: readonly Chunk[],
    usageBytes: number,
    vectors?: ChunkVectors,
  ): Promise<boolean> {
    if (vectors && vectors.vectors.length !== chunks.length)
      throw new RangeError(`${vectors.vectors.length} vectors for ${chunks.length} chunks`);
    const embeddings = vectors?.vectors.map((vector) => {
      if (vector.length !== vectors.dimensions)
        throw new RangeError(`a ${vector.length}-dimensional vector among ${vectors.dimensions}-dimensional ones`);
      const unit = unitVector(vector);
      return unit ? toBlob(unit) : null;
    });
    const file = { scope, vectorStoreId, fileId };
    // A large file's chunks go in first, in transactions of COMMIT_CHUNKS each, and its completion commits the last
    // of them: one transaction for thousands of chunks held the database for seconds (on SQLite every query of the
    // process waited). Until then the file is in progress, which every reader of chunks skips.
    const last = Math.max(0, chunks.length - COMMIT_CHUNKS);
    for (let start = 0; start < last; start += COMMIT_CHUNKS) {
      const end = Math.min(start + COMMIT_CHUNKS, last);
      const written = await this.db.transaction().execute(async (trx) => {
        if (!(await holdLease(trx, scope, vectorStoreId, fileId, workerId))) return false;
        if (start === 0) await deleteChunks(trx, vectorStoreId, [fileId]);
        await this.index.insertChunks(trx, file, chunks.slice(start, end), embeddings?.slice(start, end));
        return true;
      });
      if (!written) return false;
      await nextTurn(); // the queries that waited for these transactions run before the next
    }
    const completed = await this.db.transaction().execute(async (trx) => {
      if (vectors) await lockStores(trx, scope.projectId, [vectorStoreId], this.rowLocks);
      const result = await trx
        .updateTable('vector_store_files')
        .set({ status: 'completed', usage_bytes: usageBytes, last_error: null, locked_by: null, locked_until: null })
        .where(heldBy(scope, vectorStoreId, fileId, workerId))
        .executeTakeFirst();
      if (result.numUpdatedRows === 0n) return false;
      // A file in progress has no chunks but those written above (addFiles dropped any others; a crashed
      // ingestion's are dropped by the next one's first write); deleting here keeps that true, for an index probe.
      if (last === 0) await deleteChunks(trx, vectorStoreId, [fileId]);
      if (chunks.length === 0) return true;
      await this.index.insertChunks(trx, file, chunks.slice(last), embeddings?.slice(last));
      if (!vectors) return true;
      // The store takes this model if it has none, or keeps it; a store holding another model's vectors keeps the
      // chunks without these.
      const accepted = await trx
        .updateTable('vector_stores')
        .set({
          embedding_model: vectors.model,
          embedding_dimensions: vectors.dimensions,
          vectors_version: sql`vectors_version + 1`,
        })
        .where('project_id', '=', scope.projectId)
        .where('id', '=', vectorStoreId)
        .where(
          sql<boolean>`(embedding_model is null or (embedding_model = ${vectors.model} and embedding_dimensions = ${vectors.dimensions}))`,
        )
        .executeTakeFirst();
      if (accepted.numUpdatedRows === 0n)
        await trx
          .updateTable('chunks')
          .set({ embedding: null })
          .where('vector_store_id', '=', vectorStoreId)
          .where('file_id', '=', fileId)
          .execute();
      else await this.vectorIndex.indexFile(trx, { vectorStoreId, fileId, dimensions: vectors.dimensions });
      return true;
    });
    // After the commit, so that an ANALYZE sees these chunks and holds no lock of the completion.
    if (completed && chunks.length > 0) await this.chunkStatistics?.added(this.db, chunks.length);
    return completed;
  }

  async failIngestion(
    scope: Scope,
    vectorStoreId: string,
    fileId: string,
    workerId: string,
    error: VectorStoreFileError,
  ): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const result = await trx
        .updateTable('vector_store_files')
        .set({ status: 'failed', last_error: toJson(error), locked_by: null, locked_until: null })
        .where(heldBy(scope, vectorStoreId, fileId, workerId))
        .executeTakeFirst();
      if (result.numUpdatedRows === 0n) return false;
      await deleteChunks(trx, vectorStoreId, [fileId]); // an earlier attempt's, cut short by a crash
      return true;
    });
  }

  // ── search ──────────────────────────────────────────────────────────────────

  /**
   * The query becomes its terms (keyword-text.ts), combined with OR. A chunk's score is
   *
   *     (matched + quality) / (terms + 1)
   *
   * where `matched` is how many of the query's distinct terms the chunk contains and `quality` ∈ [0, 1) is the
   * index's own relevance squashed by x / (1 + x): FTS5's bm25 (negated) on SQLite, ts_rank with length
   * normalisation on PostgreSQL. Coverage dominates: a chunk with one more term always scores higher, whatever the
   * ranking functions say, and the score reads the same in every query — the share of the query found, plus up to
   * one term's worth of relevance — so a `score_threshold` means something on both databases. bm25 and ts_rank
   * differ (both weigh term frequency; bm25 also weighs rare terms up, ts_rank has no corpus statistics), so only
   * the order within chunks that match the same number of terms, and that last fraction of the score, depend on
   * the database.
   */
  async searchChunks(scope: Scope, query: ChunkQuery): Promise<ChunkHit[]> {
    const search = this.plan(scope, query);
    if (!search || (this.index.ready && !(await this.index.ready(this.db, scope)))) return [];
    const { rows } = await this.searches.executeQuery(this.index.search(search).compile(this.db));
    const slots = search.terms.length + 1;
    return rows.map((row) => ({
      vector_store_id: row.vector_store_id,
      file_id: row.file_id,
      filename: row.filename,
      chunk_index: Number(row.chunk_index),
      text: row.text,
      score: Math.min(1, Math.max(0, (Number(row.matched) + this.index.quality(Number(row.relevance))) / slots)),
    }));
  }

  async storeEmbedding(scope: Scope, vectorStoreId: string): Promise<StoreEmbedding | null> {
    const row = await this.db
      .selectFrom('vector_stores')
      .select(['embedding_model', 'embedding_dimensions'])
      .where('project_id', '=', scope.projectId)
      .where('id', '=', vectorStoreId)
      .executeTakeFirst();
    if (!row || row.embedding_model === null || row.embedding_dimensions === null) return null;
    return { model: row.embedding_model, dimensions: Number(row.embedding_dimensions) };
  }

  /**
   * The vector index (vector-index.ts) gives the nearest chunks' seqs and similarities; one statement then reads
   * those chunks with the filters every search applies (searchJoins, searchFilters), so a chunk of a file removed
   * meanwhile, or of a store that expired, is not returned.
   */
  async searchVectors(scope: Scope, query: VectorQuery): Promise<ChunkHit[]> {
    const fileIds = query.fileIds === undefined ? undefined : [...new Set(query.fileIds)];
    if (fileIds?.length === 0 || query.limit <= 0) return [];
    const store = await this.db
      .selectFrom('vector_stores')
      .select(['embedding_model', 'embedding_dimensions', 'vectors_version'])
      .where('project_id', '=', scope.projectId)
      .where('id', '=', query.vectorStoreId)
      .executeTakeFirst();
    const dimensions = Number(store?.embedding_dimensions);
    if (!store || store.embedding_model !== query.model || dimensions !== query.vector.length) return [];
    const vector = unitVector(query.vector);
    if (!vector) return [];
    const nearest = await this.vectorIndex.nearest(this.db, this.searches, {
      scope,
      vectorStoreId: query.vectorStoreId,
      dimensions,
      version: Number(store.vectors_version),
      vector,
      fileIds,
      limit: query.limit,
    });
    if (nearest.length === 0) return [];
    const plan = { scope, vectorStoreIds: [query.vectorStoreId], fileIds };
    // The chunks by their seqs first (a materialised CTE, looked up by primary key), then the joins: left to itself,
    // PostgreSQL without fresh statistics walked every chunk of the store's files and filtered them by seq (16 ms
    // at 100,000 chunks instead of a few hundred µs).
    const seqs = this.index.inList(
      nearest.map((n) => n.seq),
      'bigint',
    );
    const { rows } = await sql<Omit<SearchRow, 'matched' | 'relevance'> & { seq: number }>`
      with hit as materialized (
        select seq, project_id, vector_store_id, file_id, chunk_index, text from chunks where seq ${seqs}
      )
      select c.seq, c.vector_store_id, c.file_id, coalesce(f.filename, '') as filename, c.chunk_index, c.text
      from hit c
      ${searchJoins(this.index.join)}
      where ${searchFilters(plan, (values) => this.index.inList(values, 'text'))}`.execute(this.db);
    const bySeq = new Map(rows.map((row) => [Number(row.seq), row]));
    return nearest.flatMap(({ seq, similarity }) => {
      const row = bySeq.get(seq);
      if (!row) return [];
      return [
        {
          vector_store_id: row.vector_store_id,
          file_id: row.file_id,
          filename: row.filename,
          chunk_index: Number(row.chunk_index),
          text: row.text,
          score: Math.min(1, Math.max(0, similarity)),
        },
      ];
    });
  }

  /** The database's plan for a search (for tests that check the keyword index is used), one line per step. */
  async explainSearch(scope: Scope, query: ChunkQuery): Promise<string> {
    const search = this.plan(scope, query);
    if (!search || (this.index.ready && !(await this.index.ready(this.db, scope)))) return '';
    const explain = sql<Record<string, unknown>>`${sql.raw(this.index.explain)} ${this.index.search(search)}`;
    const { rows } = await explain.execute(this.db);
    return rows.map((row) => String(row['detail'] ?? row['QUERY PLAN'] ?? Object.values(row).join(' '))).join('\n');
  }

  private plan(scope: Scope, query: ChunkQuery): SearchPlan | undefined {
    const terms = queryTerms(query.query);
    const fileIds = query.fileIds === undefined ? undefined : [...new Set(query.fileIds)];
    if (terms.length === 0 || query.vectorStoreIds.length === 0 || fileIds?.length === 0 || query.limit <= 0)
      return undefined;
    return { scope, terms, vectorStoreIds: [...new Set(query.vectorStoreIds)], fileIds, limit: query.limit };
  }

  async fileChunks(scope: Scope, vectorStoreId: string, fileId: string): Promise<Chunk[]> {
    // A file's chunks are its content once it is completed: a large file in progress has some written already.
    // Read where searches are (a large file's are megabytes: off the event loop on SQLite).
    const query = completedChunks(this.db)
      .select(['chunk_index', 'text', 'tokens', 'text_overlap'])
      .where('chunks.project_id', '=', scope.projectId)
      .where('chunks.vector_store_id', '=', vectorStoreId)
      .where('chunks.file_id', '=', fileId)
      .orderBy('chunk_index');
    const { rows } = await this.searches.executeQuery(query.compile());
    return rows.map((row) => ({
      index: Number(row.chunk_index),
      text: row.text,
      tokens: Number(row.tokens),
      ...(row.text_overlap === null ? {} : { overlap: Number(row.text_overlap) }),
    }));
  }

  // ── expiry ──────────────────────────────────────────────────────────────────

  /** Picks and marks in one statement, like claimIngestions (see there for why the pick is a CTE). */
  async expireVectorStores(nowSeconds: number, limit: number): Promise<string[]> {
    if (limit <= 0) return [];
    const rows = await this.db
      .with(
        (cte) => cte('due').materialized(),
        (db) =>
          db
            .selectFrom('vector_stores')
            .select('seq')
            .where(EXPIRING)
            .where('expires_at', '<=', nowSeconds)
            .orderBy('expires_at')
            .limit(limit)
            .$if(this.rowLocks, (qb) => qb.forUpdate().skipLocked()),
      )
      .updateTable('vector_stores')
      .set({ expired: 1 })
      .where('seq', 'in', (eb) => eb.selectFrom('due').select('due.seq'))
      .where(EXPIRING)
      .where('expires_at', '<=', nowSeconds)
      .returning('id')
      .execute();
    return rows.map((row) => row.id);
  }
}

// ── the keyword index of each database ──────────────────────────────────────

interface SearchPlan {
  scope: Scope;
  /** From queryTerms: letters, digits and marks only. */
  terms: string[];
  vectorStoreIds: string[];
  fileIds: string[] | undefined;
  limit: number;
}

/**
 * For where statements run on the event loop (SQLite): the chunks of a store, or of one of its files, deleted a part
 * at a time before the rows that hold them go, each part its own transaction, the event loop free between them: one
 * cascade held every request and stream of the process meanwhile (20,000 chunks: 435 ms). Meanwhile a search may
 * find part of them gone; what the client asked is their deletion, and an interrupted one is finished by asking
 * again.
 */
export async function deleteChunksInParts(
  db: Db,
  statementsOnEventLoop: boolean,
  scope: Scope,
  vectorStoreId: string,
  fileId?: string,
): Promise<void> {
  if (!statementsOnEventLoop) return;
  for (;;) {
    const deleted = await db.transaction().execute(async (trx) => {
      const part = trx
        .selectFrom('chunks')
        .select('seq')
        .where('project_id', '=', scope.projectId)
        .where('vector_store_id', '=', vectorStoreId)
        .$if(fileId !== undefined, (qb) => qb.where('file_id', '=', fileId as string))
        .limit(DELETED_CHUNKS_PER_PART);
      const { numDeletedRows } = await trx.deleteFrom('chunks').where('seq', 'in', part).executeTakeFirstOrThrow();
      // The vector caches reload what changed (vector-matrix-cache.ts).
      if (numDeletedRows > 0n) await bumpVectors(trx, scope, [vectorStoreId]);
      return numDeletedRows;
    });
    if (deleted < BigInt(DELETED_CHUNKS_PER_PART)) return;
    await nextTurn();
  }
}

/** The stores that hold a file (for deleteChunksInParts before the file's deletion). */
export async function storesOfFile(db: Db, scope: Scope, fileId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('vector_store_files')
    .select('vector_store_id')
    .where('project_id', '=', scope.projectId)
    .where('file_id', '=', fileId)
    .execute();
  return rows.map((row) => row.vector_store_id);
}

/**
 * PostgreSQL: locks the stores' rows, in the order of their ids, before a transaction changes their files and then
 * the stores themselves (bumpVectors, the embedding model). Deleting a store locks in that order (the store, then its
 * files by cascade); the opposite order deadlocked against it, and the store's deletion failed.
 */
async function lockStores(trx: Db, projectId: string, ids: readonly string[], lock: boolean): Promise<void> {
  if (!lock || ids.length === 0) return;
  await trx
    .selectFrom('vector_stores')
    .select('id')
    .where('project_id', '=', projectId)
    .where('id', 'in', [...new Set(ids)])
    .orderBy('id')
    .forNoKeyUpdate()
    .execute();
}

/**
 * Moves the stores' `vectors_version`, for the in-memory caches of their vectors (vector-matrix-cache.ts), after a
 * change that may have removed vectors: a store that holds none (no embedding model yet) has nothing to reload.
 */
async function bumpVectors(trx: Db, scope: Scope, vectorStoreIds: readonly string[]): Promise<void> {
  const ids = [...new Set(vectorStoreIds)];
  for (let i = 0; i < ids.length; i += INSERT_CHUNK)
    await trx
      .updateTable('vector_stores')
      .set({ vectors_version: sql`vectors_version + 1` })
      .where('project_id', '=', scope.projectId)
      .where('id', 'in', ids.slice(i, i + INSERT_CHUNK))
      .where('embedding_model', 'is not', null)
      .execute();
}

interface SearchRow {
  vector_store_id: string;
  file_id: string;
  filename: string;
  chunk_index: number;
  text: string;
  /** How many of the plan's terms the chunk contains. */
  matched: number | string;
  /** The index's raw relevance, turned into [0, 1) by KeywordIndex.quality. */
  relevance: number | string;
}

/**
 * How one database indexes chunk text for keyword search. Both are fed keywordText(text) and queried with the
 * terms of queryTerms(query), so they hold the same words; each quotes the terms into its own query syntax.
 */
interface KeywordIndex {
  /**
   * Inserts a file's chunks, with their vectors if given (`chunks.embedding`, one per chunk or null), and their
   * keyword entries (inside one of the completion's transactions).
   */
  insertChunks(
    trx: Db,
    file: { scope: Scope; vectorStoreId: string; fileId: string },
    chunks: readonly Chunk[],
    embeddings: ReadonlyArray<Buffer | null> | undefined,
  ): Promise<void>;
  /** The join operator that keeps the tables in the order written (see searchJoins). */
  readonly join: 'join' | 'cross join';
  /** `in (…)` over a list bound as one parameter, so the statement's text is the same for any length. */
  inList(values: ReadonlyArray<string | number>, type: 'text' | 'bigint'): RawBuilder<unknown>;
  /** Whether the scope has a keyword index to search (SQLite: a project's table is made with its first chunk). */
  ready?(db: Db, scope: Scope): Promise<boolean>;
  /** The best chunks, best first, with `matched` and `relevance`. */
  search(plan: SearchPlan): RawBuilder<SearchRow>;
  /** The raw relevance of a row mapped into [0, 1), higher better. */
  quality(relevance: number): number;
  /** The statement prefix that shows a query's plan. */
  readonly explain: string;
  /**
   * Whether the search's plan depends on the planner's statistics of `chunks`, so that ingestion must keep them
   * current (chunk-statistics.ts). SQLite's search fixes its join order (`cross join`) instead.
   */
  readonly plansOnStatistics: boolean;
}

/**
 * The joins and filters every search applies after the index: the scope, the stores asked for, completed files
 * only (a large file in progress has some of its chunks written already), stores not expired, files not expired
 * (gone for the API at once: live-file.ts; FileSweeper takes them out of their stores later), and the file's name
 * from the Files API's rows (an empty name if the file was deleted meanwhile). `join` is the join
 * operator: SQLite's planner is handed `cross join`, which fixes the order of the tables as written (its documented
 * manual control) — left to itself it started from the store and walked all its chunks by `chunks_by_file`,
 * probing each against the keyword hits, instead of looking each hit's chunk up by rowid.
 */
function searchJoins(join: 'join' | 'cross join'): RawBuilder<unknown> {
  const op = sql.raw(join);
  return sql`
    ${op} vector_stores vs on vs.id = c.vector_store_id
    ${op} vector_store_files vf on vf.vector_store_id = c.vector_store_id and vf.file_id = c.file_id
    left join files f on f.id = c.file_id and f.project_id = c.project_id`;
}

function searchFilters(
  plan: Pick<SearchPlan, 'scope' | 'vectorStoreIds' | 'fileIds'>,
  inList: (values: string[]) => RawBuilder<unknown>,
): RawBuilder<unknown> {
  const files = plan.fileIds ? sql`and c.file_id ${inList(plan.fileIds)}` : sql``;
  return sql`
    c.project_id = ${plan.scope.projectId}
    and c.vector_store_id ${inList(plan.vectorStoreIds)}
    ${files}
    and vs.project_id = ${plan.scope.projectId}
    and vs.expired = 0
    and vf.status = 'completed'
    and ${fileNotExpired()}`;
}

/** The chunk's file (`f`, left joined: none if deleted meanwhile) has not expired (live-file.ts). */
function fileNotExpired(): RawBuilder<boolean> {
  return notExpired(sql`f.expires_at`);
}

/** x ≥ 0 → [0, 1). */
const squash = (x: number) => (x > 0 && Number.isFinite(x) ? x / (1 + x) : 0);

/**
 * SQLite: the project's contentless FTS5 table (fts5-tables.ts: one per project, rowid = chunks.seq), written here
 * beside each chunk, made with the project's first chunk, and emptied by its delete trigger.
 *
 * Each term is its own MATCH (a quoted FTS5 string: `"word"`, so AND, OR, NOT, NEAR, `*`, `:` or `-` in a user's
 * query are never operators; the terms cannot even contain them), all in one statement by joining the list of
 * terms — passed as one JSON parameter, so the statement's text is the same for every query — with the index.
 * Grouping the hits by chunk gives both `matched` (how many terms hit it) and the chunk's bm25 for the OR of the
 * terms (bm25 is a sum over the query's phrases, so the sum of per-term bm25 values is the OR query's). The MATCH
 * rows are materialised first: FTS5 allows bm25() only in the query that scans the table. bm25's statistics (a
 * term's rarity, the average length) are the project's own table's: no other project's chunks weigh in a score.
 */
function fts5Index(): KeywordIndex {
  /** The projects whose table is known to exist (tables are never dropped). */
  const tables = new Set<string>();
  return {
    explain: 'explain query plan',
    join: 'cross join',
    plansOnStatistics: false,

    async ready(db, scope) {
      if (tables.has(scope.projectId)) return true;
      const exists = await ftsTableExists(db, scope.projectId);
      if (exists) tables.add(scope.projectId);
      return exists;
    },

    async insertChunks(trx, { scope, vectorStoreId, fileId }, chunks, embeddings) {
      const table = await createFtsTable(trx, scope.projectId);
      for (let i = 0; i < chunks.length; i += FTS_INSERT_CHUNK) {
        // better-sqlite3 runs each statement synchronously: a file of thousands of chunks held the event loop for
        // seconds (every stream and request of the process waited). Between groups the loop goes round; queries
        // wait for the connection meanwhile (Kysely's mutex), so nothing runs inside this transaction.
        if (i > 0) await nextTurn();
        const group = chunks.slice(i, i + FTS_INSERT_CHUNK);
        // Vectors travel in the JSON as hex, turned back into blobs by unhex().
        const json = JSON.stringify(
          group.map((c, k) => [c.index, c.text, c.tokens, embeddings?.[i + k]?.toString('hex') ?? null, c.overlap]),
        );
        // Numbered from chunk_seq, never reusing a deleted chunk's seq (sqlite/migrations/020-chunk-seq.ts).
        const { rows } = await sql<{ seq: number; chunk_index: number }>`
        insert into chunks (seq, project_id, vector_store_id, file_id, chunk_index, text, tokens, embedding,
          text_overlap)
        select (select next from chunk_seq) + key, ${scope.projectId}, ${vectorStoreId}, ${fileId}, value ->> 0,
          value ->> 1, value ->> 2, unhex(value ->> 3), value ->> 4
        from json_each(${json})
        returning seq, chunk_index`.execute(trx);
        await sql`update chunk_seq set next = next + ${group.length}`.execute(trx);
        const keywords = new Map(group.map((c) => [c.index, keywordText(c.text)]));
        const entries = JSON.stringify(rows.map((row) => [row.seq, keywords.get(row.chunk_index) ?? '']));
        await sql`
        insert into ${sql.id(table)} (rowid, keywords)
        select value ->> 0, value ->> 1 from json_each(${entries})`.execute(trx);
      }
    },

    search(plan) {
      const phrases = JSON.stringify(plan.terms.map((term) => `"${term.replaceAll('"', '""')}"`));
      const inList = (values: string[]) => this.inList(values, 'text');
      const fts = sql.id(ftsTableOf(plan.scope.projectId));
      return sql<SearchRow>`
      with hit as materialized (
        select ${fts}.rowid as seq, bm25(${fts}) as rank
        from json_each(${phrases}) as term cross join ${fts}
        where ${fts} match term.value
      ),
      scored as (
        select seq, count(*) as matched, sum(rank) as rank from hit group by seq
      )
      select c.vector_store_id, c.file_id, coalesce(f.filename, '') as filename, c.chunk_index, c.text,
        s.matched, s.rank as relevance
      from scored s
      cross join chunks c on c.seq = s.seq
      ${searchJoins('cross join')}
      where ${searchFilters(plan, inList)}
      order by s.matched desc, s.rank asc, c.vector_store_id, c.file_id, c.chunk_index
      limit ${plan.limit}`;
    },

    // bm25() is negative, more negative = better.
    quality: (relevance) => squash(-relevance),

    inList: (values) => sql`in (select value from json_each(${JSON.stringify(values)}))`,
  };
}

/**
 * PostgreSQL: the `tsvector` column `chunks.keywords` under the GIN index `chunks_keywords`, written by the chunk's
 * insert as to_tsvector('simple', keywordText(text)): keywordText stemmed the words already (keyword-text.ts), so
 * the `simple` config, which neither stems nor drops words, keeps them as they are.
 *
 * The terms reach to_tsquery quoted as lexemes (`'word' | 'other'`); they hold letters, digits and marks only, so
 * the quoting is a formality, kept (with `'` and `\` escaped) so that nothing depends on that. The OR query is
 * what the GIN index answers; `matched` counts the per-term queries the chunk's vector satisfies. Arrays are bound
 * as parameters, so the statement's text — and its prepared statement (postgres/kysely-pool.ts) — is the
 * same for every query. One statement per search. Its shape, measured on bench:search's 100,000-chunk store
 * (statement alone, named prepared statement, 200 queries of 1–4 words, limit 10; p50 / p99 ms, on a loaded 2-core
 * machine, so read the ratios):
 *
 * - Both tsqueries (the OR and the per-term list) are parsed once, in materialised CTEs. Written in place,
 *   `to_tsquery('simple', $n)` is a stable function of a parameter: once PostgreSQL switches a prepared statement to
 *   its generic plan it calls it again for every candidate row, in the ranking (≈ 30% of the statement).
 * - The best `limit` chunks are picked from `chunks` alone, in a materialised CTE, and only those few are joined
 *   with their file (its status) and its name. The stores' conditions become an array computed once (`= any(array(
 *   select …))`), which the planner can match against the keyword index's hits or `chunks_by_file` as its
 *   statistics say. Joining every candidate first (about 1,000–4,000 for a query with a common word) was
 *   10.4 / 124 ms against 5.8 / 53 for this shape, same rows; right after an ingestion, before any statistics, the
 *   joins made the planner walk the store's chunks file by file (≈ 80 ms), which this shape does not. The file's
 *   status is still checked after the limit: a chunk exists only for a completed file (addFiles deletes a
 *   replaced file's chunks, only the fenced completion writes new ones), so it filters nothing the limit kept.
 *   The chosen chunks are read back by their seq in a LATERAL subquery (`offset 0` keeps PostgreSQL from
 *   flattening it into a plain join): with `vector_store_files` never analysed, the planner otherwise started from
 *   the files it took for one row and walked all their chunks by `chunks_by_file` to find the ten.
 * - ts_rank instead of ts_rank_cd (cover density, the positions of the terms): 4.6 / 40 ms against 5.8 / 53, and
 *   the same recall@5 and MRR on bench:search's retrieval set (the order differs in 26 of 220 result lists, only
 *   among chunks matching equally many terms). ts_rank weighs term frequency, closer to SQLite's bm25 than cover
 *   density is. All weights 1 (chunks carry no weight labels), normalisation 1 (divides by 1 + log of the length,
 *   so long chunks do not win by size) | 32 (rank / (rank + 1), into [0, 1)).
 *
 * The plan still rests on statistics of `chunks` (is the store most of the table, or a sliver of it?), which the
 * ingestion keeps current: chunk-statistics.ts.
 */
const TSVECTOR_INDEX: KeywordIndex = {
  explain: 'explain',
  join: 'join',
  plansOnStatistics: true,

  async insertChunks(trx, { scope, vectorStoreId, fileId }, chunks, embeddings) {
    for (let i = 0; i < chunks.length; i += INSERT_CHUNK) {
      const group = chunks.slice(i, i + INSERT_CHUNK);
      await sql`
        insert into chunks (project_id, vector_store_id, file_id, chunk_index, text, tokens, keywords, embedding,
          text_overlap)
        select ${scope.projectId}, ${vectorStoreId}, ${fileId}, c.chunk_index, c.text, c.tokens,
          to_tsvector('simple', c.keywords), c.embedding, c.text_overlap
        from unnest(
          cast(${group.map((c) => c.index)} as integer[]),
          cast(${group.map((c) => c.text)} as text[]),
          cast(${group.map((c) => c.tokens)} as integer[]),
          cast(${group.map((c) => keywordText(c.text))} as text[]),
          cast(${group.map((_, k) => embeddings?.[i + k] ?? null)} as bytea[]),
          cast(${group.map((c) => c.overlap ?? null)} as integer[])
        ) as c (chunk_index, text, tokens, keywords, embedding, text_overlap)`.execute(trx);
    }
  },

  search(plan) {
    const lexemes = plan.terms.map((term) => `'${term.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`);
    const project = plan.scope.projectId;
    const files = plan.fileIds ? sql`and c.file_id = any(cast(${plan.fileIds} as text[]))` : sql``;
    return sql<SearchRow>`
      with term as materialized (
        select to_tsquery('simple', lexeme) as query from unnest(cast(${lexemes} as text[])) as lexeme
      ),
      search as materialized (
        select to_tsquery('simple', ${lexemes.join(' | ')}) as query
      ),
      best as materialized (
        select c.seq,
          (select count(*) from term where c.keywords @@ term.query) as matched,
          ts_rank('{1,1,1,1}', c.keywords, (select query from search), 1 | 32) as relevance
        from chunks c
        where c.keywords @@ (select query from search)
          and c.project_id = ${project}
          and c.vector_store_id = any(array(
            select id from vector_stores
            where project_id = ${project} and id = any(cast(${plan.vectorStoreIds} as text[])) and expired = 0
          ))
          ${files}
        order by matched desc, relevance desc, c.vector_store_id, c.file_id, c.chunk_index
        limit ${plan.limit}
      )
      select c.vector_store_id, c.file_id, coalesce(f.filename, '') as filename, c.chunk_index, c.text,
        b.matched, b.relevance
      from best b
      cross join lateral (
        select project_id, vector_store_id, file_id, chunk_index, text from chunks where seq = b.seq offset 0
      ) as c
      join vector_store_files vf on vf.vector_store_id = c.vector_store_id and vf.file_id = c.file_id
      left join files f on f.id = c.file_id and f.project_id = c.project_id
      where vf.status = 'completed' and ${fileNotExpired()}
      order by b.matched desc, b.relevance desc, c.vector_store_id, c.file_id, c.chunk_index`;
  },

  // ts_rank with normalisation 32 is already in [0, 1).
  quality: (relevance) => (relevance > 0 ? Math.min(relevance, 1) : 0),

  inList: (values, type) =>
    type === 'text' ? sql`= any(cast(${values} as text[]))` : sql`= any(cast(${values} as bigint[]))`,
};

// ── rows ─────────────────────────────────────────────────────────────────────

async function requireStore(trx: Db, scope: Scope, id: string, lock: boolean): Promise<void> {
  // Locked as lockStores locks (PostgreSQL), before the files it replaces and the store's version: a concurrent
  // deleteVectorStore waits for this transaction, then deletes what it added too; a store already deleted is not
  // found.
  const row = await trx
    .selectFrom('vector_stores')
    .select('id')
    .where('project_id', '=', scope.projectId)
    .where('id', '=', id)
    .$if(lock, (qb) => qb.forNoKeyUpdate())
    .executeTakeFirst();
  if (!row) throw notFound('vector store', id);
}

/**
 * Every file of `files` is a file of the scope, with its row locked against deletion until the transaction ends
 * (`for key share`, PostgreSQL; SQLite runs one transaction at a time): a file deleted or expiring meanwhile is
 * either gone before — a 404 here — or deleted after, by a transaction that then takes it out of this store too
 * (removeFilesFromStores).
 */
async function requireFiles(trx: Db, scope: Scope, files: readonly VectorStoreFile[], lock: boolean): Promise<void> {
  const ids = [...new Set(files.map((file) => file.id))];
  const found = new Set<string>();
  for (let i = 0; i < ids.length; i += INSERT_CHUNK) {
    const rows = await trx
      .selectFrom('files')
      .select('id')
      .where('project_id', '=', scope.projectId)
      .where('id', 'in', ids.slice(i, i + INSERT_CHUNK))
      .where(liveFile())
      .$if(lock, (qb) => qb.forKeyShare())
      .execute();
    for (const row of rows) found.add(row.id);
  }
  const missing = ids.find((id) => !found.has(id));
  if (missing !== undefined) throw notFound('file', missing);
}

/** A vector-store file's place in its store's list: it is named by its file. */
const BURIED_STORE_FILE = ['project_id', 'vector_store_id as parent_id', 'file_id as id', 'created_at', 'seq'] as const;

/**
 * Takes files out of every vector store that holds them, their chunks with them (ON DELETE CASCADE), in the
 * transaction that deletes their rows from the Files API (deleted, or past their `expires_at`): nothing of a file
 * that is gone stays searchable, even if the process dies right after. The stores locked first (lockStores), then
 * the files' rows.
 */
export async function removeFilesFromStores(trx: Db, fileIds: readonly string[], lock: boolean): Promise<void> {
  for (let i = 0; i < fileIds.length; i += INSERT_CHUNK) {
    const part = fileIds.slice(i, i + INSERT_CHUNK);
    if (lock) {
      const held = await trx
        .selectFrom('vector_store_files')
        .select(['project_id', 'vector_store_id'])
        .where('file_id', 'in', part)
        .orderBy('project_id')
        .execute();
      for (const [projectId, storeIds] of byProjectOf(held)) await lockStores(trx, projectId, storeIds, lock);
    }
    const rows = await trx
      .deleteFrom('vector_store_files')
      .where('file_id', 'in', part)
      .returning([...BURIED_STORE_FILE, 'vector_store_id'])
      .execute();
    await bury(trx, 'vector_store_files', rows);
    for (const [projectId, storeIds] of byProjectOf(rows)) await bumpVectors(trx, { projectId }, storeIds);
  }
}

/** The stores of vector-store file rows, by project, in the rows' order. */
function byProjectOf(rows: ReadonlyArray<{ project_id: string; vector_store_id: string }>): Map<string, string[]> {
  const byProject = new Map<string, string[]>();
  for (const row of rows) {
    const stores = byProject.get(row.project_id);
    if (stores) stores.push(row.vector_store_id);
    else byProject.set(row.project_id, [row.vector_store_id]);
  }
  return byProject;
}

async function storeExists(db: Db, scope: Scope, id: string): Promise<boolean> {
  const row = await db
    .selectFrom('vector_stores')
    .select('id')
    .where('project_id', '=', scope.projectId)
    .where('id', '=', id)
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Inserts the files of a store in progress; a file already in the store is replaced (back in progress with the
 * new settings and batch, its lease cleared). Returns the distinct file ids.
 */
async function upsertFiles(
  trx: Db,
  scope: Scope,
  vectorStoreId: string,
  files: readonly VectorStoreFile[],
): Promise<string[]> {
  // One statement may not upsert a row twice (PostgreSQL refuses): the last mention of a file wins.
  const byId = new Map(files.map((file) => [file.id, file]));
  const rows = [...byId.values()].map((file) => fileToRow(scope, vectorStoreId, file));
  for (let i = 0; i < rows.length; i += INSERT_CHUNK)
    await trx
      .insertInto('vector_store_files')
      .values(rows.slice(i, i + INSERT_CHUNK))
      .onConflict((oc) =>
        oc.columns(['vector_store_id', 'file_id']).doUpdateSet((eb) => ({
          created_at: eb.ref('excluded.created_at'),
          status: eb.ref('excluded.status'),
          last_error: eb.ref('excluded.last_error'),
          usage_bytes: eb.ref('excluded.usage_bytes'),
          chunking_strategy: eb.ref('excluded.chunking_strategy'),
          attributes: eb.ref('excluded.attributes'),
          batch_id: eb.ref('excluded.batch_id'),
          locked_by: null,
          locked_until: null,
        })),
      )
      .execute();
  return [...byId.keys()];
}

interface Totals {
  counts: FileCounts;
  usageBytes: number;
}

function emptyTotals(): Totals {
  return { counts: { in_progress: 0, completed: 0, failed: 0, cancelled: 0, total: 0 }, usageBytes: 0 };
}

function addCount(totals: Totals, status: string, n: number, usage: number): void {
  if (status === 'in_progress' || status === 'completed' || status === 'failed' || status === 'cancelled')
    totals.counts[status] += n;
  totals.counts.total += n;
  totals.usageBytes += usage;
}

/** The file counts and usage of each store, aggregated from its files. */
async function storeTotals(db: Db, scope: Scope, ids: readonly string[]): Promise<Map<string, Totals>> {
  const totals = new Map<string, Totals>();
  if (ids.length === 0) return totals;
  const rows = await db
    .selectFrom('vector_store_files')
    .select((eb) => [
      'vector_store_id',
      'status',
      eb.fn.countAll().as('n'),
      eb.fn.coalesce(eb.fn.sum('usage_bytes'), sql.lit(0)).as('usage'),
    ])
    .where('project_id', '=', scope.projectId)
    .where('vector_store_id', 'in', [...ids])
    .groupBy(['vector_store_id', 'status'])
    .execute();
  for (const row of rows) {
    const t = totals.get(row.vector_store_id) ?? emptyTotals();
    totals.set(row.vector_store_id, t);
    addCount(t, row.status, Number(row.n), Number(row.usage));
  }
  return totals;
}

async function batchCounts(db: Db, scope: Scope, vectorStoreId: string, batchId: string): Promise<FileCounts> {
  const rows = await db
    .selectFrom('vector_store_files')
    .select((eb) => ['status', eb.fn.countAll().as('n')])
    .where('project_id', '=', scope.projectId)
    .where('vector_store_id', '=', vectorStoreId)
    .where('batch_id', '=', batchId)
    .groupBy('status')
    .execute();
  const totals = emptyTotals();
  for (const row of rows) addCount(totals, row.status, Number(row.n), 0);
  return totals.counts;
}

function storeToRow(scope: Scope, store: VectorStore) {
  return {
    id: store.id,
    project_id: scope.projectId,
    created_at: store.created_at,
    name: store.name,
    description: store.description,
    metadata: toJson(store.metadata),
    expires_after: store.expires_after === null ? null : toJson(store.expires_after),
    expires_at: store.expires_at,
    last_active_at: store.last_active_at,
    expired: store.expired ? 1 : 0,
    embedding_model: null,
    embedding_dimensions: null,
  };
}

function storeView(row: Selectable<VectorStoresTable>, totals: Map<string, Totals>): VectorStoreView {
  const t = totals.get(row.id) ?? emptyTotals();
  return {
    id: row.id,
    created_at: Number(row.created_at),
    name: row.name,
    description: row.description,
    metadata: fromJson(row.metadata),
    expires_after: fromNullableJson(row.expires_after),
    expires_at: row.expires_at === null ? null : Number(row.expires_at),
    last_active_at: row.last_active_at === null ? null : Number(row.last_active_at),
    expired: Number(row.expired) === 1,
    file_counts: t.counts,
    usage_bytes: t.usageBytes,
  };
}

function fileToRow(scope: Scope, vectorStoreId: string, file: VectorStoreFile) {
  return {
    file_id: file.id,
    vector_store_id: vectorStoreId,
    project_id: scope.projectId,
    created_at: file.created_at,
    status: file.status,
    last_error: file.last_error === null ? null : toJson(file.last_error),
    usage_bytes: file.usage_bytes,
    chunking_strategy: toJson(file.chunking_strategy),
    attributes: file.attributes === null ? null : toJson(file.attributes),
    batch_id: file.batch_id,
    locked_by: null,
    locked_until: null,
  };
}

function rowToFile(row: Selectable<VectorStoreFilesTable>): VectorStoreFile {
  return {
    id: row.file_id,
    vector_store_id: row.vector_store_id,
    created_at: Number(row.created_at),
    status: row.status as VectorStoreFileStatus,
    last_error: fromNullableJson<VectorStoreFileError>(row.last_error),
    usage_bytes: Number(row.usage_bytes),
    chunking_strategy: fromJson<StaticChunking>(row.chunking_strategy),
    attributes: fromNullableJson<Attributes>(row.attributes),
    batch_id: row.batch_id,
  };
}

function batchToRow(scope: Scope, vectorStoreId: string, batch: FileBatch) {
  return {
    id: batch.id,
    vector_store_id: vectorStoreId,
    project_id: scope.projectId,
    created_at: batch.created_at,
    cancelled: batch.cancelled ? 1 : 0,
  };
}

function batchView(row: Selectable<VectorStoreFileBatchesTable>, counts: FileCounts): FileBatchView {
  return {
    id: row.id,
    vector_store_id: row.vector_store_id,
    created_at: Number(row.created_at),
    cancelled: Number(row.cancelled) === 1,
    file_counts: counts,
  };
}

/**
 * A deleted store is no longer named by the assistants and threads that named it (their
 * `tool_resources.file_search.vector_store_ids`), as upstream dropped it: OpenAI's cookbook deletes a store and then
 * runs its assistant, which searches and finds nothing. Each names at most one store, in its `tool_resources` column;
 * the rows that may name it are found by the id's text.
 */
async function forgetStore(trx: Kysely<Database>, projectId: string, id: string): Promise<void> {
  for (const table of ['assistants', 'threads'] as const) {
    const rows = await trx
      .selectFrom(table)
      .select(['id', 'tool_resources'])
      .where('project_id', '=', projectId)
      .where('tool_resources', 'like', `%"${id}"%`)
      .execute();
    for (const row of rows) {
      const resources = fromNullableJson<ToolResources>(row.tool_resources);
      const named = resources?.file_search?.vector_store_ids;
      if (!resources || !named?.includes(id)) continue;
      const kept = { ...resources, file_search: { vector_store_ids: named.filter((v) => v !== id) } };
      await trx
        .updateTable(table)
        .set({ tool_resources: toJson(kept) })
        .where('project_id', '=', projectId)
        .where('id', '=', row.id)
        .execute();
    }
  }
}
