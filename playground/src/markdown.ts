import DOMPurify from 'dompurify';
import { marked } from 'marked';
import type { TextContentBlock } from 'openai/resources/beta/threads/messages';

/**
 * Links to a file of the API, written into the Markdown as `#file:<id>`: a click downloads it with the key (see
 * downloadFile). A plain `href` to /v1/files could not carry the key.
 */
export const FILE_LINK = '#file:';

/** A file a message cites (a `file_citation`) or links (a `file_path`), numbered as its citation links are. */
export interface CitedFile {
  fileId: string;
  number: number;
}

/**
 * A text part as Markdown with its annotations resolved: a `file_citation` marker (【4:0†notes.txt】) becomes the link
 * `[n]` to the cited file, the n-th distinct one; a `file_path` marker (the `sandbox:/mnt/data/…` of a link the model
 * wrote) becomes that file's download link. Markers are replaced from the end so earlier indices stay right. An
 * annotation whose `text` is not where its indices say is left alone: a garbled answer is worse than a raw marker.
 */
export function resolveAnnotations(text: TextContentBlock['text'], cited: CitedFile[]): string {
  let value = text.value;
  const offsets = utf16Offsets(value);
  const ordered = [...text.annotations].sort((a, b) => a.start_index - b.start_index);
  const numbers = new Map<string, number>();
  const replacements = ordered.flatMap((annotation) => {
    const start = offsets[annotation.start_index];
    const end = offsets[annotation.end_index];
    if (start === undefined || end === undefined || text.value.slice(start, end) !== annotation.text) return [];
    return [{ start, end, by: replacement(annotation, numbers, cited) }];
  });
  for (const { start, end, by } of replacements.reverse()) value = value.slice(0, start) + by + value.slice(end);
  return value;
}

/** What replaces an annotation's marker; a citation of a file not cited before numbers it and adds it to `cited`. */
function replacement(
  annotation: TextContentBlock['text']['annotations'][number],
  numbers: Map<string, number>,
  cited: CitedFile[],
): string {
  if (annotation.type === 'file_path') return FILE_LINK + annotation.file_path.file_id;
  const fileId = annotation.file_citation.file_id;
  let number = numbers.get(fileId);
  if (number === undefined) {
    number = numbers.size + 1;
    numbers.set(fileId, number);
    cited.push({ fileId, number });
  }
  return `[\\[${number}\\]](${FILE_LINK}${fileId})`;
}

/**
 * The UTF-16 offset (a JavaScript string index) of each code point of `value`, and of its end: annotation indices
 * count code points, as upstream's do, so they differ from string indices after a character outside the Basic
 * Multilingual Plane (an emoji, two UTF-16 units).
 */
function utf16Offsets(value: string): number[] {
  const offsets: number[] = [];
  let offset = 0;
  for (const character of value) {
    offsets.push(offset);
    offset += character.length;
  }
  offsets.push(offset);
  return offsets;
}

/**
 * Markdown as sanitized HTML: DOMPurify keeps what Markdown can make (no script, no event handler, no `style`, which
 * the page's CSP would refuse anyway), and links to files (`#file:`) pass as any relative link does. No `class`,
 * `id`, `role` or `aria-*` either: with the page's own classes and roles, a message could dress up as the page (an
 * alert asking for the key again, another assistant message, the header).
 */
export function markdownHtml(markdown: string): string {
  const html = marked.parse(markdown, { async: false, gfm: true, breaks: false });
  return DOMPurify.sanitize(html, {
    FORBID_ATTR: ['style', 'class', 'id', 'role'],
    ALLOW_ARIA_ATTR: false,
    ALLOW_DATA_ATTR: false,
    FORBID_TAGS: ['style', 'form', 'input'],
  });
}
