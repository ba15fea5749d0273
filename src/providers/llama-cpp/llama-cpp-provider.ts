/**
 * ModelProvider for a GGUF model run in this process by llama.cpp (node-llama-cpp), on the CPU. The only place that
 * knows node-llama-cpp's chat API: it renders the request through the model's own chat template (node-llama-cpp's
 * chat wrapper for it, which also knows the model's function-calling syntax), streams the text, and maps function
 * calls, grammars, stop reasons and failures to ChatEvents and ProviderErrors.
 *
 * One generation at a time per model (a FIFO queue): CPU threads are the limit, and parallel sequences would only
 * share them. A request waits its turn; aborting it while it waits takes it out of the queue. Consecutive
 * requests reuse the evaluated prefix that their prompts share (the KV cache of one context sequence), so a run's
 * turn after its tool outputs evaluates only the new tokens.
 */
import { randomInt } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type {
  ChatHistoryItem,
  ChatModelFunctions,
  ChatWrapper,
  Llama,
  LlamaChat,
  LlamaChatResponse,
  LlamaContext,
  LlamaGrammar,
  LlamaModel,
} from 'node-llama-cpp';
import type { Logger } from 'pino';
import { DEFAULT_GGUF_CONTEXT_SIZE, type GgufRouteConfig } from '../../models-config.ts';
import { type ChatEvent, type ChatRequest, type FinishReason, type ModelProvider, ProviderError } from '../provider.ts';
import { toChatHistory } from './chat-history.ts';
import { forcingFunctionCall } from './forced-function-call.ts';
import { finiteNumbers, toGrammarSchema } from './json-schema.ts';
import { type LlamaRuntime, llamaRuntime } from './llama-runtime.ts';

/**
 * How a request's tokens are sampled: the API's defaults (temperature 1, top_p 1, the whole vocabulary), not
 * node-llama-cpp's (top-k 40 and top-p 0.95 whenever the temperature is above 0), and a seed of its own: node-llama-cpp
 * seeds each generation with the current second, so requests started in the same second sampled alike.
 */
export function samplingOf(request: Pick<ChatRequest, 'temperature' | 'top_p'>): {
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
} {
  return {
    temperature: request.temperature ?? 1,
    topK: 0,
    topP: request.top_p ?? 1,
    seed: randomInt(2 ** 31),
  };
}

/** The model file cannot be used; the message says why, for the startup error. */
export class GgufLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GgufLoadError';
  }
}

interface Loaded {
  runtime: LlamaRuntime;
  model: LlamaModel;
  chatWrapper: ChatWrapper;
}

/** One context sequence, and two views of it: `chat` lets the model choose, `forcedChat` makes it call a function. */
interface Session {
  context: LlamaContext;
  chat: LlamaChat;
  forcedChat: LlamaChat;
}

/**
 * Thrown (through node-llama-cpp, from the context-shift size it asks for) when a generation has filled the context
 * window. node-llama-cpp would shift the context, dropping the oldest messages of the prompt it was asked to answer,
 * or fail with "The context size is too small…" when what it is generating fills the window alone (a long batch of
 * function calls). The answer is cut there instead, as a cut by `max_tokens` is: finish `length`.
 */
class ContextWindowFull extends Error {
  constructor() {
    super('the generation filled the context window');
    this.name = 'ContextWindowFull';
  }
}

export class LlamaCppProvider implements ModelProvider {
  readonly contextWindow: number;
  /** When the file was last modified (seconds), as GET /v1/models reports `created`. */
  readonly createdAt: number;
  private readonly loaded: Loaded;
  private readonly threads: number;
  private readonly logger: Logger;
  private session: Promise<Session> | undefined;
  private queue: Promise<void> = Promise.resolve();
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  /** toolTokens by the functions' JSON: an assistant's tools repeat in every run. */
  private readonly toolTokensOf = new Map<string, number>();

  private constructor(loaded: Loaded, contextWindow: number, threads: number, createdAt: number, logger: Logger) {
    this.loaded = loaded;
    this.contextWindow = contextWindow;
    this.threads = threads;
    this.createdAt = createdAt;
    this.logger = logger;
  }

