import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { unixSeconds } from '../domain/clock.ts';
import { ApiError, notFound } from '../domain/errors.ts';
import { type FunctionDefinition, type Message, type MessageContent, NO_PARAMETERS } from '../domain/objects.ts';
import {
  asCommitted,
  RUN_STREAM_END,
  type RunStreamEvent,
  runDeletedEvent,
  runInterruptedEvent,
} from '../domain/run-events.ts';
import { transition, transitionStep } from '../domain/run-state-machine.ts';
import {
  type FunctionToolCallDetails,
  type ModelToolCall,
  type Run,
  type RunError,
  type RunToolCall,
  type StoredStep,
  type ToolCallDetails,
  type Usage,
  uncommittedTurn,
} from '../domain/runs.ts';
import type { FileService } from '../files/file-service.ts';
import type { ModelRouter } from '../providers/model-router.ts';
import {
  type ChatRequest,
  type ChatToolChoice,
  type FinishReason,
  type ModelProvider,
  ProviderError,
} from '../providers/provider.ts';
import { retryDelayMs } from '../providers/retry-delay.ts';
import {
  type ClaimedRun,
  DatabaseUnavailable,
  type RunCommit,
  type RunLock,
  type Scope,
  type StopRequest,
  StorageFull,
  type Store,
  whileUnavailable,
} from '../storage/store.ts';
import {
  allMade,
  type ServerTool,
  type TextAnnotator,
  ToolError,
  type ToolRegistry,
  type ToolResult,
  ToolRunFailure,
} from '../tools/tool.ts';
import { buildContext, type ContextResult, toolRoundsOfRun } from './context.ts';
import { resolveImageFiles } from './image-files.ts';
import { announcedCalls, ModelTurn, streamsAsWritten } from './model-turn.ts';
import { runUsage, ZERO_USAGE } from './run-accounting.ts';
import { endRun, type RunEnding } from './run-ending.ts';
import type { RunEventBus } from './run-event-bus.ts';
import { ThreadWindow } from './thread-window.ts';
import { O200K, TokenCounter } from './tokens.ts';
import type { TurnGate } from './turn-gate.ts';

/** Why an execution was told to stop (the reason its AbortSignal carries). */
export type StopReason = StopRequest | 'lease_lost' | 'shutdown';

export interface ExecutorOptions {
  store: Store;
  bus: RunEventBus;
  router: ModelRouter;
  tools: ToolRegistry;
  /** Where the bytes of image_file parts are read, as each turn's request is built. */
  files: Pick<FileService, 'readAll'>;
  logger: Logger;
  maxRetries: number;
  /**
   * A worker's lease on a run (ASSISTD_WORKER_LEASE_S): how long a commit waits for a database that went away.
   * After that another worker may take the run over.
   */
  leaseMs: number;
  /**
   * How many rounds of server-side calls a run makes in a row (ASSISTD_MAX_TOOL_ROUNDS): the next turn may call no
   * tool, so that the model answers; a model that calls one even then fails the run.
   */
  maxToolRounds: number;
  /** Model turns begin through it, one per turn of the event loop (see turn-gate.ts); absent, at once. */
  gate?: TurnGate | undefined;
}

/** One execution of a claimed run: what it holds, and the run and steps as it last committed them. */
interface Execution {
  readonly scope: Scope;
  readonly workerId: string;
  readonly signal: AbortSignal;
  readonly serverTools: ReadonlyMap<string, ServerTool>;
  run: Run;
  steps: StoredStep[];
  /** The thread's messages the prompt may show, read at the first model turn; with those this execution stores. */
  messages: ThreadWindow | undefined;
  /** The model turn being streamed, if any: what an ending must record of it. */
  turn: ModelTurn | undefined;
  /** What that turn has used so far (its prompt as counted, what it wrote, estimated): a cut-short turn's usage. */
  turnUsage: (() => Promise<Usage>) | undefined;
  /** Whether the next model turn begins without the gate: the run's creation went through it for this turn. */
  gatePassed: boolean;
  /** Called once, when the first model request is on its way or the execution stops before one (see `execute`). */
  asked: (() => void) | undefined;
  /** Whether its streams have ended: this execution committed the run's end or pause, or found the run deleted. */
  ended: boolean;
  /** The write of what the turn began (`storeBegun`), which every commit waits for: it must land first. */
  begun: Promise<void> | undefined;
  /** What the last of those writes stores, while it waits for the one before it: what begins meanwhile joins it. */
  nextBegun: { steps: StoredStep[]; messages: Message[] } | undefined;
  /**
   * Messages a turn finished early (text before its tool calls), as storeBegun stored them: a later commit carrying
   * one unchanged leaves it as it is, with any metadata set on it meanwhile.
   */
  finished: Map<string, Message>;
}

/** What a change to the run records: the new run (or its transition), the objects with it, the events after it. */
interface Change {
  run: Run;
  events?: readonly RunStreamEvent[];
  steps?: readonly StoredStep[];
  messages?: readonly Message[];
  lock?: RunLock;
  discardBegun?: boolean;
}

interface ModelReply {
  usage: { prompt_tokens: number; completion_tokens: number } | undefined;
  finish: FinishReason | undefined;
}

const RELEASED: RunLock = { lockedBy: null, lockedUntil: null };

