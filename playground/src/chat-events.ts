import type { Message, MessageContent, MessageDeltaEvent } from 'openai/resources/beta/threads/messages';
import type { Run } from 'openai/resources/beta/threads/runs/runs';
import type { StreamEvent } from './sse.ts';

/** What a thread's chat shows of a streamed run: the thread's messages and the run as its events last said. */
export interface ChatState {
  messages: Message[];
  run: Run | undefined;
}

/**
 * One event of a streamed run applied to the chat: run events replace the run, a created message is appended, text
 * deltas grow the message they belong to (so the answer appears token by token), a completed message replaces the
 * grown one with the server's (its annotations resolved). Step events are the timeline's business.
 */
export function applyEvent(state: ChatState, streamed: StreamEvent): ChatState {
  const { event, data } = streamed;
  const run = runOf(streamed);
  if (run) return { ...state, run };
  if (
    event === 'thread.message.created' ||
    event === 'thread.message.completed' ||
    event === 'thread.message.incomplete'
  )
    return { ...state, messages: upsert(state.messages, data as Message) };
  if (event === 'thread.message.delta') {
    const delta = data as MessageDeltaEvent;
    return {
      ...state,
      messages: state.messages.map((message) =>
        message.id === delta.id ? { ...message, content: grow(message.content, delta) } : message,
      ),
    };
  }
  return state;
}

/** The run a run event (`thread.run.*`, not a step's) carries. */
export function runOf({ event, data }: StreamEvent): Run | undefined {
  return event.startsWith('thread.run.') && !event.startsWith('thread.run.step.') ? (data as Run) : undefined;
}

function upsert(messages: Message[], message: Message): Message[] {
  const at = messages.findIndex((m) => m.id === message.id);
  if (at === -1) return [...messages, message];
  return messages.map((m, i) => (i === at ? message : m));
}

function grow(content: MessageContent[], delta: MessageDeltaEvent): MessageContent[] {
  const grown = [...content];
  for (const part of delta.delta.content ?? []) {
    const existing = grown[part.index];
    if (part.type === 'text') {
      const value = part.text?.value ?? '';
      grown[part.index] =
        existing?.type === 'text'
          ? { ...existing, text: { ...existing.text, value: existing.text.value + value } }
          : { type: 'text', text: { value, annotations: [] } };
    } else if (part.type === 'image_file' && part.image_file?.file_id) {
      grown[part.index] = { type: 'image_file', image_file: { file_id: part.image_file.file_id } };
    }
  }
  return grown;
}

/** A run that will still change by itself (requires_action waits for the user, so it is not "active" here). */
export function isActive(run: Run | undefined): boolean {
  return run !== undefined && ['queued', 'in_progress', 'cancelling'].includes(run.status);
}

/**
 * A run "Cancel run" applies to: an active one, or one waiting for tool outputs, which would otherwise block the
 * thread (no message can be sent while it waits) until it expires.
 */
export function isCancellable(run: Run | undefined): boolean {
  return isActive(run) || run?.status === 'requires_action';
}

/**
 * What the chat says of a run that ended without its answer: a failed run's `last_error` (an upstream's refused key,
 * say), an expiry, an incomplete end's reason. Undefined for any other run: its messages say how it went.
 */
export function endProblem(run: Run | undefined): string | undefined {
  if (run?.status === 'failed') return `The run failed: ${run.last_error?.message ?? 'no reason was given.'}`;
  if (run?.status === 'expired') return 'The run expired before it could end.';
  if (run?.status === 'incomplete')
    return `The run ended incomplete: ${run.incomplete_details?.reason ?? 'no reason was given'}.`;
  return undefined;
}
