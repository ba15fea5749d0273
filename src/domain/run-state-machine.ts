import { ApiError } from './errors.ts';
import { newId } from './ids.ts';
import type { Message, MessageIncompleteReason } from './objects.ts';
import type { RunStreamEvent } from './run-events.ts';
import {
  type IncompleteReason,
  type Run,
  type RunError,
  type RunStatus,
  type RunStep,
  type RunToolCall,
  type StepDetails,
  type StoredStep,
  TERMINAL_STEP_STATUSES,
  type Usage,
} from './runs.ts';

/**
 * The run status machine (spec README §2), the only code that gives a run, a step, or a message a run writes its
 * status. Pure: it takes the current object and a command, and returns the next object with the events that
 * announce it — the very events that are published, once the caller has committed the object (fenced by the
 * worker's lease) — or throws a 400 for a command the current status does not allow.
 *
 *   (new) ─create→ queued ─start→ in_progress ─require_action→ requires_action ─submit_tool_outputs→ queued …
 *   in_progress ─complete | incomplete | fail→ completed | incomplete | failed
 *   queued | in_progress | requires_action ─cancel→ cancelling ─confirm_cancel→ cancelled
 *   queued | in_progress | requires_action | cancelling ─expire→ expired
 */
export type RunCommand =
  | { type: 'start'; at: number }
  | { type: 'require_action'; at: number; toolCalls: RunToolCall[] }
  | { type: 'submit_tool_outputs'; at: number }
  | { type: 'complete'; at: number; usage: Usage }
  | { type: 'incomplete'; at: number; reason: IncompleteReason; usage: Usage }
  | { type: 'fail'; at: number; error: RunError; usage: Usage }
  | { type: 'cancel'; at: number }
  | { type: 'confirm_cancel'; at: number; usage: Usage }
  | { type: 'expire'; at: number; usage: Usage };

export type RunEventName = `thread.run.${'created' | RunStatus}`;

export interface RunEvent {
  event: RunEventName;
  data: Run;
}

export interface Transition {
  run: Run;
  events: RunEvent[];
}

const ALLOWED_FROM: Record<RunCommand['type'], readonly RunStatus[]> = {
  start: ['queued'],
  require_action: ['in_progress'],
  submit_tool_outputs: ['requires_action'],
  complete: ['in_progress'],
  incomplete: ['in_progress'],
  fail: ['queued', 'in_progress'],
  cancel: ['queued', 'in_progress', 'requires_action'],
  confirm_cancel: ['cancelling'],
  expire: ['queued', 'in_progress', 'requires_action', 'cancelling'],
};

/** A new run is stored `queued`, announced by `created` then `queued`. */
export function createRun(fields: Omit<Run, 'status'>): Transition {
  const run: Run = { ...fields, status: 'queued' };
  return {
    run,
    events: [
      { event: 'thread.run.created', data: run },
      { event: 'thread.run.queued', data: run },
    ],
  };
}

export function transition(run: Run, command: RunCommand): Transition {
  if (!ALLOWED_FROM[command.type].includes(run.status)) throw illegal(run, command);
  // A pause past its deadline is over, whether or not the worker's sweep has recorded its expiry yet (it does within
  // a second or so): tool outputs then are refused as by the expired run, not taken and the run expired after.
  if (command.type === 'submit_tool_outputs' && run.expires_at !== null && command.at >= run.expires_at)
    throw illegal({ ...run, status: 'expired' }, command);
  const next = apply(run, command);
  return { run: next, events: [{ event: `thread.run.${next.status}`, data: next }] };
}

function apply(run: Run, command: RunCommand): Run {
  // A terminal run no longer expires and reports its usage.
  const ended = (status: RunStatus, usage: Usage): Run => ({
    ...run,
    status,
    usage,
    expires_at: null,
    required_action: null,
  });
  switch (command.type) {
    case 'start':
      return { ...run, status: 'in_progress', started_at: run.started_at ?? command.at };
    case 'require_action':
      return {
        ...run,
        status: 'requires_action',
        required_action: { type: 'submit_tool_outputs', submit_tool_outputs: { tool_calls: command.toolCalls } },
      };
    case 'submit_tool_outputs':
      return { ...run, status: 'queued', required_action: null };
    case 'complete':
      return { ...ended('completed', command.usage), completed_at: command.at };
    case 'incomplete':
      return { ...ended('incomplete', command.usage), incomplete_details: { reason: command.reason } };
    case 'fail':
      return { ...ended('failed', command.usage), failed_at: command.at, last_error: command.error };
    case 'cancel':
      return { ...run, status: 'cancelling', required_action: null }; // it takes no tool outputs now
    case 'confirm_cancel':
      return { ...ended('cancelled', command.usage), cancelled_at: command.at };
    case 'expire':
      return ended('expired', command.usage);
  }
}

