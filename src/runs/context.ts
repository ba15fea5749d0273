import type { Message, MessageContent } from '../domain/objects.ts';
import type { ModelToolCall, RunStep, TruncationStrategy } from '../domain/runs.ts';
import { type ChatContentPart, type ChatMessage, imageUrlNote, type ModelReasoning } from '../providers/provider.ts';
import { imageFileId, imageFileUrl } from './image-files.ts';
import { type CountedMessage, O200K, REPLY_PRIMING_TOKENS, type TokenCounter } from './tokens.ts';

/**
 * Builds the upstream prompt of one model turn of a run: the instructions, the thread's messages (truncated to the
 * run's strategy and token budget), then the run's tool rounds so far. Pure: no I/O. A user message's image_file
 * part becomes an image_url part with a placeholder URL naming the file (image-files.ts), for the executor to
 * replace with the file's bytes.
 */

export interface ContextInput {
  /** run.instructions (already including additional_instructions); '' → no system message. */
  instructions: string;
  /** The thread's messages, oldest first: all of them, or its first and its most recent (`olderUnread`). */
  threadMessages: Message[];
  /** Messages between threadMessages[0], the thread's first, and threadMessages[1] were not read (ThreadWindow). */
  olderUnread?: boolean;
  /** This run's completed tool_calls steps, oldest first, with their outputs filled in. */
  toolRounds: ToolRound[];
  truncation: TruncationStrategy;
  /** The model's context size in tokens. */
  contextWindow: number;
  /** The remaining prompt-token budget of this turn, or null for unlimited. */
  maxPromptTokens: number | null;
  /** Tokens to keep free in the context window for the answer. */
  reservedCompletionTokens: number;
  /** What the definitions of the tools offered to the model add to the prompt; default 0. */
  toolDefinitionTokens?: number;
  /** The model's tokenizer; default o200k_base. */
  tokens?: TokenCounter;
}

/**
 * On success, `messages` is the prompt and `promptTokens` its `tokens.prompt()`; `droppedMessages` counts the given
 * thread messages it leaves out. The message objects of finished thread messages are shared with later builds (see
 * TokenCounter.finished): send them, never mutate them. `unread`: the prompt may show messages that were not read
 * (`olderUnread`): build again with more.
 */
export type ContextResult =
  | { ok: true; messages: ChatMessage[]; promptTokens: number; droppedMessages: number }
  | { ok: false; reason: 'unread' }
  | {
      ok: false;
      reason: 'max_prompt_tokens' | 'context_window';
      /**
       * The tokens of the smallest prompt tried: system, tool definitions, the most recent thread message, the tool
       * rounds.
       */
      promptTokens: number;
    };

