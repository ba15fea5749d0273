import type { Logger } from 'pino';
import { unixSeconds } from '../domain/clock.ts';
import type { Message, MessageIncompleteReason } from '../domain/objects.ts';
import { transition } from '../domain/run-state-machine.ts';
import type { Run, RunError, RunStepStatus, Usage } from '../domain/runs.ts';
import type { ModelRouter } from '../providers/model-router.ts';
import { type ChatRequest, type FinishReason, type ModelProvider, ProviderError } from '../providers/provider.ts';
import type { ClaimedRun, RunCommit, Scope, Store, StoredStep } from '../storage/store.ts';
import { buildContext } from './context.ts';
import { endOpenSteps, runUsage } from './run-accounting.ts';
import type { RunEventBus } from './run-event-bus.ts';
import { O200K, TokenCounter } from './tokens.ts';
import { TurnOutput } from './turn-output.ts';

/** Why an execution was told to stop (the reason its AbortSignal carries). */
export type StopReason = 'cancel' | 'expire' | 'lease_lost' | 'shutdown';

export interface ExecutorOptions {
  store: Store;
  bus: RunEventBus;
  router: ModelRouter;
  logger: Logger;
  maxRetries: number;
}

interface ModelTurn {
  usage: { prompt_tokens: number; completion_tokens: number } | undefined;
  finish: FinishReason | undefined;
}

/** The execution's current turn, if any, so that a stop can record what it produced. */
interface TurnRef {
  output: TurnOutput | undefined;
}

const RELEASED = { lockedBy: null, lockedUntil: null };
const MAX_BACKOFF_MS = 8000;
const MAX_RETRY_AFTER_MS = 60_000;

/**
 * Executes a claimed run: one model turn, ending in `requires_action` (tool calls) or a terminal status. While the
 * model streams, its output is published as run events (TurnOutput) but nothing is written; the turn's result —
 * message, steps, run status — is committed in one transaction fenced on this worker's lease, and only then are the
 * closing events published. A crash mid-turn leaves the run to be retried from the same point, and no assistant
 * message is ever written twice.
 *
 * An upstream failure is retried only while the attempt has published nothing: once text has reached a stream, a
 * retry would show it twice, so the run fails instead and keeps the partial message as `incomplete`.
 */
export class RunExecutor {
  private readonly options: ExecutorOptions;
  /** Token counters of backends with a tokenizer of their own. */
  private readonly counters = new WeakMap<ModelProvider, TokenCounter>();

  constructor(options: ExecutorOptions) {
    this.options = options;
  }

  /** Never throws: every outcome is recorded on the run. */
  async execute({ scope, run: claimed }: ClaimedRun, workerId: string, signal: AbortSignal): Promise<void> {
    const ref: TurnRef = { output: undefined };
    try {
      let run = claimed;
      if (run.status === 'cancelling') return await this.finishCancel(scope, run, workerId, ref.output);
      if (run.status === 'queued') {
        const started = transition(run, { type: 'start', at: unixSeconds() }).run;
        if (!(await this.commit(scope, { run: started, expect: { status: 'queued', lockedBy: workerId } })))
          return await this.settle(scope, run, workerId, ref.output);
        run = started;
      }
      await this.turn(scope, run, workerId, signal, ref);
    } catch (error) {
      if (signal.aborted) return await this.stopped(scope, claimed, workerId, signal.reason as StopReason, ref.output);
      await this.failUnexpectedly(scope, claimed, workerId, error, ref.output);
    } finally {
      this.options.bus.setLiveTurn(claimed.id, undefined);
    }
  }

