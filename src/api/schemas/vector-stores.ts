import { z } from 'zod';
import {
  type AttributeFilter,
  AUTO_CHUNKING,
  MAX_CHUNK_TOKENS,
  MIN_CHUNK_TOKENS,
  type StaticChunking,
} from '../../domain/vector-stores.ts';
import { describeValue } from '../validation.ts';
import { checkPairs, decimal, integer, metadata, nullAsAbsent } from './common.ts';

// The vector-store request schemas of the official spec, with its limits.

const ATTRIBUTES_MAX_PAIRS = 16;
const ATTRIBUTE_MAX_KEY = 64;
const ATTRIBUTE_MAX_STRING = 512;
/** How deep compound filters may nest: far beyond any real query, and a bound on the work a filter costs. */
const FILTER_MAX_DEPTH = 8;

/** `ChunkingStrategyRequestParam`: `auto`, or `static` with 100–4096 tokens and an overlap of at most half. */
export const chunkingStrategy = z
  .discriminatedUnion('type', [
    z.strictObject({ type: z.literal('auto') }),
    z.strictObject({
      type: z.literal('static'),
      static: z.strictObject({
        max_chunk_size_tokens: integer().min(MIN_CHUNK_TOKENS).max(MAX_CHUNK_TOKENS),
        chunk_overlap_tokens: integer().min(0),
      }),
    }),
  ])
  .superRefine((value, ctx) => {
    if (value.type === 'static' && value.static.chunk_overlap_tokens > value.static.max_chunk_size_tokens / 2)
      ctx.addIssue({
        code: 'custom',
        path: ['static', 'chunk_overlap_tokens'],
        message: `Invalid 'chunking_strategy.static.chunk_overlap_tokens': must not exceed half of max_chunk_size_tokens (${value.static.max_chunk_size_tokens / 2}), but got ${value.static.chunk_overlap_tokens}.`,
        params: { code: 'invalid_value' },
      });
  })
  .transform((value): StaticChunking => (value.type === 'auto' ? AUTO_CHUNKING : value));

/** `VectorStoreFileAttributes`: ≤16 pairs, keys ≤64 characters, values strings ≤512, numbers or booleans. */
export const attributes = z
  .record(z.string(), z.union([z.string().max(ATTRIBUTE_MAX_STRING), z.number(), z.boolean()]))
  .nullable()
  .superRefine((value, ctx) => {
    if (value !== null) checkPairs('attributes', value, ctx, ATTRIBUTES_MAX_PAIRS, ATTRIBUTE_MAX_KEY);
  });

const expiresAfter = z.strictObject({
  anchor: z.literal('last_active_at'),
  days: integer().min(1).max(365),
});

const fileId = z.string().min(1);

/** `CreateVectorStoreRequest` (Flowise sends `name: null` and `expires_after: null` for a store without them). */
export const createVectorStoreRequest = z.strictObject(
  nullAsAbsent({
    file_ids: z.array(fileId).max(500).optional(),
    name: z.string().optional(),
    description: z.string().optional(),
    expires_after: expiresAfter.optional(),
    chunking_strategy: chunkingStrategy.optional(),
    metadata: metadata.optional(),
  }),
);

/** `UpdateVectorStoreRequest` */
export const updateVectorStoreRequest = z.strictObject(
  nullAsAbsent({
    name: z.string().nullable().optional(),
    expires_after: expiresAfter.nullable().optional(),
    metadata: metadata.optional(),
  }),
);

/** `CreateVectorStoreFileRequest` */
export const createVectorStoreFileRequest = z.strictObject(
  nullAsAbsent({ file_id: fileId, chunking_strategy: chunkingStrategy.optional(), attributes: attributes.optional() }),
);

/** `UpdateVectorStoreFileAttributesRequest` */
export const updateVectorStoreFileAttributesRequest = z.strictObject(nullAsAbsent({ attributes }));

/** `CreateVectorStoreFileBatchRequest`: exactly one of `file_ids` and `files`, 1–2000 items. */
export const createFileBatchRequest = z
  .strictObject(
    nullAsAbsent({
      file_ids: z.array(fileId).min(1).max(2000).optional(),
      files: z.array(createVectorStoreFileRequest).min(1).max(2000).optional(),
      chunking_strategy: chunkingStrategy.optional(),
      attributes: attributes.optional(),
    }),
  )
  .superRefine((value, ctx) => {
    if ((value.file_ids === undefined) === (value.files === undefined))
      ctx.addIssue({
        code: 'custom',
        message: "Exactly one of 'file_ids' and 'files' must be given.",
        params: { code: 'invalid_value' },
      });
  });

const comparisonFilter = z
  .strictObject({
    type: z.enum(['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', 'nin']),
    key: z.string(),
    value: z.union([z.string(), z.number(), z.boolean(), z.array(z.union([z.string(), z.number()]))]),
  })
  .superRefine((filter, ctx) => {
    // `in` and `nin` compare with a list, the others with one value: the other shape would match nothing.
    const list = filter.type === 'in' || filter.type === 'nin';
    if (list === Array.isArray(filter.value)) return;
    ctx.addIssue({
      code: 'custom',
      path: ['value'],
      message: list
        ? `'${filter.type}' compares with a list: expected an array, but got ${describeValue(filter.value)} instead.`
        : `'${filter.type}' compares with one value: expected a string, a number or a boolean, but got an array instead.`,
      params: { code: 'invalid_type', prefixParam: true },
    });
  });

type FilterInput = z.input<typeof comparisonFilter> | { type: 'and' | 'or'; filters: FilterInput[] };

/** `ComparisonFilter | CompoundFilter`, nesting at most FILTER_MAX_DEPTH deep. */
export const attributeFilter: z.ZodType<AttributeFilter, FilterInput> = z.lazy(() =>
  // Told apart by `type`, so that a mistake inside a compound filter is reported where it is, not as the compound
  // filter's `filters` being unknown to a comparison.
  z.discriminatedUnion('type', [
    comparisonFilter,
    z.strictObject({ type: z.enum(['and', 'or']), filters: z.array(attributeFilter) }),
  ]),
) as z.ZodType<AttributeFilter, FilterInput>;

/** Refuses filters nested deeper than FILTER_MAX_DEPTH (checked before the recursive schema walks them). */
export function filterDepth(filter: unknown, depth = 1): number {
  if (filter === null || typeof filter !== 'object' || !Array.isArray((filter as { filters?: unknown }).filters))
    return depth;
  if (depth > FILTER_MAX_DEPTH) return depth;
  let deepest = depth;
  for (const inner of (filter as { filters: unknown[] }).filters)
    deepest = Math.max(deepest, filterDepth(inner, depth + 1));
  return deepest;
}
export { FILTER_MAX_DEPTH };

/**
 * `VectorStoreSearchRequest`. At most 10 queries (the spec sets no bound): each is searched, and embedded, on its
 * own. `rewrite_query` is accepted and the query searched as given (`search_query` shows it): a rewrite needs a chat
 * model, which the request does not name.
 */
export const searchRequest = z.strictObject(
  nullAsAbsent({
    query: z.union([z.string(), z.array(z.string()).min(1).max(10)]),
    rewrite_query: z.boolean().optional(),
    max_num_results: integer().min(1).max(50).optional(),
    filters: attributeFilter.optional(),
    ranking_options: z
      .strictObject(
        nullAsAbsent({
          ranker: z.enum(['none', 'auto', 'default-2024-11-15']).optional(),
          score_threshold: decimal(0, 1).optional(),
        }),
      )
      .optional(),
  }),
);
