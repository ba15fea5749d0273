import { setTimeout as sleep } from 'node:timers/promises';
import type { StoredFile } from '../domain/files.ts';
import type { Assistant, Message, MessageAttachment, Metadata, Thread } from '../domain/objects.ts';
import { type ApiKey, DEFAULT_PROJECT_ID, type Project } from '../domain/projects.ts';
import type { Run, RunStatus, StoredStep } from '../domain/runs.ts';
import type {
  Attributes,
  Chunk,
  ChunkHit,
  FileBatch,
  FileBatchView,
  StaticChunking,
  VectorStore,
  VectorStoreFile,
  VectorStoreFileError,
  VectorStoreFileStatus,
  VectorStoreView,
} from '../domain/vector-stores.ts';
import type { BlobStore } from './blobs/blob-store.ts';

/**
 * The database cannot be reached now (a restart, a failover, a network cut, another process holding SQLite's write
 * lock past its busy timeout): what failed may succeed once it is back. Thrown by the stores in place of the
 * driver's error (`cause`). A statement whose connection was lost may or may not have been applied: only an
 * idempotent write is retried.
 */
export class DatabaseUnavailable extends Error {
  constructor(cause: unknown, what = 'the database is unavailable') {
    super(`${what}: ${cause instanceof Error ? cause.message || cause.name : String(cause)}`, { cause });
    this.name = 'DatabaseUnavailable';
  }
}

/**
 * No room is left where a write goes: in the database (SQLite's SQLITE_FULL, PostgreSQL's `disk_full`) or in the
 * directory of file bytes (ENOSPC, EDQUOT). A DatabaseUnavailable: the write may succeed once room is made, so what
 * waits for the database waits for room too. The API answers it with a 507.
 */
export class StorageFull extends DatabaseUnavailable {
  constructor(cause: unknown) {
    super(cause, 'no room left to store');
    this.name = 'StorageFull';
  }
}

/**
 * `write`, tried again while the database is unavailable, after waits of 100 ms doubling up to a second, until
 * `deadline` (epoch ms) or `signal`; then the last DatabaseUnavailable is thrown. Only for a write that is safe to
 * repeat: one applied before its connection was lost is applied again.
 */
export async function whileUnavailable<T>(write: () => Promise<T>, deadline: number, signal?: AbortSignal): Promise<T> {
  for (let waitMs = 100; ; waitMs = Math.min(waitMs * 2, 1000)) {
    try {
      return await write();
    } catch (error) {
      if (!(error instanceof DatabaseUnavailable) || signal?.aborted || Date.now() + waitMs > deadline) throw error;
      await sleep(waitMs, undefined, { signal }).catch(() => {});
    }
  }
}

/**
 * Every object belongs to a project. Until API keys and projects arrive, all requests share one default project,
 * but every table carries `project_id` and every query is filtered by it, so tenant isolation is a change of who
 * builds the Scope, not of the storage layer.
 */
export interface Scope {
  readonly projectId: string;
  /**
   * The API key the request came with (its id, never its secret), for what is counted per key (rate limits);
   * absent where no key is involved (the worker executing a run, the single-key mode of ASSISTD_API_KEY).
   */
  readonly keyId?: string | undefined;
}

export const DEFAULT_SCOPE: Scope = Object.freeze({ projectId: DEFAULT_PROJECT_ID });

export type SortOrder = 'asc' | 'desc';

/** A validated list request: `after` / `before` are object ids of the same list. */
export interface PageRequest {
  limit: number;
  order: SortOrder;
  after?: string | undefined;
  before?: string | undefined;
}

export interface Page<T> {
  data: T[];
  hasMore: boolean;
}

export type AssistantPatch = Partial<Omit<Assistant, 'id' | 'created_at'>>;
export type ThreadPatch = Partial<Pick<Thread, 'tool_resources' | 'metadata'>>;
export type MessagePatch = Partial<Pick<Message, 'metadata'>>;

