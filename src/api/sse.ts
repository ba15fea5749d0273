import type { OutgoingHttpHeaders } from 'node:http';
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

/** What an event stream's response says of itself, besides what was set before the route (CORS). */
export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
} as const;

/** A frame of a Chat Completions stream, which names no events: `data: <one-line JSON>\n\n`. */
export function dataFrame(value: unknown): string {
  return `data: ${JSON.stringify(value)}\n\n`;
}

/** The end of a Chat Completions stream. */
export const DATA_DONE = 'data: [DONE]\n\n';
/**
 * A comment line, sent once a stream has been silent for `keepAliveMs` (a long prompt read by a slow model, a long
 * code cell): it keeps idle proxies and load balancers from closing the stream. The official SDKs ignore it, but a
 * few parsers refuse any comment (upstream sent none), hence the setting, and never while frames flow.
 */
const HEARTBEAT = ': keep-alive\n\n';

/**
 * `event: <name>\ndata: <one-line JSON>\n\n`, with the data serialized as its wire object (steps with what the
 * request's `include[]` asked for).
 *
 * The last frame made is kept: the bus hands one event to every stream following the run, one after the other,
 * and they share one serialization of it instead of making one each.
 */
export function frame(e: RunStreamEvent, include: StepInclude = NO_INCLUDE): string {
  if (e === lastEvent && include === lastInclude) return lastFrame;
  lastFrame = `event: ${e.event}\ndata: ${JSON.stringify(wire(e, include))}\n\n`;
  lastEvent = e;
  lastInclude = include;
  return lastFrame;
}

let lastEvent: RunStreamEvent | undefined;
let lastInclude: StepInclude | undefined;
let lastFrame = '';

/**
 * An event's data on the wire. An `error` event's is the error (the spec's ErrorEvent) and the error again under
 * `error`: the Python SDK's stream helpers (`runs.stream`, `submit_tool_outputs_stream`) raise only for data with an
 * `error` field, and without one would end the stream as if the run were over; the node SDK reads either.
 */
function wire(e: RunStreamEvent, include: StepInclude): unknown {
  if (e.event === 'thread.created') return serializeThread(e.data as Thread);
  if (e.event === 'error') return { ...e.data, error: e.data };
  if (e.event === 'thread.run.step.delta' || e.event === 'thread.message.delta') return e.data;
  if (e.event.startsWith('thread.run.step.')) return serializeRunStep(e.data as RunStep, include);
  if (e.event.startsWith('thread.message.')) return serializeMessage(e.data as Message);
  return serializeRun(e.data as Run);
}

export interface SseStream {
  send(event: RunStreamEvent): void;
  /**
   * Writes `done` and ends the response; with `closeConnection`, its connection too once it is sent (at shutdown: a
   * connection kept alive after the server began to close would hold the close until its grace period ends).
   */
  end(options?: { closeConnection?: boolean }): void;
  readonly closed: boolean;
  /** Called once when the client goes away or the stream ends; at once if either happened already. */
  onClose(listener: () => void): void;
}

/** How streams are written: the server's settings. */
export interface StreamSettings {
  /** How much of a stream may wait for its client before its connection is closed (ASSISTD_STREAM_BUFFER_KB). */
  bufferBytes: number;
  /** How long a stream may be silent before a keep-alive comment is sent; 0: never (ASSISTD_STREAM_KEEPALIVE_S). */
  keepAliveMs: number;
}

export const DEFAULT_STREAM_SETTINGS: StreamSettings = { bufferBytes: 1024 * 1024, keepAliveMs: 15_000 };

/**
 * Takes over the response for server-sent events. Frames are written as soon as they are sent, those of one tick
 * together; a slow client never blocks the run. Proxy buffering is disabled by header.
 *
 * A client that reads slower than its run writes (or stops reading) leaves frames waiting in this process, after
 * the kernel's socket buffers are full. Once more than `bufferBytes` wait from earlier ticks, the connection
 * is closed (at the next frame): the server's memory stays bounded whatever its clients do, and the run goes on —
 * it is stored as it happens, and its client can retrieve it, or re-attach (GET …/runs/{run_id}/events) and stream
 * the rest.
 */
export function openSse(
  reply: FastifyReply,
  include: StepInclude = NO_INCLUDE,
  { bufferBytes, keepAliveMs }: StreamSettings = DEFAULT_STREAM_SETTINGS,
): SseStream {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    ...(reply.getHeaders() as OutgoingHttpHeaders), // those set before the route (CORS)
    ...SSE_HEADERS,
    // No `connection` header of its own: Node keeps the connection alive, unless the request said `Connection:
    // close` (PHP's http stream wrapper, under openai-php's Guzzle, does), when it closes it after the stream, as
    // HTTP/1.1 requires. Forcing keep-alive left such a client reading until the idle connection timed out.
    'x-request-id': String(reply.request.id),
  });
  let closed = false;
  const listeners: Array<() => void> = [];
  // Re-armed once per tick that writes (batch), not per frame.
  const heartbeat =
    keepAliveMs > 0
      ? setTimeout(function beat() {
          res.write(HEARTBEAT);
          heartbeat!.refresh();
        }, keepAliveMs)
      : undefined;
  const streamEnded = reply.server.metrics?.streamOpened();
  const close = () => {
    if (closed) return;
    closed = true;
    clearTimeout(heartbeat);
    streamEnded?.();
    for (const listener of listeners) listener();
  };
  // A client may leave while the stream's run is being created or read (streamRun, /events): its `close` is gone by
  // then, and without this its subscription, keep-alive timer and count would last until the run ends.
  if (res.destroyed) close();
  else res.once('close', close);
  // Frames sent in the same tick (a step and a message opening with their first delta, a run's closing events)
  // leave in one write: one syscall and one read for the client instead of one per frame. The headers go with the
  // first frames, which a stream sends in the tick it opens (or alone, if it sent none).
  let corked = false;
  let wrote = false;
  /** What this tick's frames added to what waits (they leave together when it ends). */
  let tickLength = 0;
  const uncork = () => {
    if (!corked) return;
    corked = false;
    tickLength = 0;
    if (!wrote && !closed) res.flushHeaders();
    res.uncork();
  };
  const batch = () => {
    if (corked) return;
    corked = true;
    heartbeat?.refresh();
    res.cork();
    process.nextTick(uncork);
  };
  batch();
  return {
    send: (event) => {
      if (closed) return;
      // What earlier ticks left waiting, not this tick's frames: those always go together (a re-attached stream's
      // snapshot, or a long message completed with its step and run, may be larger than the bound), and a stream
      // never holds more than the bound and one tick's frames.
      const waiting = res.writableLength - tickLength;
      if (waiting > bufferBytes) {
        reply.log.info({ waitingBytes: waiting }, 'stream closed: its client is not reading it (its run goes on)');
        reply.server.metrics?.streamUnreadClosed();
        res.destroy();
        close();
        return;
      }
      batch();
      wrote = true;
      const text = frame(event, include);
      const before = res.writableLength;
      res.write(text);
      tickLength += res.writableLength - before;
    },
    end: (options) => {
      if (closed) return;
      const { socket } = res; // detached from the response once it is sent
      // What this tick wrote goes first: Node 22 writes a chunked response's last chunk ahead of corked frames
      // ended with it, and the client then never reads them (the run's closing events and `done`).
      uncork();
      res.end(DONE, options?.closeConnection ? () => socket?.end() : undefined);
      close();
    },
    get closed() {
      return closed;
    },
    onClose: (listener) => {
      if (closed) listener();
      else listeners.push(listener);
    },
  };
}
