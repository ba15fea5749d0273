import { z } from 'zod';
import type { Metadata, ToolResources } from '../../domain/objects.ts';
import type { StaticChunking } from '../../domain/vector-stores.ts';
import { codeInterpreterResources, fileSearchResources, metadata, nullAsAbsent } from './common.ts';
import { chunkingStrategy } from './vector-stores.ts';

// `tool_resources` where an assistant or a thread is created: the only places that take the `vector_stores` helper.
// (Kept apart from common.ts, which vector-stores.ts imports: the helper needs its chunking strategy.)

/** The `file_search.vector_stores` helper: a vector store to create with these files, named in `vector_store_ids`. */
export interface VectorStoreHelper {
  file_ids: string[];
  chunking_strategy?: StaticChunking | undefined;
  metadata?: Metadata | undefined;
}

/** `tool_resources` as a create request gives it: the stored shape, plus the helper until it is resolved. */
export type CreateToolResources = Omit<ToolResources, 'file_search'> & {
  file_search?: { vector_store_ids: string[]; vector_stores?: VectorStoreHelper[] };
};

/** Upstream's limit on the files of the helper's store (for stores created before Nov 2025; a bound on one request). */
const HELPER_MAX_FILES = 10_000;

const vectorStoreHelper = z.strictObject(
  nullAsAbsent({
    file_ids: z.array(z.string().min(1)).max(HELPER_MAX_FILES).optional(),
    chunking_strategy: chunkingStrategy.optional(),
    metadata: metadata.optional(),
  }),
);

/** `tool_resources` of CreateAssistantRequest and CreateThreadRequest (also `thread` of create-thread-and-run). */
export const createToolResources = z
  .strictObject(
    nullAsAbsent({
      code_interpreter: codeInterpreterResources.optional(),
      file_search: fileSearchResources(vectorStoreHelper)
        .superRefine((value, ctx) => {
          // The spec's `oneOf: [required: [vector_store_ids], required: [vector_stores]]`.
          if (value.vector_store_ids !== undefined && value.vector_stores !== undefined)
            ctx.addIssue({
              code: 'custom',
              path: ['vector_stores'],
              message:
                "Invalid 'tool_resources.file_search': pass either 'vector_store_ids' or 'vector_stores', not both.",
              params: { code: 'invalid_value' },
            });
        })
        .optional(),
    }),
  )
  .nullable()
  .transform((value): CreateToolResources | null => {
    if (value === null) return null;
    const out: CreateToolResources = {};
    if (value.code_interpreter) out.code_interpreter = { file_ids: value.code_interpreter.file_ids ?? [] };
    if (value.file_search) {
      out.file_search = { vector_store_ids: value.file_search.vector_store_ids ?? [] };
      if (value.file_search.vector_stores)
        out.file_search.vector_stores = value.file_search.vector_stores.map((helper) => ({
          file_ids: helper.file_ids ?? [],
          chunking_strategy: helper.chunking_strategy,
          metadata: helper.metadata,
        }));
    }
    return out;
  });