  /**
   * Loads the model (memory-mapped: the weights are read as they are used) and its chat template. Throws
   * GgufLoadError when the file is not a usable GGUF model.
   */
  static async open(route: GgufRouteConfig, logger: Logger): Promise<LlamaCppProvider> {
    const runtime = await llamaRuntime(logger);
    const { lib, llama } = runtime;
    const started = performance.now();
    try {
      // The header first: it names what is wrong with a file that is not GGUF at all.
      await lib.readGgufFileInfo(route.path, { readTensorInfo: false, logWarnings: false });
    } catch (error) {
      throw new GgufLoadError(`${route.path} is not a GGUF model file: ${(error as Error).message}`);
    }
    let model: LlamaModel;
    try {
      model = await llama.loadModel({ modelPath: route.path, gpuLayers: 0 });
    } catch (error) {
      const why = runtime.recentProblems().join('; ');
      throw new GgufLoadError(
        `${route.path} cannot be loaded (truncated or corrupt?): ${(error as Error).message}${why ? ` (llama.cpp: ${why})` : ''}`,
      );
    }
    const chatWrapper = lib.resolveChatWrapper(model);
    const contextWindow = route.contextSize ?? Math.min(model.trainContextSize, DEFAULT_GGUF_CONTEXT_SIZE);
    const { mtimeMs } = await stat(route.path);
    logger.info(
      {
        model: route.path,
        chatWrapper: chatWrapper.wrapperName,
        contextSize: contextWindow,
        threads: route.threads,
        ms: Math.round(performance.now() - started),
      },
      'GGUF model loaded',
    );
    return new LlamaCppProvider(
      { runtime, model, chatWrapper },
      contextWindow,
      route.threads,
      Math.floor(mtimeMs / 1000),
      logger,
    );
  }

  /** The model's own tokenizer, for truncation. */
  async tokenizer(): Promise<(text: string) => number> {
    const { model } = this.loaded;
    return (text) => model.tokenize(text, false).length;
  }

  /**
   * What the functions of `request` add to the prompt, exactly: the chat template renders their documentation into
   * it (a preamble, and each function's signature and description), counted here with and without them.
   */
  async toolTokens(request: Pick<ChatRequest, 'tools' | 'tool_choice'>): Promise<number> {
    const functions = this.functionsFor(request);
    if (!functions) return 0;
    const key = JSON.stringify(functions);
    let tokens = this.toolTokensOf.get(key);
    if (tokens === undefined) {
      const { model, chatWrapper } = this.loaded;
      const chatHistory: ChatHistoryItem[] = [
        { type: 'user', text: '' },
        { type: 'model', response: [] },
      ];
      const rendered = (availableFunctions: ChatModelFunctions | undefined) =>
        chatWrapper
          .generateContextState({ chatHistory, availableFunctions, documentFunctionParams: true })
          .contextText.tokenize(model.tokenizer).length;
      tokens = Math.max(0, rendered(functions) - rendered(undefined));
      if (this.toolTokensOf.size >= MAX_CACHED_GRAMMARS)
        this.toolTokensOf.delete(this.toolTokensOf.keys().next().value!);
      this.toolTokensOf.set(key, tokens);
    }
    return tokens;
  }

  async close(): Promise<void> {
    // A stopped request's generation may still be winding down (it ends at its next token): let it, then free.
    await this.queue;
    const session = await this.session?.catch(() => undefined);
    await session?.context.dispose();
    await this.loaded.model.dispose();
  }

