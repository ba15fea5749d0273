/**
 * ModelProvider for any OpenAI Chat Completions endpoint (OpenAI, vLLM, llama.cpp, Ollama, LiteLLM…), over a lean
 * HTTP client of its own (chat-completions-client.ts; the official SDK's types describe the wire). The only place
 * that knows the Chat Completions wire format: it builds the request body, maps streamed chunks to ChatEvents and
 * upstream failures to ProviderErrors.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type {
  ChatCompletionChunk,
  ChatCompletionCreateParamsStreaming,
  ChatCompletionMessageToolCall,
} from 'openai/resources/chat/completions';
import {
  type ChatEvent,
  type ChatMessage,
  type ChatRequest,
  type ChatTool,
  type ChatToolCall,
  type FinishReason,
  type ModelProvider,
  ProviderError,
} from '../provider.ts';
import { MAX_RETRY_AFTER_MS } from '../retry-delay.ts';
import {
  ChatCompletionsClient,
  type ChunkStream,
  isAzure,
  UpstreamConnectionError,
  UpstreamHttpError,
  UpstreamStreamError,
  upstreamMessage,
  withoutKey,
} from './chat-completions-client.ts';
import { LeadingThinking } from './leading-thinking.ts';
import { type CompletionLimitField, LearntShape } from './learnt-shape.ts';
import { objectArguments } from './object-arguments.ts';

export interface OpenAICompatibleProviderOptions {
  /** The endpoint's base URL, up to and including `/v1`. */
  baseURL: string;
  apiKey?: string | undefined;
  /** Bound on the wait for the response headers, and on the silence between two chunks of the stream. */
  timeoutMs: number;
  /** The model's context window in tokens. */
  contextWindow: number;
  /** The model name sent upstream instead of the run's, when set. */
  model?: string | undefined;
  /** The field a completion's token bound is sent in; by default completionLimitField(baseURL). */
  completionLimitField?: CompletionLimitField;
  /** The model's chat template opens its reasoning in the prompt: its content is reasoning up to `</think>`. */
  reasoningOpened?: boolean;
}

export type { CompletionLimitField } from './learnt-shape.ts';

/**
 * The field an endpoint takes a completion's token bound in: `max_completion_tokens` for OpenAI's own API and Azure
 * OpenAI, which refuse `max_tokens` for their reasoning models (o-series, gpt-5), and `max_tokens` for any other
 * endpoint (vLLM, llama.cpp, Ollama, LM Studio, LiteLLM…), which all accept it while not all know the newer name.
 */
export function completionLimitField(baseURL: string): CompletionLimitField {
  return new URL(baseURL).hostname === 'api.openai.com' || isAzure(baseURL) ? 'max_completion_tokens' : 'max_tokens';
}

export class OpenAICompatibleProvider implements ModelProvider {
  readonly contextWindow: number;
  private readonly client: ChatCompletionsClient;
  private readonly timeoutMs: number;
  private readonly model: string | undefined;
  private readonly apiKey: string | undefined;
  /** What the endpoint turned out to refuse, by model, and how requests are shaped for each from then on. */
  private readonly shapes = new Map<string, LearntShape>();
  private readonly limitField: CompletionLimitField;
  private readonly reasoningOpened: boolean;

  constructor(options: OpenAICompatibleProviderOptions) {
    this.timeoutMs = options.timeoutMs;
    this.apiKey = options.apiKey;
    this.contextWindow = options.contextWindow;
    this.model = options.model;
    this.limitField = options.completionLimitField ?? completionLimitField(options.baseURL);
    this.reasoningOpened = options.reasoningOpened ?? false;
    this.client = new ChatCompletionsClient(options.baseURL, options.apiKey ?? 'unused');
  }

  async close(): Promise<void> {
    this.client.close();
  }

