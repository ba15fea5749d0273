import type { TextAnnotation } from '../../domain/objects.ts';
import { codePoints } from '../code-points.ts';
import type { TextAnnotator } from '../tool.ts';

/**
 * Links to the sandbox's files in an answer: a model gives the user a file its code wrote by linking it as
 * `sandbox:/mnt/data/<path>` (upstream's convention, which OpenAI's models follow), usually in a Markdown link. Each
 * link to a file that exists becomes a `file_path` annotation of exactly the link's text, pointing at a file made
 * of the sandbox file's bytes. A link to no file stays plain text.
 *
 * A link is complete only when something follows it (or the answer ends), so the stream holds it back from its
 * first character until then (`heldFrom`), and then until its file is made (the tool begins making it when the link
 * is complete): the annotation goes out with the whole link, and a client that fetches its file at once (a Markdown
 * image) finds it.
 */

export const SANDBOX_PREFIX = 'sandbox:/mnt/data/';

/** Where a link outside a Markdown link's parentheses ends. */
const BARE_END = /[\s)\]>"'`<|*]/;
/** Punctuation after a link that belongs to the sentence, not to the path. */
const TRAILING = /[.,;:!?]+$/;
/** A link longer than this is not waited for: the text is let go. */
const MAX_LINK_LENGTH = 1024;

/**
 * The file for a path under /mnt/data the answer links to: its id, and whether it is made yet (asked first, the
 * target begins making it); undefined when there is no such file, or it could not be made.
 */
export type LinkTarget = (path: string) => { id: string; made: boolean } | undefined;

/** Units kept before the scanned point: linkEnd looks at the two before a link for a Markdown link's `](`. */
const CONTEXT = 2;

/** The annotator of `sandbox:` links (without `settle`, which the tool adds). */
export function sandboxLinkAnnotator(target: LinkTarget): Pick<TextAnnotator, 'write' | 'annotate' | 'heldFrom'> {
  let tail = ''; // the text from `origin` on: CONTEXT units before `scanned`, and what follows
  let origin = 0; // UTF-16 index of tail[0] in the text
  let scanned = 0; // UTF-16 index up to which the text has no link still to come
  let scannedPoints = 0; // code points in the text up to `scanned`

  return {
    write(piece) {
      tail += piece;
    },

    annotate(upTo, final = false) {
      const text = upTo - origin >= tail.length ? tail : tail.slice(0, Math.max(0, upTo - origin));
      const found: TextAnnotation[] = [];
      let at = scanned - origin;
      const advance = (to: number) => {
        scannedPoints += codePoints(text, at, to);
        at = to;
      };
      for (;;) {
        const start = text.indexOf(SANDBOX_PREFIX, at);
        if (start === -1) {
          // A prefix cut at the end of the text may still become a link: keep its first character unscanned.
          advance(Math.max(at, text.length - SANDBOX_PREFIX.length + 1));
          break;
        }
        const end = linkEnd(text, start, final);
        if (end === undefined) {
          advance(start);
          break;
        }
        advance(start);
        const link = text.slice(start, end);
        const id = link.length > SANDBOX_PREFIX.length ? target(pathOf(link))?.id : undefined;
        if (id !== undefined)
          found.push({
            type: 'file_path',
            text: link,
            start_index: scannedPoints,
            end_index: scannedPoints + codePoints(link, 0, link.length),
            file_path: { file_id: id },
          });
        advance(Math.max(end, start + SANDBOX_PREFIX.length));
      }
      scanned = origin + at;
      const drop = Math.max(0, at - CONTEXT);
      tail = tail.slice(drop);
      origin += drop;
      return found;
    },

    heldFrom(final = false) {
      // Only what `annotate` has not passed yet: every link before it has ended (called per chunk, this stays short).
      for (
        let start = tail.indexOf(SANDBOX_PREFIX, scanned - origin);
        start !== -1;
        start = tail.indexOf(SANDBOX_PREFIX, start + SANDBOX_PREFIX.length)
      ) {
        const end = linkEnd(tail, start, final);
        if (end === undefined) return origin + start;
        const link = tail.slice(start, end);
        if (link.length > SANDBOX_PREFIX.length && target(pathOf(link))?.made === false) return origin + start;
      }
      if (final) return undefined;
      // The text ends with what may be the start of a link ("…(sandbox:/mnt/da").
      for (let k = Math.min(SANDBOX_PREFIX.length - 1, tail.length); k > 0; k--)
        if (SANDBOX_PREFIX.startsWith(tail.slice(tail.length - k))) return Math.max(scanned, origin + tail.length - k);
      return undefined;
    },
  };
}

/**
 * Where the link at `start` ends (its trailing sentence punctuation left out), or undefined while it may go on.
 * Inside a Markdown link's parentheses it ends at the `)` that closes them (a path may hold balanced parentheses, as
 * in `report (1).csv`); inside angle brackets (`<sandbox:…>`, `[a](<sandbox:…>)`) at `>`; elsewhere at white space,
 * a bracket or a quote.
 */
function linkEnd(text: string, start: number, final: boolean): number | undefined {
  const before = text.slice(Math.max(0, start - CONTEXT), start);
  const ends: (ch: string) => boolean = before.endsWith('<')
    ? (ch) => ch === '>' || ch === '\n'
    : before === ']('
      ? markdownEnd()
      : (ch) => BARE_END.test(ch);
  let end = -1;
  for (let i = start + SANDBOX_PREFIX.length; i < text.length && i - start <= MAX_LINK_LENGTH; i++)
    if (ends(text[i]!)) {
      end = i;
      break;
    }
  if (end === -1) {
    if (!final && text.length - start <= MAX_LINK_LENGTH) return undefined;
    end = Math.min(text.length, start + MAX_LINK_LENGTH);
  }
  const trailing = TRAILING.exec(text.slice(start + SANDBOX_PREFIX.length, end));
  return trailing ? end - trailing[0].length : end;
}

/** The end of a Markdown link's destination, read a character at a time: the `)` its parentheses do not match. */
function markdownEnd(): (ch: string) => boolean {
  let depth = 0;
  return (ch) => {
    if (ch === '(') depth++;
    else if (ch === ')') return depth-- === 0;
    return ch === '\n';
  };
}

/** The path under /mnt/data a link names (percent-escapes decoded when they are valid). */
function pathOf(link: string): string {
  const path = link.slice(SANDBOX_PREFIX.length);
  if (!path.includes('%')) return path;
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}
