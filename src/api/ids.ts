import { invalidRequest } from '../domain/errors.ts';
import { hasPrefix, ID_PREFIX, type IdKind } from '../domain/ids.ts';

/**
 * A path id with the wrong prefix is a client bug (often a literal `undefined`); upstream answers 400
 * `Invalid 'thread_id': 'undefined'. Expected an ID that begins with 'thread'.`
 */
export function pathId(kind: IdKind, params: unknown, name: string): string {
  const value = (params as Record<string, string>)[name] ?? '';
  if (!hasPrefix(kind, value))
    throw invalidRequest(
      `Invalid '${name}': '${value}'. Expected an ID that begins with '${ID_PREFIX[kind].slice(0, -1)}'.`,
      name,
      'invalid_value',
    );
  return value;
}