export async function buildContext(input: ContextInput): Promise<ContextResult> {
  const { threadMessages, truncation } = input;
  const tokens = input.tokens ?? O200K;

  // The instructions and the finished thread messages are counted once, then remembered by the counter (by text and
  // by message id): a turn tokenises only what is new since the thread's previous turn, plus this run's tool rounds.
  const head: ChatMessage[] = input.instructions === '' ? [] : [{ role: 'system', content: input.instructions }];
  const tail: ChatMessage[] = input.toolRounds.flatMap(toolRoundMessages);
  let fixedTokens =
    REPLY_PRIMING_TOKENS +
    (input.toolDefinitionTokens ?? 0) +
    (input.instructions === '' ? 0 : await tokens.system(input.instructions));
  for (const message of tail) fixedTokens += await tokens.message(message);

  // `last_messages: N` first narrows the thread to its N most recent messages; the budget then applies within them.
  let candidates: readonly Message[] = threadMessages;
  let olderUnread = input.olderUnread ?? false;
  if (truncation.type === 'last_messages' && truncation.last_messages !== null) {
    const n = Math.max(0, Math.floor(truncation.last_messages));
    if (olderUnread && n > threadMessages.length - 1) return { ok: false, reason: 'unread' };
    candidates = n === 0 ? [] : threadMessages.slice(-n);
    olderUnread = false;
  }

  const windowBudget = input.contextWindow - input.reservedCompletionTokens;
  // When both limits are equal, max_prompt_tokens is named: the run then ends `incomplete`, as upstream does.
  const promptLimit = input.maxPromptTokens ?? Number.POSITIVE_INFINITY;
  const budget = Math.min(promptLimit, windowBudget);
  const reason = promptLimit <= windowBudget ? 'max_prompt_tokens' : 'context_window';

  // Always kept: system, tool definitions, tool rounds and the most recent thread message; then a user's note when
  // the model is left without a user message to answer (nothingToAnswer).
  const last = candidates.length > 0 ? await counted(candidates[candidates.length - 1]!, tokens) : undefined;
  const note = tail.length === 0 ? nothingToAnswer(last?.message) : undefined;
  let total = fixedTokens + (last === undefined ? 0 : last.tokens);
  if (note !== undefined) total += (await tokens.finished(`note: ${note.content}`, () => note)).tokens;
  if (total > budget) return { ok: false, reason, promptTokens: total };

  // Then the first (oldest) message if it fits: it often sets up the conversation. Then as many of the most recent
  // ones as fit, contiguous from the newest backwards; whatever lies between is dropped. Each message is converted
  // and counted at most once per build (a finished one at most once per counter), and counting stops at the first
  // message that does not fit.
  let first: ChatMessage | undefined;
  if (candidates.length >= 2) {
    const message = await counted(candidates[0]!, tokens);
    if (total + message.tokens <= budget) {
      first = message.message;
      total += message.tokens;
    }
  }
  const recent: ChatMessage[] = []; // newest first
  for (let i = candidates.length - 2; i >= 1; i--) {
    const message = await counted(candidates[i]!, tokens);
    if (total + message.tokens > budget) break;
    recent.push(message.message);
    total += message.tokens;
  }
  // Every message read between the first and the last fits: older ones might too.
  if (olderUnread && recent.length === candidates.length - 2) return { ok: false, reason: 'unread' };

  const messages: ChatMessage[] = [...head];
  if (first !== undefined) messages.push(first);
  for (let i = recent.length - 1; i >= 0; i--) messages.push(recent[i]!);
  if (last !== undefined) messages.push(last.message);
  if (note !== undefined) messages.push(note);
  messages.push(...tail);
  const kept = (first === undefined ? 0 : 1) + recent.length + (last === undefined ? 0 : 1);
  return { ok: true, messages, promptTokens: total, droppedMessages: threadMessages.length - kept };
}

/**
 * One thread message as a chat message, with its tokens. A run's turns, and the runs that follow on the same thread,
 * rebuild their context from the same messages, read afresh from the store each time: a finished message's
 * conversion and count are therefore kept by the counter under the message's id (its content no longer changes:
 * modifying a message changes only its metadata). A message still `in_progress` is converted and counted each time.
 */
async function counted(message: Message, tokens: TokenCounter): Promise<CountedMessage> {
  if (message.status !== 'in_progress') return tokens.finished(message.id, () => convert(message));
  const chat = convert(message);
  return { message: chat, tokens: await tokens.message(chat) };
}

/**
 * One thread message as a chat message: for a finished message that `tokens` has cached, the very object that
 * buildContext sends (never mutate it); otherwise a new conversion, cached nowhere.
 */
export function toChatMessage(message: Message, tokens: TokenCounter = O200K): ChatMessage {
  const cached = message.status === 'in_progress' ? undefined : tokens.cachedFinished(message.id);
  return cached?.message ?? convert(message);
}

function convert(message: Message): ChatMessage {
  // An `incomplete` message (a cancelled or cut-off answer) keeps its partial text, like upstream.
  if (message.role === 'user') return userMessage(message.content);
  const chat = assistantMessage(message.content);
  return (chat.content as string).trim() === '' ? { role: 'assistant', content: NO_ANSWER } : chat;
}

/**
 * An answer of the thread without a word (the model said nothing), as the model reads it: Mistral's, Anthropic's
 * and Gemini's endpoints refuse an assistant message without content, and would fail every later run of the thread.
 */
const NO_ANSWER = '(no answer)';

/**
 * A note in the user's name for a prompt that leaves the model no user message to answer: a run on a thread without
 * messages (an assistant that greets), or started after an assistant's message with nothing new. OpenAI's models
 * just answered; other backends refuse such a prompt (Qwen's chat template: "No user query found in messages";
 * Mistral's: "Expected last role User or Tool"; llama.cpp's with thinking: "Assistant response prefill is
 * incompatible with enable_thinking"; Gemini's without contents), or, Anthropic's, continue the last answer.
 */
function nothingToAnswer(last: ChatMessage | undefined): ChatMessage | undefined {
  if (last === undefined) return NOTHING_YET;
  return last.role === 'assistant' ? NOTHING_SINCE : undefined;
}