  async *stream(request: ChatRequest, signal: AbortSignal): AsyncGenerator<ChatEvent> {
    signal.throwIfAborted();
    const events: ChatEvent[] = [];
    let wake: (() => void) | undefined;
    let settled = false;
    let failure: unknown;
    const push = (event: ChatEvent) => {
      events.push(event);
      wake?.();
    };
    // Ends the generation when the consumer stops early, and wakes the consumer at once on the caller's abort.
    const stop = new AbortController();
    const onAbort = () => {
      stop.abort(signal.reason);
      wake?.();
    };
    signal.addEventListener('abort', onAbort, { once: true });

    const generation = this.inTurn(stop.signal, () => this.generate(request, stop.signal, push)).then(
      () => {
        settled = true;
        wake?.();
      },
      (error: unknown) => {
        failure = error;
        settled = true;
        wake?.();
      },
    );
    try {
      while (true) {
        if (signal.aborted) throw signal.reason;
        const event = events.shift();
        if (event) {
          yield event;
          continue;
        }
        if (settled) break;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
      if (failure !== undefined) throw this.toProviderError(failure, signal);
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (!settled) stop.abort(signal.aborted ? signal.reason : new Error('stream closed by its consumer'));
      // The next request's turn starts when this generation has stopped; nobody waits for it here.
      void generation;
    }
  }

  /** Runs `task` when the requests before it are done; leaves the queue at once if `signal` aborts first. */
  private async inTurn(signal: AbortSignal, task: () => Promise<void>): Promise<void> {
    const previous = this.queue;
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.queue = previous.then(() => mine);
    try {
      await new Promise<void>((resolve, reject) => {
        if (signal.aborted) return reject(signal.reason);
        const onAbort = () => reject(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        previous.then(() => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    } catch (error) {
      previous.then(release);
      throw error;
    }
    try {
      signal.throwIfAborted();
      await task();
    } finally {
      release();
    }
  }

  private openSession() {
    this.session ??= (async () => {
      const { runtime, model, chatWrapper } = this.loaded;
      const context = await model.createContext({
        contextSize: this.contextWindow,
        threads: this.threads,
        sequences: 1,
      });
      const contextSequence = context.getSequence();
      // Both share the one sequence (its KV cache); the queue lets only one of them generate at a time.
      const chat = new runtime.lib.LlamaChat({ contextSequence, chatWrapper });
      const forcedChat = new runtime.lib.LlamaChat({
        contextSequence,
        chatWrapper: forcingFunctionCall(chatWrapper, runtime.lib),
      });
      return { context, chat, forcedChat };
    })();
    this.session.catch(() => {
      this.session = undefined;
    });
    return this.session;
  }

  private async generate(request: ChatRequest, signal: AbortSignal, push: (event: ChatEvent) => void) {
    const { model, chatWrapper } = this.loaded;
    const session = await this.openSession();
    const functions = this.functionsFor(request);
    // `required` and a named function (then the only one offered) promise a call: the model is given no other way.
    const forced =
      functions !== undefined && (request.tool_choice === 'required' || typeof request.tool_choice === 'object');
    const chat = forced ? session.forcedChat : session.chat;
    // Generated tokens, as the sequence meters them: every token the model produced for this request, including a
    // function call's and a discarded first attempt's (see below).
    const meter = chat.sequence.tokenMeter.getState();
    const completionTokens = () => chat.sequence.tokenMeter.diff(meter).usedOutputTokens;
    const history = toChatHistory(request.messages);
    // A forced call is never a text answer: the answer's format has nothing to constrain.
    const grammar = forced ? undefined : await this.grammarFor(request);

    // The prompt as the chat template renders it, counted with the model's tokenizer (a history that does not end
    // in a model response gets an empty one to generate into, as LlamaChat does).
    const rendered: ChatHistoryItem[] =
      history.at(-1)?.type === 'model' ? history : [...history, { type: 'model', response: [] }];
    const promptTokens = chatWrapper
      .generateContextState({ chatHistory: rendered, availableFunctions: functions, documentFunctionParams: true })
      .contextText.tokenize(model.tokenizer).length;
    // Truncation estimated the prompt with the same tokenizer, template aside; a prompt that still fills the window
    // is said plainly (llama.cpp's own context shift would fail with a riddle, or drop what it chooses).
    if (promptTokens >= this.contextWindow)
      throw new ProviderError(
        'invalid_prompt',
        `The prompt (${promptTokens} tokens) does not fit the model's context window of ${this.contextWindow} tokens.`,
        { retryable: false },
      );

    const sampling = {
      // Without a budget, at most what is left of the context: a model that never emits its end-of-turn token would
      // otherwise generate forever, shifting its context along.
      maxTokens: Math.max(
        1,
        Math.min(request.max_tokens ?? Number.POSITIVE_INFINITY, this.contextWindow - promptTokens),
      ),
      ...samplingOf(request),
      // maxTokens counts only the tokens the model generates; the syntax of function calls that node-llama-cpp writes
      // into the context itself (and a batch of calls, rendered again for each next call) does not count, and can
      // fill the window first. The generation ends there, never shifting the context (see ContextWindowFull).
      contextShift: {
        size: (): number => {
          throw new ContextWindowFull();
        },
      },
    };
    const onTextChunk = (chunk: string) => {
      if (chunk !== '') push({ type: 'text', text: chunk });
    };
    // Each function call as it is complete. The calls of one generation are one batch, handed back together: a
    // template that writes calls in parallel lets the model go on calling until it ends the batch, or the window is
    // full, and then the batch holds the calls completed so far (a call cut off is dropped).
    const calls: { name: string; arguments: string }[] = [];
    const calling = {
      functions,
      documentFunctionParams: true,
      ...(request.parallel_tool_calls === false ? { maxParallelFunctionCalls: 1 } : {}),
      onFunctionCall: (call: { functionName: string; params: unknown }) => {
        calls.push({ name: call.functionName, arguments: JSON.stringify(call.params ?? {}) });
      },
    };

    let stopReason: LlamaChatResponse['metadata']['stopReason'];
    try {
      if (!functions) {
        stopReason = (
          await chat.generateResponse(history, { ...sampling, ...(grammar ? { grammar } : {}), signal, onTextChunk })
        ).metadata.stopReason;
      } else if (grammar) {
        // A grammar and functions cannot constrain one generation together. First let the model choose: a
        // function call is taken as it is; the first visible text means it answers instead, and the answer is
        // generated again under the grammar (the prompt is still in the KV cache, so this costs little).
        const choosing = new AbortController();
        let answering = false;
        const result = await chat.generateResponse(history, {
          ...sampling,
          ...calling,
          signal: AbortSignal.any([signal, choosing.signal]),
          stopOnAbortSignal: true,
          onTextChunk: (chunk) => {
            if (!answering && chunk.trim() !== '') {
              answering = true;
              choosing.abort();
            }
          },
        });
        signal.throwIfAborted();
        stopReason = result.metadata.stopReason;
        if (calls.length === 0)
          stopReason = (await chat.generateResponse(history, { ...sampling, grammar, signal, onTextChunk })).metadata
            .stopReason;
      } else {
        stopReason = (await chat.generateResponse(history, { ...sampling, ...calling, signal, onTextChunk })).metadata
          .stopReason;
      }
    } catch (error) {
      if (!(error instanceof ContextWindowFull) || signal.aborted) throw error;
      stopReason = 'maxTokens';
    }
    calls.forEach((call, index) => {
      push({ type: 'tool_call', index, ...call });
    });
    push({ type: 'usage', usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens() } });
    push({ type: 'finish', reason: finishReason(stopReason, calls.length > 0) });
  }

  /** The request's function tools as node-llama-cpp functions (no handlers: a call ends the generation). */
  private functionsFor(request: Pick<ChatRequest, 'tools' | 'tool_choice'>): ChatModelFunctions | undefined {
    const choice = request.tool_choice;
    if (!request.tools?.length || choice === 'none') return undefined;
    // A named tool_choice offers only that function (and generate() makes the model call it).
    const tools =
      typeof choice === 'object'
        ? request.tools.filter((t) => t.function.name === choice.function.name)
        : request.tools;
    const functions: Record<string, ChatModelFunctions[string]> = {};
    for (const tool of tools) {
      const { name, description, parameters } = tool.function;
      const hasParams = parameters !== undefined && Object.keys(parameters).length > 0;
      functions[name] = {
        ...(description ? { description } : {}),
        ...(hasParams ? { params: toGrammarSchema(parameters) } : {}),
      };
    }
    return Object.keys(functions).length > 0 ? functions : undefined;
  }

  /** A grammar that makes the reply valid JSON (json_object) or valid for the schema (json_schema). */
  private grammarFor(request: ChatRequest): Promise<LlamaGrammar> | undefined {
    const format = request.response_format;
    if (!format || format.type === 'text') return undefined;
    const { llama } = this.loaded.runtime;
    const key = format.type === 'json_object' ? 'json' : JSON.stringify(format.json_schema.schema ?? {});
    let grammar = this.grammars.get(key);
    if (!grammar) {
      grammar =
        format.type === 'json_object'
          ? llama.getGrammarFor('json')
          : llama
              .createGrammarForJsonSchema(
                // Its type derives the output type from a literal schema; a schema known only at run time has none.
                toGrammarSchema(format.json_schema.schema ?? {}) as Parameters<Llama['createGrammarForJsonSchema']>[0],
              )
              .then((json) =>
                llama.createGrammar({
                  grammar: finiteNumbers(json.grammar),
                  stopGenerationTriggers: json.stopGenerationTriggers,
                  trimWhitespaceSuffix: json.trimWhitespaceSuffix,
                }),
              );
      grammar.catch(() => this.grammars.delete(key));
      // Schemas usually repeat (one per assistant); keep the most recent few compiled.
      if (this.grammars.size >= MAX_CACHED_GRAMMARS) this.grammars.delete(this.grammars.keys().next().value!);
      this.grammars.set(key, grammar);
    }
    return grammar;
  }

  private toProviderError(error: unknown, signal: AbortSignal): unknown {
    if (signal.aborted) return signal.reason;
    if (error instanceof ProviderError) return error;
    const message = error instanceof Error ? error.message : String(error);
    this.logger.warn({ err: error }, 'embedded model failed');
    return new ProviderError('server_error', `The embedded model failed: ${message}`, { retryable: false });
  }
}

const MAX_CACHED_GRAMMARS = 32;

/** A batch of calls cut by the budget or the window is `length`, as an upstream reports it; its calls stand. */
function finishReason(stopReason: LlamaChatResponse['metadata']['stopReason'], called: boolean): FinishReason {
  if (stopReason === 'maxTokens') return 'length';
  return called ? 'tool_calls' : 'stop';
}
