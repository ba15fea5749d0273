import type { Logger } from 'pino';
import { unixSeconds } from '../domain/clock.ts';
import { newId } from '../domain/ids.ts';
import type { Message, MessageIncompleteReason } from '../domain/objects.ts';
import { transition } from '../domain/run-state-machine.ts';
import type { Run, RunError, RunToolCall, Usage } from '../domain/runs.ts';
import type { ModelRouter } from '../providers/model-router.ts';
import { type ChatRequest, type FinishReason, type ModelProvider, ProviderError } from '../providers/provider.ts';
import type { ClaimedRun, RunCommit, Scope, Store, StoredStep } from '../storage/store.ts';
import { buildContext } from './context.ts';
import { endOpenSteps, runUsage } from './run-accounting.ts';
import type { RunEventBus } from './run-event-bus.ts';
import { countTextTokens } from './tokens.ts';

/** Why an execution was told to stop (the reason its AbortSignal carries). */
export type StopReason = 'cancel' | 'expire' | 'lease_lost' | 'shutdown';

export interface ExecutorOptions {
  store: Store;
  bus: RunEventBus;
  router: ModelRouter;
  logger: Logger;
  contextWindow: number;
  maxRetries: number;
}

interface ModelTurn {
  text: string;
  toolCalls: Array<{ name: string; arguments: string }>;
  usage: { prompt_tokens: number; completion_tokens: number } | undefined;
  finish: FinishReason | undefined;
}

const RELEASED = { lockedBy: null, lockedUntil: null };
const MAX_BACKOFF_MS = 8000;
const MAX_RETRY_AFTER_MS = 60_000;

/**
 * Executes a claimed run: one model turn, ending in `requires_action` (tool calls) or a terminal status. Nothing
 * is written while the model streams; the turn's result — message, step, run status — is committed in one
 * transaction fenced on this worker's lease, so a crash mid-turn leaves the run to be retried from the same point
 * and never writes an assistant message twice.
 */
export class RunExecutor {
  private readonly options: ExecutorOptions;

  constructor(options: ExecutorOptions) {
    this.options = options;
  }

  /** Never throws: every outcome is recorded on the run. */
  async execute({ scope, run: claimed }: ClaimedRun, workerId: string, signal: AbortSignal): Promise<void> {
    const partial = { text: '' };
    try {
      let run = claimed;
      if (run.status === 'cancelling') return await this.finishCancel(scope, run.id, run.thread_id, workerId, partial);
      if (run.status === 'queued') {
        const started = transition(run, { type: 'start', at: unixSeconds() }).run;
        if (!(await this.commit(scope, { run: started, expect: { status: 'queued', lockedBy: workerId } })))
          return await this.settle(scope, run, workerId, partial);
        run = started;
      }
      await this.turn(scope, run, workerId, signal, partial);
    } catch (error) {
      if (signal.aborted) return await this.stopped(scope, claimed, workerId, signal.reason as StopReason, partial);
      await this.failUnexpectedly(scope, claimed, workerId, error);
    }
  }

