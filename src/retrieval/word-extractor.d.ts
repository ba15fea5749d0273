// word-extractor ships no types: what office-text.ts uses of it.
declare module 'word-extractor' {
  interface TextOptions {
    /** Whether to turn typographic quotes and dashes into ASCII ones; true unless false. */
    filterUnicode?: boolean;
  }
  export interface WordDocument {
    getBody(options?: TextOptions): string;
    getFootnotes(options?: TextOptions): string;
    getEndnotes(options?: TextOptions): string;
    getTextboxes(options?: TextOptions & { includeHeadersAndFooters?: boolean; includeBody?: boolean }): string;
  }
  export default class WordExtractor {
    /** A Buffer is read as it is; a string would be taken for a path and opened. */
    extract(source: Buffer): Promise<WordDocument>;
  }
}
