import type { StoredFile } from '../domain/files.ts';
import { messageToWire } from '../domain/messages.ts';
import {
  type Assistant,
  type AssistantTool,
  DEFAULT_RANKER,
  NO_PARAMETERS,
  type Thread,
  type ToolResources,
} from '../domain/objects.ts';
import type { ApiKey, Project } from '../domain/projects.ts';
import type { Run, RunStep, StepDetails } from '../domain/runs.ts';
import {
  type FileBatchView,
  fileBatchStatus,
  type VectorStoreFile,
  type VectorStoreView,
  vectorStoreStatus,
} from '../domain/vector-stores.ts';

// Domain → wire objects. Every field the official schema lists is present (null, never omitted), in upstream's
// order, and nothing internal (project ids, sequence numbers) leaks.

export function serializeAssistant(a: Assistant) {
  return {
    id: a.id,
    object: 'assistant' as const,
    created_at: a.created_at,
    name: a.name,
    description: a.description,
    model: a.model,
    instructions: a.instructions,
    tools: a.tools.map(wireTool),
    tool_resources: withToolResourceLists(a.tool_resources, a.tools),
    metadata: a.metadata,
    temperature: a.temperature,
    top_p: a.top_p,
    response_format: a.response_format,
    reasoning_effort: a.reasoning_effort,
  };
}

/**
 * A tool as OpenAI echoed it, with the defaults it filled in: a function's `parameters` (an object schema without
 * properties, when none was given) and `strict` (false); file_search's `ranking_options` (the default ranker,
 * threshold 0). Programs read them (`tool.function.parameters["properties"]`; openai-php takes no function without
 * parameters). The tool is stored as the client gave it.
 */
function wireTool(tool: AssistantTool): AssistantTool {
  if (tool.type === 'function') {
    const { parameters = NO_PARAMETERS, strict } = tool.function;
    return { type: 'function', function: { ...tool.function, parameters, strict: strict ?? false } };
  }
  if (tool.type === 'file_search') {
    const ranking = tool.file_search?.ranking_options;
    const ranking_options = {
      ranker: ranking?.ranker ?? DEFAULT_RANKER,
      score_threshold: ranking?.score_threshold ?? 0,
    };
    return { type: 'file_search', file_search: { ...tool.file_search, ranking_options } };
  }
  return tool;
}

/**
 * An assistant's tool_resources with a list for each built-in tool it has, empty when none was given, as OpenAI showed
 * them (`{"file_search": {"vector_store_ids": []}}`): programs read `tool_resources.file_search.vector_store_ids` of
 * an assistant with file_search unguarded (open-chat-studio's import of an assistant).
 */
function withToolResourceLists(resources: ToolResources | null, tools: AssistantTool[]): ToolResources | null {
  const has = (type: AssistantTool['type']) => tools.some((tool) => tool.type === type);
  const code = !resources?.code_interpreter && has('code_interpreter');
  const search = !resources?.file_search && has('file_search');
  if (!code && !search) return resources;
  return {
    ...(code && { code_interpreter: { file_ids: [] } }),
    ...(search && { file_search: { vector_store_ids: [] } }),
    ...resources,
  };
}

export function serializeThread(t: Thread) {
  return {
    id: t.id,
    object: 'thread' as const,
    created_at: t.created_at,
    tool_resources: t.tool_resources,
    metadata: t.metadata,
  };
}

/** The wire shape of a message is the domain's (storage keeps messages as exactly this JSON). */
export const serializeMessage = messageToWire;

/**
 * `status` is deprecated upstream and always `processed` here: a file is acknowledged only once its bytes are
 * stored. `expires_at` and `status_details` are null when they have no value, as OpenAI sent them (the schema types
 * them without null).
 */
export function serializeFile(f: StoredFile) {
  return {
    id: f.id,
    object: 'file' as const,
    bytes: f.bytes,
    created_at: f.created_at,
    expires_at: f.expires_at,
    filename: f.filename,
    purpose: f.purpose,
    status: 'processed' as const,
    status_details: null,
  };
}

export function serializeDeleted(id: string, object: string) {
  return { id, object, deleted: true };
}

