const OPEN = '<think>';
const CLOSE = '</think>';

/**
 * Drops the reasoning a model writes inline at the start of its answer, `<think>…</think>` (DeepSeek-R1 or Qwen3
 * served without a reasoning parser: Ollama's older versions, vLLM without `--reasoning-parser`), as OpenAI's
 * reasoning models never show theirs: a message holds the answer, and the thread sent back to the model does not
 * grow by its thoughts. Text that does not begin with the tag (after whitespace) passes at once; only a beginning
 * that could still be the tag (`<`, `<th`) waits for the next piece.
 *
 * A model whose chat template writes the opening tag into the prompt (DeepSeek-R1's distills, QwQ, Qwen3's thinking
 * models) streams `reasoning…</think>answer` without it. Nothing in the text says so, and what was passed on cannot
 * be taken back, so its route says it (`opened`): the content is reasoning from its first piece.
 */
export class LeadingThinking {
  private state: 'start' | 'thinking' | 'after' | 'answer';
  private held = '';

  constructor(opened = false) {
    this.state = opened ? 'thinking' : 'start';
  }

  /** What of this piece of the content is answer. */
  take(text: string): string {
    if (this.state === 'answer') return text;
    this.held += text;
    if (this.state === 'start') {
      const begun = this.held.trimStart();
      if (begun.length < OPEN.length && OPEN.startsWith(begun)) return '';
      if (!begun.startsWith(OPEN)) return this.answer(this.held);
      this.state = 'thinking';
      this.held = begun.slice(OPEN.length);
    }
    if (this.state === 'thinking') {
      const end = this.held.indexOf(CLOSE);
      if (end < 0) {
        this.held = this.held.slice(-(CLOSE.length - 1)); // what could be the start of the closing tag
        return '';
      }
      this.state = 'after';
      this.held = this.held.slice(end + CLOSE.length);
    }
    // After the reasoning, the whitespace that separates it from the answer goes too.
    const answer = this.held.trimStart();
    if (answer === '') {
      this.held = '';
      return '';
    }
    return this.answer(answer);
  }

  /** At the end of the content: what was held for a tag that did not come. */
  flush(): string {
    const rest = this.state === 'start' ? this.held : '';
    this.held = '';
    return rest;
  }

  private answer(text: string): string {
    this.state = 'answer';
    this.held = '';
    return text;
  }
}
