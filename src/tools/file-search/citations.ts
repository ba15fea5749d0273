import type { TextAnnotation } from '../../domain/objects.ts';
import type { ToolCallDetails } from '../../domain/runs.ts';
import { codePoints } from '../code-points.ts';
import type { TextAnnotator } from '../tool.ts';

/**
 * Citation markers, OpenAI's form: `【{turn}:{index}†{filename}】`, where `turn` is the position of the file_search
 * call in the run (0 for its first call) and `index` the position of the result in that call's results. The model
 * reads each result under its marker and copies the marker into its answer after what it took from it; every
 * marker of the answer that points at a result of the run becomes a `file_citation` annotation of exactly the
 * marker's text. A marker that points nowhere (no such call or result) stays plain text, without an annotation.
 * Indices count code points (code-points.ts).
 */

const OPEN = '【';
const CLOSE = '】';
const OPEN_CODE = OPEN.charCodeAt(0);
const CLOSE_CODE = CLOSE.charCodeAt(0);

/** A marker as models write it; the `†filename` part is optional (models sometimes drop or rename it). */
const MARKER = /【(\d{1,4}):(\d{1,4})(?:†[^【】\n]*)?】/g;

/**
 * The longest run of text between `【` and `】` that is still waited for as a marker: a filename is at most 255
 * characters. An opening bracket with no closing one this far on is not a marker in the making.
 */
const MAX_MARKER_LENGTH = 300;

/** The marker of result `index` of the run's `turn`-th file_search call. */
export function citationMarker(turn: number, index: number, filename: string): string {
  return `${OPEN}${turn}:${index}†${markerName(filename)}${CLOSE}`;
}

/** A filename as a marker can hold it: no brackets or line breaks, which would end or break the marker. */
function markerName(filename: string): string {
  const name = filename.replace(/[【】\r\n]/g, ' ').trim();
  return name === '' ? 'file' : name;
}

/** The file a marker's `turn:index` points at among the run's file_search calls, if any. */
function citedFile(calls: readonly ToolCallDetails[], turn: number, index: number): string | undefined {
  const call = calls[turn];
  if (call?.type !== 'file_search') return undefined;
  return call.file_search.results?.[index]?.file_id;
}

/**
 * Where the next scan must start: the first `【` after the last `】` of `text[from, …)` (a marker in the making),
 * unless it has been open for longer than any marker; otherwise the end of the text.
 */
function pendingStart(text: string, from: number): number {
  let open = -1;
  for (let i = from; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit === CLOSE_CODE) open = -1;
    else if (unit === OPEN_CODE && open === -1) open = i;
  }
  while (open !== -1 && text.length - open > MAX_MARKER_LENGTH) open = text.indexOf(OPEN, open + 1);
  return open === -1 ? text.length : open;
}

/**
 * The annotator of an answer citing the run's file_search `calls` (ServerTool.annotator): after each chunk, it
 * returns the citations that chunk completed; streamed, the text is held back from a marker's `【` until its `】`. It keeps the text from the first marker still open (or from its end),
 * so a long answer costs one pass over its text.
 */
export function citationAnnotator(calls: readonly ToolCallDetails[]): TextAnnotator {
  let tail = ''; // the text from `scanned` on
  let scanned = 0; // UTF-16 index up to which the text holds no marker still to come
  let scannedPoints = 0; // code points in the text up to `scanned`
  return {
    write(piece) {
      tail += piece;
    },
    annotate(upTo) {
      const text = upTo - scanned >= tail.length ? tail : tail.slice(0, Math.max(0, upTo - scanned));
      const found: TextAnnotation[] = [];
      const pattern = new RegExp(MARKER.source, 'g');
      let at = 0;
      for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
        const start = scannedPoints + codePoints(text, at, match.index);
        const end = start + codePoints(match[0], 0, match[0].length);
        at = match.index + match[0].length;
        scannedPoints = end;
        const fileId = citedFile(calls, Number(match[1]), Number(match[2]));
        if (fileId !== undefined)
          found.push({
            type: 'file_citation',
            text: match[0],
            start_index: start,
            end_index: end,
            file_citation: { file_id: fileId },
          });
      }
      const next = pendingStart(text, at);
      scannedPoints += codePoints(text, at, next);
      tail = tail.slice(next);
      scanned += next;
      return found;
    },
    heldFrom() {
      // A marker being written is held back until it closes, so the delta that carries it carries its annotation
      // (a client replacing markers in each delta's text finds the whole marker there).
      const open = pendingStart(tail, 0);
      return open === tail.length ? undefined : scanned + open;
    },
  };
}

/** Every citation of a whole text (the annotator given it at once). */
export function citationsOf(text: string, calls: readonly ToolCallDetails[]): TextAnnotation[] {
  const annotator = citationAnnotator(calls);
  annotator.write(text);
  return annotator.annotate(text.length, true);
}