  private async turn(scope: Scope, run: Run, workerId: string, signal: AbortSignal, ref: TurnRef) {
    const { store, router } = this.options;
    const provider = router.resolve(run.model);
    if (!provider)
      return this.fail(scope, run, workerId, { code: 'invalid_prompt', message: router.unroutedReason(run.model) });
    const { contextWindow } = provider;
    let tokens: TokenCounter;
    try {
      tokens = await this.tokenCounter(provider);
    } catch (error) {
      if (error instanceof ProviderError)
        return this.fail(scope, run, workerId, { code: error.code, message: error.message });
      throw error;
    }

    const [threadMessages, steps] = await Promise.all([
      store.threadMessages(scope, run.thread_id),
      store.runSteps(scope, run.id),
    ]);
    const used = runUsage(steps);
    const completionLeft =
      run.max_completion_tokens === null ? null : run.max_completion_tokens - used.completion_tokens;
    if (completionLeft !== null && completionLeft <= 0)
      return this.end(scope, run, workerId, steps, { reason: 'max_completion_tokens' });

    const context = buildContext({
      instructions: run.instructions,
      threadMessages,
      toolRounds: steps.filter((s) => s.type === 'tool_calls' && s.status === 'completed'),
      truncation: run.truncation_strategy,
      contextWindow,
      maxPromptTokens: run.max_prompt_tokens === null ? null : run.max_prompt_tokens - used.prompt_tokens,
      reservedCompletionTokens: completionLeft ?? Math.min(4096, Math.floor(contextWindow / 8)),
      tokens,
    });
    if (!context.ok) {
      if (context.reason === 'max_prompt_tokens')
        return this.end(scope, run, workerId, steps, { reason: 'max_prompt_tokens' });
      return this.fail(scope, run, workerId, {
        code: 'invalid_prompt',
        message: `The thread does not fit the model's context window of ${contextWindow} tokens, even after truncation.`,
      });
    }

    const request = this.chatRequest(run, context.messages, completionLeft);
    const output = new TurnOutput(run, this.options.bus, unixSeconds());
    ref.output = output;
    let turn: ModelTurn;
    try {
      turn = await this.callModel(provider, request, signal, output, run.parallel_tool_calls);
    } catch (error) {
      if (error instanceof ProviderError && !signal.aborted)
        return this.fail(scope, run, workerId, { code: error.code, message: error.message }, output);
      throw error;
    }
    const usage = toUsage(
      turn.usage ?? {
        prompt_tokens: context.promptTokens,
        completion_tokens: tokens.text(
          output.textSoFar + output.calls.map((c) => c.function.name + c.function.arguments).join(''),
        ),
      },
    );

    const at = output.at;
    if (output.toolStep) {
      const calls = output.calls.filter(Boolean);
      const next = transition(run, { type: 'require_action', at, toolCalls: calls }).run;
      const committed = await this.commit(scope, {
        run: next,
        expect: { status: 'in_progress', lockedBy: workerId },
        lock: RELEASED,
        steps: [...(output.earlier ? [output.earlier.step] : []), { ...output.toolStep, turn_usage: usage }],
        messages: output.earlier ? [output.earlier.message] : [],
      });
      if (!committed) await this.settle(scope, run, workerId, output);
      return;
    }

    output.ensureMessage();
    const hitBudget = turn.finish === 'length' && completionLeft !== null && usage.completion_tokens >= completionLeft;
    const incompleteReason: MessageIncompleteReason | null =
      turn.finish === 'length' ? 'max_tokens' : turn.finish === 'content_filter' ? 'content_filter' : null;
    const { message, step } = output.finishedMessage(usage, incompleteReason);
    const total = runUsage([...steps, step]);
    const next = hitBudget
      ? transition(run, { type: 'incomplete', at, reason: 'max_completion_tokens', usage: total }).run
      : transition(run, { type: 'complete', at, usage: total }).run;
    const committed = await this.commit(
      scope,
      {
        run: next,
        expect: { status: 'in_progress', lockedBy: workerId },
        lock: RELEASED,
        steps: [step],
        messages: [message],
      },
      () => output.publishMessageEnd(message, step),
    );
    if (!committed) await this.settle(scope, run, workerId, output);
  }

  private async tokenCounter(provider: ModelProvider): Promise<TokenCounter> {
    if (!provider.tokenizer) return O200K;
    let counter = this.counters.get(provider);
    if (!counter) {
      counter = new TokenCounter(await provider.tokenizer());
      this.counters.set(provider, counter);
    }
    return counter;
  }

  private chatRequest(run: Run, messages: ChatRequest['messages'], completionLeft: number | null): ChatRequest {
    const request: ChatRequest = { model: run.model, messages, temperature: run.temperature, top_p: run.top_p };
    const functions = run.tools.flatMap((t) =>
      t.type === 'function' ? [{ type: 'function' as const, function: t.function }] : [],
    );
    if (functions.length > 0) {
      request.tools = functions;
      request.tool_choice = run.tool_choice;
      if (!run.parallel_tool_calls) request.parallel_tool_calls = false;
    }
    if (completionLeft !== null) request.max_tokens = completionLeft;
    if (typeof run.response_format === 'object') request.response_format = run.response_format;
    return request;
  }

