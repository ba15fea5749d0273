/**
 * Bytes to text for the plain-text formats (and the markup ones, before scanning): UTF-8, with or without a byte
 * order mark, or UTF-16 when a byte order mark says so. Nothing is guessed: a file that is neither is refused, as
 * are files with NUL characters (a binary file with a text extension).
 */
export type DecodeResult = { ok: true; text: string } | { ok: false; reason: string };

export function decodeText(bytes: Uint8Array): DecodeResult {
  let encoding: 'utf-8' | 'utf-16le' | 'utf-16be' = 'utf-8';
  if (bytes[0] === 0xff && bytes[1] === 0xfe) encoding = 'utf-16le';
  else if (bytes[0] === 0xfe && bytes[1] === 0xff) encoding = 'utf-16be';
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

/** CRLF and lone CR line ends as LF: one line end for the chunker's boundaries and for search snippets. */
export function normalizeLineEnds(text: string): string {
  return text.includes('\r') ? text.replace(/\r\n?/g, '\n') : text;
}
