import { timingSafeEqual } from 'node:crypto';
import { unixSeconds } from '../domain/clock.ts';
import { ApiError } from '../domain/errors.ts';
import { DEFAULT_SCOPE, type ProjectRecords, type Scope } from '../storage/store.ts';
import { digest, isProjectKeyShaped, keyIdOf, namedKeyIdOf, redact, verifySecret } from './api-keys.ts';

/** Who a request comes from: a project (its objects are the only ones it sees), or the organization's admin. */
export type Caller = { kind: 'project'; scope: Scope } | { kind: 'admin' };

const ADMIN: Caller = Object.freeze({ kind: 'admin' });
const DEFAULT_PROJECT: Caller = Object.freeze({ kind: 'project', scope: DEFAULT_SCOPE });

/** Keys verified by this process, remembered by the digest of their value; enough for every key of a deployment. */
const MAX_VERIFIED_KEYS = 10_000;
/** `last_used_at` is a minute-grained fact: written at most once a minute per key and process, never awaited. */
const TOUCH_INTERVAL_S = 60;
/**
 * scrypt checks running at once in this process, and waiting: each costs ~40 ms of a libuv thread and 16 MiB, and
 * anyone who knows a key's id can make the server run one with a made-up secret. Bounded, such a flood keeps to
 * one thread (the others stay free for files), and a check that finds the queue full is a 429 at no cost. Keys
 * already verified here are compared by digest and never wait.
 */
const CONCURRENT_CHECKS = 1;
const WAITING_CHECKS = 64;
/** A value refused by a check is refused again without one, for this long (a client retrying with a wrong key). */
const REFUSED_FOR_MS = 60_000;

export interface AuthenticatorOptions {
  projects: ProjectRecords;
  /** ASSISTD_API_KEY: the single key of the default project. */
  apiKey: string | undefined;
  /** ASSISTD_ADMIN_KEY: the key of the admin API. */
  adminKey: string | undefined;
  /** Where a failed `last_used_at` write is reported. */
  onTouchError?: (error: unknown) => void;
  /** The scrypt check of a key's secret (tests count and hold them). */
  verify?: (value: string, secretHash: string) => Promise<boolean>;
}

/**
 * Turns the key a request presents into its Caller: the admin key, ASSISTD_API_KEY (the default project), or a
 * project key (`sk-proj-…`, api-keys.ts), checked against the database on every request — one read by primary key —
 * so a key created by any process works at once, and a deleted key or an archived project's key stops at once on
 * every process. The slow scrypt check runs once per key and process; later requests compare digests.
 *
 * With neither ASSISTD_API_KEY nor ASSISTD_ADMIN_KEY set the server is open: a request without a project key works
 * in the default project, as before keys existed. A project key is checked even then: a deleted one is refused. Any
 * other value is no key there, OpenAI's own `sk-proj-…` keys included (a program moved here by its base URL alone
 * still sends the key it had), unless it names one of the keys: a key cut short is refused.
 */
export class Authenticator {
  readonly open: boolean;
  private readonly projects: ProjectRecords;
  private readonly apiKeyDigest: Buffer | undefined;
  private readonly adminKeyDigest: Buffer | undefined;
  private readonly onTouchError: (error: unknown) => void;
  /** key id → the digest of its value and the hash it was verified against (a changed hash is checked again). */
  private readonly verified = new Map<string, { digest: Buffer; secretHash: string; caller: Caller }>();
  private readonly touched = new Map<string, number>();
  /** The digests (hex) of values a check refused, and until when they stay refused. */
  private readonly refused = new Map<string, number>();
  private readonly verify: (value: string, secretHash: string) => Promise<boolean>;
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor({ projects, apiKey, adminKey, onTouchError = () => {}, verify = verifySecret }: AuthenticatorOptions) {
    this.projects = projects;
    this.verify = verify;
    this.apiKeyDigest = apiKey === undefined ? undefined : digest(apiKey);
    this.adminKeyDigest = adminKey === undefined ? undefined : digest(adminKey);
    this.open = apiKey === undefined && adminKey === undefined;
    this.onTouchError = onTouchError;
  }