  async *stream(request: ChatRequest, signal: AbortSignal): AsyncGenerator<ChatEvent> {
    signal.throwIfAborted();
    // One controller for the upstream request, aborted by the caller's signal, the idle timer, or an early exit.
    // Aborting it destroys the request, which fails whatever waits on it: the wait for the headers, or the next
    // chunk.
    const upstream = new AbortController();
    let timedOut = false;
    // One timer for the whole stream, pushed back as each chunk, or anything else of the stream, arrives (refresh,
    // not a new timer per token).
    const idleTimer = setTimeout(() => {
      timedOut = true;
      upstream.abort();
    }, this.timeoutMs);
    // Once a finish_reason came, the answer is whole: what may follow (the usage, `[DONE]`) is waited for while
    // chunks keep coming, FINISH_GRACE_MS of silence at most. Keep-alive comments do not push it back: an endpoint
    // that sends them, or nothing, after its last chunk without ever closing would hold the run for ever.
    let graceTimer: NodeJS.Timeout | undefined;
    let graceOver = false;
    const onCallerAbort = () => upstream.abort(signal.reason);
    signal.addEventListener('abort', onCallerAbort, { once: true });
    let iterator: ChunkStream | undefined;
    let chunkCount = 0;
    const failure = (error: unknown): unknown => {
      if (signal.aborted) return signal.reason;
      if (timedOut) return timeoutError(this.timeoutMs, iterator !== undefined);
      return toProviderError(error, this.apiKey);
    };

    /** The upstream's body was read to its end: nothing is left to stop. */
    let ended = false;
    let usage: ChatEvent | undefined;
    let finish: ChatEvent | undefined;
    /** Whether the stream ended with `[DONE]`; whether it gave any answer (text, a refusal, a tool call). */
    let marked = false;
    let answered = false;
    const calls = new ToolCallFragments();
    const thinking = new LeadingThinking(this.reasoningOpened);
    try {
      try {
        // A refusal of something the endpoint turned out not to take is answered by sending the request again without
        // it, at once (LearntShape), a few times at most: each time something else.
        const shape = this.shapeOf(this.model ?? request.model);
        for (let reshaped = 0; ; reshaped++) {
          const body = shape.without(toUpstreamBody(request, this.model, shape));
          try {
            iterator = await this.client.stream(body, upstream.signal, () => idleTimer.refresh());
            break;
          } catch (error) {
            if (signal.aborted || timedOut || reshaped >= MAX_RESHAPES || !learnt(shape, error, body, request))
              throw error;
            idleTimer.refresh();
          }
        }
      } catch (error) {
        throw failure(error);
      }
      while (true) {
        let result: IteratorResult<ChatCompletionChunk>;
        idleTimer.refresh();
        graceTimer?.refresh();
        try {
          result = await iterator.next();
        } catch (error) {
          if (finish && (graceOver || timedOut) && !signal.aborted) break;
          throw failure(error);
        }
        if (upstream.signal.aborted) {
          if (finish && (graceOver || timedOut) && !signal.aborted) break;
          throw failure(undefined);
        }
        if (result.done) {
          ended = true;
          marked = result.value;
          break;
        }
        chunkCount += 1;
        const chunk = result.value;
        // An endpoint that leaves `index` out (Gemini's) sends one choice: it is the first.
        const choice = Array.isArray(chunk.choices) ? chunk.choices.find((c) => (c.index ?? 0) === 0) : undefined;
        // Moonshot's API puts the usage in the choice.
        usage = usageEvent(chunk.usage ?? (choice as { usage?: unknown } | undefined)?.usage) ?? usage;
        if (!choice) continue;
        const delta = choice.delta;
        for (const field of REASONING_FIELDS) {
          const piece = (delta as Record<string, unknown> | undefined)?.[field];
          if ((typeof piece === 'string' || Array.isArray(piece)) && piece.length > 0)
            yield { type: 'reasoning', field, piece };
        }
        for (const piece of contentTexts(delta?.content)) {
          const text = thinking.take(piece);
          if (text !== '') {
            answered = true;
            yield { type: 'text', text };
          }
        }
        if (typeof delta?.refusal === 'string' && delta.refusal !== '') {
          answered = true;
          yield { type: 'refusal', text: delta.refusal };
        }
        if (Array.isArray(delta?.tool_calls))
          for (const event of toolCallEvents(delta.tool_calls, calls)) {
            answered = true;
            yield event;
          }
        if (FAILED.has(choice.finish_reason as string)) throw finishedInError(choice.finish_reason as string);
        if (choice.finish_reason) {
          finish = { type: 'finish', reason: toFinishReason(choice.finish_reason) };
          graceTimer ??= setTimeout(() => {
            graceOver = true;
            upstream.abort();
          }, FINISH_GRACE_MS);
        }
      }
      for (const event of calls.leftNameless()) {
        answered = true;
        yield event;
      }
      const held = thinking.flush();
      if (!finish) {
        // A stream that stops without saying why was cut short (a proxy, a crashed worker): its answer may be
        // partial, and an empty one is no answer at all, so neither may pass for a completion. Unless it ended with
        // `[DONE]`, the server's word that the answer is whole: some never give a finish_reason (vllm-mlx on a natural
        // stop, older llama-cpp-python, some Gemini proxies).
        if (!marked || !(answered || held !== '')) throw unfinishedError(chunkCount);
        finish = { type: 'finish', reason: calls.count > 0 ? 'tool_calls' : 'stop' };
      }
      if (held !== '') yield { type: 'text', text: held };
      if (usage) yield usage;
      yield finish;
    } finally {
      clearTimeout(idleTimer);
      clearTimeout(graceTimer);
      signal.removeEventListener('abort', onCallerAbort);
      if (!ended) {
        upstream.abort();
        iterator?.return?.().catch(() => {});
      }
    }
  }

