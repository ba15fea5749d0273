import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv2019, type ValidateFunction } from 'ajv/dist/2019.js';
import addFormatsModule from 'ajv-formats';
import { ADDED_OPERATIONS, ADDED_SCHEMAS } from '../../src/api/routes/openapi.ts';
import { ORGANIZATION_OPERATIONS, ORGANIZATION_SCHEMAS } from '../../src/api/routes/organization-openapi.ts';
import { ROOT } from './root.ts';

/**
 * Validates wire objects against the official schema (spec/assistants-v2.openapi.yaml, the project's own copy).
 *
 * Draft 2019-09, because the spec mixes OpenAPI 3.0 `nullable` (which Ajv understands) with `$recursiveRef`.
 * `nullable` beside no `type` is normalised (see normalizeNullable). One deliberate patch: list envelopes' `first_id`/`last_id` may be null, as the live API sends them for an empty
 * page (the schema types them as strings, which no empty list could satisfy). Nothing else is relaxed.
 *
 * The operations the spec lacks and the server documents in /v1/openapi.json (src/api/routes/openapi.ts: the models
 * endpoints, assistd's extensions such as GET /v1/threads, the admin API) are validated as the document describes them, against
 * the spec's schemas where it names them.
 */
const SPEC_FILE = path.join(ROOT, 'spec/assistants-v2.openapi.yaml');
const SPEC_ID = 'https://assistd.local/openapi.json';

interface Operation {
  method: string;
  pattern: RegExp;
  template: string;
  responseRef: string | undefined;
}

type Json = Record<string, unknown>;

/**
 * OpenAPI 3.0 `nullable: true` means "or null". Ajv implements it only beside a `type`; where the spec puts it on
 * a `$ref`/`allOf` node, it is rewritten to the equivalent `anyOf: [node, {type: "null"}]`.
 */
function normalizeNullable(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(normalizeNullable);
  if (node === null || typeof node !== 'object') return node;
  const out: Json = {};
  for (const [key, value] of Object.entries(node)) out[key] = normalizeNullable(value);
  if (out['nullable'] === true && out['type'] === undefined) {
    const { nullable: _nullable, description, ...rest } = out;
    return { description, anyOf: [rest, { type: 'null' }] };
  }
  return out;
}

/**
 * The spec parsed (a fresh object each call), from a JSON copy kept under node_modules/.cache by the YAML's hash:
 * every test file that talks to the API loads this module, and parsing the 350 kB of YAML takes it about 0.3 s of
 * CPU, JSON a few milliseconds.
 */
export async function parsedSpec(): Promise<unknown> {
  const yaml = readFileSync(SPEC_FILE, 'utf8');
  const hash = createHash('sha256').update(yaml).digest('hex').slice(0, 16);
  const cached = path.join(ROOT, `node_modules/.cache/assistd/openapi-${hash}.json`);
  try {
    return JSON.parse(readFileSync(cached, 'utf8'));
  } catch {
    const { parse } = await import('yaml');
    const parsed: unknown = parse(yaml);
    mkdirSync(path.dirname(cached), { recursive: true });
    // Written whole under another name, then renamed: a test file reading it at the same time sees all or nothing.
    const partial = `${cached}.${process.pid}`;
    writeFileSync(partial, JSON.stringify(parsed));
    renameSync(partial, cached);
    return parsed;
  }
}

const spec = normalizeNullable(await parsedSpec()) as Json;
const schemas = (spec['components'] as Json)['schemas'] as Record<string, Json>;
Object.assign(schemas, normalizeNullable(structuredClone({ ...ADDED_SCHEMAS, ...ORGANIZATION_SCHEMAS })));
for (const [name, schema] of Object.entries(schemas)) {
  const props = schema['properties'] as Record<string, Json> | undefined;
  if (name.startsWith('List') && name.endsWith('Response') && props?.['first_id'] && props['last_id']) {
    props['first_id'] = { anyOf: [{ type: 'string' }, { type: 'null' }] };
    props['last_id'] = { anyOf: [{ type: 'string' }, { type: 'null' }] };
  }
}
/**
 * Where assistd answers as OpenAI did rather than as its schema says, for the checks of responses and the fuzz's
 * requests alike. A run shows the tools it runs with: its assistant's, up to 128, or its own, as many (the spec's 20
 * is refused by no client; Semantic Kernel sends more). A run's `max_completion_tokens` may be below the schema's
 * 256 (api.openai.com took 16: ruby-openai's recordings). A file's `expires_at` and `status_details` are null when
 * they have no value; a batch is a `vector_store.file_batch`.
 */
