/**
 * Building blocks of the schema-driven fuzz (test/reliability/fuzz.test.ts): a seeded PRNG, the operations of the
 * official schema that a server answers, and request bodies made from their request schemas — a minimal instance,
 * mutations of it that the schema refuses (invalid by construction), and mutations whose validity is left open.
 */
import { ADDED_OPERATIONS } from '../../src/api/routes/openapi.ts';
import { asOpenAIAnswered, parsedSpec } from './openapi.ts';
import type { RouteEntry } from './route-table.ts';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Schema = Record<string, unknown>;

/** mulberry32: small, fast and good enough to pick test cases; the same seed gives the same cases. */
export class Random {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(below: number): number {
    return Math.floor(this.next() * below);
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

const spec = (await parsedSpec()) as {
  paths: Record<string, Record<string, Schema>>;
  components: { schemas: Record<string, Schema> };
};
asOpenAIAnswered(spec.components.schemas);

function resolve(schema: unknown): Schema {
  let node = (schema ?? {}) as Schema;
  while (typeof node['$ref'] === 'string') {
    const name = (node['$ref'] as string).split('/').at(-1)!;
    node = spec.components.schemas[name] ?? {};
  }
  return node;
}

export interface FuzzOperation {
  method: string;
  /** The server's route, e.g. `/v1/threads/:thread_id/runs`. */
  route: string;
  /** The names of its path parameters, in order. */
  pathParams: string[];
  /** The query parameters the spec lists for it. */
  queryParams: string[];
  /** The body's content type and schema, when it takes one. */
  body?: { contentType: string; schema: Schema };
  /**
   * False for a route the server answers that neither the spec nor the server's own additions to it (the models
   * endpoints, the extensions: src/api/routes/openapi.ts) describe.
   */
  inSpec: boolean;
}

/**
 * Every /v1 route of the server (HEAD aside: Fastify adds one per GET), each with its spec operation where the spec
 * has one. Also returns the spec operations the server does not answer, for the test to report.
 */
export function fuzzOperations(routes: readonly RouteEntry[]): { operations: FuzzOperation[]; unanswered: string[] } {
  const specOps = new Map<string, Schema>();
  for (const [template, item] of Object.entries(spec.paths))
    for (const [method, op] of Object.entries(item))
      specOps.set(`${method.toUpperCase()} /v1${template.replace(/\{([^}]+)\}/g, ':$1')}`, op);
  for (const { method, route, operation } of ADDED_OPERATIONS)
    specOps.set(`${method.toUpperCase()} ${route}`, operation);
  const operations: FuzzOperation[] = [];
  const answered = new Set<string>();
  for (const { method, url } of routes) {
    if (method === 'HEAD' || !url.startsWith('/v1/')) continue;
    const key = `${method} ${url}`;
    const op = specOps.get(key);
    answered.add(key);
    // `*` is a wildcard's parameter (`/v1/models/*`: model names hold slashes).
    const pathParams = [...url.matchAll(/:([^/]+)|\*/g)].map((m) => m[1] ?? '*');
    const parameters = ((op?.['parameters'] as Schema[] | undefined) ?? []).map(resolve);
    const content = (resolve(op?.['requestBody'])['content'] ?? {}) as Record<string, Schema>;
    const [contentType, media] = Object.entries(content)[0] ?? [];
    operations.push({
      method,
      route: url,
      pathParams,
      queryParams: parameters.filter((p) => p['in'] === 'query').map((p) => p['name'] as string),
      ...(contentType && media ? { body: { contentType, schema: resolve(media['schema']) } } : {}),
      inSpec: op !== undefined,
    });
  }
  return { operations, unanswered: [...specOps.keys()].filter((key) => !answered.has(key)) };
}

type JsonType = 'string' | 'integer' | 'number' | 'boolean' | 'object' | 'array' | 'null';
const ALL_TYPES: readonly JsonType[] = ['string', 'integer', 'number', 'boolean', 'object', 'array', 'null'];

function typeOf(value: unknown): JsonType {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value as JsonType;
}

/**
 * The JSON types a schema accepts, or undefined when it says nothing (any value). `nullable` may stand beside a
 * `$ref` or in an `allOf` member (`allOf: [{$ref: TruncationObject}, {nullable: true}]`).
 */
function allowedTypes(raw: unknown): Set<JsonType> | undefined {
  const node = (raw ?? {}) as Schema;
  const members = Array.isArray(node['allOf']) ? (node['allOf'] as Schema[]) : [];
  const types = ownTypes(resolve(members.find((m) => m['nullable'] !== true || m['$ref']) ?? node));
  if (types === undefined) return undefined;
  if ([node, ...members, resolve(node)].some((n) => n['nullable'] === true)) types.add('null');
  return types;
}

function ownTypes(schema: Schema): Set<JsonType> | undefined {
  const out = new Set<JsonType>();
  if (schema['const'] !== undefined) return out.add(typeOf(schema['const']));
  if (Array.isArray(schema['enum'])) {
    for (const value of schema['enum']) out.add(typeOf(value));
    return out;
  }
  const type = schema['type'];
  if (typeof type === 'string') {
    out.add(type as JsonType);
    if (type === 'number') out.add('integer');
    return out;
  }
  const branches = (schema['anyOf'] ?? schema['oneOf']) as unknown[] | undefined;
  if (branches) {
    for (const branch of branches) {
      const types = allowedTypes(branch);
      if (types === undefined) return undefined;
      for (const t of types) out.add(t);
    }
    return out;
  }
  if (Array.isArray(schema['allOf'])) return allowedTypes(schema);
  return undefined;
}

/**
 * The non-null branches of a union, or the schema itself. A union beside a `type` or `properties` only constrains
 * them (CreateVectorStoreFileBatchRequest's `anyOf: [{required: [file_ids]}, {required: [files]}]`).
 */
function branchesOf(raw: unknown): Schema[] {
  const schema = resolve(raw);
  const branches = (schema['anyOf'] ?? schema['oneOf']) as unknown[] | undefined;
  if (!branches || schema['type'] !== undefined || schema['properties'] !== undefined) return [schema];
  return branches.map(resolve).filter((b) => b['type'] !== 'null');
}

/** Hands out values for string fields that name objects (`assistant_id`, `file_ids`…): real ids make deeper checks run. */
export type IdSource = (field: string) => string | undefined;

/** A small instance of the schema: required properties only, the first branch of unions, the least of ranges. */
export function minimalInstance(raw: unknown, ids: IdSource, field = '', depth = 0): Json {
  const schema = branchesOf(raw)[0] ?? {};
  if (schema['const'] !== undefined) return schema['const'] as Json;
  if (Array.isArray(schema['enum'])) return schema['enum'][0] as Json;
  if (depth > 6) return {};
  const type = schema['type'] ?? (schema['properties'] ? 'object' : undefined);
  switch (type) {
    case 'string':
      return ids(field) ?? 'x'.repeat(Math.max(1, Number(schema['minLength'] ?? 1)));
    case 'integer':
    case 'number':
      return Number(schema['minimum'] ?? 1);
    case 'boolean':
      return false;
    case 'array': {
      const count = Number(schema['minItems'] ?? 0);
      return Array.from({ length: count }, () => minimalInstance(schema['items'], ids, field, depth + 1));
    }
    case 'object': {
      const out: Record<string, Json> = {};
      const properties = (schema['properties'] ?? {}) as Record<string, unknown>;
      for (const name of (schema['required'] as string[] | undefined) ?? [])
        out[name] = minimalInstance(properties[name], ids, name, depth + 1);
      return out;
    }
    default:
      return ids(field) ?? 'x';
  }
}

/** A place in a body: its path and its schema. */
interface Slot {
  path: (string | number)[];
  schema: Schema;
  /** Its own union and nullability, before a branch was chosen. */
  declared: unknown;
  /** Not in its object's `required`. */
  optional: boolean;
}

/** Every property reachable from the body (through arrays' items and one branch of each union), up to `maxDepth`. */
function slots(raw: unknown, random: Random, path: (string | number)[] = [], maxDepth = 4): Slot[] {
  if (path.length >= maxDepth) return [];
  const out: Slot[] = [];
  const schema = random.pick(branchesOf(raw).length > 0 ? branchesOf(raw) : [resolve(raw)]);
  if (schema['type'] === 'array' && schema['items'] !== undefined) {
    out.push(...slots(schema['items'], random, [...path, 0], maxDepth));
    return out;
  }
  const required = (schema['required'] as string[] | undefined) ?? [];
  for (const [name, property] of Object.entries((schema['properties'] ?? {}) as Record<string, unknown>)) {
    const slot = {
      path: [...path, name],
      schema: random.pick(branchesOf(property)),
      declared: property,
      optional: !required.includes(name),
    };
    out.push(slot, ...slots(property, random, slot.path, maxDepth));
  }
  return out;
}

function setAt(root: Json, path: readonly (string | number)[], value: Json | undefined): Json {
  const copy = structuredClone(root) ?? {};
  let node = copy as Record<string | number, Json>;
  for (const [i, key] of path.entries()) {
    if (i === path.length - 1) {
      if (value === undefined) delete node[key];
      else node[key] = value;
      break;
    }
    const next = node[key];
    if (next === null || typeof next !== 'object') node[key] = typeof path[i + 1] === 'number' ? [] : {};
    node = node[key] as Record<string | number, Json>;
  }
  return copy;
}

function label(path: readonly (string | number)[]): string {
  return path.map((k) => (typeof k === 'number' ? '[]' : k)).join('.');
}

export interface BodyCase {
  /** What was done, e.g. `wrong-type` or `above-maxLength`: how the test groups its counts. */
  kind: string;
  /** Where, e.g. `tools.[].function.name`. */
  where: string;
  /** The JSON text sent. */
  text: string;
  /** True when the schema refuses the body whatever the server's state: the server must answer 4xx. */
  invalid: boolean;
  /** The field changed is an optional property of its object (not in its `required`). */
  optional: boolean;
}

const WRONG_VALUE: Record<JsonType, Json> = {
  string: 'fuzz',
  integer: 7,
  number: 2.5,
  boolean: true,
  object: { fuzz: 1 },
  array: ['fuzz'],
  null: null,
};

/** How deeply the fuzz nests values: one past the server's limit, and far past it. */
export const DEEP_LEVELS = [101, 5000] as const;

const DEEP_MARK = 'fuzz-deep-value';

/** Arrays and objects `levels` deep, alternating: `[{"a":[{"a":…"deep"…}]}]`. */
function nestedText(levels: number): string {
  let open = '';
  let close = '';
  for (let i = 0; i < levels; i++) {
    open += i % 2 === 0 ? '[' : '{"a":';
    close = (i % 2 === 0 ? ']' : '}') + close;
  }
  return `${open}"deep"${close}`;
}

const metadataKeys = (count: number, keyLength = 8, valueLength = 8): Json =>
  Object.fromEntries(
    Array.from({ length: count }, (_, i) => [`k${i}`.padEnd(keyLength, 'k'), 'v'.repeat(valueLength)]),
  );

/**
 * Mutations of `base` for the body schema: one change each. The invalid ones (unknown field where the schema has a
 * fixed set, missing required field, wrong type, null where none is allowed, a value outside an enum, a bound
 * crossed by one, metadata over its limits, nesting past the limit) are refused by the schema whatever the rest of
 * the body holds.
 */
export function bodyCases(raw: Schema, base: Json, random: Random): BodyCase[] {
  const cases: BodyCase[] = [];
  const root = resolve(raw);
  const add = (kind: string, where: string, body: Json, invalid: boolean, optional = false) =>
    cases.push({ kind, where, text: JSON.stringify(body), invalid, optional });
  add('minimal', '', base, false);
  // Refused unless the schema takes any field (a body passed on as it is: api/routes/pass-through.ts).
  const open = root['additionalProperties'] === true;
  add('unknown-field', 'fuzz_unknown', setAt(base, ['fuzz_unknown'], random.pick(Object.values(WRONG_VALUE))), !open);
  for (const name of (root['required'] as string[] | undefined) ?? [])
    add('missing-required', name, setAt(base, [name], undefined), true);
  for (const slot of slots(root, random)) {
    const where = label(slot.path);
    const types = allowedTypes(slot.declared);
    if (types !== undefined) {
      const wrong = ALL_TYPES.filter((t) => !types.has(t) && !(t === 'integer' && types.has('number')));
      const nonNull = wrong.filter((t) => t !== 'null');
      if (nonNull.length > 0) add('wrong-type', where, setAt(base, slot.path, WRONG_VALUE[random.pick(nonNull)]), true);
      if (wrong.includes('null')) add('null', where, setAt(base, slot.path, null), true, slot.optional);
    } else add('any-value', where, setAt(base, slot.path, random.pick(Object.values(WRONG_VALUE))), false);
    const s = slot.schema;
    // Only where every branch is an enum: `model` is any string or one of the known names.
    const enums = branchesOf(slot.declared).map((b) => b['enum']);
    if (enums.every((e) => Array.isArray(e) && e.every((v) => typeof v === 'string')))
      add('bad-enum', where, setAt(base, slot.path, 'sideways'), true);
    if (typeof s['maxLength'] === 'number') {
      add('at-maxLength', where, setAt(base, slot.path, 'x'.repeat(s['maxLength'])), false);
      add('above-maxLength', where, setAt(base, slot.path, 'x'.repeat(s['maxLength'] + 1)), true);
    }
    if (typeof s['minLength'] === 'number' && s['minLength'] > 0)
      add('below-minLength', where, setAt(base, slot.path, 'x'.repeat(s['minLength'] - 1)), true);
    const item = s['items'] === undefined ? 'x' : minimalInstance(s['items'], () => undefined);
    if (typeof s['maxItems'] === 'number') {
      add('at-maxItems', where, setAt(base, slot.path, Array(s['maxItems']).fill(item)), false);
      add('above-maxItems', where, setAt(base, slot.path, Array(s['maxItems'] + 1).fill(item)), true);
    }
    if (typeof s['minItems'] === 'number' && s['minItems'] > 0)
      add('below-minItems', where, setAt(base, slot.path, Array(s['minItems'] - 1).fill(item)), true);
    const step = s['type'] === 'integer' ? 1 : 0.01;
    if (typeof s['maximum'] === 'number') {
      add('at-maximum', where, setAt(base, slot.path, s['maximum']), false);
      add('above-maximum', where, setAt(base, slot.path, s['maximum'] + step), true);
    }
    if (typeof s['minimum'] === 'number') {
      add('at-minimum', where, setAt(base, slot.path, s['minimum']), false);
      add('below-minimum', where, setAt(base, slot.path, s['minimum'] - step), true);
    }
    if (s['type'] === 'string' && s['enum'] === undefined && s['maxLength'] === undefined)
      add('huge-string', where, setAt(base, slot.path, 'h'.repeat(300_000)), false);
    if (s['type'] === 'string') add('nul-character', where, setAt(base, slot.path, 'a\u0000b'), true);
    if (slot.path.at(-1) === 'metadata') {
      add('metadata-16-keys', where, setAt(base, slot.path, metadataKeys(16, 64, 512)), false);
      add('metadata-17-keys', where, setAt(base, slot.path, metadataKeys(17)), true);
      add('metadata-65-char-key', where, setAt(base, slot.path, metadataKeys(1, 65)), true);
      add('metadata-513-char-value', where, setAt(base, slot.path, metadataKeys(1, 8, 513)), true);
    }
  }
  // As text: JSON.stringify itself overflows the stack on thousands of levels.
  for (const levels of DEEP_LEVELS) {
    const text = JSON.stringify(setAt(base, ['fuzz_deep'], DEEP_MARK)).replace(`"${DEEP_MARK}"`, nestedText(levels));
    cases.push({ kind: `nested-${levels}`, where: 'fuzz_deep', text, invalid: true, optional: true });
  }
  return cases;
}

/**
 * Bodies that are not JSON objects at all. The first ones are not JSON. (An empty list is not among the others: it is
 * no parameters, as PHP encodes an empty array.)
 */
export const NOT_JSON = ['{', '{"a":', '{"a":1,}', "{'a':1}", 'NaN', '\u0000', '{"a":"\\x"}', '\uFEFF{}'] as const;
export const NOT_OBJECTS = ['1', '"x"', 'true', '[{"role":"user"}]'] as const;
