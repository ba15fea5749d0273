import type { AssistantTool, Metadata, ReasoningEffort, ResponseFormat } from './objects.ts';

// Runs and run steps as stored and served (wire shapes, snake_case). Their statuses change only through
// run-state-machine.ts.

export type RunStatus =
  | 'queued'
  | 'in_progress'
  | 'requires_action'
  | 'cancelling'
  | 'cancelled'
  | 'failed'
  | 'completed'
  | 'incomplete'
  | 'expired';

export const TERMINAL_RUN_STATUSES: ReadonlySet<RunStatus> = new Set([
  'cancelled',
  'failed',
  'completed',
  'incomplete',
  'expired',
]);

/** A run in one of these holds its thread: no other run may start and no message may be added. */
export const ACTIVE_RUN_STATUSES: ReadonlySet<RunStatus> = new Set([
  'queued',
  'in_progress',
  'requires_action',
  'cancelling',
]);

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface RunToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export type RunErrorCode = 'server_error' | 'rate_limit_exceeded' | 'invalid_prompt';

export interface RunError {
  code: RunErrorCode;
  message: string;
}

export type IncompleteReason = 'max_completion_tokens' | 'max_prompt_tokens';

export interface TruncationStrategy {
  type: 'auto' | 'last_messages';
  last_messages: number | null;
}

/** `required`, or a named tool, makes the model call a tool; a named built-in tool (`{type: 'code_interpreter'}`) is called. */
export type ToolChoice =
  | 'none'
  | 'auto'
  | 'required'
  | { type: 'function'; function: { name: string } }
  | { type: 'code_interpreter' | 'file_search' };

export interface Run {
  id: string;
  created_at: number;
  thread_id: string;
  assistant_id: string;
  status: RunStatus;
  required_action: { type: 'submit_tool_outputs'; submit_tool_outputs: { tool_calls: RunToolCall[] } } | null;
  last_error: RunError | null;
  expires_at: number | null;
  started_at: number | null;
  cancelled_at: number | null;
  failed_at: number | null;
  completed_at: number | null;
  incomplete_details: { reason: IncompleteReason } | null;
  model: string;
  instructions: string;
  tools: AssistantTool[];
  metadata: Metadata;
  usage: Usage | null;
  temperature: number | null;
  top_p: number | null;
  max_prompt_tokens: number | null;
  max_completion_tokens: number | null;
  truncation_strategy: TruncationStrategy;
  tool_choice: ToolChoice;
  parallel_tool_calls: boolean;
  response_format: ResponseFormat;
  reasoning_effort: ReasoningEffort | null;
}

export type RunStepStatus = 'in_progress' | 'cancelled' | 'failed' | 'completed' | 'expired';

export const TERMINAL_STEP_STATUSES: ReadonlySet<RunStepStatus> = new Set([
  'cancelled',
  'failed',
  'completed',
  'expired',
]);

export interface FunctionToolCallDetails {
  id: string;
  type: 'function';
  function: { name: string; arguments: string; output: string | null };
}

export type CodeInterpreterOutput = { type: 'logs'; logs: string } | { type: 'image'; image: { file_id: string } };

export interface CodeInterpreterToolCallDetails {
  id: string;
  type: 'code_interpreter';
  code_interpreter: { input: string; outputs: CodeInterpreterOutput[] };
}

export interface FileSearchResult {
  file_id: string;
  file_name: string;
  score: number;
  content?: Array<{ type: 'text'; text: string }>;
}

export interface FileSearchToolCallDetails {
  id: string;
  type: 'file_search';
  file_search: {
    ranking_options?: { ranker: 'auto' | 'default_2024_08_21'; score_threshold: number };
    results?: FileSearchResult[];
  };
}

/** One call of a tool_calls step, as served: a function call (the client's) or a server-side tool's. */
export type ToolCallDetails = FunctionToolCallDetails | CodeInterpreterToolCallDetails | FileSearchToolCallDetails;

/** The tool types the server executes itself (src/tools). */
export type ServerToolType = Exclude<ToolCallDetails['type'], 'function'>;

export type StepDetails =
  | { type: 'message_creation'; message_creation: { message_id: string } }
  | { type: 'tool_calls'; tool_calls: ToolCallDetails[] };

/**
 * A call as the model made it and the output it was given: the model's side of a tool_calls step. For a function
 * call it is the step's details; for a server-side tool (whose details are shaped for the client, e.g. a
 * code_interpreter input and outputs) it is stored beside them, since the next model turn must see its own calls.
 */
export interface ModelToolCall {
  id: string;
  name: string;
  arguments: string;
  /** null until the call has its output. */
  output: string | null;
  /** What else the endpoint put on the call, sent back with it (ChatToolCall.extra). */
  extra?: Record<string, unknown>;
}

export interface RunStep {
  id: string;
  created_at: number;
  assistant_id: string;
  thread_id: string;
  run_id: string;
  type: StepDetails['type'];
  status: RunStepStatus;
  step_details: StepDetails;
  last_error: { code: 'server_error' | 'rate_limit_exceeded'; message: string } | null;
  expired_at: number | null;
  /**
   * The run's deadline when the step began: OpenAI showed it on every step, in progress or ended (openai-php reads
   * it, and fails without it), beside the spec's `expired_at`.
   */
  expires_at: number | null;
  cancelled_at: number | null;
  failed_at: number | null;
  completed_at: number | null;
  metadata: Metadata;
  usage: Usage | null;
}

/**
 * A step as stored: the wire step, plus what the engine keeps beside it. `turn_usage` is the usage of the model
 * turn that produced the step, kept while the step is in progress (the wire shows `usage: null` until it ends);
 * `model_calls` is the model's side of a tool_calls step (see ModelToolCall), null for message_creation steps;
 * `model_reasoning` what the model wrote beside its answer in the endpoint's own fields in the turn that made those
 * calls (its reasoning, by field: ModelReasoning), sent back with them in the run's next turns (null: none).
 */
export interface StoredStep extends RunStep {
  turn_usage: Usage | null;
  model_calls: ModelToolCall[] | null;
  model_reasoning: Record<string, string | unknown[]> | null;
}

/**
 * The steps a model turn stored before its end, of a run whose turns have all ended but this one: a message being
 * written (its message_creation step in progress), a message the turn finished before writing its calls (completed),
 * a tool_calls step as it opened (in progress, no call in it yet). They come after the last turn that was committed
 * with calls: a tool_calls step holding them (those it shows, or the model's own, `model_calls`), which are executed
 * or wait for the client's outputs. (A turn that answers ends the run: in a run still going, no answer comes after
 * its last calls.) Held by no live turn, they are a dead turn's, never to be finished: the turn is asked again.
 */
export function uncommittedTurn(steps: readonly StoredStep[]): StoredStep[] {
  const lastCalls = steps.findLastIndex(
    (step) =>
      step.step_details.type === 'tool_calls' &&
      (step.step_details.tool_calls.length > 0 || (step.model_calls?.length ?? 0) > 0),
  );
  // After it, a tool_calls step has no call: it is one as it opened.
  return steps
    .slice(lastCalls + 1)
    .filter(
      (step) => step.status === 'in_progress' || (step.type === 'message_creation' && step.status === 'completed'),
    );
}
