import { z } from 'zod';
import { metadata, nullAsAbsent } from './common.ts';

const MAX_CONTENT_LENGTH = 256_000;
const imageDetail = z.enum(['auto', 'low', 'high']).optional();

/** An image's address: on the web, or its bytes in a `data:` URL; no other scheme (`javascript:`, `file:`, `ftp:`). */
const imageUrl = z.url({ protocol: /^(https?|data)$/ });

const contentPart = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('text'), text: z.string().min(1).max(MAX_CONTENT_LENGTH) }),
  z.strictObject({
    type: z.literal('image_file'),
    image_file: z.strictObject(nullAsAbsent({ file_id: z.string().min(1), detail: imageDetail })),
  }),
  z.strictObject({
    type: z.literal('image_url'),
    image_url: z.strictObject(nullAsAbsent({ url: imageUrl, detail: imageDetail })),
  }),
]);

const attachment = z.strictObject({
  file_id: z.string().min(1),
  tools: z.array(
    z.discriminatedUnion('type', [
      z.strictObject({ type: z.literal('code_interpreter') }),
      z.strictObject({ type: z.literal('file_search') }),
    ]),
  ),
});

/** `CreateMessageRequest` */
export const createMessageRequest = z.strictObject(
  nullAsAbsent({
    role: z.enum(['user', 'assistant']),
    content: z.union([z.string().min(1).max(MAX_CONTENT_LENGTH), z.array(contentPart).min(1)]),
    attachments: z.array(attachment).nullable().optional(),
    metadata: metadata.optional(),
  }),
);

/** `ModifyMessageRequest` */
export const modifyMessageRequest = z.strictObject(nullAsAbsent({ metadata: metadata.optional() }));
