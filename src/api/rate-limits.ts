import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../domain/errors.ts';
import type { Scope } from '../storage/store.ts';
import { PASSED_THROUGH_ROUTES } from './passed-through-paths.ts';

export interface RateLimitSettings {
  /** ASSISTD_RATE_LIMIT_RPM: requests per minute per key. */
  requestsPerMinute?: number | undefined;
  /** ASSISTD_RATE_LIMIT_TPM: tokens per minute per key. */
  tokensPerMinute?: number | undefined;
}

/** The runs' tokens of a key in a window (Store.tokensUsedSince). */
export type TokensUsed = (scope: Scope, sinceSeconds: number) => Promise<{ tokens: number; oldest: number | null }>;

const MINUTE_MS = 60_000;
/** Buckets kept before the full ones (which say nothing a new bucket would not) are dropped. */
const MAX_BUCKETS = 10_000;

/**
 * The routes that start model work: where the tokens-per-minute limit is checked. The passed-on endpoints
 * (pass-through.ts) are refused once runs used the minute's tokens, though what they use themselves is not counted.
 */
const MODEL_ROUTES = new Set([
  'POST /v1/threads/:thread_id/runs',
  'POST /v1/threads/runs',
  'POST /v1/threads/:thread_id/runs/:run_id/submit_tool_outputs',
  ...PASSED_THROUGH_ROUTES.map((route) => `POST ${route}`),
]);

/**
 * Rate limits per API key, as OpenAI's: every admitted request carries `x-ratelimit-limit-requests`,
 * `x-ratelimit-remaining-requests` and `x-ratelimit-reset-requests` (with the `-tokens` three on the routes that
 * start model work); past a limit the answer is a 429 `rate_limit_exceeded` (type `requests` or `tokens`) with
 * `retry-after` / `retry-after-ms`, which the official SDKs wait for and retry.
 *
 * Requests: a token bucket per key in this process (a minute's allowance, refilled continuously), so with several
 * API processes each admits its own allowance. Tokens: the tokens the key's runs created in the last minute used,
 * read from the database, so every process sees every run.
 */
export class RateLimits {
  private readonly requests: RequestBuckets | undefined;
  private readonly tokensPerMinute: number | undefined;
  private readonly tokensUsed: TokensUsed;
  private readonly now: () => number;

  constructor(settings: RateLimitSettings, tokensUsed: TokensUsed, now: () => number = Date.now) {
    this.requests =
      settings.requestsPerMinute === undefined ? undefined : new RequestBuckets(settings.requestsPerMinute, now);
    this.tokensPerMinute = settings.tokensPerMinute;
    this.tokensUsed = tokensUsed;
    this.now = now;
  }

  get active(): boolean {
    return this.requests !== undefined || this.tokensPerMinute !== undefined;
  }

  /** Admits the request of a project's key, or throws the 429 (its headers set on `reply`). */
  async admit(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const scope = request.scope;
    const route = `${request.method} ${request.routeOptions.url}`;
    // The request counts first, so that every answer carries both sets of headers, a tokens 429 included.
    if (this.requests) {
      const key = bucketKey(scope);
      const taken = this.requests.take(key);
      void reply.headers({
        'x-ratelimit-limit-requests': String(this.requests.limit),
        'x-ratelimit-remaining-requests': String(taken.remaining),
        'x-ratelimit-reset-requests': duration(taken.untilFullMs),
      });
      if (!taken.admitted)
        throw tooMany(reply, 'requests', 'requests per min (RPM)', scope, this.requests.limit, taken.retryMs);
    }
    if (this.tokensPerMinute !== undefined && MODEL_ROUTES.has(route)) await this.admitTokens(scope, reply);
  }

  private async admitTokens(scope: Scope, reply: FastifyReply): Promise<void> {
    const limit = this.tokensPerMinute!;
    const now = this.now();
    const { tokens, oldest } = await this.tokensUsed(scope, tokenWindowStart(now));
    const freesInMs = oldest === null ? 0 : tokenWindowFreesInMs(oldest, now);
    void reply.headers({
      'x-ratelimit-limit-tokens': String(limit),
      'x-ratelimit-remaining-tokens': String(Math.max(0, limit - tokens)),
      'x-ratelimit-reset-tokens': duration(freesInMs),
    });
    if (tokens >= limit) throw tooMany(reply, 'tokens', 'tokens per min (TPM)', scope, limit, freesInMs, tokens);
  }
}

