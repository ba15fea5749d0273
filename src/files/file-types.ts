import path from 'node:path';
import { fileTypeFromBuffer } from 'file-type';
import { readsAsText } from '../retrieval/text-decoding.ts';

/** How many leading bytes are kept for type detection (file-type's own recommendation). */
export const SNIFF_BYTES = 4100;

/**
 * Text formats file-type cannot see in the bytes (it detects binary signatures only): named by their extension,
 * like upstream's list of file_search formats.
 */
const TEXT_TYPES: Record<string, string> = {
  '.txt': 'text/plain',
  '.md': 'text/markdown',
  '.markdown': 'text/markdown',
  '.json': 'application/json',
  '.jsonl': 'application/jsonl',
  '.csv': 'text/csv',
  '.tsv': 'text/tab-separated-values',
  '.html': 'text/html',
  '.htm': 'text/html',
  '.css': 'text/css',
  '.xml': 'application/xml',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.ts': 'application/typescript',
  '.py': 'text/x-python',
  '.java': 'text/x-java',
  '.c': 'text/x-c',
  '.h': 'text/x-c',
  '.cpp': 'text/x-c++',
  '.cs': 'text/x-csharp',
  '.go': 'text/x-golang',
  '.rb': 'text/x-ruby',
  '.php': 'text/x-php',
  '.sh': 'application/x-sh',
  '.tex': 'text/x-tex',
  '.yaml': 'application/yaml',
  '.yml': 'application/yaml',
};

/**
 * A file's media type from its first bytes, else from its name. The client's part content type is not used: the
 * official SDK sends every file as `application/octet-stream`. Binary signatures win over the name, so a PNG named
 * `notes.txt` is an image, and a text file named `photo.png` is not. But a file named as text whose first bytes read
 * as text (`readsAsText`) is text, as upstream decides by the extension: many signatures are a few characters that
 * text can start with ("BM25 is…" is a BMP to file-type, "MZ-200" a Windows program, "ID3v2" MP3, "GIF89a is…" a
 * GIF, "%!PS" PostScript, an armored PGP block an encrypted file), while a real file of those formats has NUL or
 * non-UTF-8 bytes among its first. A PDF need not have any, and file_search reads PDF: its signature still wins.
 */
export async function detectMimeType(head: Uint8Array, filename: string): Promise<string | null> {
  const byName = TEXT_TYPES[path.extname(filename).toLowerCase()];
  // A UTF-16 byte order mark: file-type takes FF FE for an MPEG audio frame, so a UTF-16 text file is named by its
  // extension (and is text in any case).
  const utf16 = (head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff);
  if (utf16) return byName ?? 'text/plain';
  const detected = head.byteLength === 0 ? undefined : await fileTypeFromBuffer(head).catch(() => undefined);
  if (byName && detected?.mime !== 'application/pdf' && readsAsText(head)) return byName;
  return detected?.mime ?? byName ?? null;
}
