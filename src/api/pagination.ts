import { invalidRequest } from '../domain/errors.ts';
import type { Page, PageRequest, WireJson } from '../storage/store.ts';

export const DEFAULT_LIMIT = 20;
export const MAX_LIMIT = 100;

type Query = Record<string, unknown>;

/**
 * `limit` (1–100, default 20), `order` (asc|desc, default desc), `after`, `before`: as the official list endpoints.
 * `/files` pages differently (1–10,000, default 10,000, no `before`): its route passes its own bounds.
 */
export function parsePageRequest(
  query: Query,
  { defaultLimit = DEFAULT_LIMIT, maxLimit = MAX_LIMIT, before = true } = {},
): PageRequest {
  const limitRaw = single(query, 'limit');
  const limit = limitRaw === undefined ? defaultLimit : integerParameter('limit', limitRaw, 1, maxLimit);
  const order = single(query, 'order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc')
    throw invalidRequest(
      `Invalid value: '${order}'. Supported values are: 'asc' and 'desc'.`,
      'order',
      'invalid_value',
    );
  return {
    limit,
    order,
    after: nonEmpty(single(query, 'after')),
    before: before ? nonEmpty(single(query, 'before')) : undefined,
  };
}

/**
 * An integer sent as text (a query parameter, a form field) within [min, max], with upstream's wording:
 * `Invalid 'limit': integer above maximum value. Expected a value <= 100, but got 101 instead.`
 */
export function integerParameter(param: string, raw: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(raw))
    throw invalidRequest(`Invalid '${param}': expected an integer, but got '${raw}' instead.`, param, 'invalid_type');
  const value = Number(raw);
  if (value < min)
    throw invalidRequest(
      `Invalid '${param}': integer below minimum value. Expected a value >= ${min}, but got ${value} instead.`,
      param,
      'integer_below_min_value',
    );
  if (value > max)
    throw invalidRequest(
      `Invalid '${param}': integer above maximum value. Expected a value <= ${max}, but got ${value} instead.`,
      param,
      'integer_above_max_value',
    );
  return value;
}

/** A query parameter that must appear at most once. */
export function single(query: Query, name: string): string | undefined {
  const value = query[name];
  if (value === undefined) return undefined;
  if (typeof value === 'string') return value;
  throw invalidRequest(`Invalid '${name}': expected a single value.`, name, 'invalid_type');
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

export interface ListObject<W> {
  object: 'list';
  data: W[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

/**
 * The list envelope. The SDK reads only `data` and `has_more` (and pages with `after=<last id>`); `first_id` and
 * `last_id` are null on an empty page, as the live API sends them, although the schema types them as strings.
 */
export function toListObject<T extends { id: string }, W>(page: Page<T>, serialize: (item: T) => W): ListObject<W> {
  return {
    object: 'list',
    data: page.data.map(serialize),
    first_id: page.data[0]?.id ?? null,
    last_id: page.data.at(-1)?.id ?? null,
    has_more: page.hasMore,
  };
}

/** The list envelope around objects that are already wire JSON (see WireJson), built without re-encoding them. */
export function toListJson(page: Page<WireJson>): string {
  const first = page.data[0]?.id;
  const last = page.data.at(-1)?.id;
  return (
    `{"object":"list","data":[${page.data.map((d) => d.json).join(',')}],` +
    `"first_id":${first === undefined ? 'null' : JSON.stringify(first)},` +
    `"last_id":${last === undefined ? 'null' : JSON.stringify(last)},"has_more":${page.hasMore}}`
  );
}
