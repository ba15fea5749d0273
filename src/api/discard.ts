import type { IncomingMessage } from 'node:http';

/** How long the rest of a refused request body is read and dropped before its connection is closed. */
export const DISCARD_MS = 10_000;

/** The requests whose bodies are being read and dropped: their responses keep the connection (see app.ts). */
const discarding = new WeakSet<IncomingMessage>();

/**
 * After an upload is refused mid-body (too large, a bad field), the client is usually still sending. The rest is
 * read and dropped while the error response goes out, and the connection stays open until the body has ended: a
 * connection closed under a client still sending is reset, and a reset can reach the client before it has read the
 * response, which it then never sees. A client that keeps sending past DISCARD_MS is disconnected.
 */
export function discardRest(raw: IncomingMessage): void {
  if (raw.readableEnded || raw.destroyed) return;
  discarding.add(raw);
  raw.unpipe();
  raw.resume();
  const timer = setTimeout(() => raw.socket?.destroy(), DISCARD_MS);
  timer.unref();
  const stop = () => clearTimeout(timer);
  raw.once('end', stop);
  raw.once('close', stop);
}

/** Whether the rest of this request's body is being dropped, bounded by DISCARD_MS (`discardRest`). */
export function isDiscarding(raw: IncomingMessage): boolean {
  return discarding.has(raw);
}
