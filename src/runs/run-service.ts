import { isDeepStrictEqual } from 'node:util';
import { unixSeconds } from '../domain/clock.ts';
import { ApiError, invalidRequest, notFound } from '../domain/errors.ts';
import { type NewMessageInput, newClientMessage } from '../domain/messages.ts';
import type { Metadata, Thread } from '../domain/objects.ts';
import { asCommitted, type RunStreamEvent } from '../domain/run-events.ts';
import { type Transition, transition, transitionStep } from '../domain/run-state-machine.ts';
import type { Run, StoredStep } from '../domain/runs.ts';
import type { ClaimedRun, RunLock, Scope, Store } from '../storage/store.ts';
import type { ToolRegistry } from '../tools/tool.ts';
import { newRun, type RunSettingsInput } from './new-run.ts';
import { ZERO_USAGE } from './run-accounting.ts';
import { endRun } from './run-ending.ts';
import type { RunEventBus } from './run-event-bus.ts';
import type { TurnGate } from './turn-gate.ts';

/** Executes a run on this process right away (the worker of this process; see RunWorker.adopt). */
export interface LocalExecution {
  readonly workerId: string;
  readonly leaseMs: number;
  /** Whether it would take one more run now (it claims runs, and has a free slot). */
  readonly hasCapacity: boolean;
  /** Starts executing the run; resolves once its first model request is sent, or its execution has stopped. */
  adopt(claim: AdoptedRun): Promise<void>;
}

/** A run handed to this process's worker as it is created or continued, with its steps when they are known. */
export interface AdoptedRun extends ClaimedRun {
  steps?: StoredStep[];
  /**
   * Its creation went through the turn gate, and hands that passage to the run's first model turn: the creation
   * and the beginning of its turn are one piece of work (turn-gate.ts), and the model is asked without waiting for
   * the loop to go round.
   */
  gatePassed?: boolean;
}

/**
 * A streamed run executes where its stream is: its events are published on this process's bus. Any other run is
 * executed here too when this process's worker has room, and otherwise left queued for whichever worker claims it.
 */
export interface RunRequestOptions {
  executeHere?: boolean;
  /**
   * Queued runs (storage's QueueOption): a run created on a busy thread waits behind its runs instead of being
   * refused; it is then executed by whichever worker claims it when its turn comes, even a streamed one.
   */
  queue?: boolean;
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
  private readonly gate: TurnGate | undefined;
  private readonly tools: ToolRegistry;

  constructor(deps: {
    store: Store;
    bus: RunEventBus;
    tools: ToolRegistry;
    expiresAfterSeconds: number;
    local?: LocalExecution | undefined;
    /** Runs are created through it, one per turn of the event loop (see turn-gate.ts); absent, at once. */
    gate?: TurnGate | undefined;
  }) {
    this.store = deps.store;
    this.bus = deps.bus;
    this.tools = deps.tools;
    this.expiresAfterSeconds = deps.expiresAfterSeconds;
    this.local = deps.local;
    this.gate = deps.gate;
  }

  /**
   * The lease under which this process takes a run it will execute itself, if it should and can. Taking it in the
   * request's own transaction, already `in_progress`, saves a worker's claim and its start: the run is stored as
   * its executor will find it, and a crash leaves it to be claimed once the lease lapses, as any other.
   */
  private localLock(options: RunRequestOptions): RunLock | undefined {
    if (!this.local || !(options.executeHere || this.local.hasCapacity)) return undefined;
    return { lockedBy: this.local.workerId, lockedUntil: Date.now() + this.local.leaseMs };
  }

  /** A queued run this process executes itself starts at once, in the same commit. */
  private startedIfLocal(queued: Transition, lock: RunLock | undefined): Transition {
    if (!lock) return queued;
    const started = transition(queued.run, { type: 'start', at: unixSeconds() });
    return { run: started.run, events: [...queued.events, ...started.events] };
  }

  /**
   * Throws what creating this run would be refused with, before the request writes anything else (the stores its
   * attachments make: api/tool-resources.ts): an unknown assistant, tools or a tool_choice the run cannot have.
   */
  async checkCreation(
    scope: Scope,
    threadId: string,
    input: RunSettingsInput & { assistant_id: string },
  ): Promise<void> {
    await this.newChecked(scope, threadId, input, unixSeconds());
  }