/** An object's stored wire JSON, served as is: list endpoints splice it into the response without re-encoding. */
export interface WireJson {
  readonly id: string;
  readonly json: string;
}

export interface MessageFilter {
  runId?: string | undefined;
}

/** What a thread list is sorted by (then by insertion order): its creation, or its last message or run. */
export type ThreadOrderBy = 'created_at' | 'last_active_at';

export interface ThreadFilter {
  /** Only the threads whose metadata holds every one of these key–value pairs. */
  metadata?: Metadata | undefined;
  orderBy?: ThreadOrderBy | undefined;
}

export type { StoredStep } from '../domain/runs.ts';

/** Who executes a run, and until when (ms since the epoch) that lease holds. */
export interface RunLock {
  lockedBy: string | null;
  lockedUntil: number | null;
}

/**
 * One atomic write of a run's progress: the run's new state with the steps and messages it created or changed.
 * It happens only if the run is still in `expect.status` (and, when `expect.lockedBy` is given, still held by that
 * worker), so a worker that lost its lease, or a cancel that raced a completion, changes nothing.
 */
export interface RunCommit {
  run: Run;
  /**
   * What the run must hold for the commit to apply: its status; its lock holder (null: none), when given; its
   * pending action, when given (tool outputs answer the one pause they were checked against); and its steps, as
   * runSteps gave them, when given: an ending made from the steps it read by another than the run's execution (the
   * expiry sweep) would leave open a step that the execution, still holding the run, committed since.
   */
  expect: {
    status: RunStatus;
    lockedBy?: string | null;
    requiredAction?: Run['required_action'];
    steps?: readonly StoredStep[];
  };
  /** The new lock; omitted = unchanged. */
  lock?: RunLock;
  /** Inserted, or replaced by id. */
  steps?: readonly StoredStep[];
  /** Inserted, or replaced by id. */
  messages?: readonly Message[];
  /**
   * Deletes the steps a model turn stored before its end (uncommittedTurn) that this commit does not write, with
   * their messages: a turn whose execution died or was cut off, never to be finished. Found as the commit applies,
   * after its fence: a step stored just before it is found, one that comes after is refused by the fence.
   */
  discardBegun?: boolean;
}

/** Why a run's execution is asked to stop: cancelled, expired, or its thread deleted (the run is gone). */
export type StopRequest = 'cancel' | 'expire' | 'delete';

/**
 * A nudge between processes sharing one database. Small on purpose (PostgreSQL NOTIFY payloads stop at 8 kB):
 * it says what changed, and the receiver reads the rest from the database.
 */
export type RunSignal =
  | { kind: 'work' }
  | { kind: 'stop'; runId: string; reason: StopRequest }
  | { kind: 'run'; runId: string; threadId: string }
  | { kind: 'thread-deleted'; threadId: string };

/** Carries RunSignals to the other processes on the same database. */
export interface SignalChannel {
  /** Whether another process may be listening (when unknown, yes): else a signal would reach no one. */
  readonly othersListening: boolean;
  send(signal: RunSignal): void;
  /** Receives the signals other processes send (never this process's own). */
  listen(receive: (signal: RunSignal) => void): void;
}

/**
 * Queued runs, an assistd extension (off unless asked for; README "Queued runs"). With `queue`, a run created while
 * its thread has an active run is not refused with the thread-lock error: it is stored `queued` and waits behind
 * every run before it, first in first out per thread, until a claim finds it first in line on a thread with no other
 * run going (claimRuns); and a message added while a run is active is stored, for the runs after it.
 */
export interface QueueOption {
  queue?: boolean | undefined;
}

export interface ClaimedRun {
  scope: Scope;
  run: Run;
  lock: RunLock;
}

/** An upload in progress: its row is leased to `owner` (a process) until `until` (ms since the epoch). */
export interface UploadLease {
  owner: string;
  until: number;
}

