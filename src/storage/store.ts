import type { Assistant, Message, Thread } from '../domain/objects.ts';

/**
 * Every object belongs to a project. Until API keys and projects arrive, all requests share one default project,
 * but every table carries `project_id` and every query is filtered by it, so tenant isolation is a change of who
 * builds the Scope, not of the storage layer.
 */
export interface Scope {
  readonly projectId: string;
}

export const DEFAULT_SCOPE: Scope = Object.freeze({ projectId: 'proj_default' });

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

export interface MessageFilter {
  runId?: string | undefined;
}

/**
 * What assistd needs from a database. Implementations: storage/sql/sql-store.ts over a Kysely dialect (SQLite now;
 * PostgreSQL adds a dialect). test/contract/store-contract.ts is the suite every implementation must pass.
 *
 * Reads return `undefined` for an id that does not exist in the scope; writes on a child of a missing parent
 * throw the domain's not-found error, checked in the same transaction as the write.
 */
export interface Store {
  /** A short description for the startup log, e.g. `sqlite:/data/assistd.sqlite`. */
  readonly description: string;
  close(): Promise<void>;

  createAssistant(scope: Scope, assistant: Assistant): Promise<void>;
  getAssistant(scope: Scope, id: string): Promise<Assistant | undefined>;
  listAssistants(scope: Scope, page: PageRequest): Promise<Page<Assistant>>;
  updateAssistant(scope: Scope, id: string, patch: AssistantPatch): Promise<Assistant | undefined>;
  deleteAssistant(scope: Scope, id: string): Promise<boolean>;

  /** Creates the thread and its initial messages atomically. */
  createThread(scope: Scope, thread: Thread, messages: readonly Message[]): Promise<void>;
  getThread(scope: Scope, id: string): Promise<Thread | undefined>;
  updateThread(scope: Scope, id: string, patch: ThreadPatch): Promise<Thread | undefined>;
  /** Deletes the thread with everything in it (messages, and later runs and steps). */
  deleteThread(scope: Scope, id: string): Promise<boolean>;

  /** Throws not-found when `message.thread_id` is not a thread of the scope. */
  createMessage(scope: Scope, message: Message): Promise<void>;
  getMessage(scope: Scope, threadId: string, id: string): Promise<Message | undefined>;
  /** Throws not-found when the thread does not exist. */
  listMessages(scope: Scope, threadId: string, page: PageRequest, filter?: MessageFilter): Promise<Page<Message>>;
  updateMessage(scope: Scope, threadId: string, id: string, patch: MessagePatch): Promise<Message | undefined>;
  deleteMessage(scope: Scope, threadId: string, id: string): Promise<boolean>;
}
