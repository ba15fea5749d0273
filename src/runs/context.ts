import type { Message, MessageContent } from '../domain/objects.ts';
import type { RunStep, TruncationStrategy } from '../domain/runs.ts';
import { type ChatContentPart, type ChatMessage, imageUrlNote } from '../providers/provider.ts';
import { O200K, REPLY_PRIMING_TOKENS, type TokenCounter } from './tokens.ts';

/**
 * Builds the upstream prompt of one model turn of a run: the instructions, the thread's messages (truncated to the
 * run's strategy and token budget), then the run's tool rounds so far. Pure: no I/O.
 */

export interface ContextInput {
  /** run.instructions (already including additional_instructions); '' → no system message. */
  instructions: string;
  /** The thread's messages, oldest first. */
  threadMessages: Message[];
  /** This run's completed tool_calls steps, oldest first, with their outputs filled in. */
  toolRounds: RunStep[];
  truncation: TruncationStrategy;
  /** The model's context size in tokens. */
  contextWindow: number;
  /** The remaining prompt-token budget of this turn, or null for unlimited. */
  maxPromptTokens: number | null;
  /** Tokens to keep free in the context window for the answer. */
  reservedCompletionTokens: number;
  /** The model's tokenizer; default o200k_base. */
  tokens?: TokenCounter;
}

/**
 * On success, `messages` is the prompt and `promptTokens` its `tokens.prompt()`. The message objects are shared
 * with later builds (see toChatMessage): send them, never mutate them.
 */
export type ContextResult =
  | { ok: true; messages: ChatMessage[]; promptTokens: number; droppedMessages: number }
  | {
      ok: false;
      reason: 'max_prompt_tokens' | 'context_window';
      /** The tokens of the smallest prompt tried: system + the most recent thread message + the tool rounds. */
      promptTokens: number;
    };

export function buildContext(input: ContextInput): ContextResult {
  const { threadMessages, truncation } = input;
  const tokens = input.tokens ?? O200K;
  const countMessageTokens = (message: ChatMessage) => tokens.message(message);

  const head: ChatMessage[] = input.instructions === '' ? [] : [{ role: 'system', content: input.instructions }];
  const tail: ChatMessage[] = input.toolRounds.flatMap(toolRoundMessages);
  let fixedTokens = REPLY_PRIMING_TOKENS;
  for (const message of head) fixedTokens += countMessageTokens(message);
  for (const message of tail) fixedTokens += countMessageTokens(message);

  // `last_messages: N` first narrows the thread to its N most recent messages; the budget then applies within them.
  let candidates: readonly Message[] = threadMessages;
  if (truncation.type === 'last_messages' && truncation.last_messages !== null) {
    const n = Math.max(0, Math.floor(truncation.last_messages));
    candidates = n === 0 ? [] : threadMessages.slice(-n);
  }

  const windowBudget = input.contextWindow - input.reservedCompletionTokens;
  // When both limits are equal, max_prompt_tokens is named: the run then ends `incomplete`, as upstream does.
  const promptLimit = input.maxPromptTokens ?? Number.POSITIVE_INFINITY;
  const budget = Math.min(promptLimit, windowBudget);
  const reason = promptLimit <= windowBudget ? 'max_prompt_tokens' : 'context_window';

  // Always kept: system, tool rounds and the most recent thread message.
  const last = candidates.length > 0 ? toChatMessage(candidates[candidates.length - 1]!) : undefined;
  let total = fixedTokens + (last === undefined ? 0 : countMessageTokens(last));
  if (total > budget) return { ok: false, reason, promptTokens: total };

  // Then the first (oldest) message if it fits: it often sets up the conversation. Then as many of the most recent
  // ones as fit, contiguous from the newest backwards; whatever lies between is dropped. Each message is converted
  // and counted at most once, and counting stops at the first message that does not fit.
  let first: ChatMessage | undefined;
  if (candidates.length >= 2) {
    const message = toChatMessage(candidates[0]!);
    const cost = countMessageTokens(message);
    if (total + cost <= budget) {
      first = message;
      total += cost;
    }
  }
  const recent: ChatMessage[] = []; // newest first
  for (let i = candidates.length - 2; i >= 1; i--) {
    const message = toChatMessage(candidates[i]!);
    const cost = countMessageTokens(message);
    if (total + cost > budget) break;
    recent.push(message);
    total += cost;
  }

  const messages: ChatMessage[] = [...head];
  if (first !== undefined) messages.push(first);
  for (let i = recent.length - 1; i >= 0; i--) messages.push(recent[i]!);
  if (last !== undefined) messages.push(last);
  messages.push(...tail);
  const kept = (first === undefined ? 0 : 1) + recent.length + (last === undefined ? 0 : 1);
  return { ok: true, messages, promptTokens: total, droppedMessages: threadMessages.length - kept };
}

// A run's turns, and the runs that follow on the same thread, rebuild their context from the same messages: the
// conversion (and so, through tokens.ts, the count) is kept per Message object. Only finished messages are cached:
// their content no longer changes (modifying a message changes only its metadata).
const converted = new WeakMap<Message, ChatMessage>();

/** One thread message as a chat message. */
export function toChatMessage(message: Message): ChatMessage {
  const cached = converted.get(message);
  if (cached !== undefined) return cached;
  // An `incomplete` message (a cancelled or cut-off answer) keeps its partial text, like upstream.
  const chat = message.role === 'user' ? userMessage(message.content) : assistantMessage(message.content);
  if (message.status !== 'in_progress') converted.set(message, chat);
  return chat;
}

function userMessage(content: readonly MessageContent[]): ChatMessage {
  const parts: ChatContentPart[] = content.map((part): ChatContentPart => {
    if (part.type === 'image_url') {
      return { type: 'image_url', image_url: { url: part.image_url.url, detail: part.image_url.detail } };
    }
    return { type: 'text', text: partText(part) };
  });
  if (parts.some((part) => part.type === 'image_url')) return { role: 'user', content: parts };
  return { role: 'user', content: joinText(parts) };
}

function assistantMessage(content: readonly MessageContent[]): ChatMessage {
  // Chat Completions takes no images in assistant messages: they become a note in the text.
  const parts = content.map((part): ChatContentPart => {
    if (part.type === 'image_url') return { type: 'text', text: imageUrlNote(part.image_url.url) };
    return { type: 'text', text: partText(part) };
  });
  return { role: 'assistant', content: joinText(parts) };
}

function partText(part: Exclude<MessageContent, { type: 'image_url' }>): string {
  switch (part.type) {
    case 'text':
      return part.text.value;
    case 'refusal':
      return part.refusal;
    case 'image_file':
      // The Files API does not exist in assistd yet, so there are no bytes to send: the model only learns that the
      // message referred to a file.
      return `[image file ${part.image_file.file_id}]`;
  }
}

function joinText(parts: readonly ChatContentPart[]): string {
  return parts.map((part) => (part.type === 'text' ? part.text : '')).join('\n');
}

/** One completed tool_calls step: the assistant's calls, then one tool message per call, in order. */
export function toolRoundMessages(step: RunStep): ChatMessage[] {
  if (step.step_details.type !== 'tool_calls' || step.step_details.tool_calls.length === 0) return [];
  const calls = step.step_details.tool_calls;
  return [
    {
      role: 'assistant',
      content: null,
      tool_calls: calls.map((call) => ({
        id: call.id,
        type: 'function' as const,
        function: { name: call.function.name, arguments: call.function.arguments },
      })),
    },
    ...calls.map((call): ChatMessage => ({ role: 'tool', tool_call_id: call.id, content: call.function.output ?? '' })),
  ];
}
