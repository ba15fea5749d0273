import type { FileObject } from 'openai/resources/files';
import { fileBlob, get } from './api.ts';

/** Files' objects by id, asked once per page load (citations and sources show a file's name). */
const known = new Map<string, Promise<FileObject>>();

export function fileInfo(fileId: string): Promise<FileObject> {
  let info = known.get(fileId);
  if (info === undefined) {
    info = get<FileObject>(`/files/${encodeURIComponent(fileId)}`);
    info.catch(() => known.delete(fileId));
    known.set(fileId, info);
  }
  return info;
}

/** Saves a file of the API to the user's disk: its bytes fetched with the key, handed to a `download` link. */
export async function downloadFile(fileId: string): Promise<void> {
  const [blob, info] = await Promise.all([fileBlob(fileId), fileInfo(fileId).catch(() => undefined)]);
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = (info?.filename ?? fileId).split('/').pop() ?? fileId;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
