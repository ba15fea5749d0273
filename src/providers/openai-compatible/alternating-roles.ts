import type { ChatContentPart, ChatMessage } from '../provider.ts';

/**
 * Messages of one role in a row, joined, for the endpoints whose chat template refuses them. A thread may hold two
 * user messages in a row (a question, then a file; a message added after a run that failed; truncation that dropped
 * the answers between) or two assistant messages (one a client added, then a run's answer), or begin with an
 * assistant's greeting. OpenAI's API and most templates take them as they are; the templates of Mistral's, Gemma's
 * and Llama 2's models, as vLLM, llama.cpp or LM Studio render them, raise "Conversation roles must alternate
 * user/assistant/user/assistant/...", mistral_common (vLLM's Mistral tokenizer) says "Unexpected role 'assistant'
 * after role 'assistant'", Perplexity's API "user and assistant roles should be alternating", DeepSeek's reasoner
 * "does not support successive user or assistant messages" and "The first message (except the system message) of
 * deepseek-reasoner must be a user message".
 */
const REFUSED =
  /roles must alternate|roles should be alternating|should alternate with assistant|unexpected role '\w+' after role|successive user or assistant messages|first message \(except the system message\)/i;

/** Whether an endpoint's error message says it refused roles in a row. */
export function refusesRowsOfRoles(message: string | undefined): boolean {
  return message !== undefined && REFUSED.test(message);
}

const ROW_SEPARATOR = '\n\n';

/**
 * The messages with each row of user messages, and each row of assistant messages without tool calls before the
 * row's last, joined into one: the model reads the same text in the same order. A conversation that begins with the
 * assistant (after the system message) gets an empty user message before it, where the templates want the user's
 * turn. The messages given are not changed; when nothing needs changing, they are returned as they are.
 */
export function joinedInRows(messages: ChatMessage[]): ChatMessage[] {
  const joined: ChatMessage[] = [];
  for (const message of messages) {
    const previous = joined[joined.length - 1];
    if (previous?.role === 'user' && message.role === 'user') joined[joined.length - 1] = joinUser(previous, message);
    else if (previous?.role === 'assistant' && message.role === 'assistant' && previous.tool_calls === undefined)
      joined[joined.length - 1] = joinAssistant(previous, message);
    else if (message.role === 'assistant' && (previous === undefined || previous.role === 'system'))
      joined.push({ role: 'user', content: '' }, message);
    else joined.push(message);
  }
  const same = joined.length === messages.length && joined.every((message, i) => message === messages[i]);
  return same ? messages : joined;
}

type UserMessage = Extract<ChatMessage, { role: 'user' }>;
type AssistantMessage = Extract<ChatMessage, { role: 'assistant' }>;

function joinUser(a: UserMessage, b: UserMessage): UserMessage {
  if (typeof a.content === 'string' && typeof b.content === 'string')
    return { role: 'user', content: a.content + ROW_SEPARATOR + b.content };
  const parts = (content: string | ChatContentPart[]): ChatContentPart[] =>
    typeof content === 'string' ? [{ type: 'text', text: content }] : content;
  const content = [...parts(a.content)];
  for (const [i, part] of parts(b.content).entries()) {
    const end = content[content.length - 1];
    if (i === 0 && end?.type === 'text' && part.type === 'text')
      content[content.length - 1] = { type: 'text', text: end.text + ROW_SEPARATOR + part.text };
    else content.push(part);
  }
  return { role: 'user', content };
}

/** `a` has no tool calls; `b`, the later one, keeps its own (and its reasoning). */
function joinAssistant(a: AssistantMessage, b: AssistantMessage): AssistantMessage {
  const texts = [a.content, b.content].filter((text): text is string => text !== null && text !== '');
  return { ...b, content: texts.length === 0 ? b.content : texts.join(ROW_SEPARATOR) };
}
