import { BlockTextBuilder, LINE, PARAGRAPH } from './block-text.ts';
import { scanMarkup } from './markup-scanner.ts';

/** Elements whose content is not text a reader sees (the tokenizer treats both as raw text up to their end tag). */
const SKIPPED = new Set(['script', 'style']);
/** Elements after which text starts a new paragraph. */
const PARAGRAPH_ELEMENTS = new Set([
  'address',
  'article',
  'aside',
  'blockquote',
  'body',
  'details',
  'dl',
  'fieldset',
  'figure',
  'footer',
  'form',
  'h1',
  'h2',
  'h3',
  'h4',
  'h5',
  'h6',
  'header',
  'hr',
  'main',
  'nav',
  'ol',
  'p',
  'pre',
  'section',
  'table',
  'title',
  'ul',
]);
/** Elements after which text starts a new line. */
const LINE_ELEMENTS = new Set([
  'br',
  'caption',
  'center',
  'dd',
  'dialog',
  'div',
  'dt',
  'figcaption',
  'hgroup',
  'legend',
  'li',
  'menu',
  'option',
  'summary',
  'tbody',
  'textarea',
  'tfoot',
  'thead',
  'tr',
]);
const CELLS = new Set(['td', 'th']);
/** Elements whose whitespace is kept. */
const PREFORMATTED = new Set(['pre', 'textarea', 'listing']);

/**
 * The text of an HTML document as a reader sees it: no scripts or styles, entities decoded, whitespace collapsed
 * except in `<pre>`, headings and paragraphs separated by blank lines, list items and `<br>` by line ends, table
 * cells by tabs. Stops once the text passes `maxChars` (the caller then refuses the file).
 */
export async function htmlToText(html: string, maxChars: number): Promise<string> {
  const out = new BlockTextBuilder();
  let skipping: string | null = null;
  let preformatted = 0;
  await scanMarkup(
    html,
    {
      open(name) {
        if (skipping !== null) return;
        if (SKIPPED.has(name)) skipping = name;
        else if (PARAGRAPH_ELEMENTS.has(name)) out.break(PARAGRAPH);
        else if (LINE_ELEMENTS.has(name)) out.break(LINE);
        else if (CELLS.has(name)) out.cell();
        if (PREFORMATTED.has(name)) preformatted++;
      },
      close(name) {
        if (skipping !== null) {
          if (name === skipping) skipping = null;
          return;
        }
        if (PARAGRAPH_ELEMENTS.has(name)) out.break(PARAGRAPH);
        else if (LINE_ELEMENTS.has(name) && name !== 'br') out.break(LINE);
        if (PREFORMATTED.has(name) && preformatted > 0) preformatted--;
      },
      text(text) {
        if (skipping !== null) return;
        if (preformatted > 0) out.preformatted(text);
        else out.inline(text);
      },
    },
    { mode: 'html', stop: () => out.length > maxChars },
  );
  return out.toString();
}

/**
 * The character set an HTML page declares in its first 1,024 bytes (`<meta charset=…>` or the `http-equiv` form),
 * for pages that are not UTF-8. Only that prefix is looked at, as browsers do, so the scan is bounded.
 */
export function declaredCharset(bytes: Uint8Array): string | null {
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.byteLength, 1024)).toString('latin1');
  const match = /<meta[^>]{0,200}?charset\s*=\s*["']?([A-Za-z0-9._:-]{1,40})/i.exec(head);
  return match?.[1]?.toLowerCase() ?? null;
}
