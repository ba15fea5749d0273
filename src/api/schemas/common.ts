import { z } from 'zod';
import type { ToolResources } from '../../domain/objects.ts';
import { characters, INTEGER_EXPECTED } from '../validation.ts';

// Building blocks of the official request schemas (../../../spec/assistants-v2.openapi.yaml), with its limits.

/**
 * An integer parameter: a value of another type is reported as not an integer (zod's own check says `number`, which
 * validation.ts would word as a decimal). Bounds as zod's `.min()` / `.max()`.
 */
export function integer() {
  return z.number({ error: INTEGER_EXPECTED }).int();
}

/**
 * A request object's fields, each optional one that takes no `null` of its own taking `null` as leaving it out. The
 * Python SDK sends a `None` it is given as `null` (`tools=None`, `parallel_tool_calls=None`), and programs send back
 * what they read (`tool_resources.model_dump()` holds `"file_search": null`); OpenAI took them. A field whose `null`
 * means something (`instructions`: clear them) keeps its meaning; a required field's `null` is refused.
 * Every object of the official request schemas is built through it, nested ones included.
 */
export function nullAsAbsent<S extends z.ZodRawShape>(shape: S): S {
  const fields = Object.entries(shape).map(([name, field]) => {
    const schema = field as z.ZodType;
    const lenient = schema.safeParse(undefined).success && !schema.safeParse(null).success;
    return [name, lenient ? absentIfNull(schema) : schema];
  });
  return Object.fromEntries(fields) as S;
}

/** An optional field whose `null` means what leaving it out means. */
function absentIfNull<T extends z.ZodType>(schema: T) {
  return schema
    .nullish()
    .transform((value) => value ?? undefined)
    .optional();
}

const METADATA_MAX_PAIRS = 16;
const METADATA_MAX_KEY = 64;
const METADATA_MAX_VALUE = 512;

/**
 * `Metadata`: ≤16 string pairs, keys ≤64 characters, values ≤512. Its `null` is leaving it out (nullAsAbsent): a
 * modification with `"metadata": null` keeps the object's, as `{}` empties it. go-openai sends `null` whenever a
 * program leaves it unset (`ModifyThreadRequest`, to add a vector store), and emptying would lose what it holds.
 */
export const metadata = z.record(z.string(), z.string()).superRefine((value, ctx) => {
  checkPairs('metadata', value, ctx, METADATA_MAX_PAIRS, METADATA_MAX_KEY);
  for (const [key, item] of Object.entries(value))
    if (characters(item) > METADATA_MAX_VALUE)
      ctx.addIssue({
        code: 'custom',
        path: [key],
        message: `Invalid 'metadata.${key}': string too long. Expected a string with maximum length ${METADATA_MAX_VALUE}, but got a string with length ${characters(item)} instead.`,
        params: { code: 'string_above_max_length' },
      });
});

/** The limits `metadata` and a vector store file's `attributes` share: how many pairs, how long a key. */
export function checkPairs(
  field: string,
  value: Record<string, unknown>,
  ctx: z.RefinementCtx,
  maxPairs: number,
  maxKey: number,
): void {
  const keys = Object.keys(value);
  if (keys.length > maxPairs)
    ctx.addIssue({
      code: 'custom',
      message: `Invalid '${field}': too many properties. Expected an object with at most ${maxPairs} properties, but got an object with ${keys.length} properties instead.`,
      params: { code: 'object_above_max_properties' },
    });
  for (const key of keys)
    if (characters(key) > maxKey)
      ctx.addIssue({
        code: 'custom',
        message: `Invalid '${field}': key '${key}' is too long. Expected keys of at most ${maxKey} characters, but got a key with ${characters(key)} characters instead.`,
        params: { code: 'string_above_max_length' },
      });
}

const NAME_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;

/** `FunctionParameters`: a JSON Schema object describing the arguments. */
const functionParameters = z.record(z.string(), z.unknown()).superRefine((schema, ctx) => {
  if ('type' in schema && schema['type'] !== 'object')
    ctx.addIssue({
      code: 'custom',
      message: `Invalid schema for function parameters: schema must be a JSON Schema of 'type: "object"', got 'type: ${JSON.stringify(schema['type'])}'.`,
      params: { code: 'invalid_function_parameters' },
    });
});

