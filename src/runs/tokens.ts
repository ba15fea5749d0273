import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import type { ChatContentPart, ChatMessage } from '../providers/provider.ts';

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

// User text may contain strings like `<|endoftext|>`: count them as the plain text they are, never as special tokens
// (the library's default is to throw on them).
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

/**
 * Counts prompts with one tokenizer. Truncation counts the same message objects again and again (and the executor
 * rebuilds each turn from cached ones), so each counter keeps its counts per message object; ChatMessage objects are
 * treated as immutable once counted. Models with a tokenizer of their own (GGUF) get a counter of their own, with
 * the same per-message accounting.
 */
export class TokenCounter {
  private readonly countText: (text: string) => number;
  private readonly messageTokens = new WeakMap<ChatMessage, number>();

  constructor(countText: (text: string) => number) {
    this.countText = countText;
  }

  text(text: string): number {
    return text.length === 0 ? 0 : this.countText(text);
  }

  message(message: ChatMessage): number {
    const cached = this.messageTokens.get(message);
    if (cached !== undefined) return cached;
    const tokens = TOKENS_PER_MESSAGE + this.text(message.role) + this.content(message);
    this.messageTokens.set(message, tokens);
    return tokens;
  }

  /** The whole prompt: every message, plus the priming of the reply. */
  prompt(messages: readonly ChatMessage[]): number {
    let total = REPLY_PRIMING_TOKENS;
    for (const message of messages) total += this.message(message);
    return total;
  }

  private content(message: ChatMessage): number {
    switch (message.role) {
      case 'system':
      case 'tool':
        return this.text(message.content);
      case 'user':
        return typeof message.content === 'string' ? this.text(message.content) : this.parts(message.content);
      case 'assistant': {
        let tokens = message.content === null ? 0 : this.text(message.content);
        // The upstream renders tool calls in its own hidden format; their name and arguments are what it costs.
        for (const call of message.tool_calls ?? []) {
          tokens += this.text(call.function.name) + this.text(call.function.arguments);
        }
        return tokens;
      }
    }
  }

  private parts(parts: readonly ChatContentPart[]): number {
    let tokens = 0;
    for (const part of parts) {
      if (part.type === 'text') tokens += this.text(part.text);
      else tokens += part.image_url.detail === 'low' ? IMAGE_TOKENS_LOW_DETAIL : IMAGE_TOKENS_DEFAULT;
    }
    return tokens;
  }
}

/** The o200k_base counter: for OpenAI-compatible upstreams, which report their own usage whenever they can. */
export const O200K = new TokenCounter((text) => countTokens(text, PLAIN_TEXT));

export const countTextTokens = (text: string): number => O200K.text(text);
export const countMessageTokens = (message: ChatMessage): number => O200K.message(message);
export const countPromptTokens = (messages: readonly ChatMessage[]): number => O200K.prompt(messages);