/**
 * Executes a claimed run to its end or its next pause, within one claim: model turn → the server-side tools it
 * called (src/tools) → the next model turn with their results → … → the answer, or `requires_action` when the
 * model calls a client's function. While the model streams, its output is published as run events (ModelTurn);
 * what it has begun (a step, the message it writes) is stored as announced, in progress (storeBegun), and nothing
 * more until the turn ends. Each turn's result is committed in one transaction fenced on this worker's lease, and
 * each server-side call's result likewise once it has run; the events that announce a commit are published after
 * it. A crash therefore resumes from the last commit: what the dead turn stored as it went is deleted and the turn
 * asked again, a server-side call without a stored result is executed again, and nothing committed is repeated —
 * no assistant message is ever written twice.
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

  /**
   * Never throws: every outcome is recorded on the run. `asked` is called once the first model request has been
   * sent (or the execution has stopped before sending one): what answers the request that started the run waits
   * for it, so that the model, which everyone waits for, is asked before the client is answered.
   */
  async execute(
    { scope, run, steps, gatePassed = false }: ClaimedRun & { steps?: StoredStep[]; gatePassed?: boolean },
    workerId: string,
    signal: AbortSignal,
    asked?: () => void,
  ): Promise<void> {
    const x: Execution = {
      scope,
      workerId,
      signal,
      serverTools: this.options.tools.forRun(run),
      run,
      steps: [],
      messages: undefined,
      turn: undefined,
      turnUsage: undefined,
      gatePassed,
      asked,
      ended: false,
      begun: undefined,
      nextBegun: undefined,
      finished: new Map(),
    };
    try {
      if (run.status === 'cancelling') return await this.finishCancel(x);
      if (run.status === 'queued' && !(await this.commit(x, transition(run, { type: 'start', at: unixSeconds() }))))
        return await this.settle(x);
      // Beside the run, never failing it: a tool that throws at once is logged as one that rejects.
      for (const tool of new Set(x.serverTools.values()))
        Promise.resolve()
          .then(() => tool.executionStarted?.({ scope, run: x.run }))
          .catch((error: unknown) => {
            this.options.logger.warn({ err: error, runId: run.id, tool: tool.type }, "a tool's start of a run failed");
          });
      x.steps = steps ?? (await this.options.store.runSteps(scope, run.id));
      // What a turn of an execution before this one began and never finished (it died, or lost its lease): the model
      // is asked again, and writes anew.
      if (uncommittedTurn(x.steps).length > 0 && !(await this.commit(x, { run: x.run, discardBegun: true })))
        return await this.settle(x);
      await this.loop(x);
    } catch (error) {
      if (signal.aborted) return await this.stopped(x, signal.reason as StopReason);
      await this.failUnexpectedly(x, error);
    } finally {
      // Not left behind: landing after this worker takes the run again, it would be taken for the new execution's.
      await x.begun;
      this.options.bus.setLiveTurn(run.id, undefined);
      if (!x.ended && interrupts(signal))
        this.options.bus.publish(run.thread_id, run.id, runInterruptedEvent(run.thread_id, run.id));
      for (const tool of new Set(x.serverTools.values()))
        try {
          tool.executionEnded?.(run);
        } catch (error) {
          this.options.logger.error({ err: error, runId: run.id, tool: tool.type }, 'a tool failed to let a run go');
        }
      askedModel(x);
    }
  }

  /** Turns until the run ends or pauses. A commit whose fence fails leaves the run to `settle`. */
  private async loop(x: Execution): Promise<void> {
    for (;;) {
      const open = x.steps.find((s) => s.status === 'in_progress' && s.type === 'tool_calls');
      const next = open ? await this.executeServerCalls(x, open) : await this.modelTurn(x);
      if (next === 'settle') return this.settle(x);
      if (next === 'done') return;
    }
  }

  // ── a model turn ──────────────────────────────────────────────────────────────

  private async modelTurn(x: Execution): Promise<'next' | 'done' | 'settle'> {
    const { store, router } = this.options;
    const { run } = x;
    if (x.gatePassed) x.gatePassed = false;
    else await this.options.gate?.pass();
    const provider = router.resolve(run.model);
    if (!provider)
      return this.end(x, {
        type: 'fail',
        error: { code: 'invalid_prompt', message: router.unroutedReason(run.model) },
      });
    // A model's own tokenizer is loaded with the model (an embedded one, on its first run: seconds): the client is
    // answered meanwhile rather than after it.
    if (provider.tokenizer && !this.counters.has(provider)) askedModel(x);
    let tokens: TokenCounter;
    try {
      tokens = await this.tokenCounter(provider);
    } catch (error) {
      if (error instanceof ProviderError) return this.end(x, { type: 'fail', error: providerError(error) });
      throw error;
    }
    x.messages ??= await ThreadWindow.open(store, x.scope, run.thread_id);

    const used = runUsage(x.steps);
    const completionLeft =
      run.max_completion_tokens === null ? null : run.max_completion_tokens - used.completion_tokens;
    if (completionLeft !== null && completionLeft <= 0)
      return this.end(x, { type: 'incomplete', reason: 'max_completion_tokens' });
    const { contextWindow } = provider;
    // A model calling server-side tools round after round (a small model repeating its search) is asked to answer
    // once the rounds reach the bound: its turn may call no tool (`tool_choice: none`; the tools stay declared, as
    // some endpoints refuse tool calls in the history of a request without them).
    const answerNow = toolRoundsInARow(x.steps, run) >= this.options.maxToolRounds;
    const offered = this.offeredTools(x);
    if (answerNow && offered.tools) offered.tool_choice = 'none';
    const instructions = await this.instructions(x, answerNow);
    const toolDefinitionTokens = offered.tools
      ? await (provider.toolTokens?.(offered) ?? tokens.tools(offered.tools))
      : 0;
    let context: ContextResult;
    for (;;) {
      context = await buildContext({
        instructions,
        ...toolRoundsOfRun(x.steps, x.messages.messages),
        olderUnread: x.messages.olderUnread,
        truncation: run.truncation_strategy,
        contextWindow,
        maxPromptTokens: run.max_prompt_tokens === null ? null : run.max_prompt_tokens - used.prompt_tokens,
        // max_completion_tokens bounds the run's answers; it is no reserve: 100,000 of them on an 8,192-token model
        // still leaves the thread room.
        reservedCompletionTokens: Math.min(completionLeft ?? Number.POSITIVE_INFINITY, answerReserve(contextWindow)),
        toolDefinitionTokens,
        tokens,
      });
      if (context.ok || context.reason !== 'unread') break;
      await x.messages.readOlder();
    }
    if (!context.ok) {
      if (context.reason === 'max_prompt_tokens')
        return this.end(x, { type: 'incomplete', reason: 'max_prompt_tokens' });
      return this.end(x, {
        type: 'fail',
        error: {
          code: 'invalid_prompt',
          message: `The thread does not fit the model's context window of ${contextWindow} tokens, even after truncation.`,
        },
      });
    }

    // Image files are read afresh for every turn's request, and not kept: a deleted one fails the run.
    const prompt = await resolveImageFiles(context.messages, (id) => this.options.files.readAll(x.scope, id));
    if (!prompt.ok)
      return this.end(x, {
        type: 'fail',
        error: { code: 'invalid_prompt', message: notFound('file', prompt.missingFileId).message },
      });

    const turn = new ModelTurn(
      run,
      this.options.bus,
      x.serverTools,
      (offered.tools ?? []).map((t) => t.function.name),
      this.annotator(x),
      this.answerParts(x),
      (step, message) => this.storeBegun(x, step, message),
    );
    x.turn = turn;
    x.turnUsage = async () =>
      toUsage({ prompt_tokens: context.promptTokens, completion_tokens: await tokens.count(turn.outputText) });
    let reply: ModelReply;
    const maxTokens =
      completionLeft === null ? null : Math.max(1, Math.min(completionLeft, contextWindow - context.promptTokens));
    try {
      const request = this.chatRequest(x, prompt.messages, offered, maxTokens);
      const replied = this.callModel(provider, request, x.signal, turn);
      askedModel(x); // the request is on its way (the provider writes it before its first wait)
      reply = await replied;
    } catch (error) {
      if (error instanceof ProviderError && !x.signal.aborted) {
        // The operator's view of it (a wrong upstream key, a model the backend does not have): the run says it too.
        this.options.logger.warn(
          { err: error.message, code: error.code, runId: run.id, model: run.model },
          'the model backend failed; the run fails',
        );
        return this.end(x, { type: 'fail', error: providerError(error) });
      }
      throw error;
    }
    await this.options.gate?.pass(); // the turn's end is committed in turn with other beginnings and ends
    const usage = toUsage(
      reply.usage ?? { prompt_tokens: context.promptTokens, completion_tokens: await tokens.count(turn.outputText) },
    );

    // The budget is spent by the model's own count; without one, by its stopping at the max_tokens the budget set
    // (an o200k estimate of its answer may count fewer tokens than its tokenizer did).
    const hitBudget =
      reply.finish === 'length' &&
      completionLeft !== null &&
      (reply.usage ? usage.completion_tokens >= completionLeft : maxTokens === completionLeft);
    if (turn.hasToolCalls && reply.finish === 'length' && (hitBudget || turn.lastCallUnfinished)) {
      // Stopped by the token limit while it wrote its calls: the last one half-written, which neither the client nor
      // a server-side tool can execute; or the run's budget spent, so that no later turn could read the outputs.
      return this.end(
        x,
        hitBudget
          ? { type: 'incomplete', reason: 'max_completion_tokens' }
          : {
              type: 'fail',
              error: {
                code: 'server_error',
                message:
                  "The model's reply was cut off at its token limit (finish_reason: length) while it wrote its tool calls.",
              },
            },
        usage,
      );
    }
    if (turn.hasToolCalls && answerNow)
      return this.end(x, {
        type: 'fail',
        error: {
          code: 'server_error',
          message: `The model called a tool after ${this.options.maxToolRounds} rounds of tool calls in a row, when it was asked to answer and allowed no call (tool_choice: none).`,
        },
      });
    if (turn.hasToolCalls) {
      await turn.settle(x.signal); // what the annotations of a message written before the calls point at
      const made = turn.toolCallsResult(usage);
      const { earlier } = made;
      let step = made.step;
      const functions = pendingFunctionCalls(step);
      const serverCalls = pendingServerCalls(step).length > 0;
      // Nothing left to execute (every call named a function that does not exist): the model is told so next turn.
      const answered = !serverCalls && functions.length === 0;
      const completed = answered
        ? transitionStep(step, { type: 'complete', at: unixSeconds(), usage: step.turn_usage ?? ZERO_USAGE })
        : undefined;
      if (completed) step = completed.step;
      const change: Change = {
        run,
        steps: earlier ? [earlier.step, step] : [step],
        messages: earlier ? [earlier.message] : [],
        ...(completed ? { events: completed.events } : {}),
      };
      // Only functions: the client executes them. Otherwise the server-side calls run first (the loop's next step).
      const paused = !serverCalls && !answered;
      if (paused)
        Object.assign(change, {
          ...transition(run, { type: 'require_action', at: unixSeconds(), toolCalls: functions }),
          lock: RELEASED,
        });
      if (!(await this.commit(x, change))) return 'settle';
      x.turn = undefined; // committed: an ending before the next turn has no turn of its own to record
      return paused ? 'done' : 'next';
    }

    const incomplete =
      reply.finish === 'length' ? 'max_tokens' : reply.finish === 'content_filter' ? 'content_filter' : null;
    await turn.settle(x.signal);
    const answer = turn.messageResult(usage, incomplete, (message) => this.finishAnswer(x, message));
    const total = runUsage([...x.steps, answer.step]);
    const ended = hitBudget
      ? transition(run, { type: 'incomplete', at: unixSeconds(), reason: 'max_completion_tokens', usage: total })
      : transition(run, { type: 'complete', at: unixSeconds(), usage: total });
    const committed = await this.commit(x, {
      run: ended.run,
      events: [...answer.events, ...ended.events],
      steps: [answer.step],
      messages: [answer.message],
      lock: RELEASED,
    });
    return committed ? 'done' : 'settle';
  }

  /** What the run's server-side tools add to its answer (e.g. citations), each given its calls in this run. */
  private finishAnswer(x: Execution, message: Message): Message {
    let finished = message;
    for (const tool of new Set(x.serverTools.values())) {
      if (!tool.finishMessage) continue;
      const calls = callsOf(x.steps, tool.type);
      if (calls.length > 0) finished = tool.finishMessage(finished, calls);
    }
    return finished;
  }

  /** The annotator of this turn's answer: every server-side tool's that has one for it, merged in text order. */
  private annotator(x: Execution): TextAnnotator | undefined {
    const annotators: TextAnnotator[] = [];
    for (const tool of new Set(x.serverTools.values())) {
      const annotator = tool.annotator?.(callsOf(x.steps, tool.type), { scope: x.scope, run: x.run });
      if (annotator) annotators.push(annotator);
    }
    if (annotators.length <= 1) return annotators[0];
    return {
      write: (piece) => {
        for (const a of annotators) a.write(piece);
      },
      annotate: (upTo, final) =>
        annotators.flatMap((a) => a.annotate(upTo, final)).sort((a, b) => a.start_index - b.start_index),
      heldFrom: (final) => {
        const held = annotators.flatMap((a) => a.heldFrom?.(final) ?? []);
        return held.length === 0 ? undefined : Math.min(...held);
      },
      ready: () => allMade(annotators.flatMap((a) => a.ready?.() ?? [])),
      settle: async (signal) => {
        const unmade: string[] = [];
        for (const a of annotators) unmade.push(...((await a.settle?.(signal)) ?? []));
        return unmade;
      },
    };
  }

  /** What the run's server-side tools show before the text of its next message: from their calls since the last one. */
  private answerParts(x: Execution): MessageContent[] {
    const lastMessage = x.steps.findLastIndex((s) => s.type === 'message_creation');
    const since = x.steps.slice(lastMessage + 1);
    const parts: MessageContent[] = [];
    for (const tool of new Set(x.serverTools.values())) {
      const calls = tool.answerParts ? callsOf(since, tool.type) : [];
      if (calls.length > 0) parts.push(...tool.answerParts!(calls));
    }
    return parts;
  }

  /**
   * The run's instructions, followed by the notes of its server-side tools; or, when the model must answer now (too
   * many tool rounds in a row), by a note saying so.
   */
  private async instructions(x: Execution, answerNow: boolean): Promise<string> {
    const notes: string[] = [];
    if (answerNow)
      notes.push(
        'You have made as many rounds of tool calls in a row as this run allows: call no tool now, and answer with what the results so far show.',
      );
    else
      for (const tool of new Set(x.serverTools.values())) {
        const note = await tool.instructions?.({ scope: x.scope, run: x.run });
        if (note) notes.push(note);
      }
    return [x.run.instructions, ...notes].filter((part) => part !== '').join('\n\n');
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

  /** The functions a turn offers the model (the server-side tools', then the run's), and how it may choose. */
  private offeredTools(x: Execution): Pick<ChatRequest, 'tools' | 'tool_choice' | 'parallel_tool_calls'> {
    const { run } = x;
    const functions = [
      ...[...x.serverTools].map(([name, tool]) => ({
        type: 'function' as const,
        function: { ...tool.function, name },
      })),
      ...run.tools.flatMap((t) =>
        t.type === 'function' ? [{ type: 'function' as const, function: offered(t.function) }] : [],
      ),
    ];
    if (functions.length === 0) return {};
    const calledBefore = x.steps.some((s) => s.type === 'tool_calls');
    return {
      tools: functions,
      tool_choice: chatToolChoice(run.tool_choice, x.serverTools, calledBefore),
      ...(run.parallel_tool_calls ? {} : { parallel_tool_calls: false }),
    };
  }

  private chatRequest(
    x: Execution,
    messages: ChatRequest['messages'],
    offered: Pick<ChatRequest, 'tools' | 'tool_choice' | 'parallel_tool_calls'>,
    maxTokens: number | null,
  ): ChatRequest {
    const { run } = x;
    const request: ChatRequest = { model: run.model, messages };
    // The API's default of each (1) is not sent: the backend's own holds (a model's recommended sampling), and
    // some models refuse top_p (OpenAI's reasoning models) or top_p beside temperature (Claude's).
    if (run.temperature !== null && run.temperature !== 1) request.temperature = run.temperature;
    if (run.top_p !== null && run.top_p !== 1) request.top_p = run.top_p;
    Object.assign(request, offered);
    if (maxTokens !== null) request.max_tokens = maxTokens;
    if (typeof run.response_format === 'object') request.response_format = run.response_format;
    if (run.reasoning_effort !== null) request.reasoning_effort = run.reasoning_effort;
    return request;
  }

  /**
   * One model turn with the retry policy: 429s, 5xx, timeouts, resets and answers that are not a valid stream
   * (ProviderError.retryable) are retried with exponential backoff (or the upstream's retry-after), up to
   * `maxRetries` times, while the attempt has published nothing; anything else fails at once. Nothing of a failed
   * attempt is kept.
   */
  private async callModel(
    provider: ModelProvider,
    request: ChatRequest,
    signal: AbortSignal,
    turn: ModelTurn,
  ): Promise<ModelReply> {
    const parallel = request.parallel_tool_calls !== false;
    for (let attempt = 0; ; attempt++) {
      const reply: ModelReply = { usage: undefined, finish: undefined };
      try {
        for await (const event of provider.stream(request, signal)) {
          switch (event.type) {
            case 'reasoning':
              turn.addReasoning(event.field, event.piece);
              break;
            case 'text':
              turn.addText(event.text);
              break;
            case 'refusal':
              turn.addRefusal(event.text);
              break;
            case 'tool_call':
              turn.addToolCall(event.index, event.name, event.arguments, parallel, event.extra);
              break;
            case 'usage':
              reply.usage = event.usage;
              break;
            case 'finish':
              reply.finish = event.reason;
              break;
          }
        }
        return reply;
      } catch (error) {
        const retryable = error instanceof ProviderError && error.retryable && !turn.published;
        if (signal.aborted || !retryable || attempt >= this.options.maxRetries) throw error;
        this.options.logger.warn(
          { err: error.message, attempt, runId: turn.runId },
          'upstream attempt failed; retrying',
        );
        turn.discardUnpublished();
        await sleep(retryDelayMs(attempt, error.retryAfterMs), signal);
      }
    }
  }

  // ── server-side tools ─────────────────────────────────────────────────────────

  /**
   * Executes the server-side calls of an open tool_calls step that have no result yet, one after the other, each
   * result committed as it comes (the last one together with what follows: the step completed, or the run paused
   * for the client's functions). Each call's deltas are published while it runs: its first delta carries the
   * details `describe` gives, then whatever the tool reports, then the step's end.
   */
  private async executeServerCalls(x: Execution, open: StoredStep): Promise<'next' | 'done' | 'settle'> {
    x.turn = undefined;
    let step = open;
    const pending = new Set(pendingServerCalls(step));
    const last = Math.max(...pending);
    const details = (step.step_details as { tool_calls: ToolCallDetails[] }).tool_calls;
    const kinds = details.map((d) => d.type !== 'function');
    // What a client attaching now is shown (announcedCalls): the calls the model turn streamed as it wrote them, then
    // each call as its turn comes.
    const live = { step, announced: 0 };
    for (const [index, server] of kinds.entries()) {
      if (server && !x.serverTools.get(modelCall(step, index).name)?.inputReader) break;
      live.announced = index + 1;
      if (server) break;
    }
    this.options.bus.setLiveTurn(x.run.id, {
      get step() {
        return announcedCalls(live.step, live.announced);
      },
      message: undefined,
    });
    // In the order of the calls: a call the model turn held (after a server-side one) is published as its turn comes,
    // so that each call's deltas are contiguous (streamsAsWritten).
    for (const [index, server] of kinds.entries()) {
      const held = !streamsAsWritten(kinds.slice(0, index));
      live.announced = Math.max(live.announced, index + 1);
      if (!server) {
        if (held) this.publishHeldFunction(x, step, index, details[index] as FunctionToolCallDetails);
        continue;
      }
      if (!pending.has(index)) continue;
      const call = modelCall(step, index);
      const tool = x.serverTools.get(call.name);
      if (!tool)
        return this.end(x, {
          type: 'fail',
          error: { code: 'server_error', message: `The tool '${call.name}' is not available on this server.` },
        });
      const result = await this.executeCall(x, step, index, tool, call, held);
      if (result === 'done' || result === 'settle') return result; // the tool's failure ended the run
      step = withCallResult(step, index, result);
      live.step = step;
      if (index < last && !(await this.commit(x, { run: x.run, steps: [step] }))) return 'settle';
    }

    const functions = pendingFunctionCalls(step);
    if (functions.length > 0) {
      const paused = transition(x.run, { type: 'require_action', at: unixSeconds(), toolCalls: functions });
      return (await this.commit(x, { ...paused, steps: [step], lock: RELEASED })) ? 'done' : 'settle';
    }
    const completed = transitionStep(step, {
      type: 'complete',
      at: unixSeconds(),
      usage: step.turn_usage ?? ZERO_USAGE,
    });
    return (await this.commit(x, { run: x.run, steps: [completed.step], events: completed.events }))
      ? 'next'
      : 'settle';
  }

  /**
   * A function call the model turn held (streamsAsWritten), published as the turn would have: its shape with empty
   * arguments, then its arguments. The SDK's AssistantStream shows a call's first delta only as `toolCallCreated`;
   * what the call carries is shown as `toolCallDelta`s, from the second delta on.
   */
  private publishHeldFunction(x: Execution, step: StoredStep, index: number, call: FunctionToolCallDetails): void {
    this.publishToolDelta(x, step, index, { ...call, function: { ...call.function, arguments: '' } });
    const { arguments: args } = call.function;
    if (args !== '') this.publishToolDelta(x, step, index, { type: 'function', function: { arguments: args } });
  }

  /** A delta of the call at `index` of a tool_calls step. */
  private publishToolDelta(x: Execution, step: StoredStep, index: number, delta: object): void {
    this.options.bus.publish(x.run.thread_id, x.run.id, {
      event: 'thread.run.step.delta',
      data: {
        id: step.id,
        object: 'thread.run.step.delta',
        delta: { step_details: { type: 'tool_calls', tool_calls: [{ index, ...delta }] } },
      },
    } as RunStreamEvent);
  }

  /**
   * One server-side call's result, or how the run's failure by it was recorded. An abort propagates. `held`: the
   * model turn published nothing of it (streamsAsWritten).
   */
  private async executeCall(
    x: Execution,
    step: StoredStep,
    index: number,
    tool: ServerTool,
    call: ModelToolCall,
    held: boolean,
  ): Promise<ToolResult | 'done' | 'settle'> {
    const invocation = { id: call.id, arguments: call.arguments };
    const described = tool.describe(invocation, x.run);
    const publishDelta = (delta: object) => this.publishToolDelta(x, step, index, { type: tool.type, ...delta });
    // A call whose input is shown as it is written (ServerTool.inputReader) gets, if the model turn streamed it, only
    // what that left out; if the turn held it, its shape with an empty input and then its input, as the turn would
    // have sent them (the SDK shows a call's first delta only as `toolCallCreated`, not as a `toolCallDelta`).
    let streamedInput: string | undefined;
    if (tool.inputReader && held) {
      publishDelta(tool.describe({ id: call.id, arguments: '' }, x.run));
      streamedInput = '';
    } else streamedInput = tool.inputReader?.()(call.arguments);
    if (streamedInput === undefined) publishDelta(described);
    else {
      const input = described.type === 'code_interpreter' ? described.code_interpreter.input : '';
      if (input.length > streamedInput.length && input.startsWith(streamedInput))
        publishDelta({ [tool.type]: { input: input.slice(streamedInput.length) } });
    }
    const calls = callsOf([...x.steps.filter((s) => s.id !== step.id), withCalls(step, index)], tool.type);
    try {
      return await tool.execute(invocation, {
        scope: x.scope,
        run: x.run,
        signal: x.signal,
        calls,
        contextTokensLeft: await this.contextTokensLeft(x.run, step, index),
        progress: (delta) => publishDelta(delta),
      });
    } catch (error) {
      if (x.signal.aborted || error instanceof DatabaseUnavailable) throw error;
      if (error instanceof ToolError) return { details: described, output: `Error: ${error.message}` };
      if (error instanceof ToolRunFailure)
        return this.end(x, { type: 'fail', error: { code: error.code, message: error.message } });
      this.options.logger.error({ err: error, runId: x.run.id, tool: tool.type }, 'a server-side tool failed');
      return this.end(x, {
        type: 'fail',
        error: { code: 'server_error', message: `The ${tool.type} tool failed while executing call ${call.id}.` },
      });
    }
  }

  /**
   * The context window's tokens not yet used when a server-side call starts: the window, less the prompt and the
   * completion of the turn that made the call (as the upstream reported them, or as estimated) and the outputs of
   * the calls before it in the same turn. Undefined when the run's model has no backend.
   */
  private async contextTokensLeft(run: Run, step: StoredStep, index: number): Promise<number | undefined> {
    const provider = this.options.router.resolve(run.model);
    if (!provider) return undefined;
    let tokens: TokenCounter;
    try {
      tokens = await this.tokenCounter(provider);
    } catch {
      tokens = O200K;
    }
    const turn = step.turn_usage;
    let used = turn ? turn.prompt_tokens + turn.completion_tokens : 0;
    const calls = step.model_calls ?? [];
    for (const call of calls.slice(0, calls.indexOf(modelCall(step, index))))
      used += await tokens.count(call.output ?? '');
    return Math.max(0, provider.contextWindow - used);
  }

  /**
   * Stores a step the model has begun (and the message it writes), in progress, so that they can be read (retrieved,
   * listed) while it is written, as the events announcing them say they exist; the turn's end stores them finished.
   * A message the turn finished early (text before its calls) is stored so too, completed, as its events say.
   * Not waited for by the turn, which streams on; every later commit waits for it (`begun`). Written as they are
   * when they open (or as they are when they finish early, the write not yet begun), and not again until the turn
   * ends: a message's content, and a tool_calls step's calls (none yet), stay as they were then. Fenced as any
   * commit, and left unwritten when that or the database fails: the turn's end, or the run's, stores them all the
   * same. The writes go one after the other; what begins while one waits for the write before it joins it (a
   * message finished early, and the step of the calls that ended it, are one write).
   */
  private storeBegun(x: Execution, step: StoredStep, message: Message | undefined): void {
    const { store, logger } = this.options;
    // Copies: the turn goes on changing its own.
    const copy = message && { ...message, content: [...message.content] };
    if (x.nextBegun) {
      x.nextBegun.steps = withReplaced(x.nextBegun.steps, { ...step });
      if (copy) x.nextBegun.messages = withReplaced(x.nextBegun.messages, copy);
      return;
    }
    const next = { steps: [{ ...step }], messages: copy ? [copy] : [] };
    x.nextBegun = next;
    const previous = x.begun;
    const expect = { status: x.run.status, lockedBy: x.workerId };
    const run = x.run;
    const write = async () => {
      await previous;
      if (x.nextBegun === next) x.nextBegun = undefined;
      if (await store.commitRun(x.scope, { run, expect, ...next }))
        for (const finished of next.messages)
          if (finished.status !== 'in_progress') x.finished.set(finished.id, finished);
    };
    x.begun = write().catch((error: unknown) => {
      logger.debug({ err: error, runId: x.run.id }, 'a step begun was not stored before its end');
    });
    this.options.bus.writing(x.run.thread_id, x.begun);
  }

  // ── endings ───────────────────────────────────────────────────────────────────

  /**
   * Ends the run now (run-ending.ts), with whatever the current model turn has produced: its usage as reported, when
   * the turn has ended, else estimated (`turnUsage`).
   */
  private async end(x: Execution, ending: RunEnding, turnUsage?: Usage): Promise<'done' | 'settle'> {
    const at = unixSeconds();
    const turn = x.turn && { ...x.turn.soFar, usage: turnUsage ?? (await x.turnUsage?.()) };
    const ended = endRun(x.run, x.steps, ending, at, turn);
    // Kept until committed: an ending refused by its fence (a cancel came first) is made again with it, or the turn's
    // message, stored as it began, would be taken for a dead turn's and deleted.
    if (!(await this.commit(x, { ...ended, lock: RELEASED, discardBegun: true }))) return 'settle';
    x.turn = undefined;
    return 'done';
  }

  /** The execution was told to stop: record what that means for the run. */
  private async stopped(x: Execution, reason: StopReason) {
    try {
      if (reason === 'cancel') return await this.finishCancel(x);
      if (reason === 'expire') return await this.finishExpiry(x);
      if (reason === 'shutdown') return await this.settle(x);
      // 'lease_lost': another worker has it, or the run is gone (deleted where the word has not arrived from);
      // 'delete': it went with its thread.
      if (reason === 'lease_lost') await this.current(x).catch(() => undefined); // unreadable now: taken over, then
    } catch (error) {
      this.options.logger.error({ err: error, runId: x.run.id }, 'could not record a stopped run');
    }
  }

  /**
   * After a fence failed or the execution stopped: look at the run as it is now. A cancel this worker was left to
   * finish is finished; a run still held but not finished is handed back for another attempt.
   */
  private async settle(x: Execution): Promise<void> {
    const run = await this.current(x);
    if (!run) return;
    x.run = run;
    if (run.status === 'cancelling') return this.finishCancel(x);
    if (run.status === 'in_progress' || run.status === 'queued') await this.commit(x, { run, lock: RELEASED });
  }

  /**
   * in_progress → expired, keeping what the current turn produced (its message `incomplete`, `run_expired`), as a
   * cancel does. A run the sweeper has expired already, or one cancelled meanwhile, is left to that ending.
   */
  private async finishExpiry(x: Execution): Promise<void> {
    const run = await this.current(x);
    if (!run) return;
    x.run = run;
    if (run.status === 'cancelling') return this.finishCancel(x);
    if (run.status !== 'in_progress') return;
    x.steps = await this.options.store.runSteps(x.scope, run.id);
    await this.end(x, { type: 'expire' });
  }

  /**
   * The run as the database holds it now, or undefined when it is gone: its thread was deleted, by a process whose
   * word (RunEventBus.runsDeleted) has not reached this one, or never will (a signal lost while its listener
   * reconnected). Its streams then end as that word would end them, not as interrupted: the run does not go on.
   */
  private async current(x: Execution): Promise<Run | undefined> {
    const run = await this.options.store.getRun(x.scope, x.run.thread_id, x.run.id);
    if (!run) {
      x.ended = true;
      this.options.bus.publish(x.run.thread_id, x.run.id, runDeletedEvent(x.run.thread_id, x.run.id));
    }
    return run;
  }

  /** cancelling → cancelled, keeping what the current turn produced (its message `incomplete`, `run_cancelled`). */
  private async finishCancel(x: Execution): Promise<void> {
    const run = await this.current(x);
    if (run?.status !== 'cancelling') return;
    x.run = run;
    x.steps = await this.options.store.runSteps(x.scope, run.id);
    await this.end(x, { type: 'confirm_cancel' });
  }

  private async failUnexpectedly(x: Execution, error: unknown) {
    if (error instanceof DatabaseUnavailable) {
      // Not the run's failure: it is handed back for another attempt if the database is back already, and otherwise
      // its lease lapses and a worker takes it again once the database is back.
      this.options.logger.warn({ err: error.message, runId: x.run.id }, 'a run is left for another attempt');
      return this.settle(x).catch(() => {});
    }
    this.options.logger.error({ err: error, runId: x.run.id }, 'run execution failed unexpectedly');
    try {
      const run = await this.options.store.getRun(x.scope, x.run.thread_id, x.run.id);
      if (run && (run.status === 'queued' || run.status === 'in_progress')) {
        x.run = run;
        x.steps = await this.options.store.runSteps(x.scope, run.id);
        // A server error made to be shown (a file's bytes missing from storage) says what went wrong; others do not.
        const message =
          error instanceof ApiError && error.type === 'server_error'
            ? error.message
            : 'The run failed because of an internal error in the server.';
        await this.end(x, { type: 'fail', error: { code: 'server_error', message } });
      }
    } catch (inner) {
      this.options.logger.error({ err: inner, runId: x.run.id }, 'could not record the failure of a run');
    }
  }

  /**
   * Commits a change fenced on the run's status and this worker's lease, then publishes its events. Keeps the
   * execution's view (run, steps, messages) in step with what was committed; false when the fence failed.
   */
  private async commit(x: Execution, change: Change): Promise<boolean> {
    if (x.begun) await x.begun;
    x.begun = undefined;
    const commit: RunCommit = {
      run: change.run,
      expect: { status: x.run.status, lockedBy: x.workerId },
      ...(change.lock ? { lock: change.lock } : {}),
      steps: change.steps ?? [],
      messages: await this.unfinished(x, change.messages ?? []),
      ...(change.discardBegun ? { discardBegun: true } : {}),
    };
    // A database that went away (a restart, a failover) is waited for, so that a model's answer is kept rather than
    // asked again; as long as a lease lasts, after which another worker may take the run over. Trying again repeats
    // the same upserts under the same fence: a commit that was applied before its connection was lost is applied
    // again to the same effect, or refused by its fence if it changed the run's status: then what the run holds
    // says whether it was this commit (applied).
    let lost = false;
    const ends = RUN_STREAM_END.has(`thread.run.${change.run.status}`);
    let committed: Run | undefined;
    let gaveUp: unknown;
    try {
      committed = await whileUnavailable(
        () =>
          this.options.store.commitRun(x.scope, commit).catch((error: unknown) => {
            // A connection lost under it: applied or not, none can say. (No room or a lock: not applied.)
            lost ||= error instanceof DatabaseUnavailable && !(error instanceof StorageFull);
            throw error;
          }),
        Date.now() + this.options.leaseMs,
        x.signal,
      );
    } catch (error) {
      // Given up (the lease's time is over, or the execution was stopped as having lost its lease): an ending commit
      // whose answer was lost may have been applied all the same. Then the renewal of the lease that stopped it found
      // the run released by this very commit, and the run is over: its streams end as it does, not as interrupted.
      if (!(lost && ends && error instanceof DatabaseUnavailable && interrupts(x.signal))) throw error;
      gaveUp = error;
    }
    const stored = committed ?? (lost && ends ? await this.applied(x, change) : undefined);
    if (!stored && gaveUp) throw gaveUp;
    if (!stored) return false;
    x.run = stored;
    x.ended = ends;
    if (change.discardBegun) {
      const dead = new Set(uncommittedTurn(x.steps));
      x.steps = x.steps.filter((s) => !dead.has(s));
    }
    for (const step of change.steps ?? []) {
      const at = x.steps.findIndex((s) => s.id === step.id);
      if (at >= 0) x.steps[at] = step;
      else x.steps.push(step);
    }
    x.messages?.add((change.messages ?? []).filter((m) => m.status !== 'in_progress'));
    if (change.events) this.options.bus.publishAll(x.run.thread_id, x.run.id, asCommitted(change.events, stored));
    return true;
  }

  /**
   * The messages a commit writes: not one the turn stored finished early (`finished`) and carries unchanged; one it
   * changed since (an annotation whose file could not be made, taken out) as the client left it, with the metadata
   * it set meanwhile, or not at all if the client deleted it.
   */
  private async unfinished(x: Execution, messages: readonly Message[]): Promise<Message[]> {
    const written: Message[] = [];
    for (const message of messages) {
      const early = x.finished.get(message.id);
      if (!early) written.push(message);
      else if (!isDeepStrictEqual(early, message)) {
        const stored = await this.options.store.getMessage(x.scope, message.thread_id, message.id);
        if (stored) written.push({ ...message, metadata: stored.metadata });
      }
    }
    return written;
  }

  /**
   * Whether `change`, a commit that ends or pauses the run refused by its fence after an attempt whose connection
   * was lost, is what the run holds: that attempt was applied, and only its answer was lost. The run is as it wrote
   * it, and so are its steps. (A commit that leaves the run in progress is refused when another worker took the run
   * over after its lease: that one goes on with it. An ended or paused run is taken over by none.) The run as stored
   * when it was, else undefined.
   */
  private async applied(x: Execution, change: Change): Promise<Run | undefined> {
    const { store } = this.options;
    try {
      const [run, steps] = await Promise.all([
        store.getRun(x.scope, x.run.thread_id, x.run.id),
        store.runSteps(x.scope, x.run.id),
      ]);
      const stored = new Map(steps.map((step) => [step.id, step]));
      // All but its metadata, which modify run may have changed meanwhile and no commit writes.
      const same =
        run !== undefined &&
        isDeepStrictEqual({ ...run, metadata: null }, { ...change.run, metadata: null }) &&
        (change.steps ?? []).every((step) => isDeepStrictEqual(stored.get(step.id), step));
      return same ? run : undefined;
    } catch {
      return undefined; // unknown: as refused
    }
  }
}

