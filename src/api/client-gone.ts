import type { FastifyReply } from 'fastify';
import { ApiError } from '../domain/errors.ts';

/**
 * A signal aborted once the client's answer is done with: sent, or its connection gone — already, if it went while
 * the request was read and authorised, when no `close` is left to come.
 */
export function untilClientGone(reply: FastifyReply): AbortSignal {
  const gone = new AbortController();
  if (reply.raw.destroyed) gone.abort();
  else reply.raw.once('close', () => gone.abort());
  return gone.signal;
}

/** A failure once the client is gone: never sent, and not the server's error, which anything else is logged as. */
export function clientGone(): ApiError {
  return new ApiError(499, 'The client closed the request.', { code: 'client_closed' });
}
