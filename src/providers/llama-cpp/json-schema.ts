/**
 * JSON Schema (as users write it for `response_format` and function parameters) → the subset node-llama-cpp turns
 * into a grammar. Pure; no node-llama-cpp import at run time.
 *
 * The grammar makes the model's output *structurally* valid: types, enums, constants, properties, required keys,
 * array items and lengths, string lengths and date formats. Keywords a grammar cannot express (pattern, minimum,
 * multipleOf, …) are dropped rather than refused, so a schema written for OpenAI keeps working; where the
 * subset cannot express a construct at all (allOf, not, if/then, recursive `#` refs) that part accepts any JSON
 * value. node-llama-cpp would otherwise read an unknown shape as `null` (e.g. `{}` allows only `null`).
 */
import type { GbnfJsonSchema } from 'node-llama-cpp';

type Json = Record<string, unknown>;
type Schema = Record<string, unknown>;

const SCALAR_TYPES = ['string', 'number', 'integer', 'boolean', 'null'] as const;
const FORMATS = new Set(['date-time', 'time', 'date']);

/** Any JSON value. */
export const ANY_JSON: GbnfJsonSchema = {
  oneOf: [
    { type: ['string', 'number', 'boolean', 'null'] },
    { type: 'object', additionalProperties: true },
    { type: 'array' },
  ],
};

export function toGrammarSchema(schema: unknown): GbnfJsonSchema {
  if (!isObject(schema)) return ANY_JSON;
  // `definitions` (draft-07) becomes `$defs`, the only place node-llama-cpp resolves `$ref`s.
  const defs = {
    ...(isObject(schema.definitions) ? schema.definitions : {}),
    ...(isObject(schema.$defs) ? schema.$defs : {}),
  };
  const converted = convert(schema) as Schema;
  const names = Object.keys(defs);
  if (names.length === 0) return converted as GbnfJsonSchema;
  const $defs: Schema = {};
  for (const name of names) $defs[name] = convert(defs[name]);
  if ('$ref' in converted || 'oneOf' in converted || converted.type === 'object' || converted.type === 'array')
    return { ...converted, $defs } as GbnfJsonSchema;
  return { oneOf: [converted], $defs } as unknown as GbnfJsonSchema;
}

/**
 * An alternative with the keywords beside it: its own win, but `properties` join property by property and
 * `required` lists add up (an alternative naming one more property keeps the others, which stay required).
 */
function withBeside(beside: Record<string, unknown>, alternative: unknown): unknown {
  if (!isObject(alternative)) return alternative;
  const merged: Record<string, unknown> = { ...beside, ...alternative };
  if (isObject(beside.properties) && isObject(alternative.properties))
    merged.properties = { ...beside.properties, ...alternative.properties };
  if (Array.isArray(beside.required) && Array.isArray(alternative.required))
    merged.required = [...new Set([...beside.required, ...alternative.required])];
  return merged;
}

function convert(input: unknown): unknown {
  if (input === false) return ANY_JSON; // "nothing matches" has no grammar; never generate it by accident
  if (!isObject(input)) return ANY_JSON;
  const schema = withNullable(input);
  const description = typeof schema.description === 'string' ? { description: schema.description } : {};

  if (typeof schema.$ref === 'string') {
    const match = /^#\/(?:\$defs|definitions)\/([^/]+)$/.exec(schema.$ref);
    return match ? { $ref: `#/$defs/${match[1]}`, ...description } : ANY_JSON;
  }
  if ('const' in schema && isScalar(schema.const)) return { const: schema.const, ...description };
  if (Array.isArray(schema.enum)) {
    const values = schema.enum.filter(isScalar);
    if (values.length > 0) return { enum: values, ...description };
  }
  const alternatives = Array.isArray(schema.anyOf) ? schema.anyOf : Array.isArray(schema.oneOf) ? schema.oneOf : null;
  if (alternatives && alternatives.length > 0) {
    // The keywords beside them hold for each (an object whose alternatives only say what it requires keeps its
    // properties), each alternative's own taking precedence.
    const { anyOf: _anyOf, oneOf: _oneOf, ...beside } = schema;
    return { oneOf: alternatives.map((alternative) => convert(withBeside(beside, alternative))), ...description };
  }
  if (Array.isArray(schema.allOf) && schema.allOf.length === 1) return convert(schema.allOf[0]);

  const types = typeList(schema);
  if (types.length === 0) {
    // No type: infer it from the keywords, as validators do.
    if (isObject(schema.properties) || 'additionalProperties' in schema) return object(schema, description);
    if ('items' in schema || Array.isArray(schema.prefixItems)) return array(schema, description);
    return ANY_JSON;
  }
  const variants = types.map((type) => {
    if (type === 'object') return object(schema, description);
    if (type === 'array') return array(schema, description);
    if (type === 'string') return string(schema, description);
    return { type, ...description };
  });
  if (variants.length === 1) return variants[0];
  if (types.every((type) => (SCALAR_TYPES as readonly string[]).includes(type) && type !== 'string'))
    return { type: types, ...description };
  return { oneOf: variants, ...description };
}

