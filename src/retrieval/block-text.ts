/**
 * Builds readable text from markup events: runs of whitespace in flowing text collapse to one space (as a browser
 * renders them), block elements become line breaks or blank lines, never more than one blank line in a row, and no
 * whitespace at the start. The blank lines between paragraphs are what the chunker prefers to cut at.
 */
export const LINE = 1;
export const PARAGRAPH = 2;

export class BlockTextBuilder {
  private readonly parts: string[] = [];
  private written = 0;
  private atLineStart = true;
  private pendingBreak = 0;
  private pendingSpace = false;
  private pendingCell = false;

  /** Characters written so far. */
  get length(): number {
    return this.written;
  }

  /** Flowing text: whitespace (including no-break spaces) collapses to single spaces. */
  inline(text: string): void {
    const collapsed = text.replace(/\s+/g, ' ');
    if (collapsed.length === 0) return;
    if (collapsed === ' ') {
      this.pendingSpace = true;
      return;
    }
    const start = collapsed.charCodeAt(0) === 32 ? 1 : 0;
    const trailing = collapsed.charCodeAt(collapsed.length - 1) === 32;
    if (start === 1) this.pendingSpace = true;
    this.write(collapsed.slice(start, trailing ? -1 : undefined));
    if (trailing) this.pendingSpace = true;
  }

  /** Preformatted text (`<pre>`): written as it is. */
  preformatted(text: string): void {
    if (text.length === 0) return;
    this.write(text);
    this.atLineStart = text.charCodeAt(text.length - 1) === 10;
  }

  /** A line break (`LINE`) or a blank line (`PARAGRAPH`) before the next text; none at the start of the text. */
  break(level: typeof LINE | typeof PARAGRAPH): void {
    if (level > this.pendingBreak) this.pendingBreak = level;
  }

  /** A table cell: a tab before the next text, unless it starts a line. */
  cell(): void {
    this.pendingCell = true;
  }

  toString(): string {
    return this.parts.join('');
  }

  private write(text: string): void {
    if (this.written > 0) {
      if (this.pendingBreak > 0) {
        this.push(this.pendingBreak === PARAGRAPH ? '\n\n' : '\n');
        this.atLineStart = true;
      } else if (!this.atLineStart && this.pendingCell) this.push('\t');
      else if (!this.atLineStart && this.pendingSpace) this.push(' ');
    }
    this.pendingBreak = 0;
    this.pendingSpace = false;
    this.pendingCell = false;
    this.push(text);
    this.atLineStart = false;
  }

  private push(text: string): void {
    this.parts.push(text);
    this.written += text.length;
  }
}
