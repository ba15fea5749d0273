/**
 * The small interface every model backend implements: stream one chat completion. Everything Assistants-specific
 * (runs, steps, tool rounds, retries, budgets) stays outside, so a backend is only a translation to and from its
 * wire format. Implementations: openai-compatible/ (any Chat Completions endpoint) and llama-cpp/ (a GGUF model in-process).
 */

export type ChatContentPart =
  | { type: 'text'; text: string }
  | { type: 'image_url'; image_url: { url: string; detail?: 'auto' | 'low' | 'high' } };

/**
 * An image as text, for a model (or a message role) that takes no images: the model learns that there was one. A
 * data: URL would put the whole image into the text; its mere presence is what matters.
 */
export function imageUrlNote(url: string): string {
  return url.startsWith('data:') ? '[image (inline data)]' : `[image ${url}]`;
}

/** A message's content as text alone, its images as notes (imageUrlNote), for a model that reads no images. */
export function textWithImageNotes(content: string | ChatContentPart[]): string {
  if (typeof content === 'string') return content;
  return content.map((part) => (part.type === 'text' ? part.text : imageUrlNote(part.image_url.url))).join('\n');
}

export interface ChatToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
  /**
   * What else the endpoint put on the call, sent back with it as it came: Gemini's `extra_content` (its thought
   * signature, without which Gemini 3 refuses the call in a later request).
   */
  extra?: Record<string, unknown>;
}

export type ChatMessage =
  | { role: 'system'; content: string }
  | { role: 'user'; content: string | ChatContentPart[] }
  | {
      role: 'assistant';
      content: string | null;
      tool_calls?: ChatToolCall[];
      /** What the model wrote beside its answer in the turn that made these calls (ModelReasoning). */
      reasoning?: ModelReasoning;
    }
  | { role: 'tool'; tool_call_id: string; content: string };

/**
 * What a model wrote beside its answer in fields of the endpoint's own, by field name as the endpoint sent them, to be
 * sent back the same way on the assistant message of the turn's tool calls: text (`reasoning_content`: DeepSeek,
 * Kimi, llama.cpp; `reasoning`: vLLM, Ollama, OpenRouter) or a list (`reasoning_details`: OpenRouter's, carrying
 * Gemini's and Claude's signatures; `thinking_blocks`: LiteLLM's, Claude's signed thinking). DeepSeek's thinking mode,
 * Gemini 3 through OpenRouter and Claude's thinking through LiteLLM refuse a history of tool calls without it. Never
 * shown to clients: OpenAI's reasoning models show none.
 */
export type ModelReasoning = Record<string, string | unknown[]>;

/** Text fields of a list item of ModelReasoning that arrive in pieces, to be joined. */
const PIECED = new Set(['text', 'summary', 'data', 'thinking']);

/**
 * `reasoning` with a streamed piece of one of its fields added: text is appended. A list item is merged into the item
 * it continues (its text fields joined, other fields replaced by those it brings that are not empty): the item of
 * the same `index` (OpenRouter's), or, for a signable item without one, the last item when it is of the same `type`
 * and its signature is still empty (LiteLLM sends Claude's thinking one piece per item, its signature in the last).
 * Otherwise it is appended. Returns a new object.
 */
export function addReasoning(reasoning: ModelReasoning, field: string, piece: string | unknown[]): ModelReasoning {
  const so = reasoning[field];
  if (typeof piece === 'string') return { ...reasoning, [field]: (typeof so === 'string' ? so : '') + piece };
  const items = Array.isArray(so) ? [...so] : [];
  for (const item of piece) {
    const at = typeof item === 'object' && item !== null ? continued(items, item as Record<string, unknown>) : -1;
    if (at < 0) {
      items.push(item);
      continue;
    }
    const merged: Record<string, unknown> = { ...(items[at] as Record<string, unknown>) };
    for (const [key, value] of Object.entries(item as Record<string, unknown>)) {
      const before = merged[key];
      if (PIECED.has(key) && typeof before === 'string' && typeof value === 'string') merged[key] = before + value;
      else if (value !== '' && value !== null && value !== undefined) merged[key] = value;
    }
    items[at] = merged;
  }
  return { ...reasoning, [field]: items };
}