  /** Whether the admin API can be opened at all (ASSISTD_ADMIN_KEY is set). */
  get hasAdminKey(): boolean {
    return this.adminKeyDigest !== undefined;
  }

  async authenticate(presented: string | undefined): Promise<Caller> {
    if (presented !== undefined) {
      const given = digest(presented);
      if (this.adminKeyDigest && timingSafeEqual(given, this.adminKeyDigest)) return ADMIN;
      if (this.apiKeyDigest && timingSafeEqual(given, this.apiKeyDigest)) return DEFAULT_PROJECT;
      const keyId = keyIdOf(presented);
      if (keyId !== undefined) return this.projectCaller(keyId, presented, given);
      // Open, a value naming one of the keys with a secret cut short or pasted wrong is refused, not taken for none.
      const named = this.open ? namedKeyIdOf(presented) : undefined;
      if (named !== undefined && (await this.projects.keyCredentials(named))) throw incorrectKey(presented);
    }
    if (this.open) return DEFAULT_PROJECT;
    throw presented === undefined ? missingKey() : incorrectKey(presented);
  }

  private async projectCaller(keyId: string, value: string, given: Buffer): Promise<Caller> {
    const credentials = await this.projects.keyCredentials(keyId);
    if (!credentials || credentials.projectArchived) throw incorrectKey(value);
    let known = this.verified.get(keyId);
    if (!(known && known.secretHash === credentials.secretHash && timingSafeEqual(known.digest, given))) {
      if (!(await this.check(value, given, credentials.secretHash))) throw incorrectKey(value);
      known = {
        digest: given,
        secretHash: credentials.secretHash,
        caller: { kind: 'project', scope: Object.freeze({ projectId: credentials.projectId, keyId }) },
      };
      if (this.verified.size >= MAX_VERIFIED_KEYS) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(keyId, known);
    }
    this.touch(keyId);
    return known.caller;
  }

  /** A bounded scrypt check (CONCURRENT_CHECKS), remembering what it refused (REFUSED_FOR_MS). */
  private async check(value: string, given: Buffer, secretHash: string): Promise<boolean> {
    const id = `${given.toString('hex')}:${secretHash}`;
    if ((this.refused.get(id) ?? 0) > Date.now()) return false;
    if (this.running >= CONCURRENT_CHECKS) {
      if (this.waiting.length >= WAITING_CHECKS) throw tooManyChecks();
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.running += 1;
    try {
      const ok = await this.verify(value, secretHash);
      if (!ok) {
        if (this.refused.size >= MAX_VERIFIED_KEYS) this.refused.clear();
        this.refused.set(id, Date.now() + REFUSED_FOR_MS);
      }
      return ok;
    } finally {
      // The slot passes to the next waiting check, if any.
      const next = this.waiting.shift();
      if (next) next();
      else this.running -= 1;
    }
  }

  private touch(keyId: string): void {
    const now = unixSeconds();
    if ((this.touched.get(keyId) ?? 0) > now - TOUCH_INTERVAL_S) return;
    if (this.touched.size >= MAX_VERIFIED_KEYS) this.touched.clear();
    this.touched.set(keyId, now);
    this.projects.touchKey(keyId, now).catch(this.onTouchError);
  }
}

function tooManyChecks(): ApiError {
  return new ApiError(429, 'Too many API keys are being checked at once on this server. Retry in a moment.', {
    type: 'rate_limit_error',
    code: 'rate_limit_exceeded',
  });
}

function missingKey(): ApiError {
  return new ApiError(
    401,
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    { code: 'invalid_api_key' },
  );
}

/** Names the key the way lists do, never whole: a project key by its redacted form, any other by its ends. */
function incorrectKey(given: string): ApiError {
  const shown = isProjectKeyShaped(given) ? redact(given) : maskKey(given);
  return new ApiError(401, `Incorrect API key provided: ${shown}.`, { code: 'invalid_api_key' });
}

function maskKey(key: string): string {
  return key.length <= 8 ? '*'.repeat(key.length) : `${key.slice(0, 3)}${'*'.repeat(key.length - 7)}${key.slice(-4)}`;
}
