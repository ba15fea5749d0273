import type { Insertable, Selectable, Updateable } from 'kysely';
import type { Assistant, Message, Thread } from '../../domain/objects.ts';
import type { AssistantPatch, MessagePatch, Scope, ThreadPatch } from '../store.ts';
import { fromJson, fromNullableJson, toJson } from './json-column.ts';
import type { AssistantsTable, MessagesTable, ThreadsTable } from './schema.ts';

// Rows ↔ domain objects. The only place that knows how each field is encoded in a column.

export function assistantToRow(scope: Scope, a: Assistant): Insertable<AssistantsTable> {
  return {
    id: a.id,
    project_id: scope.projectId,
    created_at: a.created_at,
    name: a.name,
    description: a.description,
    model: a.model,
    instructions: a.instructions,
    tools: toJson(a.tools),
    tool_resources: a.tool_resources === null ? null : toJson(a.tool_resources),
    metadata: toJson(a.metadata),
    temperature: a.temperature,
    top_p: a.top_p,
    response_format: a.response_format === null ? null : toJson(a.response_format),
    reasoning_effort: a.reasoning_effort,
  };
}

export function assistantPatchToRow(patch: AssistantPatch): Updateable<AssistantsTable> {
  const row: Updateable<AssistantsTable> = {};
  if (patch.name !== undefined) row.name = patch.name;
  if (patch.description !== undefined) row.description = patch.description;
  if (patch.model !== undefined) row.model = patch.model;
  if (patch.instructions !== undefined) row.instructions = patch.instructions;
  if (patch.tools !== undefined) row.tools = toJson(patch.tools);
  if (patch.tool_resources !== undefined)
    row.tool_resources = patch.tool_resources === null ? null : toJson(patch.tool_resources);
  if (patch.metadata !== undefined) row.metadata = toJson(patch.metadata);
  if (patch.temperature !== undefined) row.temperature = patch.temperature;
  if (patch.top_p !== undefined) row.top_p = patch.top_p;
  if (patch.response_format !== undefined)
    row.response_format = patch.response_format === null ? null : toJson(patch.response_format);
  if (patch.reasoning_effort !== undefined) row.reasoning_effort = patch.reasoning_effort;
  return row;
}

export function rowToAssistant(row: Selectable<AssistantsTable>): Assistant {
  return {
    id: row.id,
    created_at: Number(row.created_at),
    name: row.name,
    description: row.description,
    model: row.model,
    instructions: row.instructions,
    tools: fromJson(row.tools),
    tool_resources: fromNullableJson(row.tool_resources),
    metadata: fromJson(row.metadata),
    temperature: row.temperature === null ? null : Number(row.temperature),
    top_p: row.top_p === null ? null : Number(row.top_p),
    response_format: fromNullableJson(row.response_format),
    reasoning_effort: row.reasoning_effort as Assistant['reasoning_effort'],
  };
}

export function threadToRow(scope: Scope, t: Thread): Insertable<ThreadsTable> {
  return {
    id: t.id,
    project_id: scope.projectId,
    created_at: t.created_at,
    tool_resources: t.tool_resources === null ? null : toJson(t.tool_resources),
    metadata: toJson(t.metadata),
  };
}

export function threadPatchToRow(patch: ThreadPatch): Updateable<ThreadsTable> {
  const row: Updateable<ThreadsTable> = {};
  if (patch.tool_resources !== undefined)
    row.tool_resources = patch.tool_resources === null ? null : toJson(patch.tool_resources);
  if (patch.metadata !== undefined) row.metadata = toJson(patch.metadata);
  return row;
}

export function rowToThread(row: Selectable<ThreadsTable>): Thread {
  return {
    id: row.id,
    created_at: Number(row.created_at),
    tool_resources: fromNullableJson(row.tool_resources),
    metadata: fromJson(row.metadata),
  };
}

export function messageToRow(scope: Scope, m: Message): Insertable<MessagesTable> {
  return {
    id: m.id,
    project_id: scope.projectId,
    thread_id: m.thread_id,
    created_at: m.created_at,
    status: m.status,
    incomplete_details: m.incomplete_details === null ? null : toJson(m.incomplete_details),
    completed_at: m.completed_at,
    incomplete_at: m.incomplete_at,
    role: m.role,
    content: toJson(m.content),
    assistant_id: m.assistant_id,
    run_id: m.run_id,
    attachments: toJson(m.attachments),
    metadata: toJson(m.metadata),
  };
}

export function messagePatchToRow(patch: MessagePatch): Updateable<MessagesTable> {
  const row: Updateable<MessagesTable> = {};
  if (patch.metadata !== undefined) row.metadata = toJson(patch.metadata);
  return row;
}

export function rowToMessage(row: Selectable<MessagesTable>): Message {
  return {
    id: row.id,
    created_at: Number(row.created_at),
    thread_id: row.thread_id,
    status: row.status as Message['status'],
    incomplete_details: fromNullableJson(row.incomplete_details),
    completed_at: row.completed_at === null ? null : Number(row.completed_at),
    incomplete_at: row.incomplete_at === null ? null : Number(row.incomplete_at),
    role: row.role as Message['role'],
    content: fromJson(row.content),
    assistant_id: row.assistant_id,
    run_id: row.run_id,
    attachments: fromJson(row.attachments),
    metadata: fromJson(row.metadata),
  };
}
