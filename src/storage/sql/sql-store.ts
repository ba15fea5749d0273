import type { Kysely } from 'kysely';
import { notFound } from '../../domain/errors.ts';
import type { Assistant, Message, Thread } from '../../domain/objects.ts';
import type {
  AssistantPatch,
  MessageFilter,
  MessagePatch,
  Page,
  PageRequest,
  Scope,
  Store,
  ThreadPatch,
} from '../store.ts';
import { applyPage, finishPage, resolveCursors } from './pagination.ts';
import {
  assistantPatchToRow,
  assistantToRow,
  messagePatchToRow,
  messageToRow,
  rowToAssistant,
  rowToMessage,
  rowToThread,
  threadPatchToRow,
  threadToRow,
} from './rows.ts';
import type { Database } from './schema.ts';

/**
 * The Store over any Kysely dialect. The queries here are portable SQL (row values, RETURNING, ON DELETE CASCADE
 * are in both SQLite ≥ 3.35 and PostgreSQL); what differs between databases — connection setup, pragmas, DDL —
 * lives in the dialect's own folder.
 */
export class SqlStore implements Store {
  readonly description: string;
  private readonly db: Kysely<Database>;

  constructor(db: Kysely<Database>, description: string) {
    this.db = db;
    this.description = description;
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }

  // ── assistants ──────────────────────────────────────────────────────────────

  async createAssistant(scope: Scope, assistant: Assistant): Promise<void> {
    await this.db.insertInto('assistants').values(assistantToRow(scope, assistant)).execute();
  }

  async getAssistant(scope: Scope, id: string): Promise<Assistant | undefined> {
    const row = await this.db
      .selectFrom('assistants')
      .selectAll()
      .where('project_id', '=', scope.projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && rowToAssistant(row);
  }

  async listAssistants(scope: Scope, page: PageRequest): Promise<Page<Assistant>> {
    const cursors = await resolveCursors(this.db, 'assistants', scope, page);
    const query = this.db.selectFrom('assistants').selectAll().where('project_id', '=', scope.projectId);
    return finishPage(await applyPage(query, page, cursors).execute(), page, rowToAssistant);
  }

  async updateAssistant(scope: Scope, id: string, patch: AssistantPatch): Promise<Assistant | undefined> {
    const changes = assistantPatchToRow(patch);
    if (Object.keys(changes).length === 0) return this.getAssistant(scope, id);
    const row = await this.db
      .updateTable('assistants')
      .set(changes)
      .where('project_id', '=', scope.projectId)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    return row && rowToAssistant(row);
  }

  async deleteAssistant(scope: Scope, id: string): Promise<boolean> {
    const result = await this.db
      .deleteFrom('assistants')
      .where('project_id', '=', scope.projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  // ── threads ─────────────────────────────────────────────────────────────────

  async createThread(scope: Scope, thread: Thread, messages: readonly Message[]): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.insertInto('threads').values(threadToRow(scope, thread)).execute();
      if (messages.length > 0)
        await trx
          .insertInto('messages')
          .values(messages.map((m) => messageToRow(scope, m)))
          .execute();
    });
  }

  async getThread(scope: Scope, id: string): Promise<Thread | undefined> {
    const row = await this.db
      .selectFrom('threads')
      .selectAll()
      .where('project_id', '=', scope.projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && rowToThread(row);
  }

  async updateThread(scope: Scope, id: string, patch: ThreadPatch): Promise<Thread | undefined> {
    const changes = threadPatchToRow(patch);
    if (Object.keys(changes).length === 0) return this.getThread(scope, id);
    const row = await this.db
      .updateTable('threads')
      .set(changes)
      .where('project_id', '=', scope.projectId)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    return row && rowToThread(row);
  }

  async deleteThread(scope: Scope, id: string): Promise<boolean> {
    // Messages (and later runs and steps) go with their thread through ON DELETE CASCADE.
    const result = await this.db
      .deleteFrom('threads')
      .where('project_id', '=', scope.projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    return result.numDeletedRows > 0n;
  }

  // ── messages ────────────────────────────────────────────────────────────────

  async createMessage(scope: Scope, message: Message): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const thread = await trx
        .selectFrom('threads')
        .select('id')
        .where('project_id', '=', scope.projectId)
        .where('id', '=', message.thread_id)
        .executeTakeFirst();
      if (!thread) throw notFound('thread', message.thread_id);
      await trx.insertInto('messages').values(messageToRow(scope, message)).execute();
    });
  }

  async getMessage(scope: Scope, threadId: string, id: string): Promise<Message | undefined> {
    const row = await this.db
      .selectFrom('messages')
      .selectAll()
      .where('project_id', '=', scope.projectId)
      .where('thread_id', '=', threadId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && rowToMessage(row);
  }

  async listMessages(
    scope: Scope,
    threadId: string,
    page: PageRequest,
    filter: MessageFilter = {},
  ): Promise<Page<Message>> {
    if (!(await this.getThread(scope, threadId))) throw notFound('thread', threadId);
    const cursors = await resolveCursors(this.db, 'messages', scope, page, { column: 'thread_id', value: threadId });
    let query = this.db
      .selectFrom('messages')
      .selectAll()
      .where('thread_id', '=', threadId)
      .where('project_id', '=', scope.projectId);
    if (filter.runId !== undefined) query = query.where('run_id', '=', filter.runId);
    return finishPage(await applyPage(query, page, cursors).execute(), page, rowToMessage);
  }

  async updateMessage(scope: Scope, threadId: string, id: string, patch: MessagePatch): Promise<Message | undefined> {
    const changes = messagePatchToRow(patch);
    if (Object.keys(changes).length === 0) return this.getMessage(scope, threadId, id);
    const row = await this.db
      .updateTable('messages')
      .set(changes)
      .where('project_id', '=', scope.projectId)
      .where('thread_id', '=', threadId)
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirst();
    return row && rowToMessage(row);
  }

  async deleteMessage(scope: Scope, threadId: string, id: string): Promise<boolean> {
    const result = await this.db
      .deleteFrom('messages')
      .where('project_id', '=', scope.projectId)
      .where('thread_id', '=', threadId)
      .where('id', '=', id)
      .executeTakeFirst();
    return result.numDeletedRows > 0n;
  }
}
