import { invalidRequest } from '../domain/errors.ts';
import type { Metadata } from '../domain/objects.ts';
import { single } from './pagination.ts';
import { characters } from './validation.ts';

// The limits of `Metadata` (schemas/common.ts): a filter that exceeds them could match no object.
const MAX_PAIRS = 16;
const MAX_KEY = 64;
const MAX_VALUE = 512;

const FILTER_PARAMETER = /^metadata\[(.*)\]$/s;

/**
 * `metadata[key]=value` query parameters (the thread list's extension): the pairs an object's metadata must all
 * hold. Each key at most once; a bare `metadata=…` is refused rather than ignored, since a client sending it means
 * to filter and would otherwise get every object.
 */
export function parseMetadataFilter(query: Record<string, unknown>): Metadata | undefined {
  if (query['metadata'] !== undefined)
    throw invalidRequest(
      "Invalid 'metadata': filter with one `metadata[key]=value` parameter per key.",
      'metadata',
      'invalid_type',
    );
  // Pairs, then Object.fromEntries: an assignment `filter[key] = …` would take `__proto__` for the prototype.
  const pairs: Array<[string, string]> = [];
  for (const name of Object.keys(query)) {
    const key = FILTER_PARAMETER.exec(name)?.[1];
    if (key === undefined) continue;
    const value = single(query, name) ?? '';
    if (key.length === 0 || characters(key) > MAX_KEY)
      throw invalidRequest(
        `Invalid '${name}': expected a key of 1 to ${MAX_KEY} characters, but got a key with ${characters(key)} characters instead.`,
        name,
        'invalid_value',
      );
    if (characters(value) > MAX_VALUE)
      throw invalidRequest(
        `Invalid '${name}': string too long. Expected a string with maximum length ${MAX_VALUE}, but got a string with length ${characters(value)} instead.`,
        name,
        'string_above_max_length',
      );
    pairs.push([key, value]);
  }
  if (pairs.length > MAX_PAIRS)
    throw invalidRequest(
      `Invalid 'metadata': too many filters. Expected at most ${MAX_PAIRS} \`metadata[key]\` parameters, but got ${pairs.length} instead.`,
      'metadata',
      'object_above_max_properties',
    );
  return pairs.length === 0 ? undefined : Object.fromEntries(pairs);
}