  /**
   * The shape learnt for `model`, the most recently used first kept: the names come from clients, so there are at
   * most MAX_SHAPES.
   */
  private shapeOf(model: string): LearntShape {
    let shape = this.shapes.get(model);
    if (shape) this.shapes.delete(model);
    else shape = new LearntShape(this.limitField);
    this.shapes.set(model, shape);
    if (this.shapes.size > MAX_SHAPES) this.shapes.delete(this.shapes.keys().next().value as string);
    return shape;
  }
}

/** Whether `error` is a refusal `shape` learnt from (LearntShape.learn). */
function learnt(
  shape: LearntShape,
  error: unknown,
  sent: ChatCompletionCreateParamsStreaming,
  request: ChatRequest,
): boolean {
  if (!(error instanceof UpstreamHttpError)) return false;
  const message = upstreamMessage(error.body);
  return message !== undefined && shape.learn(error.status, message, sent, request.messages);
}

/**
 * The answer's text in a delta's content: a string, as OpenAI sends it, or a list of parts, as Mistral's API sends its
 * reasoning models' answers (Magistral; Mistral Small with `reasoning_effort`): its `text` parts. Its `thinking` parts
 * are the model's reasoning, not shown (as OpenAI's reasoning models show none), and not needed back by Mistral's
 * API, which would refuse it in any other field.
 */
function contentTexts(content: unknown): string[] {
  if (typeof content === 'string') return content === '' ? [] : [content];
  if (!Array.isArray(content)) return [];
  const texts: string[] = [];
  for (const part of content as unknown[]) {
    const { type, text } = (part ?? {}) as { type?: unknown; text?: unknown };
    if (type === 'text' && typeof text === 'string' && text !== '') texts.push(text);
  }
  return texts;
}

/**
 * How long the end of a stream (its usage, `[DONE]`) is waited for once a chunk gave its finish_reason, in silence or
 * keep-alive comments: it follows at once from every server that sends it; some never close the stream.
 */
const FINISH_GRACE_MS = 2_000;

/** How a server says the model's chat template raised an exception (Jinja's `raise_exception`). */
const TEMPLATE_RAISED = /jinja exception|raise_exception/i;

/** Models whose learnt shapes a provider keeps (the least recently used dropped first, to be learnt again). */
const MAX_SHAPES = 256;

/** How many times one request is sent again reshaped (LearntShape), each time without something else. */
const MAX_RESHAPES = 3;

/** Mistral's models, by name: their API and their tokenizer in vLLM (mistral_common) check tool-call ids. */
const MISTRAL = /mistral|mixtral|codestral|devstral|magistral|ministral|pixtral/i;

/**
 * The messages with each tool-call id as Mistral's models require it, 9 letters or digits (`call_…` ids are
 * refused: "Tool call id … must be a-z, A-Z, 0-9, with a length of 9"): the same 9 for the same id in every turn,
 * so that a call and its output still pair. Ids only the request sees; the API's objects keep their own.
 */