/**
 * The rows of the Files API. A file is written in two steps so that no crash leaves a row without bytes or bytes
 * without a row for good: `beginUpload` inserts a row that only the uploader sees, leased to it; the bytes are made
 * durable in the blob store; `finishUpload` makes the row a file. A row whose lease lapsed is a crashed upload, and
 * bytes whose id has no row are orphans (a file's row is deleted before its bytes): the sweeper removes both.
 * A file past its `expires_at` is no file for the reads and `deleteFile` from that second on, though its row waits
 * for the sweeper (`deleteLapsedAndExpired`).
 */
export interface FileRecords {
  beginUpload(scope: Scope, id: string, createdAt: number, lease: UploadLease): Promise<void>;
  /** Extends the lease of an upload still held by `lease.owner`; false when it was lost. */
  renewUpload(id: string, lease: UploadLease): Promise<boolean>;
  /** Makes the upload a file with these fields; false (nothing written) when the lease was lost. */
  finishUpload(scope: Scope, file: StoredFile, owner: string): Promise<boolean>;
  /** Removes the row of an upload that failed. */
  abandonUpload(id: string, owner: string): Promise<void>;
  getFile(scope: Scope, id: string): Promise<StoredFile | undefined>;
  listFiles(scope: Scope, page: PageRequest, purpose?: string): Promise<Page<StoredFile>>;
  /** Of `ids`, the ones that are not files of the scope. */
  missingFiles(scope: Scope, ids: readonly string[]): Promise<string[]>;
  /**
   * Deletes a ready file and, in the same transaction, takes it out of every vector store with its chunks; false
   * when the scope has no such file.
   */
  deleteFile(scope: Scope, id: string): Promise<boolean>;
  /** Deletes the rows of uploads whose lease lapsed before `now` and of files expired by `nowSeconds`; their ids. */
  deleteLapsedAndExpired(now: number, nowSeconds: number, limit: number): Promise<string[]>;
  /** For the orphan sweep: the state of each of `ids` that has a row (`uploading` or `ready`). */
  rowStates(ids: readonly string[]): Promise<Map<string, 'uploading' | 'ready'>>;
}

export type VectorStorePatch = Partial<
  Pick<VectorStore, 'name' | 'metadata' | 'expires_after' | 'expires_at' | 'last_active_at'>
>;

export interface VectorStoreFileFilter {
  status?: VectorStoreFileStatus | undefined;
  batchId?: string | undefined;
}

/** A vector-store file waiting to be indexed, leased to a worker. */
export interface ClaimedIngestion {
  scope: Scope;
  vectorStoreId: string;
  fileId: string;
  chunking: StaticChunking;
}

/** A keyword search over the completed files of some stores of one scope. */
export interface ChunkQuery {
  vectorStoreIds: readonly string[];
  /** The user's text as given: the implementation turns it into its index's query syntax, safely. */
  query: string;
  /** Only chunks of these files (the files that passed an attribute filter); undefined = every file. */
  fileIds?: readonly string[] | undefined;
  limit: number;
}

/** The vectors of a completed file's chunks: one per chunk, in the chunks' order, by one model. */
export interface ChunkVectors {
  model: string;
  dimensions: number;
  /** Of `dimensions` numbers each; a zero vector (no direction) is stored as no vector. */
  vectors: readonly Float32Array[];
}

/** The embedding model whose vectors a store holds: recorded with its first embedded file. */
export interface StoreEmbedding {
  model: string;
  dimensions: number;
}

/** A nearest-neighbour search of one store's chunk vectors. */
export interface VectorQuery {
  vectorStoreId: string;
  /** The model that embedded `vector`: a store holding another model's vectors is not searched. */
  model: string;
  vector: Float32Array;
  /** Only chunks of these files (the files that passed an attribute filter); undefined = every file. */
  fileIds?: readonly string[] | undefined;
  limit: number;
}