function object(schema: Json, description: Json): Json {
  const properties = isObject(schema.properties) ? schema.properties : undefined;
  const out: Json = { type: 'object', ...description };
  if (properties) {
    out.properties = Object.fromEntries(Object.entries(properties).map(([key, value]) => [key, convert(value)]));
    if (Array.isArray(schema.required))
      out.required = schema.required.filter((key): key is string => typeof key === 'string' && key in properties);
  }
  // JSON Schema allows extra properties unless told otherwise; with properties listed, generating only those is
  // valid and is what the caller wants. Without any, an open object is the only sensible reading.
  if (isObject(schema.additionalProperties)) out.additionalProperties = convert(schema.additionalProperties);
  else if (schema.additionalProperties === true || (!properties && schema.additionalProperties !== false))
    out.additionalProperties = true;
  copyCount(schema, out, 'minProperties');
  copyCount(schema, out, 'maxProperties');
  return out;
}

function array(schema: Json, description: Json): Json {
  const out: Json = { type: 'array', ...description };
  if (isObject(schema.items)) out.items = convert(schema.items);
  if (Array.isArray(schema.prefixItems)) out.prefixItems = schema.prefixItems.map(convert);
  copyCount(schema, out, 'minItems');
  copyCount(schema, out, 'maxItems');
  return out;
}

function string(schema: Json, description: Json): Json {
  if (typeof schema.format === 'string' && FORMATS.has(schema.format))
    return { type: 'string', format: schema.format, ...description };
  const out: Json = { type: 'string', ...description };
  copyCount(schema, out, 'minLength');
  copyCount(schema, out, 'maxLength');
  return out;
}

/** OpenAPI's `nullable: true` is JSON Schema's `type: [T, 'null']`. */
function withNullable(schema: Json): Json {
  if (schema.nullable !== true) return schema;
  const types = typeList(schema);
  if (types.length === 0 || types.includes('null')) return schema;
  return { ...schema, type: [...types, 'null'] };
}

function typeList(schema: Json): string[] {
  const type = schema.type;
  const list = Array.isArray(type) ? type : typeof type === 'string' ? [type] : [];
  return list.filter(
    (t): t is string => typeof t === 'string' && [...SCALAR_TYPES, 'object', 'array'].includes(t as never),
  );
}

function copyCount(from: Json, to: Json, key: string) {
  const value = from[key];
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) to[key] = value;
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isScalar(value: unknown): value is string | number | boolean | null {
  return value === null || ['string', 'number', 'boolean'].includes(typeof value);
}

/**
 * node-llama-cpp's JSON grammar lets a number have an exponent of up to 16 digits, an integer too: a small model
 * then writes `3882502462098e773502735797`, which JSON.parse reads as Infinity, and an integer such as `1E42`. In the
 * grammar's text, an integer gets no exponent and a fraction one of at most two digits, so every number parses to a
 * finite value and every integer is written as one. Rules of another shape are left as they are.
 */
export function finiteNumbers(grammar: string): string {
  const exponent = '([eE] [-+]? ("0" | [1-9] [0-9]{0,15}))?';
  return grammar
    .split('\n')
    .map((line) => {
      if (line.startsWith('integer-number-rule ::= ')) return line.replace(` ${exponent}`, '');
      if (line.startsWith('fractional-number-rule ::= '))
        return line.replace(exponent, '([eE] [-+]? ("0" | [1-9] [0-9]?))?');
      return line;
    })
    .join('\n');
}
