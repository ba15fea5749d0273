/**
 * Annotation indices count Unicode code points, not UTF-16 code units: upstream computes them in Python, whose
 * strings index by code point, and clients written against upstream slice with them (`text[start:end]` in Python;
 * in JavaScript, `[...value].slice(start, end).join('')`). They differ from `value.slice(start, end)` only after a
 * character outside the Basic Multilingual Plane (most emoji).
 */

/** Code points in `text[from, to)`: every UTF-16 unit but the low half of a surrogate pair. */
export function codePoints(text: string, from: number, to: number): number {
  let count = 0;
  for (let i = from; i < to; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0xdc00 || unit > 0xdfff) count++;
  }
  return count;
}
