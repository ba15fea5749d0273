import type { IncomingHttpHeaders } from 'node:http';
import { invalidRequest } from '../domain/errors.ts';

/** The request header of queued runs (README "Queued runs"), an assistd extension. */
export const QUEUE_HEADER = 'x-assistd-queue';

/**
 * Whether a run or message creation queues behind its thread's active run (`x-assistd-queue: true`) or is refused
 * as upstream refuses it (`false`); without the header, the server's setting (ASSISTD_QUEUE_RUNS). Any other value
 * is a 400: a client asking for queueing in a way that is not understood must not get the refusal it tried to avoid.
 */
export function queueRequested(headers: IncomingHttpHeaders, byDefault: boolean): boolean {
  const value = headers[QUEUE_HEADER];
  if (value === undefined) return byDefault;
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw invalidRequest(
    `Invalid value for header '${QUEUE_HEADER}': '${String(value)}'. Supported values are: 'true' and 'false'.`,
    null,
    'invalid_header',
  );
}
