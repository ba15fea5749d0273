import { type ApiError, notFound } from '../domain/errors.ts';
import type { NewMessageInput } from '../domain/messages.ts';
import type { ToolResources } from '../domain/objects.ts';
import type { VectorStoreExpiry } from '../domain/vector-stores.ts';
import type { Scope, Store } from '../storage/store.ts';
import type { VectorStoreService } from '../vector-stores/vector-store-service.ts';
import type { CreateToolResources } from './schemas/tool-resources.ts';

/** What the helpers need of the vector stores. */
export type VectorStoreCreation = Pick<VectorStoreService, 'create' | 'addFile' | 'get'>;

/**
 * Stores made for a thread — by its `vector_stores` helper or by its messages' attachments — expire 7 days after
 * they were last used, upstream's default for them. An assistant's helper store does not expire.
 */
export const THREAD_STORE_EXPIRY: VectorStoreExpiry = Object.freeze({ anchor: 'last_active_at', days: 7 });

/**
 * Create-thread-and-run's two `tool_resources` (its thread's and its own) as the one its thread gets: tool by tool,
 * the top level's where both name a tool, so that neither object is dropped for the other.
 */
export function toolByTool(
  thread: CreateToolResources | null | undefined,
  topLevel: CreateToolResources | null | undefined,
): CreateToolResources | null | undefined {
  return thread && topLevel ? { ...thread, ...topLevel } : (topLevel ?? thread);
}

/** The files a message attaches for file_search. */
function fileSearchAttachments(messages: readonly NewMessageInput[] | null | undefined): string[] {
  const ids = (messages ?? []).flatMap((m) =>
    (m.attachments ?? []).filter((a) => a.tools.some((t) => t.type === 'file_search')).map((a) => a.file_id),
  );
  return [...new Set(ids)];
}

/**
 * The vector stores the API makes on a client's behalf, as upstream does:
 * - the `tool_resources.file_search.vector_stores` helper of create assistant and create thread (and of the thread
 *   of create-thread-and-run) creates a store with its files and names it in `vector_store_ids`;
 * - a message whose attachments include `file_search` (create message, create thread, create-thread-and-run, a
 *   run's `additional_messages`) adds its files to the thread's store, creating one if the thread has none.
 *
 * The files are ingested in the background; a run waits (bounded) for those of its thread's store (the file_search
 * tool). The request's file ids are checked before (api/file-references.ts), so a missing file is a 404 before
 * anything is created; so is what else would refuse the request (`writes` says whether these helpers would write
 * anything, for the routes to check first what the request's own creation would refuse: RunService.checkCreation,
 * and the thread's active run, which `attachToThread` is told of).
 */
export class ToolResourceHelpers {
  private readonly store: Pick<Store, 'getThread' | 'updateThread' | 'activeRunOf'>;
  private readonly vectorStores: VectorStoreCreation;
  /** Attachments to one thread are added one request at a time in this process, so that two never make two stores. */
  private readonly threadQueues = new Map<string, Promise<unknown>>();

  constructor(store: Pick<Store, 'getThread' | 'updateThread' | 'activeRunOf'>, vectorStores: VectorStoreCreation) {
    this.store = store;
    this.vectorStores = vectorStores;
  }

  /** Whether `forNewThread` or `attachToThread` would create a store or add files for these tool_resources and messages. */
  writes(
    messages: readonly NewMessageInput[] | null | undefined,
    ...resources: ReadonlyArray<CreateToolResources | null | undefined>
  ): boolean {
    return (
      fileSearchAttachments(messages).length > 0 ||
      resources.some((r) => (r?.file_search?.vector_stores?.length ?? 0) > 0)
    );
  }

  /**
   * Throws upstream's 404 `No vector store found with id 'vs_x'.` for the first store these tool_resources name that
   * is not a store of the scope (as `file_ids` are checked in file-references.ts), before anything is written.
   */
  async checkVectorStores(
    scope: Scope,
    ...resources: ReadonlyArray<
      { file_search?: { vector_store_ids?: readonly string[] | undefined } | undefined } | null | undefined
    >
  ): Promise<void> {
    const ids = new Set(resources.flatMap((r) => r?.file_search?.vector_store_ids ?? []));
    for (const id of ids) await this.vectorStores.get(scope, id);
  }

  /** An assistant's tool_resources, its helper (if any) resolved to a new store. */
  async forAssistant(scope: Scope, input: CreateToolResources | null | undefined): Promise<ToolResources | null> {
    if (!input) return input ?? null;
    return this.resolveHelper(scope, input, [], undefined);
  }