function withMistralCallIds(messages: ChatMessage[]): ChatMessage[] {
  const short = (id: string) =>
    /^[a-zA-Z0-9]{9}$/.test(id) ? id : createHash('sha256').update(id).digest('hex').slice(0, 9);
  return messages.map((message) => {
    if (message.role === 'tool') return { ...message, tool_call_id: short(message.tool_call_id) };
    if (message.role === 'assistant' && message.tool_calls)
      return { ...message, tool_calls: message.tool_calls.map((call) => ({ ...call, id: short(call.id) })) };
    return message;
  });
}

/** Kimi's models, by name (K2 and later, served by Moonshot's API, vLLM, SGLang or exo). */
const KIMI = /kimi/i;

/**
 * The messages with each tool-call id in the form Kimi's models write them, `functions.<name>:<n>` (n counting the
 * calls of the conversation from 0): their chat template shows the ids as they are, and a model shown other ids starts
 * writing calls its server's parser no longer reads (vLLM then passes the raw call markup on as text). The same id for
 * a call and its output; ids only the request sees.
 */
function withKimiCallIds(messages: ChatMessage[]): ChatMessage[] {
  const ids = new Map<string, string>();
  return messages.map((message) => {
    if (message.role === 'tool')
      return { ...message, tool_call_id: ids.get(message.tool_call_id) ?? message.tool_call_id };
    if (message.role !== 'assistant' || !message.tool_calls) return message;
    const tool_calls = message.tool_calls.map((call) => {
      const id = ids.get(call.id) ?? `functions.${call.function.name}:${ids.size}`;
      ids.set(call.id, id);
      return { ...call, id };
    });
    return { ...message, tool_calls };
  });
}

/**
 * The fields a delta carries the model's reasoning in (ModelReasoning), sent back under the same names: DeepSeek's
 * thinking mode refuses a history of tool calls without its `reasoning_content` ("Missing `reasoning_content` field in
 * the assistant message"), OpenRouter's Gemini 3 one without its `reasoning_details`, LiteLLM's Claude with thinking
 * one without its `thinking_blocks`.
 */
const REASONING_FIELDS = ['reasoning_content', 'reasoning', 'reasoning_details', 'thinking_blocks'] as const;

/**
 * The messages in the wire's shape. An assistant message's reasoning goes back in the fields it came in
 * (REASONING_FIELDS). A tool call's extra fields go back on the call as they came: Gemini 3 refuses a call without
 * its thought signature ("Function call is missing a thought_signature"). Only a model that sent either is sent any.
 * Without `sendsReasoning` (the endpoint refused it as an unknown field), no reasoning is sent back. With `tools`
 * (once the endpoint refused otherwise), calls' arguments go as JSON objects (object-arguments.ts). An
 * empty tool output is sent as a word: Gemini through OpenRouter, GLM and MiniMax refuse an empty tool message.
 */
function wireMessages(
  messages: ChatMessage[],
  objects: { tools: ChatTool[] | undefined } | undefined,
  sendsReasoning: boolean,
): ChatCompletionCreateParamsStreaming['messages'] {
  return messages.map((message) => {
    if (message.role === 'tool') return message.content === '' ? { ...message, content: EMPTY_OUTPUT } : message;
    if (message.role !== 'assistant' || (message.reasoning === undefined && message.tool_calls === undefined)) {
      return message;
    }
    const { reasoning, tool_calls, ...rest } = message;
    return {
      ...rest,
      ...(tool_calls === undefined ? {} : { tool_calls: tool_calls.map((call) => wireCall(call, objects)) }),
      ...(sendsReasoning ? reasoning : {}),
    };
  });
}

/** A tool call as wireMessages sends it: its extra fields beside it, its arguments as an object when asked. */
function wireCall(
  { extra, ...call }: ChatToolCall,
  objects: { tools: ChatTool[] | undefined } | undefined,
): ChatCompletionMessageToolCall {
  const tool = objects?.tools?.find((t) => t.function.name === call.function.name);
  const args = objects ? objectArguments(call.function.arguments, tool) : call.function.arguments;
  const wired = args === call.function.arguments ? call : { ...call, function: { ...call.function, arguments: args } };
  return extra === undefined ? wired : { ...extra, ...wired };
}

