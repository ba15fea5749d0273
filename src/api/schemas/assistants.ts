import { z } from 'zod';
import {
  assistantTool,
  metadata,
  nullAsAbsent,
  reasoningEffort,
  responseFormat,
  temperature,
  toolResources,
  topP,
} from './common.ts';
import { createToolResources } from './tool-resources.ts';

const assistantFields = {
  model: z.string().min(1),
  name: z.string().max(256).nullable().optional(),
  description: z.string().max(512).nullable().optional(),
  instructions: z.string().max(256_000).nullable().optional(),
  reasoning_effort: reasoningEffort.optional(),
  tools: z.array(assistantTool).max(128).optional(),
  tool_resources: toolResources.optional(),
  metadata: metadata.optional(),
  temperature: temperature.optional(),
  top_p: topP.optional(),
  response_format: responseFormat.optional(),
};

/** `CreateAssistantRequest`: its tool_resources may use the `vector_stores` helper. */
export const createAssistantRequest = z.strictObject(
  nullAsAbsent({ ...assistantFields, tool_resources: createToolResources.optional() }),
);

/**
 * `ModifyAssistantRequest`: the same fields, all optional. An empty model is leaving it out: go-openai's
 * `AssistantRequest`, shared with creation, sends `"model":""` when a modification leaves it unset.
 */
export const modifyAssistantRequest = z.strictObject(
  nullAsAbsent({
    ...assistantFields,
    model: z.preprocess((model) => (model === '' ? undefined : model), assistantFields.model.optional()),
  }),
);
