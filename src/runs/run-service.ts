import { unixSeconds } from '../domain/clock.ts';
import { ApiError, invalidRequest, notFound } from '../domain/errors.ts';
import { type NewMessageInput, newClientMessage } from '../domain/messages.ts';
import type { Metadata, Thread } from '../domain/objects.ts';
import { transition, transitionStep } from '../domain/run-state-machine.ts';
import type { Run } from '../domain/runs.ts';
import type { ClaimedRun, RunLock, Scope, Store, StoredStep } from '../storage/store.ts';
import { newRun, type RunSettingsInput } from './new-run.ts';
import { endOpenSteps, runUsage, ZERO_USAGE } from './run-accounting.ts';
import type { RunEventBus } from './run-event-bus.ts';

/** Executes a run on this process right away (the worker of this process; see RunWorker.adopt). */
export interface LocalExecution {
  readonly workerId: string;
  readonly leaseMs: number;
  adopt(claim: ClaimedRun): void;
}

/** A streamed run executes where its stream is: its events are published on this process's bus. */
export interface RunRequestOptions {
  executeHere?: boolean;
}

export interface ToolOutput {
  tool_call_id: string;
  output?: string | undefined;
}

/** What a client may ask of runs. Execution itself belongs to the worker (run-executor.ts). */
export class RunService {
  private readonly store: Store;
  private readonly bus: RunEventBus;
  private readonly expiresAfterSeconds: number;
  private readonly local: LocalExecution | undefined;

  constructor(deps: {
    store: Store;
    bus: RunEventBus;
    expiresAfterSeconds: number;
    local?: LocalExecution | undefined;
  }) {
    this.store = deps.store;
    this.bus = deps.bus;
    this.expiresAfterSeconds = deps.expiresAfterSeconds;
    this.local = deps.local;
  }

  /** The lease under which this process takes a run it will execute itself, if it should and can. */
  private localLock(options: RunRequestOptions): RunLock | undefined {
    if (!options.executeHere || !this.local) return undefined;
    return { lockedBy: this.local.workerId, lockedUntil: Date.now() + this.local.leaseMs };
  }

  async createRun(
    scope: Scope,
    threadId: string,
    input: RunSettingsInput & { assistant_id: string; additional_messages?: NewMessageInput[] | null | undefined },
    options: RunRequestOptions = {},
  ): Promise<Run> {
    const assistant = await this.store.getAssistant(scope, input.assistant_id);
    if (!assistant) throw notFound('assistant', input.assistant_id);
    const now = unixSeconds();
    const run = newRun(assistant, threadId, input, now, this.expiresAfterSeconds);
    checkToolChoice(run);
    const additional = (input.additional_messages ?? []).map((m) => newClientMessage(threadId, m, now));
    const lock = this.localLock(options);
    await this.store.createRun(scope, run, additional, lock);
    this.announce(run, true);
    if (lock) this.local!.adopt({ scope, run, lock });
    return run;
  }

  async createThreadAndRun(
    scope: Scope,
    thread: Thread,
    messages: NewMessageInput[],
    input: RunSettingsInput & { assistant_id: string },
    options: RunRequestOptions = {},
  ): Promise<Run> {
    const assistant = await this.store.getAssistant(scope, input.assistant_id);
    if (!assistant) throw notFound('assistant', input.assistant_id);
    const run = newRun(assistant, thread.id, input, thread.created_at, this.expiresAfterSeconds);
    checkToolChoice(run);
    const initial = messages.map((m) => newClientMessage(thread.id, m, thread.created_at));
    const lock = this.localLock(options);
    await this.store.createThreadAndRun(scope, thread, initial, run, lock);
    this.announce(run, true);
    if (lock) this.local!.adopt({ scope, run, lock });
    return run;
  }

  async modifyRun(scope: Scope, threadId: string, runId: string, metadata: Metadata | undefined): Promise<Run> {
    const run =
      metadata === undefined
        ? await this.store.getRun(scope, threadId, runId)
        : await this.store.updateRunMetadata(scope, threadId, runId, metadata);
    if (!run) throw notFound('run', runId);
    return run;
  }

  /**
   * Moves the run to `cancelling` and answers with that. A run no worker is executing (queued and not yet
   * claimed, or waiting for tool outputs) is cancelled right away; an executing one is stopped by its worker,
   * which aborts the upstream request and records what was generated so far.
   */
  async cancelRun(scope: Scope, threadId: string, runId: string): Promise<Run> {
    for (;;) {
      const run = await this.store.getRun(scope, threadId, runId);
      if (!run) throw notFound('run', runId);
      const { run: cancelling } = transition(run, { type: 'cancel', at: unixSeconds() });
      // A concurrent change (the worker finished, the run expired) makes the fence fail: look again.
      if (!(await this.store.commitRun(scope, { run: cancelling, expect: { status: run.status } }))) continue;
      this.bus.runChanged(cancelling);
      await this.cancelIfIdle(scope, cancelling);
      this.bus.stopRequested(runId, 'cancel');
      return cancelling;
    }
  }