/**
 * Vector stores, their files and batches, their chunks with the keyword index over them, and the chunks' vectors
 * with the vector index over those (storage/sql/sql-vector-store-records.ts, sql/vector-index.ts). A vector-store file in progress is an ingestion job: claimed under a lease like a
 * run, and completed by one fenced write of its chunks, so a crash mid-ingestion re-indexes the file from scratch
 * and no chunk is ever indexed twice.
 *
 * Reads return undefined for an id that is not in the scope (or not in the named store); writes on a missing store
 * throw the domain's not-found error.
 */
export interface VectorStoreRecords {
  /** Creates the store with its first files (in progress) atomically. */
  createVectorStore(scope: Scope, store: VectorStore, files: readonly VectorStoreFile[]): Promise<void>;
  getVectorStore(scope: Scope, id: string): Promise<VectorStoreView | undefined>;
  listVectorStores(scope: Scope, page: PageRequest): Promise<Page<VectorStoreView>>;
  /**
   * A patch with `expires_after` and no `expires_at` sets `expires_at` too: none for none, else counted from the
   * stored `last_active_at` (the anchor) in the same statement, so that a concurrent touch cannot leave it stale.
   */
  updateVectorStore(scope: Scope, id: string, patch: VectorStorePatch): Promise<VectorStoreView | undefined>;
  /**
   * The stores were used at `now` (searched, part of a run): each that has not expired gets `last_active_at` = `now`
   * and its expiry moved with it, from its expiry as stored when the statement runs. One that has expired stays so.
   */
  touchVectorStores(scope: Scope, ids: readonly string[], now: number): Promise<void>;
  /** Deletes the store with its files, batches and chunks. */
  deleteVectorStore(scope: Scope, id: string): Promise<boolean>;

  /**
   * Adds files (in progress) to a store, and the batch they came in, if any, atomically. A file already in the store
   * is replaced: its chunks are dropped and it is indexed again with the new settings.
   */
  addFiles(scope: Scope, vectorStoreId: string, files: readonly VectorStoreFile[], batch?: FileBatch): Promise<void>;
  getVectorStoreFile(scope: Scope, vectorStoreId: string, fileId: string): Promise<VectorStoreFile | undefined>;
  /** Throws not-found when the store does not exist. */
  listVectorStoreFiles(
    scope: Scope,
    vectorStoreId: string,
    page: PageRequest,
    filter?: VectorStoreFileFilter,
  ): Promise<Page<VectorStoreFile>>;
  updateFileAttributes(
    scope: Scope,
    vectorStoreId: string,
    fileId: string,
    attributes: Attributes | null,
  ): Promise<VectorStoreFile | undefined>;
  /** Removes a file from a store with its chunks. */
  deleteVectorStoreFile(scope: Scope, vectorStoreId: string, fileId: string): Promise<boolean>;
  /** Every file of the store with its attributes and status (for attribute filters). */
  storeFiles(
    scope: Scope,
    vectorStoreId: string,
  ): Promise<Array<{ fileId: string; attributes: Attributes | null; status: VectorStoreFileStatus }>>;

  getFileBatch(scope: Scope, vectorStoreId: string, batchId: string): Promise<FileBatchView | undefined>;
  /**
   * A batch still in progress: marks it cancelled and its files still in progress `cancelled` (an ingestion in
   * flight then writes nothing). A batch no longer in progress is left as it was. The batch as it is then.
   */
  cancelFileBatch(scope: Scope, vectorStoreId: string, batchId: string): Promise<FileBatchView | undefined>;