/** Upstream's wording for the two commands a client can send at the wrong time. */
function illegal(run: Run, command: RunCommand): ApiError {
  switch (command.type) {
    case 'submit_tool_outputs':
      return new ApiError(400, `Runs in status "${run.status}" do not accept tool outputs.`);
    case 'cancel':
      return new ApiError(400, `Cannot cancel run with status '${run.status}'.`);
    default:
      return new ApiError(400, `Cannot ${command.type.replace('_', ' ')} run with status '${run.status}'.`, {
        code: 'invalid_run_state',
      });
  }
}

// ── steps ─────────────────────────────────────────────────────────────────────

/** Steps follow their run: (new) ─open→ `in_progress` → `completed` | `failed` | `cancelled` | `expired`. */
export type StepCommand =
  | { type: 'complete'; at: number; usage: Usage; stepDetails?: RunStep['step_details'] }
  | { type: 'fail'; at: number; error: NonNullable<RunStep['last_error']>; usage: Usage | null }
  | { type: 'cancel'; at: number; usage: Usage | null }
  | { type: 'expire'; at: number; usage: Usage | null };

export interface StepTransition<S extends RunStep> {
  step: S;
  events: RunStreamEvent[];
}

/** A new step of `run`, in progress from the start: announced by `created` then `in_progress`. */
export function openStep(run: Run, details: StepDetails, at: number): StepTransition<StoredStep> {
  const step: StoredStep = {
    id: newId('step'),
    created_at: at,
    assistant_id: run.assistant_id,
    thread_id: run.thread_id,
    run_id: run.id,
    type: details.type,
    status: 'in_progress',
    step_details: details,
    last_error: null,
    expired_at: null,
    expires_at: run.expires_at,
    cancelled_at: null,
    failed_at: null,
    completed_at: null,
    metadata: {},
    usage: null,
    turn_usage: null,
    model_calls: details.type === 'tool_calls' ? [] : null,
    model_reasoning: null,
  };
  // Copies: the step object itself goes on changing while the turn streams.
  return {
    step,
    events: [
      { event: 'thread.run.step.created', data: { ...step } },
      { event: 'thread.run.step.in_progress', data: { ...step } },
    ],
  };
}

export function transitionStep<S extends RunStep>(step: S, command: StepCommand): StepTransition<S> {
  if (TERMINAL_STEP_STATUSES.has(step.status))
    throw new ApiError(400, `Cannot ${command.type} run step with status '${step.status}'.`, {
      code: 'invalid_run_state',
    });
  const next = applyStep(step, command);
  return { step: next, events: [{ event: `thread.run.step.${next.status}`, data: next }] };
}

function applyStep<S extends RunStep>(step: S, command: StepCommand): S {
  switch (command.type) {
    case 'complete':
      return {
        ...step,
        status: 'completed',
        completed_at: command.at,
        usage: command.usage,
        step_details: command.stepDetails ?? step.step_details,
      };
    case 'fail':
      return { ...step, status: 'failed', failed_at: command.at, last_error: command.error, usage: command.usage };
    case 'cancel':
      return { ...step, status: 'cancelled', cancelled_at: command.at, usage: command.usage };
    case 'expire':
      return { ...step, status: 'expired', expired_at: command.at, usage: command.usage };
  }
}

// ── the messages a run writes ─────────────────────────────────────────────────

export interface MessageTransition {
  message: Message;
  events: RunStreamEvent[];
}

/** A message a client adds (create message, create thread, a run's additional_messages) is complete at once. */
export function clientMessage(
  fields: Omit<Message, 'status' | 'incomplete_details' | 'completed_at' | 'incomplete_at'>,
): Message {
  return {
    ...fields,
    status: 'completed',
    incomplete_details: null,
    completed_at: fields.created_at,
    incomplete_at: null,
  };
}

/** The assistant message a run starts writing: `in_progress`, announced by `created` then `in_progress`. */
export function openMessage(run: Run, at: number): MessageTransition {
  const message: Message = {
    id: newId('message'),
    created_at: at,
    thread_id: run.thread_id,
    status: 'in_progress',
    incomplete_details: null,
    completed_at: null,
    incomplete_at: null,
    role: 'assistant',
    content: [],
    assistant_id: run.assistant_id,
    run_id: run.id,
    attachments: [],
    metadata: {},
  };
  return {
    message,
    events: [
      { event: 'thread.message.created', data: { ...message } },
      { event: 'thread.message.in_progress', data: { ...message } },
    ],
  };
}

/** A run's message ends: `completed`, or `incomplete` with the reason (cut off, or its run ended first). */
export function finishMessage(
  message: Message,
  at: number,
  incomplete: MessageIncompleteReason | null = null,
): MessageTransition {
  if (message.status !== 'in_progress')
    throw new ApiError(400, `Cannot finish message with status '${message.status}'.`, { code: 'invalid_run_state' });
  const next: Message = incomplete
    ? { ...message, status: 'incomplete', incomplete_details: { reason: incomplete }, incomplete_at: at }
    : { ...message, status: 'completed', completed_at: at };
  return { message: next, events: [{ event: `thread.message.${next.status}` as const, data: next }] };
}
