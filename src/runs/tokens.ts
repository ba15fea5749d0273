import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ChatContentPart, ChatMessage, ChatTool } from '../providers/provider.ts';
import { countO200k } from '../retrieval/o200k.ts';
import { textPieces } from '../retrieval/text-pieces.ts';

/**
 * Token counting for prompts, with the o200k_base BPE (the encoding of gpt-4o, gpt-4.1, o-series and gpt-5 models),
 * following OpenAI's published chat accounting (the "How to count tokens with tiktoken" cookbook): every message
 * costs a fixed overhead plus the tokens of its role and content, and every prompt costs a fixed priming for the
 * reply. Counts are estimates for other model families and for parts the cookbook does not cover (tool calls,
 * images); they drive truncation and the max_prompt_tokens budget, while the usage reported on runs comes from the
 * upstream whenever it sends one.
 */

/** `<|start|>{role}<|message|>…<|end|>`: the markers around each message. */
export const TOKENS_PER_MESSAGE = 3;
/** `<|start|>assistant<|message|>`: every reply is primed with these. */
export const REPLY_PRIMING_TOKENS = 3;
/**
 * Images are not tokenized: their cost depends on their pixel size, which is unknown here without fetching them.
 * `low` detail is a flat 85 tokens upstream; for `high` and `auto` we assume a 1024×1024 image in high detail,
 * i.e. 85 + 4 tiles × 170 = 765 tokens, the figure OpenAI's pricing page uses as its example.
 */
export const IMAGE_TOKENS_LOW_DETAIL = 85;
export const IMAGE_TOKENS_DEFAULT = 765;

/**
 * A Map bounded to `capacity` entries that forgets the least recently used one first: a hit moves its entry to the
 * end of the Map's insertion order, and an insertion beyond the capacity deletes the first entry.
 */
export class LruCache<K, V> {
  readonly capacity: number;
  private readonly entries = new Map<K, V>();

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as K);
  }
}

/** A finished thread message in its chat form, with its tokens under one counter. */
export interface CountedMessage {
  readonly message: ChatMessage;
  readonly tokens: number;
}

/**
 * Finished messages each counter remembers, by id. Every model turn rebuilds its prompt from the whole thread, read
 * afresh from the store, so without this cache each turn would tokenise the whole thread again; with it, a turn
 * tokenises only the messages that are new since the thread's previous turn. 100,000 entries hold, say, five busy
 * threads of 20,000 messages (truncation touches only the messages that fit the context window, plus one).
 *
 * Memory, measured on Node 20 (x64, no pointer compression; heap after `gc()` with 100,000 entries built from
 * messages parsed from their stored JSON, which is then garbage): about 185 bytes per entry (the Map slot, the
 * 28-character id, the entry and its ChatMessage) plus the message's text, 1 byte a character when it is all
 * Latin-1 (else 2): 206 bytes for a 20-character message, 1.2 KB for a 1,000-character one. Full, the cache holds
 * ≈ 18.5 MB plus the texts.
 */
export const FINISHED_MESSAGES_CAPACITY = 100_000;
/**
 * Instructions each counter remembers, by their text: every turn of a run, and every run of an assistant, sends the
 * same system message. Each entry holds its text (at most 256,000 characters through the API).
 */
export const INSTRUCTIONS_CAPACITY = 64;

/**
 * A text longer than this is counted a piece of about this length at a time (text-pieces.ts, cut where the tokens
 * are the same as the whole text's), and the event loop is let go between pieces once YIELD_AFTER_MS have passed:
 * a 256,000-character message then costs the other requests a few milliseconds at a time, not the whole count
 * (0.5 s for random letters, 1 s for CJK without punctuation, 35 ms for English, measured on Node 20). A piece of
 * 1,024 characters takes at most ~5 ms (CJK), usually well under 1 ms.
 */
export const SLICE_CHARS = 1024;
const YIELD_AFTER_MS = 4;

/**
 * Counts prompts with one tokenizer. Models with a tokenizer of their own (GGUF) get a counter of their own, with
 * the same per-message accounting, and so caches of their own: counts from different tokenizers differ.
 *
 * Each turn of a run rebuilds its prompt from messages read afresh from the store (new objects every time), so what
 * a counter remembers is keyed by what does not change: a finished message by its id (its content never changes
 * once finished, modifying it changes only its metadata, and ids are never reused) and the instructions by their
 * text. Both caches are LRUs of bounded size (see the capacities above). A run's tool rounds are counted afresh on
 * each of its turns: they are few, and live only as long as the run.
 */
export class TokenCounter {
  private readonly countText: (text: string) => number;
  private calls = 0;
  private readonly roles = new Map<string, number>();
  private readonly finishedMessages: LruCache<string, CountedMessage>;
  private readonly instructions = new LruCache<string, number>(INSTRUCTIONS_CAPACITY);
  private readonly toolDefinitions = new LruCache<string, number>(INSTRUCTIONS_CAPACITY);

  constructor(countText: (text: string) => number, options: { finishedMessages?: number } = {}) {
    this.countText = countText;
    this.finishedMessages = new LruCache(options.finishedMessages ?? FINISHED_MESSAGES_CAPACITY);
  }

  /** How many texts this counter has tokenised so far: what the caches did not spare. */
  get tokenized(): number {
    return this.calls;
  }