  private async turn(scope: Scope, run: Run, workerId: string, signal: AbortSignal, partial: { text: string }) {
    const { store, router, contextWindow } = this.options;
    const provider = router.resolve(run.model);
    if (!provider)
      return this.fail(scope, run, workerId, { code: 'invalid_prompt', message: router.unroutedReason(run.model) });

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
    let turn: ModelTurn;
    try {
      turn = await this.callModel(provider, request, signal, partial);
    } catch (error) {
      if (error instanceof ProviderError && !signal.aborted)
        return this.fail(scope, run, workerId, { code: error.code, message: error.message });
      throw error;
    }
    const usage = toUsage(
      turn.usage ?? {
        prompt_tokens: context.promptTokens,
        completion_tokens: countTextTokens(turn.text + turn.toolCalls.map((c) => c.name + c.arguments).join('')),
      },
    );

    const at = unixSeconds();
    if (turn.toolCalls.length > 0) {
      const calls: RunToolCall[] = (run.parallel_tool_calls ? turn.toolCalls : turn.toolCalls.slice(0, 1)).map(
        (call) => ({ id: newId('call'), type: 'function', function: { name: call.name, arguments: call.arguments } }),
      );
      const step = newStep(run, at, {
        type: 'tool_calls',
        tool_calls: calls.map((c) => ({ ...c, function: { ...c.function, output: null } })),
      });
      const next = transition(run, { type: 'require_action', at, toolCalls: calls }).run;
      const committed = await this.commit(scope, {
        run: next,
        expect: { status: 'in_progress', lockedBy: workerId },
        lock: RELEASED,
        steps: [{ ...step, turn_usage: usage }],
      });
      if (!committed) await this.settle(scope, run, workerId, partial);
      return;
    }

    const hitBudget = turn.finish === 'length' && completionLeft !== null && usage.completion_tokens >= completionLeft;
    const incompleteReason: MessageIncompleteReason | null =
      turn.finish === 'length' ? 'max_tokens' : turn.finish === 'content_filter' ? 'content_filter' : null;
    const message = assistantMessage(run, turn.text, at, incompleteReason);
    const step: StoredStep = {
      ...newStep(run, at, { type: 'message_creation', message_creation: { message_id: message.id } }),
      status: 'completed',
      completed_at: at,
      usage,
    };
    const total = runUsage([...steps, step]);
    const next = hitBudget
      ? transition(run, { type: 'incomplete', at, reason: 'max_completion_tokens', usage: total }).run
      : transition(run, { type: 'complete', at, usage: total }).run;
    const committed = await this.commit(scope, {
      run: next,
      expect: { status: 'in_progress', lockedBy: workerId },
      lock: RELEASED,
      steps: [step],
      messages: [message],
    });
    if (!committed) await this.settle(scope, run, workerId, partial);
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
    partial: { text: string },
  ): Promise<ModelTurn> {
    for (let attempt = 0; ; attempt++) {
      const turn: ModelTurn = { text: '', toolCalls: [], usage: undefined, finish: undefined };
      partial.text = '';
      try {
        for await (const event of provider.stream(request, signal)) {
          switch (event.type) {
            case 'text':
              turn.text += event.text;
              partial.text = turn.text;
              break;
            case 'tool_call': {
              let call = turn.toolCalls[event.index];
              if (!call) {
                call = { name: '', arguments: '' };
                turn.toolCalls[event.index] = call;
              }
              if (event.name) call.name = event.name;
              if (event.arguments) call.arguments += event.arguments;
              break;
            }
            case 'usage':
              turn.usage = event.usage;
              break;
            case 'finish':
              turn.finish = event.reason;
              break;
          }
        }
        turn.toolCalls = turn.toolCalls.filter(Boolean);
        return turn;
      } catch (error) {
        if (
          signal.aborted ||
          !(error instanceof ProviderError) ||
          !error.retryable ||
          attempt >= this.options.maxRetries
        )
          throw error;
        const backoff = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
        const hinted = error.retryAfterMs !== undefined && error.retryAfterMs <= MAX_RETRY_AFTER_MS;
        this.options.logger.warn({ err: error.message, attempt }, 'upstream attempt failed; retrying');
        await sleep(hinted ? error.retryAfterMs! : backoff, signal);
      }
    }
  }

  /** The execution was told to stop: record what that means for the run. */
  private async stopped(scope: Scope, run: Run, workerId: string, reason: StopReason, partial: { text: string }) {
    try {
      if (reason === 'cancel') return await this.finishCancel(scope, run.id, run.thread_id, workerId, partial);
      if (reason === 'shutdown') return await this.settle(scope, run, workerId, partial);
      // 'expire': the sweeper already ended the run; 'lease_lost': another worker has it.
    } catch (error) {
      this.options.logger.error({ err: error, runId: run.id }, 'could not record a stopped run');
    }
  }

