import { isImage, type StoredFile } from '../domain/files.ts';
import type { ChatContentPart, ChatMessage } from '../providers/provider.ts';

/**
 * An image_file part reaches the model as an image_url part with a data URL. Building the context stays pure and
 * its token caches keep only small objects: buildContext (context.ts) emits an image_url part whose URL merely names
 * the file (`imageFileUrl`), counted like any image, and `resolveImageFiles` swaps in the bytes just before the
 * request is sent, reading each file once per model turn.
 */

const IMAGE_FILE_SCHEME = 'assistd-file:';

/** The placeholder URL of an image_file part's file; never sent upstream. */
export function imageFileUrl(fileId: string): string {
  return `${IMAGE_FILE_SCHEME}${fileId}`;
}

/** The file id a placeholder URL names, or undefined for any other URL. */
export function imageFileId(url: string): string | undefined {
  return url.startsWith(IMAGE_FILE_SCHEME) ? url.slice(IMAGE_FILE_SCHEME.length) : undefined;
}

export type ReadFile = (id: string) => Promise<{ file: StoredFile; bytes: Buffer } | undefined>;

export type ResolvedPrompt = { ok: true; messages: ChatMessage[] } | { ok: false; missingFileId: string };

/**
 * The prompt with every placeholder replaced by its file's data URL, or the first file that no longer exists. The
 * messages given are never changed: a message with placeholders is replaced by a new one (buildContext shares the
 * objects of finished messages between turns and runs). A file that exists but is not an image (a message stored
 * before file ids were checked) becomes the text note the model saw before images were sent.
 */
export async function resolveImageFiles(messages: readonly ChatMessage[], read: ReadFile): Promise<ResolvedPrompt> {
  const ids = new Set(messages.flatMap(placeholders));
  if (ids.size === 0) return { ok: true, messages: [...messages] };
  const files = await Promise.all([...ids].map(async (id) => ({ id, found: await read(id) })));
  /** Each file's data URL, or null when the file is not an image. */
  const dataUrls = new Map<string, string | null>();
  for (const { id, found } of files) {
    if (!found) return { ok: false, missingFileId: id };
    const { file, bytes } = found;
    dataUrls.set(id, isImage(file) ? `data:${file.mime_type};base64,${bytes.toString('base64')}` : null);
  }

  const resolve = (part: ChatContentPart): ChatContentPart => {
    if (part.type !== 'image_url') return part;
    const id = imageFileId(part.image_url.url);
    if (id === undefined) return part;
    const url = dataUrls.get(id);
    if (!url) return { type: 'text', text: `[image file ${id}]` };
    return { type: 'image_url', image_url: { ...part.image_url, url } };
  };
  return {
    ok: true,
    messages: messages.map((message) => {
      if (message.role !== 'user' || typeof message.content === 'string' || placeholders(message).length === 0)
        return message;
      return { ...message, content: message.content.map(resolve) };
    }),
  };
}

function placeholders(message: ChatMessage): string[] {
  if (message.role !== 'user' || typeof message.content === 'string') return [];
  return message.content.flatMap((part) => {
    const id = part.type === 'image_url' ? imageFileId(part.image_url.url) : undefined;
    return id === undefined ? [] : [id];
  });
}