/** What an empty tool output is sent as. */
const EMPTY_OUTPUT = '(no output)';

/** `messages` with `instruction` added to the leading system message (one is made for it when there is none). */
function withInstruction(messages: ChatMessage[], instruction: string | undefined): ChatMessage[] {
  if (instruction === undefined) return messages;
  const [first, ...rest] = messages;
  if (first?.role === 'system') return [{ role: 'system', content: `${first.content}\n\n${instruction}` }, ...rest];
  return [{ role: 'system', content: instruction }, ...messages];
}

/** The upstream body: only the fields that are set (no `tools: []`, no `temperature: null`). */
function toUpstreamBody(
  request: ChatRequest,
  model: string | undefined,
  shape: LearntShape,
): ChatCompletionCreateParamsStreaming {
  const name = model ?? request.model;
  const { format, instruction } = shape.responseFormat(request.response_format);
  const messages = withInstruction(shape.messages(request.messages), instruction);
  const body: ChatCompletionCreateParamsStreaming = {
    model: name,
    messages: wireMessages(
      MISTRAL.test(name) ? withMistralCallIds(messages) : KIMI.test(name) ? withKimiCallIds(messages) : messages,
      shape.objectArguments ? { tools: request.tools } : undefined,
      shape.sendsReasoning,
    ),
    stream: true,
    stream_options: { include_usage: true },
  };
  if (request.tools && request.tools.length > 0) {
    body.tools = request.tools;
    // Both are rejected by OpenAI when no tools are sent.
    if (request.tool_choice !== undefined) body.tool_choice = request.tool_choice;
    if (request.parallel_tool_calls !== undefined) body.parallel_tool_calls = request.parallel_tool_calls;
  }
  if (request.temperature !== undefined && request.temperature !== null) body.temperature = request.temperature;
  if (request.top_p !== undefined && request.top_p !== null) body.top_p = request.top_p;
  if (request.max_tokens !== undefined) body[shape.limitField] = request.max_tokens;
  if (request.reasoning_effort !== undefined)
    body.reasoning_effort = request.reasoning_effort as ChatCompletionCreateParamsStreaming['reasoning_effort'];
  if (format !== undefined) body.response_format = format;
  return body;
}

/**
 * The streamed fragments of the tool calls, as OpenAI sends them: each numbered, each adding to its call's arguments.
 *
 * The index is counted here. Some compatible endpoints do not number the calls: Ollama sends every call of a
 * parallel batch as `index: 0`, its older versions and Gemini's endpoint send none. So a fragment that starts a call
 * (its name, with an id other than that of the call at its index) is the next call; a fragment without an index
 * continues the last call unless its id is new, or, without an id (some proxies in front of Gemini send each call
 * whole with `id: ""`), unless it names a function after the last call's arguments are whole.
 *
 * Some endpoints (gateways to DeepSeek or Qianfan, older vLLM parsers) send a call's arguments so far in every
 * fragment rather than what is new: a fragment that extends the arguments so far marks its call so, and only what it
 * adds is passed on (a repeat of them, nothing).
 */
class ToolCallFragments {
  /** Per call (our index): its arguments so far, and whether its endpoint resends them whole. */
  private readonly args = new Map<number, { text: string; cumulative: boolean }>();

  /** Per call (our index) whose name has not come yet: what came of it so far, held back until its name does. */
  private readonly nameless = new Map<number, ToolCallEvent>();
  /** The calls (our index) whose name came, whose fragments are passed on as they come. */
  private readonly named = new Set<number>();

  /** Per index the upstream sent: our index for it, and the id of the call there. */
  private readonly byUpstream = new Map<number, { index: number; id: string | undefined }>();
  private last: { index: number; id: string | undefined } | undefined;
  private next = 0;

  /** How many calls there were. */
  get count(): number {
    return this.next;
  }

