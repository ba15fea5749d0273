import type { Message, MessageIncompleteReason } from '../domain/objects.ts';
import type { RunStreamEvent } from '../domain/run-events.ts';
import {
  finishMessage,
  openMessage,
  type StepCommand,
  transition,
  transitionStep,
} from '../domain/run-state-machine.ts';
import type { IncompleteReason, Run, RunError, StoredStep, Usage } from '../domain/runs.ts';
import type { TurnSoFar } from './model-turn.ts';
import { addUsage, runUsage } from './run-accounting.ts';

/** How a run ends before its model has answered. */
export type RunEnding =
  | { type: 'confirm_cancel' }
  | { type: 'expire' }
  | { type: 'fail'; error: RunError }
  | { type: 'incomplete'; reason: IncompleteReason };

export interface EndedRun {
  run: Run;
  /** The steps and messages to store with the run (replaced by id). */
  steps: StoredStep[];
  messages: Message[];
  /** What announces the ending, in the order the SDK expects: messages, then steps, then the run. */
  events: RunStreamEvent[];
}

const MESSAGE_REASON: Record<RunEnding['type'], MessageIncompleteReason> = {
  confirm_cancel: 'run_cancelled',
  expire: 'run_expired',
  fail: 'run_failed',
  incomplete: 'max_tokens',
};

/**
 * Ends a run that stops before its answer — cancelled, expired, failed, or out of budget — the one place that
 * decides what that means for everything the run has open: every step still in progress (stored, or the current
 * turn's) takes the run's fate, the message being written is kept `incomplete` with the run's reason, and a
 * message the turn had already finished is stored as it is. Used by cancel (run service and executor), expiry (the
 * executor holding the run, else the worker's sweeper) and failure (executor); a shutdown does not end runs, it
 * hands them back.
 */
export function endRun(
  run: Run,
  storedSteps: readonly StoredStep[],
  ending: RunEnding,
  at: number,
  turn?: TurnSoFar,
): EndedRun {
  const steps: StoredStep[] = [];
  const messages: Message[] = [];
  const events: RunStreamEvent[] = [];
  // A step ends with the usage of the model turn that made it, so that the run's usage stays the sum of its steps':
  // the turn's reported usage when it had finished (a tool_calls step waiting for its outputs); for a turn cut
  // short, what it used so far (its prompt and what it wrote, estimated), on the last step it opened.
  const stepCommand = (usage: Usage | null): StepCommand =>
    ending.type === 'fail'
      ? {
          type: 'fail',
          at,
          error: {
            code: ending.error.code === 'rate_limit_exceeded' ? 'rate_limit_exceeded' : 'server_error',
            message: ending.error.message,
          },
          usage,
        }
      : { type: ending.type === 'expire' ? 'expire' : 'cancel', at, usage };

  // What the turn finished early was announced already: stored, not announced again.
  if (turn?.earlier) {
    messages.push(turn.earlier.message);
    steps.push(turn.earlier.step);
  }
  // The turn's own steps are stored as it opened them (its message's) or not yet: its version of each is the one ended.
  const held = new Set([turn?.earlier?.step.id, turn?.message?.step.id, turn?.toolStep?.id]);
  const open: StoredStep[] = [];
  for (const step of storedSteps) {
    if (step.status !== 'in_progress' || held.has(step.id)) continue;
    if (step.type !== 'message_creation') {
      open.push(step);
      continue;
    }
    // An earlier attempt's message, stored as it opened and left by a process that stopped (abandonedMessageStep):
    // ended with the run, stored and not announced (no stream of this attempt has shown it).
    const ended = endAbandonedMessage(run, step, at, stepCommand(null), MESSAGE_REASON[ending.type]);
    messages.push(ended.message);
    steps.push(ended.step);
  }
  if (turn?.message) {
    const ended = finishMessage(turn.message.message, at, MESSAGE_REASON[ending.type]);
    messages.push(ended.message);
    events.push(...ended.events);
    open.push(turn.message.step);
  }
  if (turn?.toolStep) open.push(turn.toolStep);
  const cutShort = turn?.usage && (turn.toolStep ?? turn.message?.step);
  for (const step of open) {
    const ended = transitionStep(step, stepCommand(step === cutShort ? turn!.usage! : step.turn_usage));
    steps.push(ended.step);
    events.push(...ended.events);
  }

  // The turn cut short was not stored: its usage is added to the stored steps'.
  const usage = addUsage(runUsage(storedSteps), cutShort ? turn!.usage! : null);
  const next =
    ending.type === 'fail'
      ? transition(run, { type: 'fail', at, error: ending.error, usage })
      : ending.type === 'incomplete'
        ? transition(run, { type: 'incomplete', at, reason: ending.reason, usage })
        : transition(run, { type: ending.type, at, usage });
  events.push(...next.events);
  return { run: next.run, steps, messages, events };
}

/**
 * The message_creation step in progress of a model turn that an attempt began and never ended (its process killed,
 * or stopped, its lease lost): the message it stored as it opened (ModelTurn.open) is in progress too. At most one:
 * a run has one turn at a time, and a turn's commit at its end ends its message.
 *
 * The next attempt of the run asks the model that turn again, and its message takes this one's ids and created_at
 * (ModelTurn's MessageOpening.reopen), rather than this one being ended and another one written: a client that
 * polled, or fetched the message named by `thread.message.created`, finds the answer under the id it knows, and the
 * run keeps one message_creation step per answer (the SDK's `createAndPoll` users read the last message). Nothing
 * of its text was stored (the text of a turn is stored at its end), so nothing of it is shown twice. If that turn
 * writes no message this time (it calls tools instead), or the run ends first (cancelled, expired, failed: endRun),
 * this one ends: its message incomplete and empty (endAbandonedMessage).
 */
export function abandonedMessageStep(steps: readonly StoredStep[]): StoredStep | undefined {
  return steps.find((step) => step.type === 'message_creation' && step.status === 'in_progress');
}

/**
 * Ends an abandoned message (abandonedMessageStep) and its step: by `command` and `reason` when the run ends (endRun);
 * otherwise (its turn, asked again, called tools instead) the step failed and the message incomplete, `run_failed`:
 * the attempt that wrote it did. The message is made anew from its step: as it opened, with no part, so that the
 * callers holding only the run's steps (the run service's cancel, the worker's expiry sweep) can end it too. What the
 * attempt stored of it (the parts shown before its text: images of a code_interpreter call) is left out: those show
 * in the calls' steps, and are the next message's to show (RunExecutor.answerParts). No event: no stream of this attempt
 * has shown it.
 */
export function endAbandonedMessage(
  run: Run,
  step: StoredStep,
  at: number,
  command: StepCommand = {
    type: 'fail',
    at,
    error: {
      code: 'server_error',
      message: 'The server stopped while the model wrote this message; the model was asked again.',
    },
    usage: null,
  },
  reason: MessageIncompleteReason = 'run_failed',
): { message: Message; step: StoredStep } {
  const id = step.step_details.type === 'message_creation' ? step.step_details.message_creation.message_id : '';
  const opened = { ...openMessage(run, step.created_at).message, id };
  return { message: finishMessage(opened, at, reason).message, step: transitionStep(step, command).step };
}