/**
 * The tokens window: the runs created in the last minute. created_at is in whole seconds, so a run counts while
 * `created_at * 1000 > now - 1 minute`, and leaves the window at most a minute after any moment it is in it: the
 * Retry-After of a tokens 429 is never past 60 s, which the official SDKs ignore (they retry at once instead).
 */
export function tokenWindowStart(nowMs: number): number {
  return Math.floor((nowMs - MINUTE_MS) / 1000) + 1;
}

/** When the run created at `oldestSeconds`, the window's oldest, leaves it. */
export function tokenWindowFreesInMs(oldestSeconds: number, nowMs: number): number {
  // At most a minute even when the run was created on a process whose clock is ahead.
  return Math.min(MINUTE_MS, Math.max(0, oldestSeconds * 1000 + MINUTE_MS - nowMs));
}

function bucketKey(scope: Scope): string {
  return scope.keyId ?? `project:${scope.projectId}`;
}

function tooMany(
  reply: FastifyReply,
  type: 'requests' | 'tokens',
  what: string,
  scope: Scope,
  limit: number,
  retryMs: number,
  used = limit,
): ApiError {
  const wait = Math.max(1, retryMs);
  void reply.headers({ 'retry-after': String(Math.ceil(wait / 1000)), 'retry-after-ms': String(wait) });
  const key = scope.keyId === undefined ? 'this API key' : `API key ${scope.keyId}`;
  return new ApiError(
    429,
    `Rate limit reached for ${what} of ${key}: Limit ${limit}, Used ${used}, Requested 1. Please try again in ${duration(wait)}.`,
    { type, code: 'rate_limit_exceeded' },
  );
}

/** OpenAI's duration format of `x-ratelimit-reset-*`: `0s`, `120ms`, `1.5s`, `6m0s`. */
export function duration(ms: number): string {
  if (ms < 1000) return ms <= 0 ? '0s' : `${Math.ceil(ms)}ms`;
  const seconds = Math.ceil(ms / 100) / 10;
  if (seconds < 60) return `${seconds}s`;
  return `${Math.floor(seconds / 60)}m${Math.round(seconds % 60)}s`;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * One token bucket per key: `limit` tokens, refilled at `limit` per minute, one taken per request. A key's first
 * request finds a full bucket; a bucket that has filled up again is the same as none, so those are what is dropped
 * when there are too many.
 */
export class RequestBuckets {
  readonly limit: number;
  private readonly now: () => number;
  private readonly buckets = new Map<string, Bucket>();

  constructor(limit: number, now: () => number = Date.now) {
    this.limit = limit;
    this.now = now;
  }

  get size(): number {
    return this.buckets.size;
  }

  take(key: string): { admitted: boolean; remaining: number; untilFullMs: number; retryMs: number } {
    const now = this.now();
    const perMs = this.limit / MINUTE_MS;
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= MAX_BUCKETS) this.dropFull(now);
      bucket = { tokens: this.limit, at: now };
      this.buckets.set(key, bucket);
    }
    bucket.tokens = Math.min(this.limit, bucket.tokens + (now - bucket.at) * perMs);
    bucket.at = now;
    const admitted = bucket.tokens >= 1;
    if (admitted) bucket.tokens -= 1;
    return {
      admitted,
      remaining: Math.floor(bucket.tokens),
      untilFullMs: Math.ceil((this.limit - bucket.tokens) / perMs),
      retryMs: admitted ? 0 : Math.ceil((1 - bucket.tokens) / perMs),
    };
  }

  private dropFull(now: number): void {
    const perMs = this.limit / MINUTE_MS;
    for (const [key, bucket] of this.buckets)
      if (bucket.tokens + (now - bucket.at) * perMs >= this.limit) this.buckets.delete(key);
  }
}