  /** Our index of the call a fragment belongs to. */
  of(call: { index?: number | null; id?: string | null; function?: { name?: string | null } | null }): number {
    const id = call.id || undefined;
    const names = Boolean(call.function?.name);
    const starts = id !== undefined && names;
    const upstream = call.index;
    let entry: { index: number; id: string | undefined } | undefined;
    if (typeof upstream === 'number' && Number.isInteger(upstream) && upstream >= 0) {
      entry = this.byUpstream.get(upstream);
      if (entry === undefined || (starts && entry.id !== undefined && entry.id !== id)) {
        entry = { index: this.next++, id };
        this.byUpstream.set(upstream, entry);
      }
    } else {
      const last = this.last;
      const continues = last !== undefined && (id === undefined ? !(names && this.whole(last.index)) : id === last.id);
      entry = continues ? last : { index: this.next++, id };
    }
    entry.id ??= id;
    this.last = entry;
    return entry.index;
  }

  /**
   * The event to pass on for `event`, a fragment of its call: none while the call has no name (some servers send an
   * empty name first and the name in a later fragment: vLLM with Command-A, vmlx), then what was held joined to it.
   */
  passOn(event: ToolCallEvent): ToolCallEvent | undefined {
    if (this.named.has(event.index)) return event;
    const held = this.nameless.get(event.index);
    const joined: ToolCallEvent = held === undefined ? event : { ...held, ...event };
    if (held?.arguments !== undefined) joined.arguments = held.arguments + (event.arguments ?? '');
    if (held?.extra !== undefined || event.extra !== undefined) joined.extra = { ...held?.extra, ...event.extra };
    if (event.name === undefined) {
      this.nameless.set(event.index, joined);
      return undefined;
    }
    this.nameless.delete(event.index);
    this.named.add(event.index);
    return joined;
  }

  /** The calls whose name never came, as they are, once the stream has ended. */
  leftNameless(): ToolCallEvent[] {
    const left = [...this.nameless.values()];
    this.nameless.clear();
    return left;
  }

  /** Whether call `index`'s arguments so far are whole: JSON that parses. */
  private whole(index: number): boolean {
    const text = this.args.get(index)?.text;
    if (text === undefined) return false;
    try {
      JSON.parse(text);
      return true;
    } catch {
      return false;
    }
  }

  /** What `text`, a fragment of call `index`'s arguments, adds to them. */
  added(index: number, text: string): string {
    const so = this.args.get(index);
    if (so === undefined) {
      this.args.set(index, { text, cumulative: false });
      return text;
    }
    if (so.text !== '' && text.startsWith(so.text) && (so.cumulative || text.length > so.text.length)) {
      const added = text.slice(so.text.length);
      so.text = text;
      so.cumulative = true;
      return added;
    }
    so.text += text;
    return text;
  }
}

type ToolCallEvent = Extract<ChatEvent, { type: 'tool_call' }>;

function toolCallEvents(calls: ChatCompletionChunk.Choice.Delta.ToolCall[], fragments: ToolCallFragments): ChatEvent[] {
  const events: ChatEvent[] = [];
  for (const call of calls) {
    const index = fragments.of(call);
    const event: ToolCallEvent = { type: 'tool_call', index };
    if (call.id) event.id = call.id;
    if (call.function?.name) event.name = call.function.name;
    const text = argumentsText(call.function?.arguments);
    const added = text === '' ? '' : fragments.added(index, text);
    if (added) event.arguments = added;
    const { index: _i, id: _id, type: _t, function: _f, ...extra } = call as typeof call & Record<string, unknown>;
    if (Object.keys(extra).length > 0) event.extra = extra;
    if (event.id === undefined && event.name === undefined && event.arguments === undefined && !event.extra) continue;
    const passed = fragments.passOn(event);
    if (passed) events.push(passed);
  }
  return events;
}

/**
 * A usage event for what an endpoint reported, if it has both counts: some send a partial object first (SGLang:
 * only `prompt_tokens_details`), which must not replace a whole one nor count as zero.
 */
function usageEvent(reported: unknown): ChatEvent | undefined {
  if (typeof reported !== 'object' || reported === null) return undefined;
  const { prompt_tokens, completion_tokens } = reported as Record<string, unknown>;
  // Counts, or no usage at all (the answer is then counted here): a negative one would be summed into the run's usage,
  // and the metrics' counters throw on it.
  const count = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 0;
  if (!count(prompt_tokens) || !count(completion_tokens)) return undefined;
  return { type: 'usage', usage: { prompt_tokens, completion_tokens } };
}