  /**
   * A new thread's tool_resources: its helper resolved to a new store that also holds the files its messages attach
   * for file_search; or those files added to the store it names; or a new store for them.
   */
  async forNewThread(
    scope: Scope,
    threadId: string,
    input: CreateToolResources | null | undefined,
    messages: readonly NewMessageInput[] | null | undefined,
  ): Promise<ToolResources | null> {
    const attached = fileSearchAttachments(messages);
    if (input?.file_search?.vector_stores?.length)
      return this.resolveHelper(scope, input, attached, THREAD_STORE_EXPIRY);
    const resources: ToolResources | null = input ? stripHelper(input) : null;
    if (attached.length === 0) return resources;
    const named = resources?.file_search?.vector_store_ids[0];
    if (named !== undefined) {
      await this.addFiles(scope, named, attached);
      return resources;
    }
    const created = await this.createThreadStore(scope, threadId, attached);
    return { ...resources, file_search: { vector_store_ids: [created] } };
  }

  /**
   * Adds the files these messages attach for file_search to an existing thread's store, creating the store (and
   * naming it in the thread's tool_resources) if the thread has none. A store the thread names that is gone or has
   * expired is the client's error (404, 400), as upstream: a run of the thread would fail on it too. `busy`: the
   * error for a thread with an active run, which then gets nothing (the request adding the messages will be refused).
   */
  async attachToThread(
    scope: Scope,
    threadId: string,
    messages: readonly NewMessageInput[] | null | undefined,
    busy?: (threadId: string, runId: string) => ApiError,
  ): Promise<void> {
    const attached = fileSearchAttachments(messages);
    if (attached.length === 0) return;
    // Within this process, one request at a time per thread; two processes sharing a database could still each
    // make a store for the same thread at the same moment, and the thread would then name the later one.
    const previous = this.threadQueues.get(threadId) ?? Promise.resolve();
    const mine = previous.catch(() => {}).then(() => this.attachNow(scope, threadId, attached, busy));
    this.threadQueues.set(threadId, mine);
    try {
      await mine;
    } finally {
      if (this.threadQueues.get(threadId) === mine) this.threadQueues.delete(threadId);
    }
  }

  private async attachNow(
    scope: Scope,
    threadId: string,
    fileIds: readonly string[],
    busy: ((threadId: string, runId: string) => ApiError) | undefined,
  ): Promise<void> {
    const thread = await this.store.getThread(scope, threadId);
    if (!thread) throw notFound('thread', threadId);
    const active = busy && (await this.store.activeRunOf(scope, threadId));
    if (active) throw busy(threadId, active);
    const named = thread.tool_resources?.file_search?.vector_store_ids[0];
    if (named !== undefined) return this.addFiles(scope, named, fileIds);
    const created = await this.createThreadStore(scope, threadId, fileIds);
    const updated = await this.store.updateThread(scope, threadId, {
      tool_resources: { ...thread.tool_resources, file_search: { vector_store_ids: [created] } },
    });
    if (!updated) throw notFound('thread', threadId);
  }

  private async resolveHelper(
    scope: Scope,
    input: CreateToolResources,
    extraFileIds: readonly string[],
    expiresAfter: VectorStoreExpiry | undefined,
  ): Promise<ToolResources> {
    const resources = stripHelper(input);
    const helper = input.file_search?.vector_stores?.[0];
    if (!helper) return resources;
    const created = await this.vectorStores.create(scope, {
      file_ids: [...new Set([...helper.file_ids, ...extraFileIds])],
      chunking_strategy: helper.chunking_strategy,
      metadata: helper.metadata,
      expires_after: expiresAfter,
    });
    return { ...resources, file_search: { vector_store_ids: [created.id] } };
  }

  private async createThreadStore(scope: Scope, threadId: string, fileIds: readonly string[]): Promise<string> {
    const created = await this.vectorStores.create(scope, {
      name: `${threadId} store`,
      file_ids: fileIds,
      expires_after: THREAD_STORE_EXPIRY,
    });
    return created.id;
  }

  private async addFiles(scope: Scope, vectorStoreId: string, fileIds: readonly string[]): Promise<void> {
    for (const fileId of fileIds) await this.vectorStores.addFile(scope, vectorStoreId, { file_id: fileId });
  }
}

/** The stored shape of tool_resources: without the helper. */
function stripHelper(input: CreateToolResources): ToolResources {
  const out: ToolResources = {};
  if (input.code_interpreter) out.code_interpreter = input.code_interpreter;
  if (input.file_search) out.file_search = { vector_store_ids: input.file_search.vector_store_ids };
  return out;
}