export function serializeRun(r: Run) {
  return {
    id: r.id,
    object: 'thread.run' as const,
    created_at: r.created_at,
    assistant_id: r.assistant_id,
    thread_id: r.thread_id,
    status: r.status,
    started_at: r.started_at,
    expires_at: r.expires_at,
    cancelled_at: r.cancelled_at,
    failed_at: r.failed_at,
    completed_at: r.completed_at,
    required_action: r.required_action,
    last_error: r.last_error,
    model: r.model,
    instructions: r.instructions,
    tools: r.tools.map(wireTool),
    metadata: r.metadata,
    incomplete_details: r.incomplete_details,
    usage: r.usage,
    temperature: r.temperature,
    top_p: r.top_p,
    max_prompt_tokens: r.max_prompt_tokens,
    max_completion_tokens: r.max_completion_tokens,
    truncation_strategy: r.truncation_strategy,
    response_format: r.response_format,
    tool_choice: r.tool_choice,
    parallel_tool_calls: r.parallel_tool_calls,
    reasoning_effort: r.reasoning_effort,
  };
}

/** What a request asked to add to the steps it gets (`include[]`, see api/include.ts). */
export interface StepInclude {
  /** `step_details.tool_calls[*].file_search.results[*].content` */
  fileSearchContent: boolean;
}

export const NO_INCLUDE: StepInclude = Object.freeze({ fileSearchContent: false });

/**
 * A file_search call's results keep their text in storage; the wire shows it only when `include[]` asks for it, as
 * upstream does.
 */
function stepDetails(details: StepDetails, include: StepInclude): StepDetails {
  if (include.fileSearchContent || details.type !== 'tool_calls') return details;
  if (!details.tool_calls.some((c) => c.type === 'file_search' && c.file_search.results?.some((r) => r.content)))
    return details;
  return {
    type: 'tool_calls',
    tool_calls: details.tool_calls.map((call) =>
      call.type === 'file_search' && call.file_search.results
        ? {
            ...call,
            file_search: {
              ...call.file_search,
              results: call.file_search.results.map(({ content: _content, ...result }) => result),
            },
          }
        : call,
    ),
  };
}

export function serializeRunStep(s: RunStep, include: StepInclude = NO_INCLUDE) {
  return {
    id: s.id,
    object: 'thread.run.step' as const,
    created_at: s.created_at,
    run_id: s.run_id,
    assistant_id: s.assistant_id,
    thread_id: s.thread_id,
    type: s.type,
    status: s.status,
    cancelled_at: s.cancelled_at,
    completed_at: s.completed_at,
    expired_at: s.expired_at,
    expires_at: s.expires_at,
    failed_at: s.failed_at,
    last_error: s.last_error,
    step_details: stepDetails(s.step_details, include),
    usage: s.usage,
    metadata: s.metadata,
  };
}

/** `expires_after` is optional in the schema and not nullable: sent only when the store expires. */
export function serializeVectorStore(v: VectorStoreView) {
  return {
    id: v.id,
    object: 'vector_store' as const,
    created_at: v.created_at,
    // The schema types `name` as a string; a store created without one has an empty name.
    name: v.name ?? '',
    // Not in the schema, as OpenAI sent it: null when the store has none.
    description: v.description,
    usage_bytes: v.usage_bytes,
    file_counts: v.file_counts,
    status: vectorStoreStatus(v),
    ...(v.expires_after === null ? {} : { expires_after: v.expires_after }),
    expires_at: v.expires_at,
    last_active_at: v.last_active_at,
    metadata: v.metadata,
  };
}

export function serializeVectorStoreFile(f: VectorStoreFile) {
  return {
    id: f.id,
    object: 'vector_store.file' as const,
    usage_bytes: f.usage_bytes,
    created_at: f.created_at,
    vector_store_id: f.vector_store_id,
    status: f.status,
    last_error: f.last_error,
    chunking_strategy: f.chunking_strategy,
    // A file given none shows an empty object, as OpenAI's did (async-openai and openai-php fail on null).
    attributes: f.attributes ?? {},
  };
}

export function serializeFileBatch(b: FileBatchView) {
  return {
    id: b.id,
    // OpenAI sent `vector_store.file_batch` (2024 and 2025 recordings), though its schema and SDK types say
    // `vector_store.files_batch`.
    object: 'vector_store.file_batch' as const,
    created_at: b.created_at,
    vector_store_id: b.vector_store_id,
    status: fileBatchStatus(b),
    file_counts: b.file_counts,
  };
}

/** As OpenAI's admin API: `organization.project`, with `status` derived from `archived_at`. */
export function serializeProject(p: Project) {
  return {
    id: p.id,
    object: 'organization.project',
    name: p.name,
    created_at: p.created_at,
    archived_at: p.archived_at,
    status: p.archived_at === null ? 'active' : 'archived',
  };
}

/** As OpenAI's admin API: `organization.project.api_key`; the key's value is never part of it. */
export function serializeApiKey(k: ApiKey) {
  return {
    id: k.id,
    object: 'organization.project.api_key',
    name: k.name,
    redacted_value: k.redacted_value,
    created_at: k.created_at,
    last_used_at: k.last_used_at,
  };
}