  /**
   * One model turn with the retry policy: 429s, 5xx, timeouts and resets are retried with exponential backoff
   * (or the upstream's retry-after), up to `maxRetries` times; anything else fails at once. Nothing of a failed
   * attempt is kept.
   */
  private async callModel(
    provider: ModelProvider,
    request: ChatRequest,
    signal: AbortSignal,
    output: TurnOutput,
    parallel: boolean,
  ): Promise<ModelTurn> {
    for (let attempt = 0; ; attempt++) {
      const turn: ModelTurn = { usage: undefined, finish: undefined };
      try {
        for await (const event of provider.stream(request, signal)) {
          switch (event.type) {
            case 'text':
              output.addText(event.text);
              break;
            case 'tool_call':
              output.addToolCall(event.index, event.name, event.arguments, parallel);
              break;
            case 'usage':
              turn.usage = event.usage;
              break;
            case 'finish':
              turn.finish = event.reason;
              break;
          }
        }
        return turn;
      } catch (error) {
        const retryable = error instanceof ProviderError && error.retryable && !output.published;
        if (signal.aborted || !retryable || attempt >= this.options.maxRetries) throw error;
        const backoff = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
        const hinted = error.retryAfterMs !== undefined && error.retryAfterMs <= MAX_RETRY_AFTER_MS;
        this.options.logger.warn({ err: error.message, attempt }, 'upstream attempt failed; retrying');
        await sleep(hinted ? error.retryAfterMs! : backoff, signal);
      }
    }
  }

  /** The execution was told to stop: record what that means for the run. */
  private async stopped(scope: Scope, run: Run, workerId: string, reason: StopReason, output: TurnOutput | undefined) {
    try {
      if (reason === 'cancel') return await this.finishCancel(scope, run, workerId, output);
      if (reason === 'shutdown') return await this.settle(scope, run, workerId, output);
      // 'expire': the sweeper already ended the run; 'lease_lost': another worker has it.
    } catch (error) {
      this.options.logger.error({ err: error, runId: run.id }, 'could not record a stopped run');
    }
  }

  /**
   * After a fence failed or the execution stopped: look at the run as it is now. A cancel this worker was left to
   * finish is finished; a run still held but not finished is handed back for another attempt.
   */
  private async settle(scope: Scope, stale: Run, workerId: string, output: TurnOutput | undefined): Promise<void> {
    const run = await this.options.store.getRun(scope, stale.thread_id, stale.id);
    if (!run) return;
    if (run.status === 'cancelling') return this.finishCancel(scope, run, workerId, output);
    if (run.status === 'in_progress' || run.status === 'queued')
      await this.commit(scope, { run, expect: { status: run.status, lockedBy: workerId }, lock: RELEASED });
  }

  /** cancelling → cancelled; what the turn produced so far is kept, its message `incomplete` (`run_cancelled`). */
  private async finishCancel(scope: Scope, stale: Run, workerId: string, output: TurnOutput | undefined) {
    const { store } = this.options;
    const run = await store.getRun(scope, stale.thread_id, stale.id);
    if (run?.status !== 'cancelling') return;
    const at = unixSeconds();
    const steps = await store.runSteps(scope, run.id);
    const open = endOpenSteps(steps, 'cancel', at);
    const turn = endTurn(output, at, 'cancelled', 'run_cancelled');
    const next = transition(run, { type: 'confirm_cancel', at, usage: runUsage(steps) }).run;
    await this.commit(
      scope,
      {
        run: next,
        expect: { status: 'cancelling', lockedBy: workerId },
        lock: RELEASED,
        steps: [...open, ...turn.steps],
        messages: turn.messages,
      },
      () => {
        output?.publishEnded(turn.endedMessages, [...open, ...turn.endedSteps]);
        if (!output)
          for (const step of open)
            this.options.bus.publish(run.thread_id, run.id, { event: 'thread.run.step.cancelled', data: step });
      },
    );
  }