  /** Leases up to `limit` files in progress with no live lease to `workerId` until `leaseUntil`, oldest first. */
  claimIngestions(workerId: string, now: number, leaseUntil: number, limit: number): Promise<ClaimedIngestion[]>;
  /** Extends a lease still held; false when it was lost (or the file is no longer in progress). */
  renewIngestion(
    scope: Scope,
    vectorStoreId: string,
    fileId: string,
    workerId: string,
    leaseUntil: number,
  ): Promise<boolean>;
  /**
   * Stores the file's chunks and marks it completed with `usageBytes`, fenced on the lease and on the file still
   * being in progress; false when the fence did not hold (no chunk of it is then read: a large file's chunks are
   * written in several transactions, each fenced, and readers skip files not completed). With `vectors`, the
   * chunks get them if the store holds no other model's vectors (the store then records this model and dimension,
   * if it had none); otherwise the chunks are stored without.
   */
  completeIngestion(
    scope: Scope,
    vectorStoreId: string,
    fileId: string,
    workerId: string,
    chunks: readonly Chunk[],
    usageBytes: number,
    vectors?: ChunkVectors,
  ): Promise<boolean>;
  /** Marks the file failed with `error`, fenced like completeIngestion. */
  failIngestion(
    scope: Scope,
    vectorStoreId: string,
    fileId: string,
    workerId: string,
    error: VectorStoreFileError,
  ): Promise<boolean>;

  /** The best chunks for a keyword query, best first, scores in 0..1; only completed files of unexpired stores. */
  searchChunks(scope: Scope, query: ChunkQuery): Promise<ChunkHit[]>;
  /** The model whose vectors the store holds; null when it holds none (or there is no such store). */
  storeEmbedding(scope: Scope, vectorStoreId: string): Promise<StoreEmbedding | null>;
  /**
   * The chunks nearest to the query vector by cosine similarity, best first, `score` the similarity (below 0 as 0);
   * only completed files of an unexpired store, and none when the store holds another model's vectors.
   */
  searchVectors(scope: Scope, query: VectorQuery): Promise<ChunkHit[]>;
  /** The chunks of one file of a store, in order (the parsed content endpoint). */
  fileChunks(scope: Scope, vectorStoreId: string, fileId: string): Promise<Chunk[]>;
  /** Marks stores whose `expires_at` has passed as expired; returns their ids. */
  expireVectorStores(nowSeconds: number, limit: number): Promise<string[]>;
}

/** A page of an organization-level list (projects, a project's keys): oldest first, after an id. */
export interface OrganizationPageRequest {
  limit: number;
  after?: string | undefined;
}

/** What a request's key is checked against: read on every request, so a deletion or an archive holds at once. */
export interface KeyCredentials {
  projectId: string;
  secretHash: string;
  projectArchived: boolean;
}

/**
 * Projects and their API keys (storage/sql/sql-project-records.ts). Organization-level: not scoped, since they are
 * what scopes are made of; only the admin API (api/routes/organization.ts) and the CLI reach them.
 */
export interface ProjectRecords {
  createProject(project: Project): Promise<void>;
  getProject(id: string): Promise<Project | undefined>;
  listProjects(page: OrganizationPageRequest, includeArchived: boolean): Promise<Page<Project>>;
  /** Changes an active project: undefined for an archived one (or no such project). */
  updateProject(id: string, patch: Partial<Pick<Project, 'name'>>): Promise<Project | undefined>;
  /** Archives the project unless it is archived already: undefined then (or for no such project). */
  archiveProject(id: string, at: number): Promise<Project | undefined>;
  /** Throws not-found when the project does not exist. */
  createKey(key: ApiKey, secretHash: string): Promise<void>;
  getKey(projectId: string, id: string): Promise<ApiKey | undefined>;
  listKeys(projectId: string, page: OrganizationPageRequest): Promise<Page<ApiKey>>;
  deleteKey(projectId: string, id: string): Promise<boolean>;
  keyCredentials(id: string): Promise<KeyCredentials | undefined>;
  /** Records that the key was used at `at` (Unix seconds). */
  touchKey(id: string, at: number): Promise<void>;
}

/**
 * What assistd needs from a database. Implementations: storage/sql/sql-store.ts over a Kysely dialect (SQLite,
 * PostgreSQL). test/contract/store-contract.ts is the suite every implementation must pass.
 *
 * Reads return `undefined` for an id that does not exist in the scope; writes on a child of a missing parent
 * throw the domain's not-found error, checked in the same transaction as the write.
 */