/**
 * Whether an execution that stopped short of the run's end or pause leaves its streams interrupted. A shutdown and
 * a deletion end them with their own `error` event; a cancel or an expiry is ended (and announced) by whoever made
 * it.
 */
function interrupts(signal: AbortSignal): boolean {
  return !signal.aborted || signal.reason === 'lease_lost';
}

/**
 * A function of the run as the model is offered it: with parameters (llama.cpp's server refuses a function without
 * them, which OpenAI took, and filled in), and without a `strict` of null (a Python program's dump of its tool).
 */
function offered({ strict, ...fn }: FunctionDefinition): FunctionDefinition {
  return { ...fn, parameters: fn.parameters ?? NO_PARAMETERS, ...(typeof strict === 'boolean' ? { strict } : {}) };
}

/**
 * The run's tool_choice as a model turn is asked with it. `none` and `auto` hold for every turn; a choice that forces
 * a call (`required`, a named tool) holds until the model has called tools in this run — the API's "must call one or
 * more tools before responding to the user" — and the turns after are `auto`: forced on every turn, a model that obeys
 * would call a server-side tool again and again until the run expires, or ask the client for its function forever.
 * A server-side tool is named as the function it is offered as.
 */
function chatToolChoice(
  choice: Run['tool_choice'],
  serverTools: ReadonlyMap<string, ServerTool>,
  calledBefore: boolean,
): ChatToolChoice {
  if (choice === 'none' || choice === 'auto') return choice;
  if (calledBefore) return 'auto';
  if (typeof choice === 'string' || choice.type === 'function') return choice as ChatToolChoice;
  for (const [name, tool] of serverTools)
    if (tool.type === choice.type) return { type: 'function', function: { name } };
  return 'auto';
}