export function asOpenAIAnswered(schemas: Record<string, Json>): void {
  const propertiesOf = (name: string) => schemas[name]!['properties'] as Record<string, Json>;
  propertiesOf('RunObject')['tools']!['maxItems'] = 128;
  for (const name of ['RunObject', 'CreateRunRequest', 'CreateThreadAndRunRequest'])
    propertiesOf(name)['max_completion_tokens']!['minimum'] = 1;
  for (const field of ['expires_at', 'status_details']) {
    const declared = propertiesOf('OpenAIFile')[field]!;
    propertiesOf('OpenAIFile')[field] = { anyOf: [declared, { type: 'null' }] };
  }
  propertiesOf('VectorStoreFileBatchObject')['object'] = { enum: ['vector_store.file_batch'] };
}
asOpenAIAnswered(schemas);

const addFormats = addFormatsModule as unknown as (ajv: Ajv2019) => Ajv2019;
const ajv = new Ajv2019({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addFormat('unixtime', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= 0 });
ajv.addSchema({ $id: SPEC_ID, components: spec['components'] });

const validators = new Map<string, ValidateFunction>();

export function schemaValidator(name: string): ValidateFunction {
  let validate = validators.get(name);
  if (!validate) {
    if (!schemas[name]) throw new Error(`no schema ${name} in the spec`);
    validate = ajv.getSchema(`${SPEC_ID}#/components/schemas/${name}`);
    if (!validate) throw new Error(`cannot compile schema ${name}`);
    validators.set(name, validate);
  }
  return validate;
}

/** Throws, listing every violation, when `value` does not match the named component schema. */
export function assertMatchesSchema(name: string, value: unknown, context = ''): void {
  const validate = schemaValidator(name);
  if (!validate(value)) {
    const problems = (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; ');
    throw new Error(`${context} response does not match ${name}: ${problems}\n${JSON.stringify(value).slice(0, 2000)}`);
  }
}

/** The schema an operation's 200 JSON answer is declared with, by name. */
function responseRef(op: Json): string | undefined {
  const content = ((op['responses'] as Json | undefined)?.['200'] as Json | undefined)?.['content'] as Json | undefined;
  const schema = (content?.['application/json'] as Json | undefined)?.['schema'] as Json | undefined;
  return typeof schema?.['$ref'] === 'string' ? (schema['$ref'] as string).split('/').at(-1) : undefined;
}

const operations: Operation[] = [];
for (const [template, item] of Object.entries(spec['paths'] as Record<string, Record<string, Json>>)) {
  for (const [method, op] of Object.entries(item)) {
    const pattern = new RegExp(`^/v1${template.replace(/\{[^}]+\}/g, '[^/]+')}$`);
    operations.push({ method: method.toUpperCase(), pattern, template, responseRef: responseRef(op) });
  }
}
// The added operations are matched by their Fastify route, whose `*` takes slashes too (`/v1/models/*`).
for (const { method, path, route, operation } of [...ADDED_OPERATIONS, ...ORGANIZATION_OPERATIONS]) {
  const pattern = new RegExp(`^${route.replace(/:[^/]+/g, '[^/]+').replace('*', '.+')}$`);
  operations.push({ method: method.toUpperCase(), pattern, template: path, responseRef: responseRef(operation) });
}

/** The spec operation for a request, e.g. `GET /v1/threads/thread_1/messages` → ListMessagesResponse. */
export function findOperation(method: string, path: string): Operation | undefined {
  return operations.find((op) => op.method === method.toUpperCase() && op.pattern.test(path));
}

/**
 * Validates an API response body: a 2xx against the operation's declared response schema, anything else against
 * `ErrorResponse`. Non-API paths (/healthz) are skipped. SSE responses are validated by the streaming tests.
 */
export function assertValidResponse(method: string, sentPath: string, status: number, body: unknown): void {
  // Azure OpenAI clients send the same operations under /openai (src/api/app.ts serves them with the /v1 routes).
  const path = sentPath.replace(/^\/openai\//, '/v1/');
  if (!path.startsWith('/v1/')) return;
  const context = `${method} ${sentPath} → ${status}`;
  if (status >= 400) {
    assertMatchesSchema('ErrorResponse', body, context);
    return;
  }
  const op = findOperation(method, path);
  if (!op) throw new Error(`${context}: no such operation in the spec`);
  if (op.responseRef) assertMatchesSchema(op.responseRef, body, context);
}