  private async cancelIfIdle(scope: Scope, run: Run): Promise<void> {
    const lock = await this.store.runLock(run.id);
    if (!lock || (lock.lockedBy !== null && (lock.lockedUntil ?? 0) > Date.now())) return;
    const at = unixSeconds();
    const steps = await this.store.runSteps(scope, run.id);
    const { run: cancelled } = transition(run, { type: 'confirm_cancel', at, usage: runUsage(steps) });
    const ended = endOpenSteps(steps, 'cancel', at);
    const committed = await this.store.commitRun(scope, {
      run: cancelled,
      expect: { status: 'cancelling', lockedBy: lock.lockedBy },
      lock: { lockedBy: null, lockedUntil: null },
      steps: ended,
    });
    if (!committed) return;
    for (const step of ended)
      this.bus.publish(run.thread_id, run.id, { event: 'thread.run.step.cancelled', data: step });
    this.bus.runChanged(cancelled);
  }

  /** Completes the pending tool_calls step with the outputs and queues the run for the next model turn. */
  async submitToolOutputs(
    scope: Scope,
    threadId: string,
    runId: string,
    outputs: ToolOutput[],
    options: RunRequestOptions = {},
  ): Promise<Run> {
    const run = await this.store.getRun(scope, threadId, runId);
    if (!run) throw notFound('run', runId);
    const at = unixSeconds();
    const { run: queued } = transition(run, { type: 'submit_tool_outputs', at });
    const pending = run.required_action?.submit_tool_outputs.tool_calls ?? [];
    const byId = checkOutputs(
      pending.map((c) => c.id),
      outputs,
    );
    const steps = await this.store.runSteps(scope, runId);
    const step = steps.find(
      (s): s is StoredStep & { step_details: { type: 'tool_calls' } } =>
        s.status === 'in_progress' && s.step_details.type === 'tool_calls',
    );
    if (!step) throw new ApiError(500, `Run ${runId} requires action but has no pending tool_calls step.`);
    const stepDetails = {
      type: 'tool_calls' as const,
      tool_calls: step.step_details.tool_calls.map((call) => ({
        ...call,
        function: { ...call.function, output: byId.get(call.id) ?? '' },
      })),
    };
    const completed = transitionStep(step, { type: 'complete', at, usage: step.turn_usage ?? ZERO_USAGE, stepDetails });
    const completedStep = { ...step, ...completed.step };
    const lock = this.localLock(options);
    const committed = await this.store.commitRun(scope, {
      run: queued,
      expect: { status: 'requires_action' },
      steps: [completedStep],
      ...(lock ? { lock } : {}),
    });
    if (!committed) {
      // It expired or was cancelled in the meantime: report the status it has now.
      const now = await this.store.getRun(scope, threadId, runId);
      throw invalidRequest(`Runs in status "${now?.status ?? 'deleted'}" do not accept tool outputs.`);
    }
    // A stream of the continuation starts with the tool step, now holding the outputs.
    this.bus.publish(threadId, runId, { event: 'thread.run.step.completed', data: completedStep });
    this.announce(queued);
    if (lock) this.local!.adopt({ scope, run: queued, lock });
    return queued;
  }

  /** A run was created (`created`, then `queued`) or queued again: tell streams, polls and workers. */
  private announce(run: Run, created = false): void {
    if (created) this.bus.publish(run.thread_id, run.id, { event: 'thread.run.created', data: run });
    this.bus.runChanged(run);
    this.bus.workAvailable();
  }
}

/** Every pending call exactly once: no missing, unknown or repeated ids. Returns the outputs by call id. */
function checkOutputs(pendingIds: string[], outputs: ToolOutput[]): Map<string, string> {
  const byId = new Map<string, string>();
  const duplicates = new Set<string>();
  for (const o of outputs) {
    if (byId.has(o.tool_call_id)) duplicates.add(o.tool_call_id);
    byId.set(o.tool_call_id, o.output ?? '');
  }
  const unknown = [...byId.keys()].filter((id) => !pendingIds.includes(id));
  const missing = pendingIds.filter((id) => !byId.has(id));
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`missing outputs for tool call ids ${missing.join(', ')}`);
  if (unknown.length > 0) problems.push(`unknown tool call ids ${unknown.join(', ')}`);
  if (duplicates.size > 0) problems.push(`more than one output for tool call ids ${[...duplicates].join(', ')}`);
  if (problems.length > 0)
    throw invalidRequest(
      `Invalid 'tool_outputs': ${problems.join('; ')}. Submit exactly one output for each of ${pendingIds.join(', ')}.`,
      'tool_outputs',
      'invalid_tool_outputs',
    );
  return byId;
}

function checkToolChoice(run: Run): void {
  const choice = run.tool_choice;
  if (typeof choice === 'string') return;
  const names = run.tools.flatMap((t) => (t.type === 'function' ? [t.function.name] : []));
  if (!names.includes(choice.function.name))
    throw invalidRequest(
      `Invalid 'tool_choice': the run has no function named '${choice.function.name}'.`,
      'tool_choice.function.name',
      'invalid_value',
    );
}
