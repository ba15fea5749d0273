import { z } from 'zod';
import { metadata, toolResources } from './common.ts';
import { createMessageRequest } from './messages.ts';

/** `CreateThreadRequest` */
export const createThreadRequest = z.strictObject({
  messages: z.array(createMessageRequest).optional(),
  tool_resources: toolResources.optional(),
  metadata: metadata.optional(),
});

/** `ModifyThreadRequest` */
export const modifyThreadRequest = z.strictObject({
  tool_resources: toolResources.optional(),
  metadata: metadata.optional(),
});
