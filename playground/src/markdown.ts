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
 * wrote) becomes that file's download link. Markers are replaced from the end so earlier indices stay right.
 */
export function resolveAnnotations(text: TextContentBlock['text'], cited: CitedFile[]): string {
  let value = text.value;
  const ordered = [...text.annotations].sort((a, b) => a.start_index - b.start_index);
  const numbers = new Map<string, number>();
  const replacements = ordered.map((annotation) => {
    if (annotation.type === 'file_path') return { annotation, by: FILE_LINK + annotation.file_path.file_id };
    const fileId = annotation.file_citation.file_id;
    let number = numbers.get(fileId);
    if (number === undefined) {
      number = numbers.size + 1;
      numbers.set(fileId, number);
      cited.push({ fileId, number });
    }
    return { annotation, by: `[\\[${number}\\]](${FILE_LINK}${fileId})` };
  });
  for (const { annotation, by } of replacements.reverse())
    value = value.slice(0, annotation.start_index) + by + value.slice(annotation.end_index);
  return value;
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
