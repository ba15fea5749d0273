import type { TextAnnotation } from '../../domain/objects.ts';
import type { ToolCallDetails } from '../../domain/runs.ts';
import { codePoints } from '../code-points.ts';
import type { TextAnnotator } from '../tool.ts';

/**
 * Citation markers, OpenAI's form: `【{turn}:{index}†{filename}】`, where `turn` is the position of the file_search
 * call in the run (0 for its first call) and `index` the position of the result in that call's results. The model
 * reads each result under its marker and copies the marker into its answer after what it took from it; every
 * marker of the answer that points at a result of the run (and names no other file) becomes a `file_citation` annotation of exactly the
 * marker's text. A marker that points nowhere (no such call or result) stays plain text, without an annotation.
 * Indices count code points (code-points.ts).
 */

const OPEN = '【';
const CLOSE = '】';
const OPEN_CODE = OPEN.charCodeAt(0);
const CLOSE_CODE = CLOSE.charCodeAt(0);

/** A marker as models write it; the `†filename` part is optional (models sometimes drop or rename it). */
const MARKER = /【(\d{1,4}):(\d{1,4})(?:†([^【】\n]*))?】/g;

/** The longest filename a marker holds, in UTF-16 units: a longer one is cut. */
const MAX_MARKER_NAME = 200;

/**
 * The longest run of text between `【` and `】` that is still waited for as a marker: the numbers, `†` and a name —
 * the marker's (cut to MAX_MARKER_NAME), or a whole filename of up to 255 characters that the model may write
 * instead. An opening bracket with no closing one this far on is not a marker in the making.
 */
const MAX_MARKER_LENGTH = 300;

/** The marker of result `index` of the run's `turn`-th file_search call. */
export function citationMarker(turn: number, index: number, filename: string): string {
  return `${OPEN}${turn}:${index}†${markerName(filename)}${CLOSE}`;
}

/** A filename without the brackets and line breaks that would end or break a marker. */
function unbroken(filename: string): string {
  return filename.replace(/[【】\r\n]/g, ' ').trim();
}

/**
 * A filename as a marker can hold it: no brackets or line breaks, which would end or break the marker, and at most
 * MAX_MARKER_NAME units (not ending in half a surrogate pair).
 */
function markerName(filename: string): string {
  let name = unbroken(filename);
  if (name.length > MAX_MARKER_NAME)
    name = name
      .slice(0, MAX_MARKER_NAME)
      .replace(/[\ud800-\udbff]$/, '')
      .trimEnd();
  return name === '' ? 'file' : name;
}

/**
 * The file a marker points at among the run's file_search calls, if any: result `index` of call `turn`, unless the
 * marker names another file. Call numbers start from 0 in every run, so a marker the model repeats from an earlier
 * answer in the thread may point at a result of this run; its name tells it apart. A name that is not a file's
 * (`source`, a shortened or recased name) is the model's renaming, and still cites the result.
 */
function citedFile(
  calls: readonly ToolCallDetails[],
  turn: number,
  index: number,
  written: string | undefined,
): string | undefined {
  const call = calls[turn];
  if (call?.type !== 'file_search') return undefined;
  const result = call.file_search.results?.[index];
  if (!result || (written !== undefined && namesAnotherFile(written, result.file_name))) return undefined;
  return result.file_id;
}

/**
 * Whether a marker's name is another file's: a name with an extension that is neither the file's name (whole, as
 * its marker cuts it, or without its extension) nor that name with an extension added, case aside. A name without
 * one (`source`, `Q3 report`, `Section 2.3`: an extension starts with a letter) is the model's renaming of this file.
 */
function namesAnotherFile(written: string, filename: string): boolean {
  const name = written.trim().toLowerCase();
  if (!/\.[a-z][a-z0-9]{0,7}$/.test(name)) return false;
  const whole = unbroken(filename).toLowerCase();
  const names = new Set([whole, markerName(filename).toLowerCase(), withoutExtension(whole)]);
  return !names.has(name) && !names.has(withoutExtension(name));
}

function withoutExtension(name: string): string {
  return name.replace(/\.[a-z][a-z0-9]{0,7}$/, '');
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
        const fileId = citedFile(calls, Number(match[1]), Number(match[2]), match[3]);
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
