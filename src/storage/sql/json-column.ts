/**
 * JSON values live in text columns in every dialect: one encoding, no per-driver parsing rules (pg would hand back
 * `jsonb` already parsed, better-sqlite3 a string). Reading tolerates both, so a later migration to `jsonb` keeps
 * working.
 */
export function toJson(value: unknown): string {
  return JSON.stringify(value);
}

export function fromJson<T>(value: unknown): T {
  return (typeof value === 'string' ? JSON.parse(value) : value) as T;
}

export function fromNullableJson<T>(value: unknown): T | null {
  return value === null || value === undefined ? null : fromJson<T>(value);
}