/** The server-side calls of a tool_calls step that have no result yet, by index. */
function pendingServerCalls(step: StoredStep): number[] {
  if (step.step_details.type !== 'tool_calls' || !step.model_calls) return [];
  return step.step_details.tool_calls.flatMap((d, i) =>
    d.type !== 'function' && modelCall(step, i).output === null ? [i] : [],
  );
}

/**
 * The model's side of the call a tool_calls step shows at `index`. The model's calls are all of its calls, in the
 * order written; the step shows those of the run's tools only (ModelTurn: a stray call is answered, never shown).
 */
function modelCall(step: StoredStep, index: number): ModelToolCall {
  const shown = (step.step_details as { tool_calls: ToolCallDetails[] }).tool_calls[index]!;
  return step.model_calls!.find((call) => call.id === shown.id)!;
}

/** The client's function calls of a tool_calls step that have no output yet: what `requires_action` asks for. */
function pendingFunctionCalls(step: StoredStep): RunToolCall[] {
  if (step.step_details.type !== 'tool_calls') return [];
  return step.step_details.tool_calls.flatMap((d) =>
    d.type === 'function' && d.function.output === null
      ? [{ id: d.id, type: 'function' as const, function: { name: d.function.name, arguments: d.function.arguments } }]
      : [],
  );
}

