/**
 * A file of the Files API as assistd stores it. The wire object (api/serializers.ts) adds `object`, the deprecated
 * `status: "processed"` (an upload is complete when it is acknowledged) and leaves out what is internal.
 */
export interface StoredFile {
  id: string;
  created_at: number;
  bytes: number;
  filename: string;
  purpose: string;
  /** Unix seconds; null when the file does not expire. */
  expires_at: number | null;
  /** The media type detected from the bytes (else from the name); null when neither tells. */
  mime_type: string | null;
}

/** The purposes an upload may name (CreateFileRequest); the first four are the ones Assistants programs use. */
export const UPLOAD_PURPOSES = ['assistants', 'vision', 'user_data', 'batch', 'fine-tune', 'evals'] as const;

/** `expires_after.seconds` bounds of CreateFileRequest: one hour to thirty days. */
export const FILE_EXPIRY_MIN_SECONDS = 3600;
export const FILE_EXPIRY_MAX_SECONDS = 2_592_000;
/** A `batch` file uploaded without `expires_after` expires after thirty days, as upstream's did; other purposes never. */
export const BATCH_FILE_EXPIRY_SECONDS = 2_592_000;

/** The image formats vision models take (upstream's list for image_file parts). */
export const IMAGE_MIME_TYPES: ReadonlySet<string> = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

export function isImage(file: Pick<StoredFile, 'mime_type'>): boolean {
  return file.mime_type !== null && IMAGE_MIME_TYPES.has(file.mime_type);
}
