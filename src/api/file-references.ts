import path from 'node:path';
import { invalidRequest, notFound } from '../domain/errors.ts';
import { isImage } from '../domain/files.ts';
import { hasPrefix } from '../domain/ids.ts';
import type { NewMessageInput } from '../domain/messages.ts';
import type { ToolResources } from '../domain/objects.ts';
import type { FileService } from '../files/file-service.ts';
import { unreadableType } from '../retrieval/extract.ts';
import type { Scope } from '../storage/store.ts';
import type { CreateToolResources } from './schemas/tool-resources.ts';

/**
 * The files a request refers to — message attachments, image_file parts, `tool_resources.code_interpreter.file_ids`,
 * the files of a `tool_resources.file_search.vector_stores` helper — checked before anything is written, in one
 * place for every route that takes them. Each route collects its references in request order with the functions
 * below, then calls `checkFileReferences` once.
 *
 * A check, not a hold: a file deleted after it stays referred to, and a run that needs its bytes then fails
 * (runs/image-files.ts). A modify checks only the ids the object does not refer to yet (`notReferredTo`), so that
 * the object sent back as it was read is taken.
 */

/**
 * A file id in a request body, at `param` (its path). `imageParam` marks an image_file part's id (its file must be an
 * image): its path; `searchParam` an attachment's for file_search (file_search must read its type): the path of the
 * attachments.
 */
export interface FileReference {
  id: string;
  param: string;
  imageParam?: string;
  searchParam?: string;
}

type Files = Pick<FileService, 'missing' | 'get'>;

/**
 * The largest image an image_file part may name: upstream's limit for an image sent to a model. The image is read
 * whole and base64-encoded into each request of a run, so it is bounded here rather than by the upload limit.
 */
export const MAX_IMAGE_BYTES = 20 * 1024 * 1024;

/** One message's references: its content parts, then its attachments. `at` is the message's path in the body. */
export function messageFileReferences(message: NewMessageInput, at = ''): FileReference[] {
  const references: FileReference[] = [];
  const within = at === '' ? '' : `${at}.`;
  if (typeof message.content !== 'string')
    for (const [i, part] of message.content.entries())
      if (part.type === 'image_file') {
        const param = `${within}content[${i}].image_file.file_id`;
        references.push({ id: part.image_file.file_id, param, imageParam: param });
      }
  const searchParam = `${within}attachments`;
  for (const [i, attachment] of (message.attachments ?? []).entries()) {
    const reference = { id: attachment.file_id, param: `${searchParam}[${i}].file_id` };
    references.push(
      attachment.tools.some((tool) => tool.type === 'file_search') ? { ...reference, searchParam } : reference,
    );
  }
  return references;
}

/** The references of a list of messages at path `at` (`messages`, `additional_messages`, `thread.messages`). */
export function messagesFileReferences(
  messages: readonly NewMessageInput[] | null | undefined,
  at: string,
): FileReference[] {
  return (messages ?? []).flatMap((message, i) => messageFileReferences(message, `${at}[${i}]`));
}

/**
 * `code_interpreter.file_ids`, then the files of a `file_search.vector_stores` helper (create requests), of the
 * tool_resources at path `at`.
 */
export function toolResourcesFileReferences(
  resources: ToolResources | CreateToolResources | null | undefined,
  at = 'tool_resources',
): FileReference[] {
  const helper = resources?.file_search && 'vector_stores' in resources.file_search ? resources.file_search : undefined;
  return [
    ...(resources?.code_interpreter?.file_ids ?? []).map((id, i) => ({
      id,
      param: `${at}.code_interpreter.file_ids[${i}]`,
    })),
    ...(helper?.vector_stores ?? []).flatMap((store, k) =>
      store.file_ids.map((id, i) => ({ id, param: `${at}.file_search.vector_stores[${k}].file_ids[${i}]` })),
    ),
  ];
}

/** The references of a modify's tool_resources that `current` (the object's as stored) does not hold already. */
export function notReferredTo(
  references: readonly FileReference[],
  current: ToolResources | null | undefined,
): FileReference[] {
  const held = new Set(current?.code_interpreter?.file_ids ?? []);
  return references.filter((reference) => !held.has(reference.id));
}

/**
 * Throws upstream's 400 for the first reference (in request order) that is no file id at all, then its 404 `No file
 * found with id 'file-x'.` for the first that is not a file of the scope — all ids are looked up in one query — then
 * a 400 for the first image_file part whose file is not an image, then upstream's 400 for the first file_search
 * attachment of a type file_search does not read (rather than a file that fails in the thread's vector store,
 * unseen): the record of each such file is read once more, for its detected type.
 */
export async function checkFileReferences(
  files: Files,
  scope: Scope,
  references: readonly FileReference[],
): Promise<void> {
  if (references.length === 0) return;
  // Upstream's 400 for an id that cannot be a file's (a client's own id for it, most often): `Invalid
  // 'messages[0].attachments[0].file_id': '31abac64-…'. Expected an ID that begins with 'file'.` (LibreChat #8178).
  const malformed = references.find((r) => !hasPrefix('file', r.id));
  if (malformed)
    throw invalidRequest(
      `Invalid '${malformed.param}': '${malformed.id}'. Expected an ID that begins with 'file'.`,
      malformed.param,
      'invalid_value',
    );
  const ids = references.map((r) => r.id);
  const missing = new Set(await files.missing(scope, ids));
  const firstMissing = references.find((r) => missing.has(r.id));
  if (firstMissing) throw notFound('file', firstMissing.id);

  const images = references.filter((r) => r.imageParam !== undefined);
  const searched = references.filter((r) => r.searchParam !== undefined);
  const typed = [...new Set([...images, ...searched].map((r) => r.id))];
  const found = new Map(await Promise.all(typed.map(async (id) => [id, await files.get(scope, id)] as const)));
  for (const reference of images) {
    const file = found.get(reference.id)!;
    if (!isImage(file))
      throw invalidRequest(
        `Invalid '${reference.imageParam}': file '${reference.id}' is not an image (png, jpeg, gif or webp).`,
        reference.imageParam,
        'invalid_value',
      );
    if (file.bytes > MAX_IMAGE_BYTES)
      throw invalidRequest(
        `Invalid '${reference.imageParam}': image file '${reference.id}' has ${file.bytes} bytes; images are limited to ${MAX_IMAGE_BYTES} bytes.`,
        reference.imageParam,
        'invalid_value',
      );
  }
  for (const reference of searched) {
    const file = found.get(reference.id)!;
    const reason = unreadableType(file.mime_type, file.filename);
    if (reason !== undefined)
      throw invalidRequest(
        `Files with extensions [${path.extname(file.filename) || 'none'}] are not supported for retrieval: ${reason[0]!.toLowerCase()}${reason.slice(1)}`,
        reference.searchParam,
        'unsupported_file',
      );
  }
}