/**
 * How many tool_calls steps the run has made in a row without the client: counted back from its last step, up to one
 * that called a function of the client's (the client's outputs are a round it took part in).
 */
function toolRoundsInARow(steps: readonly StoredStep[], run: Run): number {
  const clientFunctions = new Set(run.tools.flatMap((t) => (t.type === 'function' ? [t.function.name] : [])));
  let rounds = 0;
  for (let i = steps.length - 1; i >= 0; i--) {
    const details = steps[i]!.step_details;
    if (details.type !== 'tool_calls') continue; // a message the model wrote before its calls
    if (details.tool_calls.some((d) => d.type === 'function' && clientFunctions.has(d.function.name))) break;
    rounds++;
  }
  return rounds;
}

/** The server-side calls of `type` in these steps, in order. */
function callsOf(steps: readonly StoredStep[], type: ServerTool['type']): ToolCallDetails[] {
  return steps.flatMap((s) =>
    s.step_details.type === 'tool_calls' ? s.step_details.tool_calls.filter((c) => c.type === type) : [],
  );
}

/** The step with only its calls before `index` (the ones a call at `index` comes after). */
function withCalls(step: StoredStep, index: number): StoredStep {
  if (step.step_details.type !== 'tool_calls') return step;
  return { ...step, step_details: { type: 'tool_calls', tool_calls: step.step_details.tool_calls.slice(0, index) } };
}

