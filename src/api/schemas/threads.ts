import { z } from 'zod';
import { metadata, nullAsAbsent, toolResources } from './common.ts';
import { createMessageRequest } from './messages.ts';
import { createToolResources } from './tool-resources.ts';

/** `CreateThreadRequest`: its tool_resources may use the `vector_stores` helper. */
export const createThreadRequest = z.strictObject(
  nullAsAbsent({
    messages: z.array(createMessageRequest).optional(),
    tool_resources: createToolResources.optional(),
    metadata: metadata.optional(),
  }),
);

/** `ModifyThreadRequest` */
export const modifyThreadRequest = z.strictObject(
  nullAsAbsent({ tool_resources: toolResources.optional(), metadata: metadata.optional() }),
);