/**
 * A call's arguments as text: a string as OpenAI sends them, or an object, as some servers send them whole
 * (llama.cpp's server with `--tool-args-object`, and some of its builds by default; TGI), as its JSON.
 */
function argumentsText(value: unknown): string {
  if (typeof value === 'string') return value;
  return typeof value === 'object' && value !== null ? JSON.stringify(value) : '';
}

function toFinishReason(reason: string): FinishReason {
  switch (reason) {
    case 'stop':
    case 'length':
    case 'tool_calls':
    case 'content_filter':
      return reason;
    // Other servers' and gateways' names: Anthropic's (end_turn, stop_sequence, max_tokens, tool_use), TGI's and
    // some servers' (eos, eos_token), OpenAI's legacy function calling (function_call).
    case 'end_turn':
    case 'stop_sequence':
    case 'eos':
    case 'eos_token':
      return 'stop';
    case 'max_tokens':
      return 'length';
    case 'tool_use':
    case 'function_call':
      return 'tool_calls';
    case 'sensitive': // Zhipu's GLM: the answer was stopped by its moderation
      return 'content_filter';
    default:
      return 'other';
  }
}

/**
 * Finish reasons that say the model's backend failed mid-answer: `error` (OpenRouter), `network_error` (Zhipu's
 * GLM: "model inference error"), `insufficient_system_resource` (DeepSeek, when it is overloaded), `abort` (vLLM,
 * when its engine shuts down or is put to sleep under a request).
 */
const FAILED = new Set(['error', 'network_error', 'insufficient_system_resource', 'abort']);

/** A finish reason in FAILED: the answer is cut short, not finished, and may be retried like a dropped connection. */
function finishedInError(reason: string): ProviderError {
  return new ProviderError('server_error', `The model backend ended its answer with finish_reason "${reason}"`, {
    retryable: true,
  });
}

function timeoutError(timeoutMs: number, answered: boolean): ProviderError {
  const waiting = answered ? 'the next chunk of its stream' : 'an answer';
  return new ProviderError('server_error', `The model backend timed out after ${timeoutMs} ms waiting for ${waiting}`, {
    retryable: true,
  });
}