function withCallResult(step: StoredStep, index: number, result: ToolResult): StoredStep {
  if (step.step_details.type !== 'tool_calls') return step;
  const details: ToolCallDetails[] = step.step_details.tool_calls.map((d, i) => (i === index ? result.details : d));
  const id = modelCall(step, index).id;
  const calls = (step.model_calls ?? []).map((c) => (c.id === id ? { ...c, output: result.output } : c));
  return { ...step, step_details: { type: 'tool_calls', tool_calls: details }, model_calls: calls };
}

function providerError(error: ProviderError): RunError {
  return { code: error.code, message: error.message };
}

/** The context a turn's prompt leaves free for the answer: an eighth of the window, at most 4,096 tokens. */
function answerReserve(contextWindow: number): number {
  return Math.min(4096, Math.floor(contextWindow / 8));
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

/**
 * Tells whoever waits for the execution's first model request that it has been sent (once). Node writes a request
 * made on a kept-alive connection in a `nextTick` queued as the request was made: this one, queued after it, comes
 * once the request is written.
 */
function askedModel(x: Execution): void {
  const asked = x.asked;
  x.asked = undefined;
  if (asked) process.nextTick(asked);
}

/** `list` with `item` in the place of the one of its id, or after them all. */
function withReplaced<T extends { id: string }>(list: readonly T[], item: T): T[] {
  const at = list.findIndex((other) => other.id === item.id);
  return at === -1 ? [...list, item] : list.with(at, item);
}