const NOTHING_YET: ChatMessage = { role: 'user', content: '(The user has not written anything yet.)' };
const NOTHING_SINCE: ChatMessage = {
  role: 'user',
  content: '(The user has not written anything since your last message.)',
};

function userMessage(content: readonly MessageContent[]): ChatMessage {
  const parts: ChatContentPart[] = content.map((part): ChatContentPart => {
    if (part.type === 'image_url') {
      // A client's URL that looks like a placeholder must not be read as one: it only names itself.
      if (imageFileId(part.image_url.url) !== undefined)
        return { type: 'text', text: imageUrlNote(part.image_url.url) };
      return { type: 'image_url', image_url: { url: part.image_url.url, detail: part.image_url.detail } };
    }
    if (part.type === 'image_file')
      return {
        type: 'image_url',
        image_url: { url: imageFileUrl(part.image_file.file_id), detail: part.image_file.detail },
      };
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
      // Only in assistant messages, which take no images: the model learns that the message showed a file.
      return `[image file ${part.image_file.file_id}]`;
  }
}

function joinText(parts: readonly ChatContentPart[]): string {
  return parts.map((part) => (part.type === 'text' ? part.text : '')).join('\n');
}

/**
 * A completed tool_calls step, with the model's side of its calls where the engine stored it (ModelToolCall), and
 * what the model wrote before its calls in the same turn (a message of the thread, stored on its own).
 */
export type ToolRound = RunStep & {
  model_calls?: ModelToolCall[] | null;
  model_reasoning?: ModelReasoning | null;
  said?: readonly MessageContent[];
};

/**
 * A run's completed tool rounds, each with the message the model wrote before its calls in that turn (the
 * message_creation step just before the round's), and the thread without those messages: the prompt shows each where
 * it was written, in the assistant message of its calls. Sent apart, they all came before every round (`asst "Let me
 * check A.", asst "Now B.", asst(calls 1), tool 1, …`), out of order, and as assistant messages in a row, which strict
 * chat templates (Mistral's, Gemma's) refuse.
 */
export function toolRoundsOfRun(
  steps: readonly (RunStep & { model_calls?: ModelToolCall[] | null; model_reasoning?: ModelReasoning | null })[],
  threadMessages: Message[],
): { toolRounds: ToolRound[]; threadMessages: Message[] } {
  const byId = new Map(threadMessages.map((m) => [m.id, m]));
  const moved = new Set<string>();
  const toolRounds: ToolRound[] = [];
  for (const [i, step] of steps.entries()) {
    if (step.type !== 'tool_calls' || step.status !== 'completed') continue;
    const before = steps[i - 1]?.step_details;
    const said = before?.type === 'message_creation' ? byId.get(before.message_creation.message_id) : undefined;
    if (said === undefined) {
      toolRounds.push(step);
      continue;
    }
    moved.add(said.id);
    toolRounds.push({ ...step, said: said.content });
  }
  if (moved.size === 0) return { toolRounds, threadMessages };
  return { toolRounds, threadMessages: threadMessages.filter((m) => !moved.has(m.id)) };
}

/**
 * One completed tool_calls step as the model made it: the assistant's calls (with the reasoning the model wrote
 * before them, if any), then one tool message per call, in order. A server-side tool's call is shown as the function
 * the model called, with the output it was given; so is a call the step does not show (a stray one, ModelTurn).
 */
export function toolRoundMessages(step: ToolRound): ChatMessage[] {
  if (step.step_details.type !== 'tool_calls') return [];
  const calls: ModelToolCall[] =
    step.model_calls ??
    step.step_details.tool_calls.flatMap((call) =>
      call.type === 'function' ? [{ id: call.id, ...call.function, output: call.function.output }] : [],
    );
  if (calls.length === 0) return [];
  const said = step.said === undefined ? null : (assistantMessage(step.said).content as string);
  const assistant: ChatMessage = {
    role: 'assistant',
    content: said === '' ? null : said,
    tool_calls: calls.map((call) => ({
      id: call.id,
      type: 'function' as const,
      function: { name: call.name, arguments: call.arguments },
      ...(call.extra === undefined ? {} : { extra: call.extra }),
    })),
  };
  if (step.model_reasoning) assistant.reasoning = step.model_reasoning;
  return [
    assistant,
    ...calls.map((call): ChatMessage => ({ role: 'tool', tool_call_id: call.id, content: call.output ?? '' })),
  ];
}