function unfinishedError(chunkCount: number): ProviderError {
  const message =
    chunkCount === 0
      ? 'The model backend answered with an empty event stream (no chunks)'
      : `The model backend's stream ended without a finish_reason (after ${chunkCount} chunks)`;
  return new ProviderError('server_error', message, { retryable: true });
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * A 429's retry hint in its body, where some endpoints give it instead of a header: Gemini's
 * `details: [{ "@type": "…RetryInfo", retryDelay: "33s" }]`, or the message's "Please retry in 25.46s" (Gemini) /
 * "Please try again in 7.66s" (OpenAI, Groq; also in ms).
 */
export function retryHintMs(body: unknown, message: string | undefined): number | undefined {
  const wrapped = Array.isArray(body) && body.length === 1 ? body[0] : body;
  const details = (wrapped as { error?: { details?: unknown } } | undefined)?.error?.details;
  if (Array.isArray(details))
    for (const detail of details as Array<{ retryDelay?: unknown }>) {
      const delay = typeof detail?.retryDelay === 'string' ? /^(\d+(?:\.\d+)?)s$/.exec(detail.retryDelay) : null;
      if (delay) return Number(delay[1]) * 1000;
    }
  const said = message === undefined ? null : /(?:retry|try again) in (\d+(?:\.\d+)?)\s*(ms|s)\b/i.exec(message);
  if (!said) return undefined;
  return Number(said[1]) * (said[2]!.toLowerCase() === 'ms' ? 1 : 1000);
}

/** The upstream's retry hint (`retry-after-ms`, or `retry-after` in seconds or as a date), in ms. */
export function retryAfterMs(headers: IncomingHttpHeaders): number | undefined {
  const ms = Number.parseFloat(header(headers, 'retry-after-ms') ?? '');
  if (Number.isFinite(ms) && ms >= 0) return ms;
  const value = header(headers, 'retry-after');
  if (!value) return undefined;
  const seconds = Number(value);
  if (value.trim() !== '' && Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** Whether a retry may wait for what the upstream asked (`after`, in ms): a longer wait is not worth retrying now. */
function waitable(after: number | undefined): boolean {
  return after === undefined || after <= MAX_RETRY_AFTER_MS;
}

/**
 * The provider's error for what went wrong. Its message quotes the upstream where that helps, and reaches the log
 * and the run's `last_error`: an upstream that echoes the request it was sent (a proxy's debug page) would hand the
 * server's key to both, so the key is masked here, where every failure of this backend passes.
 */
function toProviderError(error: unknown, apiKey: string | undefined): ProviderError {
  const described = describeFailure(error);
  const message = withoutKey(described.message, apiKey);
  if (message === described.message) return described;
  const retryAfter = described.retryAfterMs === undefined ? {} : { retryAfterMs: described.retryAfterMs };
  return new ProviderError(described.code, message, {
    retryable: described.retryable,
    ...retryAfter,
  });
}

function describeFailure(error: unknown): ProviderError {
  if (error instanceof ProviderError) return error;
  if (error instanceof UpstreamConnectionError)
    return new ProviderError('server_error', `The model backend could not be reached: ${error.message}`, {
      retryable: true,
    });
  if (error instanceof UpstreamHttpError) {
    const { status } = error;
    const message = upstreamMessage(error.body);
    if (status === 429) {
      const after = retryAfterMs(error.headers) ?? retryHintMs(error.body, message);
      // A quota that is spent (OpenAI's insufficient_quota, Gemini's per-day quotas) is not worth retrying now.
      const spent = /insufficient_quota|PerDay/i.test(JSON.stringify(error.body ?? ''));
      return new ProviderError('rate_limit_exceeded', message ?? 'The model backend answered 429 (rate limited)', {
        retryable: !spent && waitable(after),
        retryAfterMs: after,
      });
    }
    if (status === 402) {
      // Payment required (OpenRouter's credits, DeepSeek's balance): this server's account, not the prompt.
      const detail = message === undefined ? '' : `: ${message}`;
      return new ProviderError('server_error', `The model backend refused for billing (402)${detail}`, {
        retryable: false,
      });
    }
    // llama.cpp's server answers a 500 when the model's chat template raises ("Jinja Exception: …"): the same prompt
    // would raise again, so it is the prompt's error, with the template's words.
    if (status === 500 && message !== undefined && TEMPLATE_RAISED.test(message))
      return new ProviderError('invalid_prompt', message, { retryable: false });
    // 498: Groq's flex tier is at capacity, and says to retry.
    if (status >= 500 || status === 408 || status === 409 || status === 498) {
      // A proxy's error page is not quoted: only an OpenAI-shaped error's message is.
      const detail = message === undefined ? '' : `: ${message}`;
      // An overloaded or restarting server's Retry-After (a 503's, most often) says when it will answer again.
      const after = retryAfterMs(error.headers);
      return new ProviderError('server_error', `The model backend answered ${status}${detail}`, {
        retryable: waitable(after),
        retryAfterMs: after,
      });
    }
    if (status === 401 || status === 403) {
      // The server's credentials for the upstream are wrong: not the prompt's fault, and not worth a retry.
      return new ProviderError('server_error', `The model backend rejected this server's credentials (${status})`, {
        retryable: false,
      });
    }
    if (status === 404 && message === undefined)
      // Not an API's answer (that names what is missing) but a web server's: the base URL is wrong, often its `/v1`.
      return new ProviderError(
        'server_error',
        'The model backend has no Chat Completions endpoint at the address this server is configured with (404); an OpenAI-compatible base URL usually ends in /v1',
        { retryable: false },
      );
    return new ProviderError('invalid_prompt', message ?? `The model backend rejected the request (${status})`, {
      retryable: false,
    });
  }
  // The answer was not an event stream, or its stream failed (the message says how).
  if (error instanceof UpstreamStreamError) {
    const { status } = error;
    // An error in the stream that says the request was refused (its code a 4xx): the same request would be again.
    if (status === 429) return new ProviderError('rate_limit_exceeded', error.message, { retryable: true });
    if (status !== undefined && status < 500 && status !== 408 && status !== 409)
      return new ProviderError('invalid_prompt', error.message, { retryable: false });
    return new ProviderError('server_error', error.message, { retryable: true });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new ProviderError('server_error', `The model backend's stream failed: ${message}`, { retryable: true });
}
