import type { Message, MessageIncompleteReason } from '../domain/objects.ts';
import type { RunStreamEvent } from '../domain/run-events.ts';
import { finishMessage, type StepCommand, transition, transitionStep } from '../domain/run-state-machine.ts';
import {
  type IncompleteReason,
  type Run,
  type RunError,
  type StoredStep,
  type Usage,
  uncommittedTurn,
} from '../domain/runs.ts';
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
 * message the turn had already finished is stored as it is. What a turn that died with its execution stored before
 * its end (uncommittedTurn, not the current turn's) is not ended here: the ending's commit deletes it
 * (RunCommit.discardBegun), as an execution that takes the run over deletes it before it asks the model again. Used
 * by cancel (run service and executor), expiry (the executor holding the run, else the worker's sweeper) and failure
 * (executor); a shutdown does not end runs, it hands them back.
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
  // The turn's own steps are stored in progress as they began: the turn's are the newer.
  const own = new Set([turn?.earlier?.step.id, turn?.message?.step.id, turn?.toolStep?.id]);
  const dead = new Set(uncommittedTurn(storedSteps));
  const open = storedSteps.filter((step) => step.status === 'in_progress' && !own.has(step.id) && !dead.has(step));
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
