import type { TextAnnotation } from '../../src/domain/objects.ts';
import type { TextAnnotator } from '../../src/tools/tool.ts';

/**
 * Feeds `text` to an annotator in pieces of 1 to 7 UTF-16 units, as a model's stream does (a piece may cut a
 * surrogate pair, a marker or a link), and returns the annotations it gave after each piece, asked for up to where
 * it holds text back (`heldFrom`), as ModelTurn asks.
 */
export function annotateInPieces(
  annotator: Pick<TextAnnotator, 'write' | 'annotate' | 'heldFrom'>,
  text: string,
): TextAnnotation[] {
  const found: TextAnnotation[] = [];
  for (let at = 0, size = 1; at < text.length; at += size, size = (size % 7) + 1) {
    const end = Math.min(text.length, at + size);
    annotator.write(text.slice(at, end));
    found.push(...annotator.annotate(Math.min(end, annotator.heldFrom?.() ?? end)));
  }
  return found;
}