export interface Store {
  /** A short description for the startup log, e.g. `sqlite:/data/assistd.sqlite`. */
  readonly description: string;
  /** Opening it made the database: its first migration ran now (a new data directory, or an empty database). */
  readonly createdNow: boolean;
  /** What tells this database from another, kept by its backups: when its first migration ran. */
  databaseId(): Promise<string>;
  /**
   * Present when several processes can share the database (PostgreSQL): signals between them. Absent for a
   * database only one process uses (SQLite).
   */
  readonly signals: SignalChannel | undefined;
  /** The connection pool's use now, for /metrics: present for a database reached over a pool (PostgreSQL). */
  poolUse?(): { total: number; idle: number; waiting: number };
  /** Resolves once the database has answered a trivial query (for /healthz); rejects when it cannot. */
  ping(): Promise<void>;
  close(): Promise<void>;

  readonly files: FileRecords;
  readonly vectorStores: VectorStoreRecords;
  readonly projects: ProjectRecords;
  /** A blob store keeping file bytes in this database (storage/sql/sql-blob-store.ts). */
  databaseBlobs(): BlobStore;

  createAssistant(scope: Scope, assistant: Assistant): Promise<void>;
  getAssistant(scope: Scope, id: string): Promise<Assistant | undefined>;
  listAssistants(scope: Scope, page: PageRequest): Promise<Page<Assistant>>;
  updateAssistant(scope: Scope, id: string, patch: AssistantPatch): Promise<Assistant | undefined>;
  deleteAssistant(scope: Scope, id: string): Promise<boolean>;

  /** Creates the thread and its initial messages atomically. */
  createThread(scope: Scope, thread: Thread, messages: readonly Message[]): Promise<void>;
  getThread(scope: Scope, id: string): Promise<Thread | undefined>;
  /**
   * A page of the scope's threads (an assistd extension: the official API has no thread list). A thread's last
   * activity is its creation, or the latest message added or run created on it.
   */
  listThreads(scope: Scope, page: PageRequest, filter?: ThreadFilter): Promise<Page<Thread>>;
  updateThread(scope: Scope, id: string, patch: ThreadPatch): Promise<Thread | undefined>;
  /** The id of the thread's active run (queued, in progress, requiring action or cancelling), if it has one. */
  activeRunOf(scope: Scope, threadId: string): Promise<string | undefined>;
  /**
   * Deletes the thread with everything in it: its messages, runs and their steps (a long thread's a part at a time,
   * the thread itself last). Gives the ids of its runs that were not over (their executions and streams are to be
   * told), or undefined when there was no such thread.
   */
  deleteThread(scope: Scope, id: string): Promise<string[] | undefined>;

  /**
   * Throws not-found when `message.thread_id` is not a thread of the scope, and, unless `options.queue`, the
   * messages-locked error when the thread has an active run.
   */
  createMessage(scope: Scope, message: Message, options?: QueueOption): Promise<void>;
  getMessage(scope: Scope, threadId: string, id: string): Promise<Message | undefined>;
  /** Throws not-found when the thread does not exist. */
  listMessages(scope: Scope, threadId: string, page: PageRequest, filter?: MessageFilter): Promise<Page<Message>>;
  /** The same page as wire JSON (see WireJson). */
  listMessagesJson(scope: Scope, threadId: string, page: PageRequest, filter?: MessageFilter): Promise<Page<WireJson>>;
  /**
   * Undefined when there is no such message. Throws a 400 for a message in progress: its run writes it until it is
   * complete, and would undo the change (or bring a deleted one back).
   */
  updateMessage(scope: Scope, threadId: string, id: string, patch: MessagePatch): Promise<Message | undefined>;
  /** False when there is no such message; a 400 for one in progress, as updateMessage. */
  deleteMessage(scope: Scope, threadId: string, id: string): Promise<boolean>;
  /** The attachments of a thread's messages, oldest first; read without reading the messages that have none. */
  threadAttachments(scope: Scope, threadId: string): Promise<MessageAttachment[]>;
  /**
   * Up to `limit` of a thread's messages counted from one end (`newest`: newest first), after the `skip` nearest that
   * end: a run's context reads the thread back from its end only as far as its model's window needs (ThreadWindow).
   */
  threadMessagesFrom(
    scope: Scope,
    threadId: string,
    end: 'oldest' | 'newest',
    skip: number,
    limit: number,
  ): Promise<Message[]>;

