import { newId } from './ids.ts';
import type { ImageDetail, Message, MessageAttachment, MessageContent, MessageRole, Metadata } from './objects.ts';
import { clientMessage } from './run-state-machine.ts';

/** Message content as a client sends it: a string, or parts whose text is a plain string. */
export type MessageContentInput =
  | string
  | Array<
      | { type: 'text'; text: string }
      | { type: 'image_file'; image_file: { file_id: string; detail?: ImageDetail | undefined } }
      | { type: 'image_url'; image_url: { url: string; detail?: ImageDetail | undefined } }
    >;

export interface NewMessageInput {
  role: MessageRole;
  content: MessageContentInput;
  attachments?: MessageAttachment[] | null | undefined;
  metadata?: Metadata | undefined;
}

/** A string becomes one `text` part with no annotations, as upstream stores it. */
export function toMessageContent(input: MessageContentInput): MessageContent[] {
  if (typeof input === 'string') return [{ type: 'text', text: { value: input, annotations: [] } }];
  return input.map((part): MessageContent => {
    switch (part.type) {
      case 'text':
        return { type: 'text', text: { value: part.text, annotations: [] } };
      case 'image_file':
        return {
          type: 'image_file',
          image_file: { file_id: part.image_file.file_id, detail: part.image_file.detail ?? 'auto' },
        };
      default:
        return { type: 'image_url', image_url: { url: part.image_url.url, detail: part.image_url.detail ?? 'auto' } };
    }
  });
}

/** A message added by a client (create message, create thread, a run's additional_messages): complete at once. */
export function newClientMessage(threadId: string, input: NewMessageInput, createdAt: number): Message {
  return clientMessage({
    id: newId('message'),
    created_at: createdAt,
    thread_id: threadId,
    role: input.role,
    content: toMessageContent(input.content),
    assistant_id: null,
    run_id: null,
    attachments: input.attachments ?? [],
    metadata: input.metadata ?? {},
  });
}

/**
 * A message on the wire: every field present, in upstream's order. Defined here, not in the API layer, because
 * storage keeps each message as exactly this JSON so that lists are served without re-encoding.
 */
export function messageToWire(m: Message) {
  return {
    id: m.id,
    object: 'thread.message' as const,
    created_at: m.created_at,
    assistant_id: m.assistant_id,
    thread_id: m.thread_id,
    run_id: m.run_id,
    status: m.status,
    incomplete_details: m.incomplete_details,
    completed_at: m.completed_at,
    incomplete_at: m.incomplete_at,
    role: m.role,
    content: m.content,
    attachments: m.attachments,
    metadata: m.metadata,
  };
}
