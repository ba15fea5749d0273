import type { Insertable, Selectable, Updateable } from 'kysely';
import { messageToWire } from '../../domain/messages.ts';
import type { Assistant, Message, Thread } from '../../domain/objects.ts';
import type { Run, RunStep } from '../../domain/runs.ts';
import type { AssistantPatch, Scope, StoredStep, ThreadPatch } from '../store.ts';
import { fromJson, fromNullableJson, toJson } from './json-column.ts';
import type { AssistantsTable, MessagesTable, RunStepsTable, RunsTable, ThreadsTable } from './schema.ts';

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
    last_active_at: t.created_at,
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
    run_id: m.run_id,
    doc: toJson(messageToWire(m)),
  };
}

export function rowToMessage(row: Pick<Selectable<MessagesTable>, 'doc'>): Message {
  const { object: _object, ...message } = fromJson<ReturnType<typeof messageToWire>>(row.doc);
  return message;
}

export function runToRow(scope: Scope, r: Run): Insertable<RunsTable> {
  return {
    id: r.id,
    project_id: scope.projectId,
    thread_id: r.thread_id,
    assistant_id: r.assistant_id,
    created_at: r.created_at,
    ...runStateToRow(r),
    metadata: toJson(r.metadata),
    model: r.model,
    instructions: r.instructions,
    tools: toJson(r.tools),
    temperature: r.temperature,
    top_p: r.top_p,
    max_prompt_tokens: r.max_prompt_tokens,
    max_completion_tokens: r.max_completion_tokens,
    truncation_strategy: toJson(r.truncation_strategy),
    tool_choice: toJson(r.tool_choice),
    parallel_tool_calls: r.parallel_tool_calls ? 1 : 0,
    response_format: toJson(r.response_format),
    reasoning_effort: r.reasoning_effort,
    api_key_id: scope.keyId ?? null,
  };
}

/**
 * The columns a run's lifecycle changes. Its settings never change after creation, and its metadata changes only
 * through modify run (updateRunMetadata), never through a commit: an execution's copy of the run may be older than
 * a modification made meanwhile.
 */
export function runStateToRow(r: Run) {
  return {
    status: r.status,
    required_action: r.required_action === null ? null : toJson(r.required_action),
    last_error: r.last_error === null ? null : toJson(r.last_error),
    expires_at: r.expires_at,
    started_at: r.started_at,
    cancelled_at: r.cancelled_at,
    failed_at: r.failed_at,
    completed_at: r.completed_at,
    incomplete_details: r.incomplete_details === null ? null : toJson(r.incomplete_details),
    usage: r.usage === null ? null : toJson(r.usage),
  };
}

const nullableNumber = (v: number | null) => (v === null ? null : Number(v));

export function rowToRun(row: Selectable<RunsTable>): Run {
  return {
    id: row.id,
    created_at: Number(row.created_at),
    thread_id: row.thread_id,
    assistant_id: row.assistant_id,
    status: row.status as Run['status'],
    required_action: fromNullableJson(row.required_action),
    last_error: fromNullableJson(row.last_error),
    expires_at: nullableNumber(row.expires_at),
    started_at: nullableNumber(row.started_at),
    cancelled_at: nullableNumber(row.cancelled_at),
    failed_at: nullableNumber(row.failed_at),
    completed_at: nullableNumber(row.completed_at),
    incomplete_details: fromNullableJson(row.incomplete_details),
    model: row.model,
    instructions: row.instructions,
    tools: fromJson(row.tools),
    metadata: fromJson(row.metadata),
    usage: fromNullableJson(row.usage),
    temperature: nullableNumber(row.temperature),
    top_p: nullableNumber(row.top_p),
    max_prompt_tokens: nullableNumber(row.max_prompt_tokens),
    max_completion_tokens: nullableNumber(row.max_completion_tokens),
    truncation_strategy: fromJson(row.truncation_strategy),
    tool_choice: fromJson(row.tool_choice),
    parallel_tool_calls: Boolean(row.parallel_tool_calls),
    response_format: fromJson(row.response_format),
    reasoning_effort: row.reasoning_effort as Run['reasoning_effort'],
  };
}

export function stepToRow(scope: Scope, s: StoredStep): Insertable<RunStepsTable> {
  return {
    id: s.id,
    project_id: scope.projectId,
    run_id: s.run_id,
    thread_id: s.thread_id,
    assistant_id: s.assistant_id,
    created_at: s.created_at,
    type: s.type,
    status: s.status,
    step_details: toJson(s.step_details),
    last_error: s.last_error === null ? null : toJson(s.last_error),
    expired_at: s.expired_at,
    expires_at: s.expires_at,
    cancelled_at: s.cancelled_at,
    failed_at: s.failed_at,
    completed_at: s.completed_at,
    metadata: toJson(s.metadata),
    usage: s.usage === null ? null : toJson(s.usage),
    turn_usage: s.turn_usage === null ? null : toJson(s.turn_usage),
    model_calls: s.model_calls === null ? null : toJson(s.model_calls),
    model_reasoning: s.model_reasoning === null ? null : toJson(s.model_reasoning),
  };
}

export function rowToStep(row: Selectable<RunStepsTable>): StoredStep {
  return {
    id: row.id,
    created_at: Number(row.created_at),
    run_id: row.run_id,
    thread_id: row.thread_id,
    assistant_id: row.assistant_id,
    type: row.type as RunStep['type'],
    status: row.status as RunStep['status'],
    step_details: fromJson(row.step_details),
    last_error: fromNullableJson(row.last_error),
    expired_at: nullableNumber(row.expired_at),
    expires_at: nullableNumber(row.expires_at),
    cancelled_at: nullableNumber(row.cancelled_at),
    failed_at: nullableNumber(row.failed_at),
    completed_at: nullableNumber(row.completed_at),
    metadata: fromJson(row.metadata),
    usage: fromNullableJson(row.usage),
    turn_usage: fromNullableJson(row.turn_usage),
    model_calls: fromNullableJson(row.model_calls),
    model_reasoning: fromNullableJson(row.model_reasoning),
  };
}
