/**
 * Errors are data: every failure a client can cause is an ApiError carrying the HTTP status and the OpenAI error
 * fields. One handler in api/ renders them as `{"error":{"message","type","param","code"}}`.
 */
export type ErrorType =
  | 'invalid_request_error'
  | 'not_found_error'
  | 'server_error'
  | 'rate_limit_error'
  // OpenAI's types of its own 429s: which limit was reached.
  | 'requests'
  | 'tokens';

export class ApiError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  readonly param: string | null;
  readonly code: string | null;

  constructor(
    status: number,
    message: string,
    options: { type?: ErrorType; param?: string | null; code?: string | null } = {},
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.type = options.type ?? 'invalid_request_error';
    this.param = options.param ?? null;
    this.code = options.code ?? null;
  }
}

/** The server's own failure, worded as it happened. */
export function serverError(message = 'The server had an error while processing your request.'): ApiError {
  return new ApiError(500, message, { type: 'server_error', code: 'server_error' });
}

export function invalidRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, { param, code });
}

/** The official wording: `No thread found with id 'thread_x'.` (type invalid_request_error, code null). */
export function notFound(kind: string, id: string): ApiError {
  return new ApiError(404, `No ${kind} found with id '${id}'.`);
}

/**
 * The Files API's own wording for an unknown file (retrieve, content, delete), as OpenAI answered it:
 * `No such File object: file-x`, naming the `id` parameter.
 */
export function noSuchFile(id: string): ApiError {
  return new ApiError(404, `No such File object: ${id}`, { param: 'id' });
}

/** Upstream's wording when a thread is held by an active run. */
export function threadHasActiveRun(threadId: string, runId: string): ApiError {
  return invalidRequest(`Thread ${threadId} already has an active run ${runId}.`);
}

/** A run's message that its model is still writing: changed only by the run until it is complete. */
export function messageInProgress(messageId: string, runId: string | null): ApiError {
  return invalidRequest(
    `Message ${messageId} is in progress: run ${runId} is still writing it. It can be modified or deleted once it is complete.`,
  );
}

export function messagesLockedByRun(threadId: string, runId: string): ApiError {
  return invalidRequest(`Can't add messages to ${threadId} while a run ${runId} is active.`);
}
