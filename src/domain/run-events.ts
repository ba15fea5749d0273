import type { ImageDetail, Message, TextAnnotation, Thread } from './objects.ts';
import type { Run, RunStatus, RunStep, RunStepStatus } from './runs.ts';

/**
 * What happens to a run, as events: the executor and the run service publish them, and api/sse.ts frames each one
 * as the SSE event of the same name (spec README §3). `data` is the domain object; the SSE layer serializes it.
 */

/**
 * An annotation as a message delta carries it: `index` is its position in the part's `text.annotations`; a delta
 * sends each annotation once, whole (the SDK would concatenate a resent `text` or add a resent `start_index`).
 */
export type AnnotationDelta = TextAnnotation & { index: number };

export interface MessageDelta {
  id: string;
  object: 'thread.message.delta';
  delta: {
    content: Array<
      | { index: number; type: 'text'; text: { value: string; annotations?: AnnotationDelta[] } }
      | { index: number; type: 'image_file'; image_file: { file_id: string; detail?: ImageDetail } }
      | { index: number; type: 'refusal'; refusal: string }
    >;
  };
}

/** One call's delta in a step delta: `index` is its position in `step_details.tool_calls` (spec README §3). */
export type ToolCallDelta =
  | {
      index: number;
      id?: string;
      type: 'function';
      function: { name?: string; arguments?: string; output?: string | null };
    }
  | {
      index: number;
      id?: string;
      type: 'code_interpreter';
      code_interpreter?: {
        input?: string;
        outputs?: Array<
          | { index: number; type: 'logs'; logs?: string }
          | { index: number; type: 'image'; image?: { file_id?: string } }
        >;
      };
    }
  | { index: number; id?: string; type: 'file_search'; file_search?: Record<string, never> };

export interface RunStepDelta {
  id: string;
  object: 'thread.run.step.delta';
  delta: { step_details: { type: 'tool_calls'; tool_calls: ToolCallDelta[] } };
}

export interface StreamError {
  code: string | null;
  message: string;
  param: string | null;
  type: string;
}

export type RunStreamEvent =
  | { event: 'thread.created'; data: Thread }
  | { event: `thread.run.${'created' | RunStatus}`; data: Run }
  | { event: `thread.run.step.${'created' | RunStepStatus}`; data: RunStep }
  | { event: 'thread.run.step.delta'; data: RunStepDelta }
  | { event: `thread.message.${'created' | 'in_progress' | 'completed' | 'incomplete'}`; data: Message }
  | { event: 'thread.message.delta'; data: MessageDelta }
  | { event: 'error'; data: StreamError };

/**
 * `events` announcing a commit, the run in each with its metadata as committed: the committer's copy of the run may
 * hold metadata that modify run has changed since it was read, and what a stream or a held poll is told is what is
 * stored (Store.commitRun answers with that). Only the metadata: a commit may announce several statuses in turn
 * (`queued`, then `in_progress`), each event with its own.
 */
export function asCommitted(events: readonly RunStreamEvent[], committed: Run): RunStreamEvent[] {
  return events.map((e) =>
    isRunEvent(e) && e.data.id === committed.id ? { ...e, data: { ...e.data, metadata: committed.metadata } } : e,
  );
}

/** An event of the run itself (its status), not of its steps. */
export function isRunEvent(e: RunStreamEvent): e is Extract<RunStreamEvent, { data: Run }> {
  return e.event.startsWith('thread.run.') && !e.event.startsWith('thread.run.step.');
}

/**
 * What a stream following a run gets when the run's thread is deleted under it (the run is gone with it), before
 * the stream ends: an `error` event, the only one the bus carries.
 */
export function runDeletedEvent(threadId: string, runId: string): RunStreamEvent {
  return {
    event: 'error',
    data: {
      message: `Thread ${threadId} was deleted, and run ${runId} with it.`,
      type: 'invalid_request_error',
      param: null,
      code: null,
    },
  };
}

/**
 * What a stream gets when the server shuts down under it, before it ends: the run is not over (it resumes when a
 * server runs again), and the client learns that, and how to follow it, instead of a bare `done`.
 */
export function serverClosingEvent(threadId: string, runId: string): RunStreamEvent {
  return {
    event: 'error',
    data: {
      message: `The server is shutting down; run ${runId} is not over and goes on when the server is back. Follow it with GET /v1/threads/${threadId}/runs/${runId}/events, or poll it.`,
      type: 'server_error',
      param: null,
      code: 'server_shutting_down',
    },
  };
}

/**
 * What a stream gets when the execution it follows stops short of the run's end or pause: its database went away
 * for longer than the run's lease, or another worker took the run over. The run is not over: its next attempt
 * (here or in another process) carries it on, and the client learns how to follow it, rather than the steps of a
 * turn that was never stored being left open, or a second attempt's steps following them.
 */
export function runInterruptedEvent(threadId: string, runId: string): RunStreamEvent {
  return {
    event: 'error',
    data: {
      message: `The execution of run ${runId} was interrupted (its database was away too long, or another worker took the run over); the run is not over and goes on in a new attempt. Follow it with GET /v1/threads/${threadId}/runs/${runId}/events, or poll it.`,
      type: 'server_error',
      param: null,
      code: 'run_interrupted',
    },
  };
}

/** The run events after which a stream of that run ends: it paused for tool outputs, or it is over. */
export const RUN_STREAM_END: ReadonlySet<string> = new Set([
  'thread.run.requires_action',
  'thread.run.completed',
  'thread.run.incomplete',
  'thread.run.failed',
  'thread.run.cancelled',
  'thread.run.expired',
]);