  /**
   * Creates a queued run, after adding `additionalMessages` to its thread, atomically. Throws not-found for a
   * missing thread and the thread-lock error when the thread already has an active run — unless `options.queue`:
   * the run is then stored waiting behind it, without `lock` (a waiting run is only ever claimed), and the answer
   * says so.
   */
  createRun(
    scope: Scope,
    run: Run,
    additionalMessages: readonly Message[],
    lock?: RunLock,
    options?: QueueOption,
  ): Promise<{ waiting: boolean }>;
  createThreadAndRun(
    scope: Scope,
    thread: Thread,
    messages: readonly Message[],
    run: Run,
    lock?: RunLock,
  ): Promise<void>;
  getRun(scope: Scope, threadId: string, runId: string): Promise<Run | undefined>;
  /** A run by id alone, with its scope: for signals from other processes, which name only the run. */
  findRun(runId: string): Promise<ClaimedRun | undefined>;
  /** The runs of these ids that exist, by id alone as findRun, in no order. */
  findRuns(runIds: readonly string[]): Promise<Run[]>;
  /** Throws not-found when the thread does not exist. */
  listRuns(scope: Scope, threadId: string, page: PageRequest): Promise<Page<Run>>;
  updateRunMetadata(scope: Scope, threadId: string, runId: string, metadata: Metadata): Promise<Run | undefined>;
  getRunStep(scope: Scope, threadId: string, runId: string, stepId: string): Promise<StoredStep | undefined>;
  /** Throws not-found when the run does not exist. */
  listRunSteps(scope: Scope, threadId: string, runId: string, page: PageRequest): Promise<Page<StoredStep>>;
  /** Every step of a run, oldest first. */
  runSteps(scope: Scope, runId: string): Promise<StoredStep[]>;
  runLock(runId: string): Promise<RunLock | undefined>;

  /**
   * Applies a RunCommit. Answers with the run as stored — the commit's run with the metadata the database holds,
   * which modify run may have changed since the committer read it — or undefined when the fence did not hold
   * (nothing was written).
   */
  commitRun(scope: Scope, commit: RunCommit): Promise<Run | undefined>;
  /**
   * Calls `listener` after a commit made here ended a run while other runs of its thread were waiting (QueueOption):
   * the first of them may start now, and a wake-up has a worker claim it at once rather than at its next poll.
   */
  onWaitingRunsFreed(listener: () => void): void;
  /**
   * Leases up to `limit` runs that need a worker — queued, or in progress / cancelling with no live lease (their
   * worker died or gave them back) — to `workerId` until `leaseUntil`, oldest first. A waiting run (QueueOption) is
   * leased only when it is the first in line on a thread with no other run going, and stops waiting then.
   */
  claimRuns(workerId: string, now: number, leaseUntil: number, limit: number): Promise<ClaimedRun[]>;
  /** Extends a lease the worker still holds; returns the run's status, or undefined when the lease is lost. */
  renewLease(runId: string, workerId: string, leaseUntil: number): Promise<RunStatus | undefined>;
  /** Active runs whose `expires_at` (Unix seconds) has passed. */
  runsDueForExpiry(nowSeconds: number, limit: number): Promise<ClaimedRun[]>;
  /**
   * The tokens (`usage.total_tokens`) of the runs created since `sinceSeconds` with the scope's key — with no key
   * (ASSISTD_API_KEY, a server without keys), the project's runs created without one — and when the oldest of those
   * that used tokens was created (null: none): the tokens-per-minute limit.
   */
  tokensUsedSince(scope: Scope, sinceSeconds: number): Promise<{ tokens: number; oldest: number | null }>;
}
