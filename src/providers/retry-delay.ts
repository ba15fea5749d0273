const MAX_BACKOFF_MS = 8000;
/** The longest wait an upstream asks for that a retry waits out; a longer one is not retried. */
export const MAX_RETRY_AFTER_MS = 60_000;

/**
 * How long to wait before retrying an upstream request after its `attempt`-th failure (from 0): the upstream's
 * `retry-after` when it gave one of at most a minute, else exponential backoff from 500 ms up to 8 s, with jitter
 * so that the runs a rate limit failed together do not all come back at once.
 */
export function retryDelayMs(attempt: number, retryAfterMs: number | undefined): number {
  if (retryAfterMs !== undefined && retryAfterMs <= MAX_RETRY_AFTER_MS) return retryAfterMs;
  return Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
}
