import type { FastifyReply } from 'fastify';
import type { Message, Thread } from '../domain/objects.ts';
import type { RunStreamEvent } from '../domain/run-events.ts';
import type { Run, RunStep } from '../domain/runs.ts';
import {
  NO_INCLUDE,
  type StepInclude,
  serializeMessage,
  serializeRun,
  serializeRunStep,
  serializeThread,
} from './serializers.ts';

/** Every stream ends with this frame; the SDK stops reading at `data: [DONE]`. */
const DONE = 'event: done\ndata: [DONE]\n\n';
/** A comment line: ignored by every SSE client, it keeps idle proxies and load balancers from closing the stream. */
const HEARTBEAT = ': keep-alive\n\n';
const HEARTBEAT_MS = 15_000;

/**
 * `event: <name>\ndata: <one-line JSON>\n\n`, with the data serialized as its wire object (steps with what the
 * request's `include[]` asked for).
 */
export function frame(e: RunStreamEvent, include: StepInclude = NO_INCLUDE): string {
  return `event: ${e.event}\ndata: ${JSON.stringify(wire(e, include))}\n\n`;
}

function wire(e: RunStreamEvent, include: StepInclude): unknown {
  if (e.event === 'thread.created') return serializeThread(e.data as Thread);
  if (e.event === 'thread.run.step.delta' || e.event === 'thread.message.delta' || e.event === 'error') return e.data;
  if (e.event.startsWith('thread.run.step.')) return serializeRunStep(e.data as RunStep, include);
  if (e.event.startsWith('thread.message.')) return serializeMessage(e.data as Message);
  return serializeRun(e.data as Run);
}

export interface SseStream {
  send(event: RunStreamEvent): void;
  /** Writes `done` and ends the response. */
  end(): void;
  readonly closed: boolean;
  /** Called once when the client goes away or the stream ends. */
  onClose(listener: () => void): void;
}

/**
 * Takes over the response for server-sent events. Frames are written as soon as they are sent, those of one tick
 * together; a slow client only grows its own socket buffer, never blocks the run. Proxy buffering is disabled by header.
 */
export function openSse(reply: FastifyReply, include: StepInclude = NO_INCLUDE): SseStream {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
    'x-request-id': String(reply.request.id),
  });
  let closed = false;
  const listeners: Array<() => void> = [];
  const heartbeat = setInterval(() => res.write(HEARTBEAT), HEARTBEAT_MS);
  const streamEnded = reply.server.metrics?.streamOpened();
  const close = () => {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    streamEnded?.();
    for (const listener of listeners) listener();
  };
  res.on('close', close);
  // Frames sent in the same tick (a step and a message opening with their first delta, a run's closing events)
  // leave in one write: one syscall and one read for the client instead of one per frame. The headers go with the
  // first frames, which a stream sends in the tick it opens (or alone, if it sent none).
  let corked = false;
  let wrote = false;
  const uncork = () => {
    corked = false;
    if (!wrote && !closed) res.flushHeaders();
    res.uncork();
  };
  const batch = () => {
    if (corked) return;
    corked = true;
    res.cork();
    process.nextTick(uncork);
  };
  batch();
  return {
    send: (event) => {
      if (closed) return;
      batch();
      wrote = true;
      res.write(frame(event, include));
    },
    end: () => {
      if (closed) return;
      res.end(DONE);
      close();
    },
    get closed() {
      return closed;
    },
    onClose: (listener) => listeners.push(listener),
  };
}
