import { setImmediate as nextTurn } from 'node:timers/promises';
import { Tokenizer } from 'htmlparser2';

/** What a scan reports, in document order. */
export interface MarkupHandlers {
  /** An opening tag; `attributes` only when `collectAttributes` is set (names as written, values decoded). */
  open?(name: string, attributes: ReadonlyMap<string, string>): void;
  /** A closing tag, or right after `open` for a self-closing one (`<br/>`, `<a:br/>`). */
  close?(name: string): void;
  /** Text between tags, entities decoded; in pieces (a text node may come in several calls). */
  text?(text: string): void;
}

export interface ScanOptions {
  mode: 'html' | 'xml';
  collectAttributes?: boolean;
  /** Stop scanning once this returns true (checked after every event). */
  stop?: () => boolean;
}

/** How much source is tokenised between two turns of the event loop: about 10 ms of work. */
const SLICE_CHARS = 1 << 20;

const NO_ATTRIBUTES: ReadonlyMap<string, string> = new Map();

/**
 * A flat, linear scan of HTML or XML: tags and text as events, entities decoded, no tree and no stack.
 *
 * Why not a DOM (node-html-parser) or htmlparser2's `Parser`: both are super-linear on malformed markup, which an
 * upload can be. Measured on Node 20: node-html-parser 7.1 parses 10,000 unclosed `<div>`s (a 50 KB file) in 77 s
 * and overflows the stack computing the text of 4,000 nested ones; htmlparser2's `Parser` keeps its open elements
 * with `Array.unshift`, so 1,000,000 unclosed tags take 8 minutes. Text extraction needs neither the tree nor the
 * stack, only the tokens, and htmlparser2's `Tokenizer` (the state machine under its `Parser`, a public export) is a
 * single pass that decodes entities and knows HTML's raw-text elements (`<script>`, `<style>`, `<title>`,
 * `<textarea>`), so markup inside them is not taken for tags.
 *
 * The source is fed in slices with a turn of the event loop between them, so a large document does not hold the
 * event loop for long.
 */
export async function scanMarkup(source: string, handlers: MarkupHandlers, options: ScanOptions): Promise<void> {
  const html = options.mode === 'html';
  const collect = options.collectAttributes === true;
  const name = (start: number, end: number): string => {
    const raw = source.slice(start, end);
    return html ? raw.toLowerCase() : raw;
  };
  let tagName = '';
  let attributes: Map<string, string> | null = null;
  let attributeName = '';
  let attributeValue = '';
  let stopped = false;
  const check = (): void => {
    if (!stopped && options.stop?.() === true) {
      stopped = true;
      tokenizer.pause();
    }
  };

  const tokenizer = new Tokenizer(
    { xmlMode: !html, decodeEntities: true },
    {
      onopentagname(start, end) {
        tagName = name(start, end);
        attributes = null;
      },
      onattribname(start, end) {
        attributeName = source.slice(start, end);
        attributeValue = '';
      },
      onattribdata(start, end) {
        if (collect) attributeValue += source.slice(start, end);
      },
      onattribentity(codepoint) {
        if (collect) attributeValue += String.fromCodePoint(codepoint);
      },
      onattribend() {
        if (!collect) return;
        attributes ??= new Map();
        attributes.set(html ? attributeName.toLowerCase() : attributeName, attributeValue);
      },
      onopentagend() {
        handlers.open?.(tagName, attributes ?? NO_ATTRIBUTES);
        check();
      },
      onselfclosingtag() {
        handlers.open?.(tagName, attributes ?? NO_ATTRIBUTES);
        handlers.close?.(tagName);
        check();
      },
      onclosetag(start, end) {
        handlers.close?.(name(start, end));
        check();
      },
      ontext(start, end) {
        handlers.text?.(source.slice(start, end));
        check();
      },
      ontextentity(codepoint) {
        handlers.text?.(String.fromCodePoint(codepoint));
        check();
      },
      oncdata(start, end) {
        // CDATA sections are text in XML; HTML has none outside foreign content.
        if (!html) handlers.text?.(source.slice(start, end));
        check();
      },
      oncomment() {},
      ondeclaration() {},
      onprocessinginstruction() {},
      onend() {},
    },
  );

  for (let offset = 0; offset < source.length && !stopped; offset += SLICE_CHARS) {
    if (offset > 0) await nextTurn();
    tokenizer.write(source.slice(offset, offset + SLICE_CHARS));
  }
  if (!stopped) tokenizer.end();
}
