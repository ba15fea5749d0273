/**
 * Bytes to text for the plain-text formats (and the markup ones, before scanning): UTF-8, with or without a byte
 * order mark, or UTF-16 when a byte order mark says so. Nothing is guessed: a file that is neither is refused, as
 * are files with NUL characters (a binary file with a text extension).
 */
export type DecodeResult = { ok: true; text: string } | { ok: false; reason: string };

type TextEncoding = 'utf-8' | 'utf-16le' | 'utf-16be';

export function decodeText(bytes: Uint8Array): DecodeResult {
  const encoding = encodingOf(bytes);
  let text: string;
  try {
    // `fatal` refuses malformed input instead of replacing it with U+FFFD; the decoder strips the byte order mark.
    text = new TextDecoder(encoding, { fatal: true }).decode(bytes);
  } catch {
    return {
      ok: false,
      reason: encoding === 'utf-8' ? 'is not valid UTF-8 text' : `is not valid ${encoding.toUpperCase()} text`,
    };
  }
  if (text.includes('\0')) {
    const name = encoding === 'utf-8' ? 'UTF-8' : encoding.toUpperCase();
    return { ok: false, reason: `is not valid ${name} text (it contains NUL characters)` };
  }
  return { ok: true, text };
}

/**
 * How much of a file `readsAsText` looks at: a binary format has NUL or bytes that are not UTF-8 among its first
 * bytes, and the whole file is checked anyway when it is decoded.
 */
const TEXT_PROBE_BYTES = 4096;

/**
 * Whether a file, from its first bytes (the whole file will do), reads as the text `decodeText` accepts: the same
 * rule, on at most TEXT_PROBE_BYTES, whose last character may be cut off.
 */
export function readsAsText(bytes: Uint8Array): boolean {
  const head = bytes.subarray(0, TEXT_PROBE_BYTES);
  try {
    // `stream`: an incomplete last character is held back for input that never comes, not refused.
    return !new TextDecoder(encodingOf(head), { fatal: true }).decode(head, { stream: true }).includes('\0');
  } catch {
    return false;
  }
}

function encodingOf(bytes: Uint8Array): TextEncoding {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return 'utf-16le';
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return 'utf-16be';
  return 'utf-8';
}

/** CRLF and lone CR line ends as LF: one line end for the chunker's boundaries and for search snippets. */
export function normalizeLineEnds(text: string): string {
  return text.includes('\r') ? text.replace(/\r\n?/g, '\n') : text;
}

/**
 * U+0000 as U+FFFD, which is what the markup scanner makes of `&#0;` in HTML and PPTX. PostgreSQL's text type cannot
 * store U+0000, so a file whose text kept one would fail at every commit; DOCX text can have it (mammoth keeps a raw
 * NUL in a run and decodes `&#0;` to it). Other control characters are kept, as they are in text files.
 */
export function replaceNul(text: string): string {
  return text.includes('\0') ? text.replaceAll('\0', '\ufffd') : text;
}
