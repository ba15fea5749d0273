import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { ID_PREFIX, newId } from '../domain/ids.ts';

/**
 * A project API key is `sk-proj-<key id>_<secret>`: the key's id (`key_…` without its prefix, 24 base62 characters)
 * says which row to check, so a request costs one lookup by primary key, and the secret is 32 random bytes
 * (base64url). Only the secret's scrypt hash is stored: the database alone cannot give the key back, nor let anyone
 * check guesses quickly. The id and a redacted form are what logs and lists may show.
 */
const KEY_PREFIX = 'sk-proj-';
const ID_BODY_LENGTH = 24;
const ID_BODY = /^[0-9A-Za-z]{24}$/;
const SECRET = /^[0-9A-Za-z_-]{43}$/;

/** scrypt's cost: 2^14 × 8 × 128 bytes = 16 MiB and ~40 ms per hash, done once per key and process (KeyCache). */
const SCRYPT = { N: 16_384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const HASH_BYTES = 32;

export interface NewKey {
  id: string;
  /** The whole key, shown once to whoever created it. */
  value: string;
  redacted: string;
}

export function generateKey(): NewKey {
  const id = newId('apiKey');
  const secret = randomBytes(32).toString('base64url');
  const value = `${KEY_PREFIX}${id.slice(ID_PREFIX.apiKey.length)}_${secret}`;
  return { id, value, redacted: redact(value) };
}

/** The key id a presented value names, when it has a project key's shape; undefined otherwise. */
export function keyIdOf(value: string): string | undefined {
  const id = namedKeyIdOf(value);
  return id !== undefined && SECRET.test(value.slice(KEY_PREFIX.length + ID_BODY_LENGTH + 1)) ? id : undefined;
}

/** The key id a value starts as a project key would, whatever follows (a key cut short, or pasted wrong). */
export function namedKeyIdOf(value: string): string | undefined {
  if (!value.startsWith(KEY_PREFIX) || value[KEY_PREFIX.length + ID_BODY_LENGTH] !== '_') return undefined;
  const body = value.slice(KEY_PREFIX.length, KEY_PREFIX.length + ID_BODY_LENGTH);
  return ID_BODY.test(body) ? ID_PREFIX.apiKey + body : undefined;
}

export function isProjectKeyShaped(value: string): boolean {
  return value.startsWith(KEY_PREFIX);
}

/** `sk-proj-a1B2…xY9z`: the start of the key id and the last four characters. */
export function redact(value: string): string {
  return `${value.slice(0, KEY_PREFIX.length + 4)}…${value.slice(-4)}`;
}

/** `scrypt$N$r$p$salt$hash`, salt and hash in base64url: the parameters travel with the hash. */
export async function hashSecret(value: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await derive(value, salt, SCRYPT.N, SCRYPT.r, SCRYPT.p);
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64url'), hash.toString('base64url')].join('$');
}

export async function verifySecret(value: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || salt === undefined || hash === undefined) return false;
  const expected = Buffer.from(hash, 'base64url');
  const actual = await derive(value, Buffer.from(salt, 'base64url'), Number(n), Number(r), Number(p));
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

function derive(value: string, salt: Buffer, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(value, salt, HASH_BYTES, { N, r, p, maxmem: SCRYPT.maxmem }, (error, key) =>
      error ? reject(error) : resolve(key),
    ),
  );
}

/** SHA-256, for comparing a presented key with one verified before in constant time and equal lengths. */
export function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