  /**
   * The tokens of `text`, counted at once: linear in its length (no run of one character class is encoded longer
   * than MAX_RUN_CHARS), but blocking. For texts a client sent, use `count`.
   */
  text(text: string): number {
    if (text.length === 0) return 0;
    this.calls++;
    let tokens = 0;
    for (const [start, end] of textPieces(text)) tokens += this.countText(text.slice(start, end));
    return tokens;
  }

  /**
   * The tokens of `text`, exactly as `text` counts them (its pieces are cut at the same places, and at word starts,
   * which change no token), letting the event loop go every few milliseconds.
   */
  async count(text: string): Promise<number> {
    if (text.length <= SLICE_CHARS) return this.text(text);
    this.calls++;
    let tokens = 0;
    let since = performance.now();
    for (const [start, end] of textPieces(text, SLICE_CHARS)) {
      tokens += this.countText(text.slice(start, end));
      if (performance.now() - since >= YIELD_AFTER_MS) {
        await nextTurn();
        since = performance.now();
      }
    }
    return tokens;
  }

  /** The tokens of one message, counted afresh (only the role's count is remembered). */
  async message(message: ChatMessage): Promise<number> {
    return TOKENS_PER_MESSAGE + this.role(message.role) + (await this.content(message));
  }

  /**
   * A finished message (its status no longer `in_progress`) by its id: `convert` and the count run only the first
   * time this counter sees the id (or again once the LRU has forgotten it). The result is shared: never mutate it.
   */
  async finished(id: string, convert: () => ChatMessage): Promise<CountedMessage> {
    let counted = this.finishedMessages.get(id);
    if (counted === undefined) {
      const message = convert();
      counted = { message, tokens: await this.message(message) };
      this.finishedMessages.set(id, counted);
    }
    return counted;
  }

  /** What `finished` holds for `id`, without converting or counting anything. */
  cachedFinished(id: string): CountedMessage | undefined {
    return this.finishedMessages.get(id);
  }

  /** The tokens of the system message `{ role: 'system', content: instructions }`, counted once per text. */
  async system(instructions: string): Promise<number> {
    let tokens = this.instructions.get(instructions);
    if (tokens === undefined) {
      tokens = await this.message({ role: 'system', content: instructions });
      this.instructions.set(instructions, tokens);
    }
    return tokens;
  }

  /**
   * An estimate of what the definitions of `tools` add to a prompt: the tokens of their JSON. Backends render them
   * in their own ways (OpenAI's as TypeScript declarations, chat templates as JSON or prose), usually in fewer
   * tokens than the JSON's quotes and braces; a backend that can count its own rendering does
   * (ModelProvider.toolTokens).
   */
  async tools(tools: readonly ChatTool[]): Promise<number> {
    if (tools.length === 0) return 0;
    // Remembered by their JSON, like instructions: every turn of a run, and every run of an assistant, sends them.
    const json = JSON.stringify(tools.map((tool) => tool.function));
    let tokens = this.toolDefinitions.get(json);
    if (tokens === undefined) {
      tokens = await this.count(json);
      this.toolDefinitions.set(json, tokens);
    }
    return tokens;
  }

  /** The whole prompt: every message, plus the priming of the reply. */
  async prompt(messages: readonly ChatMessage[]): Promise<number> {
    let total = REPLY_PRIMING_TOKENS;
    for (const message of messages) total += await this.message(message);
    return total;
  }

  /** Roles are a handful of fixed strings: each is tokenised once per counter. */
  private role(role: string): number {
    let tokens = this.roles.get(role);
    if (tokens === undefined) {
      tokens = this.text(role);
      this.roles.set(role, tokens);
    }
    return tokens;
  }

  private async content(message: ChatMessage): Promise<number> {
    switch (message.role) {
      case 'system':
      case 'tool':
        return this.count(message.content);
      case 'user':
        return typeof message.content === 'string' ? this.count(message.content) : this.parts(message.content);
      case 'assistant': {
        let tokens = message.content === null ? 0 : await this.count(message.content);
        for (const value of Object.values(message.reasoning ?? {}))
          tokens += await this.count(typeof value === 'string' ? value : JSON.stringify(value));
        // The upstream renders tool calls in its own hidden format; their name and arguments are what it costs.
        for (const call of message.tool_calls ?? []) {
          tokens += this.text(call.function.name) + (await this.count(call.function.arguments));
        }
        return tokens;
      }
    }
  }

  private async parts(parts: readonly ChatContentPart[]): Promise<number> {
    let tokens = 0;
    for (const part of parts) {
      if (part.type === 'text') tokens += await this.count(part.text);
      else tokens += part.image_url.detail === 'low' ? IMAGE_TOKENS_LOW_DETAIL : IMAGE_TOKENS_DEFAULT;
    }
    return tokens;
  }
}

/** The o200k_base counter: for OpenAI-compatible upstreams, which report their own usage whenever they can. */
export const O200K = new TokenCounter(countO200k);

export const countTextTokens = (text: string): number => O200K.text(text);
export const countMessageTokens = (message: ChatMessage): Promise<number> => O200K.message(message);
export const countPromptTokens = (messages: readonly ChatMessage[]): Promise<number> => O200K.prompt(messages);