export const functionTool = z.strictObject({
  type: z.literal('function'),
  function: z.strictObject(
    nullAsAbsent({
      name: z.string().regex(NAME_PATTERN),
      description: z.string().optional(),
      parameters: functionParameters.optional(),
      strict: z.boolean().nullable().optional(),
    }),
  ),
});

const fileSearchTool = z.strictObject(
  nullAsAbsent({
    type: z.literal('file_search'),
    file_search: z
      .strictObject(
        nullAsAbsent({
          max_num_results: integer().min(1).max(50).optional(),
          ranking_options: z
            .strictObject(
              nullAsAbsent({
                ranker: z.enum(['auto', 'default_2024_08_21']).optional(),
                score_threshold: decimal(0, 1),
              }),
            )
            .optional(),
        }),
      )
      .optional(),
  }),
);

const codeInterpreterTool = z.strictObject({ type: z.literal('code_interpreter') });

export const assistantTool = z.discriminatedUnion('type', [codeInterpreterTool, fileSearchTool, functionTool]);

/** `AssistantsApiResponseFormatOption`: "auto", text, json_object or json_schema. */
export const responseFormat = z
  .union([
    z.discriminatedUnion('type', [
      z.strictObject({ type: z.literal('text') }),
      z.strictObject({ type: z.literal('json_object') }),
      z.strictObject({
        type: z.literal('json_schema'),
        json_schema: z.strictObject(
          nullAsAbsent({
            name: z.string().regex(NAME_PATTERN),
            description: z.string().optional(),
            schema: z.record(z.string(), z.unknown()).optional(),
            strict: z.boolean().nullable().optional(),
          }),
        ),
      }),
    ]),
    z.literal('auto'),
  ])
  .nullable();

export const reasoningEffort = z.enum(['none', 'minimal', 'low', 'medium', 'high', 'xhigh', 'max']).nullable();

/** `tool_resources.code_interpreter`: at most 20 files. */
export const codeInterpreterResources = z.strictObject(
  nullAsAbsent({ file_ids: z.array(z.string()).max(20).optional() }),
);

/** `tool_resources.file_search`: at most one vector store, named, or made by the `vector_stores` helper (`helper`). */
export function fileSearchResources<T extends z.ZodType>(helper: T) {
  return z.strictObject(
    nullAsAbsent({
      vector_store_ids: z.array(z.string()).max(1).optional(),
      vector_stores: z.array(helper).max(1).optional(),
    }),
  );
}

/**
 * `tool_resources` where no vector store can be created: modify assistant, modify thread, and the top level of
 * create-thread-and-run. Their schemas have no `file_search.vector_stores` helper (only the create requests do, see
 * tool-resources.ts); it is refused with a clear message instead of being dropped silently.
 */
export const toolResources = z
  .strictObject(
    nullAsAbsent({
      code_interpreter: codeInterpreterResources.optional(),
      file_search: fileSearchResources(z.unknown())
        .superRefine((value, ctx) => {
          if (value.vector_stores !== undefined)
            ctx.addIssue({
              code: 'custom',
              path: ['vector_stores'],
              message:
                "'tool_resources.file_search.vector_stores' creates a vector store only when an assistant or a thread is created; pass 'vector_store_ids' here instead.",
              params: { code: 'unsupported_parameter' },
            });
        })
        .optional(),
    }),
  )
  .nullable()
  .transform((value): ToolResources | null => {
    if (value === null) return null;
    const out: ToolResources = {};
    if (value.code_interpreter) out.code_interpreter = { file_ids: value.code_interpreter.file_ids ?? [] };
    if (value.file_search) out.file_search = { vector_store_ids: value.file_search.vector_store_ids ?? [] };
    return out;
  });

/** A number in [min, max], with upstream's wording for decimals (zod's bounds are worded for integers). */
export function decimal(min: number, max: number) {
  return z.number().superRefine((value, ctx) => {
    if (value > max)
      ctx.addIssue({
        code: 'custom',
        message: `decimal above maximum value. Expected a value <= ${max}, but got ${value} instead.`,
        params: { code: 'decimal_above_max_value', prefixParam: true },
      });
    else if (value < min)
      ctx.addIssue({
        code: 'custom',
        message: `decimal below minimum value. Expected a value >= ${min}, but got ${value} instead.`,
        params: { code: 'decimal_below_min_value', prefixParam: true },
      });
  });
}

export const temperature = decimal(0, 2).nullable();
export const topP = decimal(0, 1).nullable();