  private async end(
    scope: Scope,
    run: Run,
    workerId: string,
    steps: StoredStep[],
    { reason }: { reason: 'max_completion_tokens' | 'max_prompt_tokens' },
  ) {
    const next = transition(run, { type: 'incomplete', at: unixSeconds(), reason, usage: runUsage(steps) }).run;
    await this.commit(scope, { run: next, expect: { status: 'in_progress', lockedBy: workerId }, lock: RELEASED });
  }

  /** The run fails; a turn's partial output is kept, its message `incomplete` (`run_failed`) and its step failed. */
  private async fail(scope: Scope, run: Run, workerId: string, error: RunError, output?: TurnOutput) {
    const at = unixSeconds();
    const steps = await this.options.store.runSteps(scope, run.id);
    const turn = endTurn(output, at, 'failed', 'run_failed', {
      code: error.code === 'rate_limit_exceeded' ? 'rate_limit_exceeded' : 'server_error',
      message: error.message,
    });
    const next = transition(run, { type: 'fail', at, error, usage: runUsage(steps) }).run;
    await this.commit(
      scope,
      {
        run: next,
        expect: { status: run.status, lockedBy: workerId },
        lock: RELEASED,
        steps: turn.steps,
        messages: turn.messages,
      },
      () => output?.publishEnded(turn.endedMessages, turn.endedSteps),
    );
  }

  private async failUnexpectedly(scope: Scope, claimed: Run, workerId: string, error: unknown, output?: TurnOutput) {
    this.options.logger.error({ err: error, runId: claimed.id }, 'run execution failed unexpectedly');
    try {
      const run = await this.options.store.getRun(scope, claimed.thread_id, claimed.id);
      if (run && (run.status === 'queued' || run.status === 'in_progress'))
        await this.fail(
          scope,
          run,
          workerId,
          { code: 'server_error', message: 'The run failed because of an internal error in the server.' },
          output,
        );
    } catch (inner) {
      this.options.logger.error({ err: inner, runId: claimed.id }, 'could not record the failure of a run');
    }
  }

  /**
   * Commits, then publishes: first what `beforeRunEvent` publishes (messages and steps that ended), then the run's
   * new status — the order the SDK's stream accumulator expects.
   */
  private async commit(scope: Scope, commit: RunCommit, beforeRunEvent?: () => void): Promise<boolean> {
    const committed = await this.options.store.commitRun(scope, commit);
    if (committed) {
      beforeRunEvent?.();
      this.options.bus.runChanged(commit.run);
    }
    return committed;
  }
}

/**
 * How a turn's unfinished output ends with its run: the open message becomes `incomplete` with the run's reason
 * and the open steps take the run's fate; a message finished earlier in the turn is stored as it is.
 */
function endTurn(
  output: TurnOutput | undefined,
  at: number,
  fate: Extract<RunStepStatus, 'cancelled' | 'failed'>,
  reason: MessageIncompleteReason,
  error?: NonNullable<StoredStep['last_error']>,
): { steps: StoredStep[]; messages: Message[]; endedSteps: StoredStep[]; endedMessages: Message[] } {
  const steps: StoredStep[] = [];
  const messages: Message[] = [];
  const endedSteps: StoredStep[] = [];
  const endedMessages: Message[] = [];
  if (!output) return { steps, messages, endedSteps, endedMessages };
  if (output.earlier) {
    steps.push(output.earlier.step);
    messages.push(output.earlier.message);
  }
  const ending = (step: StoredStep): StoredStep =>
    fate === 'cancelled'
      ? { ...step, status: 'cancelled', cancelled_at: at }
      : { ...step, status: 'failed', failed_at: at, last_error: error ?? null };
  if (output.message && output.messageStep) {
    const message: Message = {
      ...output.message,
      status: 'incomplete',
      incomplete_details: { reason },
      incomplete_at: at,
    };
    messages.push(message);
    endedMessages.push(message);
    endedSteps.push(ending(output.messageStep));
  }
  if (output.toolStep) endedSteps.push(ending(output.toolStep));
  // What was announced earlier in the turn is stored, not announced again.
  return { steps: [...steps, ...endedSteps], messages, endedSteps, endedMessages };
}

function toUsage(u: { prompt_tokens: number; completion_tokens: number }): Usage {
  return {
    prompt_tokens: u.prompt_tokens,
    completion_tokens: u.completion_tokens,
    total_tokens: u.prompt_tokens + u.completion_tokens,
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