  /** The run these settings make on the thread, from its assistant: refused if the assistant or its tools are not. */
  private async newChecked(
    scope: Scope,
    threadId: string,
    input: RunSettingsInput & { assistant_id: string },
    now: number,
  ): Promise<Transition> {
    const assistant = await this.store.getAssistant(scope, input.assistant_id);
    if (!assistant) throw notFound('assistant', input.assistant_id);
    const created = newRun(assistant, threadId, input, now, this.expiresAfterSeconds);
    this.checkTools(created.run);
    return created;
  }

  async createRun(
    scope: Scope,
    threadId: string,
    input: RunSettingsInput & { assistant_id: string; additional_messages?: NewMessageInput[] | null | undefined },
    options: RunRequestOptions = {},
  ): Promise<Run> {
    await this.gate?.pass();
    const now = unixSeconds();
    const created = await this.newChecked(scope, threadId, input, now);
    const additional = (input.additional_messages ?? []).map((m) => newClientMessage(threadId, m, now));
    const lock = this.localLock(options);
    if (options.queue) {
      // Whether it waits is learnt only as it is stored: it is stored queued, and a run leased here is started by
      // its executor, as a claimed one is. A waiting run wakes no worker: a claim takes it when its turn comes.
      const { waiting } = await this.store.createRun(scope, created.run, additional, lock, { queue: true });
      if (waiting) this.publish(created.run, created.events);
      else await this.queued(scope, created, lock, { steps: [], gatePassed: true });
      return created.run;
    }
    const stored = this.startedIfLocal(created, lock);
    await this.store.createRun(scope, stored.run, additional, lock);
    await this.queued(scope, stored, lock, { steps: [], gatePassed: true });
    return created.run;
  }

