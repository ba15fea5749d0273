import { createParser } from 'eventsource-parser';
import { assertMatchesSchema } from './openapi.ts';

export interface SseEvent {
  event: string;
  // biome-ignore lint/suspicious/noExplicitAny: event payloads are inspected field by field in assertions
  data: any;
}

/**
 * Reads a whole SSE response (until the server ends it), validating every frame against the official
 * `AssistantStreamEvent` schema. `onEvent` sees each event as it arrives (e.g. to cancel mid-stream).
 */
export async function readSse(
  response: Response,
  onEvent?: (event: SseEvent) => void | Promise<void>,
): Promise<SseEvent[]> {
  if (!response.headers.get('content-type')?.startsWith('text/event-stream'))
    throw new Error(`not an event stream (${response.status}): ${await response.text()}`);
  const events: SseEvent[] = [];
  const pending: Array<SseEvent> = [];
  const parser = createParser({
    onEvent: (message) => {
      const data = message.data === '[DONE]' ? message.data : JSON.parse(message.data);
      const event = { event: message.event ?? 'message', data };
      assertMatchesSchema('AssistantStreamEvent', event, `SSE ${event.event}`);
      pending.push(event);
    },
  });
  const decoder = new TextDecoder();
  for await (const chunk of response.body!) {
    parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }));
    for (const event of pending.splice(0)) {
      events.push(event);
      await onEvent?.(event);
    }
  }
  return events;
}

export async function postSse(url: string, body: unknown, onEvent?: (event: SseEvent) => void | Promise<void>) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return readSse(response, onEvent);
}

/** The event names, with runs of deltas collapsed to one `…delta*` entry, for comparing sequences. */
export function eventNames(events: SseEvent[]): string[] {
  const names: string[] = [];
  for (const { event } of events) {
    const name = event.endsWith('.delta') ? `${event}*` : event;
    if (name.endsWith('*') && names.at(-1) === name) continue;
    names.push(name);
  }
  return names;
}

/** The events of a model turn that writes a message, as eventNames lists them. */
export const MESSAGE_TURN = [
  'thread.run.step.created',
  'thread.run.step.in_progress',
  'thread.message.created',
  'thread.message.in_progress',
  'thread.message.delta*',
  'thread.message.completed',
  'thread.run.step.completed',
];

/** A run that answers, streamed from its creation. */
export const ANSWERED = [
  'thread.run.created',
  'thread.run.queued',
  'thread.run.in_progress',
  ...MESSAGE_TURN,
  'thread.run.completed',
  'done',
];