  /**
   * After a fence failed or the execution stopped: look at the run as it is now. A cancel this worker was left to
   * finish is finished; a run still held but not finished is handed back for another attempt.
   */
  private async settle(scope: Scope, stale: Run, workerId: string, partial: { text: string }): Promise<void> {
    const run = await this.options.store.getRun(scope, stale.thread_id, stale.id);
    if (!run) return;
    if (run.status === 'cancelling') return this.finishCancel(scope, run.id, run.thread_id, workerId, partial);
    if (run.status === 'in_progress' || run.status === 'queued')
      await this.commit(scope, { run, expect: { status: run.status, lockedBy: workerId }, lock: RELEASED });
  }

  /** cancelling → cancelled; text generated so far is kept as an incomplete message (`run_cancelled`). */
  private async finishCancel(
    scope: Scope,
    runId: string,
    threadId: string,
    workerId: string,
    partial: { text: string },
  ): Promise<void> {
    const { store } = this.options;
    const run = await store.getRun(scope, threadId, runId);
    if (run?.status !== 'cancelling') return;
    const at = unixSeconds();
    const steps = await store.runSteps(scope, runId);
    const ended = endOpenSteps(steps, 'cancel', at);
    const messages: Message[] = [];
    if (partial.text !== '') {
      const message = assistantMessage(run, partial.text, at, 'run_cancelled');
      messages.push(message);
      ended.push({
        ...newStep(run, at, { type: 'message_creation', message_creation: { message_id: message.id } }),
        status: 'cancelled',
        cancelled_at: at,
      });
    }
    const next = transition(run, { type: 'confirm_cancel', at, usage: runUsage(steps) }).run;
    await this.commit(scope, {
      run: next,
      expect: { status: 'cancelling', lockedBy: workerId },
      lock: RELEASED,
      steps: ended,
      messages,
    });
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

  private async fail(scope: Scope, run: Run, workerId: string, error: RunError) {
    const steps = await this.options.store.runSteps(scope, run.id);
    const next = transition(run, { type: 'fail', at: unixSeconds(), error, usage: runUsage(steps) }).run;
    await this.commit(scope, { run: next, expect: { status: run.status, lockedBy: workerId }, lock: RELEASED });
  }

  private async failUnexpectedly(scope: Scope, claimed: Run, workerId: string, error: unknown) {
    this.options.logger.error({ err: error, runId: claimed.id }, 'run execution failed unexpectedly');
    try {
      const run = await this.options.store.getRun(scope, claimed.thread_id, claimed.id);
      if (run && (run.status === 'queued' || run.status === 'in_progress'))
        await this.fail(scope, run, workerId, {
          code: 'server_error',
          message: 'The run failed because of an internal error in the server.',
        });
    } catch (inner) {
      this.options.logger.error({ err: inner, runId: claimed.id }, 'could not record the failure of a run');
    }
  }

  private async commit(scope: Scope, commit: RunCommit): Promise<boolean> {
    const committed = await this.options.store.commitRun(scope, commit);
    if (committed) this.options.bus.runChanged(commit.run);
    return committed;
  }
}

function toUsage(u: { prompt_tokens: number; completion_tokens: number }): Usage {
  return {
    prompt_tokens: u.prompt_tokens,
    completion_tokens: u.completion_tokens,
    total_tokens: u.prompt_tokens + u.completion_tokens,
  };
}

function newStep(run: Run, at: number, details: StoredStep['step_details']): StoredStep {
  return {
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
    cancelled_at: null,
    failed_at: null,
    completed_at: null,
    metadata: {},
    usage: null,
    turn_usage: null,
  };
}

function assistantMessage(run: Run, text: string, at: number, incomplete: MessageIncompleteReason | null): Message {
  return {
    id: newId('message'),
    created_at: at,
    thread_id: run.thread_id,
    status: incomplete ? 'incomplete' : 'completed',
    incomplete_details: incomplete ? { reason: incomplete } : null,
    completed_at: incomplete ? null : at,
    incomplete_at: incomplete ? at : null,
    role: 'assistant',
    content: text === '' ? [] : [{ type: 'text', text: { value: text, annotations: [] } }],
    assistant_id: run.assistant_id,
    run_id: run.id,
    attachments: [],
    metadata: {},
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
