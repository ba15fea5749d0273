import { getDocumentProxy } from 'unpdf';
import { describeError } from './describe-error.ts';

/**
 * PDF text with unpdf, which bundles a build of Mozilla's PDF.js that runs without a worker or a canvas. The 1.7
 * line is pinned (`~1.7.0`): unpdf 1.8 requires Node 22, and this project runs on Node 20.
 */
export type PdfTextResult =
  | { ok: true; text: string }
  | { ok: false; reason: 'unreadable' | 'encrypted' | 'too_much_text'; detail: string };

/** PDF.js's `VerbosityLevel.ERRORS`: its warnings about malformed files would otherwise go to the console. */
const ONLY_ERRORS = 0;

/**
 * The text of every page, in order, each page's text lines as PDF.js reports them (`hasEOL`), pages joined by a
 * blank line; pages without text are left out. Pages are read one at a time and reading stops once the text passes
 * `maxChars`, so a huge PDF costs no more than the text the caller will accept.
 */
export async function pdfToText(bytes: Uint8Array, maxChars: number): Promise<PdfTextResult> {
  let document: Awaited<ReturnType<typeof getDocumentProxy>>;
  try {
    // A copy: PDF.js takes ownership of the buffer it is given (and may detach it), and `bytes` may be a view into
    // a Buffer that Node shares with other data.
    document = await getDocumentProxy(new Uint8Array(bytes), { verbosity: ONLY_ERRORS });
  } catch (error) {
    const name = (error as Error)?.name;
    if (name === 'PasswordException') return { ok: false, reason: 'encrypted', detail: describeError(error) };
    return { ok: false, reason: 'unreadable', detail: describeError(error) };
  }
  try {
    const pages: string[] = [];
    let length = 0;
    for (let number = 1; number <= document.numPages; number++) {
      const page = await document.getPage(number);
      const content = await page.getTextContent();
      let text = '';
      for (const item of content.items) {
        if ('str' in item) text += item.hasEOL ? `${item.str}\n` : item.str;
      }
      page.cleanup();
      text = text.trim();
      if (text.length === 0) continue;
      pages.push(text);
      length += text.length + 2;
      if (length > maxChars) return { ok: false, reason: 'too_much_text', detail: `more than ${maxChars} characters` };
    }
    return { ok: true, text: pages.join('\n\n') };
  } catch (error) {
    return { ok: false, reason: 'unreadable', detail: describeError(error) };
  } finally {
    await document.destroy().catch(() => {});
  }
}