  async createThreadAndRun(
    scope: Scope,
    thread: Thread,
    messages: NewMessageInput[],
    input: RunSettingsInput & { assistant_id: string },
    options: RunRequestOptions = {},
  ): Promise<Run> {
    await this.gate?.pass();
    const created = await this.newChecked(scope, thread.id, input, thread.created_at);
    const initial = messages.map((m) => newClientMessage(thread.id, m, thread.created_at));
    const lock = this.localLock(options);
    const stored = this.startedIfLocal(created, lock);
    await this.store.createThreadAndRun(scope, thread, initial, stored.run, lock);
    await this.queued(scope, stored, lock, { steps: [], gatePassed: true });
    return created.run;
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
      const { run: cancelling, events } = transition(run, { type: 'cancel', at: unixSeconds() });
      // A concurrent change (the worker finished, the run expired) makes the fence fail: look again.
      const committed = await this.store.commitRun(scope, { run: cancelling, expect: { status: run.status } });
      if (!committed) continue;
      this.publish(committed, asCommitted(events, committed));
      await this.cancelIfIdle(scope, committed);
      this.bus.stopRequested(runId, 'cancel');
      return committed;
    }
  }

  private async cancelIfIdle(scope: Scope, run: Run): Promise<void> {
    const lock = await this.store.runLock(run.id);
    if (!lock || (lock.lockedBy !== null && (lock.lockedUntil ?? 0) > Date.now())) return;
    const ended = endRun(run, await this.store.runSteps(scope, run.id), { type: 'confirm_cancel' }, unixSeconds());
    const committed = await this.store.commitRun(scope, {
      run: ended.run,
      expect: { status: 'cancelling', lockedBy: lock.lockedBy },
      lock: { lockedBy: null, lockedUntil: null },
      steps: ended.steps,
      messages: ended.messages,
      discardBegun: true,
    });
    if (committed) this.publish(committed, asCommitted(ended.events, committed));
  }

  /**
   * Completes the pending tool_calls step with the outputs and queues the run for the next model turn.
   *
   * The outputs answer the pause they were checked against. Another request (here or in another process) may have
   * answered it first, cancelled the run or expired it, and the run may even have paused again since; then the
   * submission is judged against the run as it is now — refused by its status, or by its outputs naming calls no
   * longer pending — and never taken as the answer to a later pause: the commit is fenced on the pause it read.
   */
  async submitToolOutputs(
    scope: Scope,
    threadId: string,
    runId: string,
    outputs: ToolOutput[],
    options: RunRequestOptions = {},
  ): Promise<Run> {
    for (;;) {
      const submitted = await this.submitOnce(scope, threadId, runId, outputs, options);
      if (submitted) return submitted;
    }
  }

  /** One attempt of submitToolOutputs: undefined when the run's pause changed since it was read. */
  private async submitOnce(
    scope: Scope,
    threadId: string,
    runId: string,
    outputs: ToolOutput[],
    options: RunRequestOptions,
  ): Promise<Run | undefined> {
    const run = await this.store.getRun(scope, threadId, runId);
    if (!run) throw notFound('run', runId);
    const at = unixSeconds();
    const queued = transition(run, { type: 'submit_tool_outputs', at });
    const pending = run.required_action?.submit_tool_outputs.tool_calls.map((c) => c.id) ?? [];
    const byId = checkOutputs(pending, outputs);
    const steps = await this.store.runSteps(scope, runId);
    const step = steps.find(({ status, step_details: details }) => {
      if (status !== 'in_progress' || details.type !== 'tool_calls') return false;
      return pending.every((id) => details.tool_calls.some((c) => c.id === id));
    });
    if (step?.step_details.type !== 'tool_calls') {
      const now = await this.store.getRun(scope, threadId, runId);
      if (now?.status === 'requires_action' && isDeepStrictEqual(now.required_action, run.required_action))
        throw new ApiError(500, `Run ${runId} requires action but has no pending tool_calls step.`);
      return undefined;
    }
    // The functions get their outputs; a server-side call of the same step keeps the result it has.
    const stepDetails = {
      type: 'tool_calls' as const,
      tool_calls: step.step_details.tool_calls.map((call) =>
        call.type === 'function' && byId.has(call.id)
          ? { ...call, function: { ...call.function, output: byId.get(call.id)! } }
          : call,
      ),
    };
    const modelCalls = step.model_calls?.map((call) =>
      byId.has(call.id) ? { ...call, output: byId.get(call.id)! } : call,
    );
    const completed = transitionStep(
      { ...step, model_calls: modelCalls ?? null },
      { type: 'complete', at, usage: step.turn_usage ?? ZERO_USAGE, stepDetails },
    );
    const lock = this.localLock(options);
    const stored = this.startedIfLocal(queued, lock);
    const committed = await this.store.commitRun(scope, {
      run: stored.run,
      expect: { status: 'requires_action', requiredAction: run.required_action },
      steps: [completed.step],
      ...(lock ? { lock } : {}),
    });
    if (!committed) return undefined;
    // A stream of the continuation starts with the tool step, now holding the outputs.
    const stepsNow = steps.map((s) => (s.id === completed.step.id ? completed.step : s));
    const events = asCommitted([...completed.events, ...stored.events], committed);
    await this.queued(scope, { run: committed, events }, lock, { steps: stepsNow });
    return { ...queued.run, metadata: committed.metadata };
  }

  /**
   * A run was queued (created, or given its tool outputs) and committed: tell streams and polls, then hand it to
   * this process's worker (under `lock`) or wake a worker to claim it. Handed here, it resolves once the run's
   * model request is sent: the request's answer (the run, or its stream's first frames) is written after it, since
   * the model's first token is what the client ends up waiting for, and on a loaded machine writing the answer
   * first delays the model's request by as long as the write takes (bench/README.md, "Run benchmark").
   */
  private async queued(
    scope: Scope,
    { run, events }: { run: Run; events: readonly RunStreamEvent[] },
    lock: RunLock | undefined,
    handed: Pick<AdoptedRun, 'steps' | 'gatePassed'>,
  ): Promise<void> {
    this.publish(run, events);
    if (lock) await this.local!.adopt({ scope, run, lock, ...handed });
    else this.bus.workAvailable();
  }

  private publish(run: Run, events: readonly RunStreamEvent[]): void {
    this.bus.publishAll(run.thread_id, run.id, events);
  }

  /** `tool_choice` names a function the run has; no function shares its name with a server-side tool's. */
  private checkTools(run: Run): void {
    checkToolChoice(run);
    const reserved = this.tools.forRun(run);
    for (const tool of run.tools)
      if (tool.type === 'function' && reserved.has(tool.function.name))
        throw invalidRequest(
          `Invalid 'tools': the function name '${tool.function.name}' is taken by the run's ${reserved.get(tool.function.name)!.type} tool.`,
          'tools',
          'invalid_value',
        );
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
  if (choice.type !== 'function') {
    if (!run.tools.some((t) => t.type === choice.type))
      throw invalidRequest(
        `Invalid 'tool_choice': the run has no ${choice.type} tool. Add {"type": "${choice.type}"} to its tools.`,
        'tool_choice.type',
        'invalid_value',
      );
    return;
  }
  const names = run.tools.flatMap((t) => (t.type === 'function' ? [t.function.name] : []));
  if (!names.includes(choice.function.name))
    throw invalidRequest(
      `Invalid 'tool_choice': the run has no function named '${choice.function.name}'.`,
      'tool_choice.function.name',
      'invalid_value',
    );
}