/** The position of the item of `items` that `item` continues (addReasoning), or -1. */
function continued(items: readonly unknown[], item: Record<string, unknown>): number {
  if (typeof item['index'] === 'number')
    return items.findIndex((i) => (i as { index?: unknown }).index === item['index']);
  // Only a signable item (one with a `signature`, if empty) continues one not signed yet: a redacted block has none.
  const last = items[items.length - 1] as Record<string, unknown> | undefined;
  if (last === undefined || typeof last !== 'object' || 'index' in last || last['type'] !== item['type']) return -1;
  return 'signature' in item && last['signature'] === '' ? items.length - 1 : -1;
}

export interface ChatTool {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean | null };
}

export type ChatToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };

export type ChatResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | {
      type: 'json_schema';
      json_schema: { name: string; description?: string; schema?: Record<string, unknown>; strict?: boolean | null };
    };

export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  tools?: ChatTool[];
  tool_choice?: ChatToolChoice;
  parallel_tool_calls?: boolean;
  temperature?: number | null;
  top_p?: number | null;
  /** Upper bound on the completion's tokens. */
  max_tokens?: number;
  response_format?: ChatResponseFormat;
  /** The run's `reasoning_effort` (`low`, `high`…), for the models that take one; absent when the run has none. */
  reasoning_effort?: string;
}

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'other';

/**
 * What a completion stream yields, in order: any number of `reasoning`, `text`, `refusal` and `tool_call` deltas, then at most one `usage`
 * (missing when the upstream does not report it), then one `finish`, which ends every stream that does not throw.
 * A backend whose stream stops without a finish reason throws ProviderError: that answer was cut short, not given.
 *
 * `reasoning` is a piece of what a model wrote in a field of the endpoint's own beside its answer (ModelReasoning):
 * never shown, kept only to be sent back with the turn's tool calls.
 *
 * `refusal` is the model's refusal to answer, in place of the answer (OpenAI's models, with structured outputs).
 *
 * `tool_call` deltas are keyed by `index`: the first delta of an index carries `name` (and the upstream's `id`, if
 * any); later ones carry only `arguments` fragments, to be concatenated. `extra` is what else the endpoint put on the
 * call (ChatToolCall.extra), to be merged into what came before.
 */
export type ChatEvent =
  | { type: 'reasoning'; field: string; piece: string | unknown[] }
  | { type: 'text'; text: string }
  | { type: 'refusal'; text: string }
  | {
      type: 'tool_call';
      index: number;
      id?: string;
      name?: string;
      arguments?: string;
      extra?: Record<string, unknown>;
    }
  | { type: 'usage'; usage: { prompt_tokens: number; completion_tokens: number } }
  | { type: 'finish'; reason: FinishReason };

/** `code` is the run's `last_error.code` this failure leads to once retries are exhausted. */
export type ProviderErrorCode = 'rate_limit_exceeded' | 'server_error' | 'invalid_prompt';

export class ProviderError extends Error {
  readonly code: ProviderErrorCode;
  /**
   * Whether the same request may succeed if sent again: 429, 5xx, timeouts, resets, and answers that are not a valid
   * stream (an HTML page, chunks that are not JSON, a stream that ends without a finish reason).
   */
  readonly retryable: boolean;
  /** The upstream's own hint (`retry-after-ms` / `retry-after`), when it gave one. */
  readonly retryAfterMs: number | undefined;

  constructor(code: ProviderErrorCode, message: string, options: { retryable: boolean; retryAfterMs?: number }) {
    super(message);
    this.name = 'ProviderError';
    this.code = code;
    this.retryable = options.retryable;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export interface ModelProvider {
  /** The model's context size in tokens: truncation keeps prompts within it. */
  readonly contextWindow: number;
  /**
   * The model's own tokenizer (a count of tokens in a text), when the backend has one; without it prompts are
   * estimated with o200k_base.
   */
  tokenizer?(): Promise<(text: string) => number>;
  /**
   * The prompt tokens the tools of a request add (their definitions as the backend renders them into the prompt),
   * when the backend can count them; without it they are estimated from their JSON.
   */
  toolTokens?(request: Pick<ChatRequest, 'tools' | 'tool_choice'>): Promise<number>;
  /** Releases what the backend holds (an embedded model's memory). */
  close?(): Promise<void>;
  /**
   * Streams one chat completion. Makes one upstream attempt (retries are the caller's policy; a backend may send a
   * request again in another shape the endpoint turned out to need, see learnt-shape.ts) and throws
   * ProviderError for any upstream failure, before or during the stream. Aborting `signal` ends the request at
   * once and makes the iterator throw the signal's reason.
   */
  stream(request: ChatRequest, signal: AbortSignal): AsyncIterable<ChatEvent>;
}
