import { newId } from '../domain/ids.ts';
import type { Assistant, AssistantTool, Metadata, ReasoningEffort, ResponseFormat } from '../domain/objects.ts';
import { createRun, type Transition } from '../domain/run-state-machine.ts';
import type { ToolChoice } from '../domain/runs.ts';

/** The run settings a request may give (validated by the API's request schemas). */
export interface RunSettingsInput {
  model?: string | null | undefined;
  instructions?: string | null | undefined;
  additional_instructions?: string | null | undefined;
  reasoning_effort?: ReasoningEffort | null | undefined;
  tools?: AssistantTool[] | null | undefined;
  metadata?: Metadata | undefined;
  temperature?: number | null | undefined;
  top_p?: number | null | undefined;
  max_prompt_tokens?: number | null | undefined;
  max_completion_tokens?: number | null | undefined;
  truncation_strategy?:
    | { type: 'auto' | 'last_messages'; last_messages?: number | null | undefined }
    | null
    | undefined;
  tool_choice?: ToolChoice | null | undefined;
  parallel_tool_calls?: boolean | undefined;
  response_format?: ResponseFormat | null | undefined;
}

/**
 * A new queued run, with the events that announce it: the assistant's settings, overridden by the request's.
 * `instructions` replaces the assistant's, unless empty (OpenAssistantGPT sends `""` for "no override of its own");
 * `additional_instructions` is appended to it. The run echoes the effective settings.
 */
export function newRun(
  assistant: Assistant,
  threadId: string,
  input: RunSettingsInput,
  now: number,
  expiresAfterSeconds: number,
): Transition {
  const base = input.instructions || assistant.instructions || '';
  const additional = input.additional_instructions;
  const instructions = additional ? (base ? `${base}\n\n${additional}` : additional) : base;
  return createRun({
    id: newId('run'),
    created_at: now,
    thread_id: threadId,
    assistant_id: assistant.id,
    required_action: null,
    last_error: null,
    expires_at: now + expiresAfterSeconds,
    started_at: null,
    cancelled_at: null,
    failed_at: null,
    completed_at: null,
    incomplete_details: null,
    model: input.model ?? assistant.model,
    instructions,
    tools: input.tools ?? assistant.tools,
    metadata: input.metadata ?? {},
    usage: null,
    temperature: input.temperature ?? assistant.temperature ?? 1,
    top_p: input.top_p ?? assistant.top_p ?? 1,
    max_prompt_tokens: input.max_prompt_tokens ?? null,
    max_completion_tokens: input.max_completion_tokens ?? null,
    truncation_strategy: input.truncation_strategy
      ? { type: input.truncation_strategy.type, last_messages: input.truncation_strategy.last_messages ?? null }
      : { type: 'auto', last_messages: null },
    tool_choice: input.tool_choice ?? 'auto',
    parallel_tool_calls: input.parallel_tool_calls ?? true,
    response_format: input.response_format ?? assistant.response_format ?? 'auto',
    reasoning_effort: input.reasoning_effort ?? assistant.reasoning_effort ?? null,
  });
}
