import { EventSourceParserStream } from 'eventsource-parser/stream';
import { send } from './api.ts';

/** One server-sent event of a run: `thread.run.created`, `thread.message.delta`, … (the `done` event ends the stream). */
export interface StreamEvent {
  event: string;
  data: unknown;
}

/**
 * The events of a streamed run: `POST /runs` or `/submit_tool_outputs` with `stream: true`, or the re-attach stream
 * `GET /runs/{id}/events`. Read with fetch (EventSource cannot send the key) and parsed by eventsource-parser;
 * an `error` event throws its message, `done` ends the iteration.
 */
export async function* runEvents(
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  signal?: AbortSignal,
): AsyncGenerator<StreamEvent> {
  const response = await send(method, path, body, signal);
  if (response.body === null) return;
  const events = response.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
  const reader = events.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || value.event === 'done') return;
      const data = JSON.parse(value.data) as unknown;
      if (value.event === 'error') throw new Error(errorMessage(data));
      yield { event: value.event ?? 'message', data };
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
}

function errorMessage(data: unknown): string {
  const error = (data as { error?: { message?: string }; message?: string }) ?? {};
  return error.error?.message ?? error.message ?? 'The run stream reported an error.';
}
