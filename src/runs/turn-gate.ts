/**
 * Lets the costly beginnings and ends of work — creating a run, starting a model turn (reading the thread, counting
 * its tokens, opening the upstream request), committing a turn's end — through one per turn of the event loop.
 * Between two of them the loop goes round once, and the streams already running have their tokens read and written.
 *
 * Without it, runs created together (a thousand clients opening streams at once) run as one block of work of a few
 * milliseconds each: the requests that arrived in one poll of the loop are handled back to back, and every live
 * stream waits for all of them, seconds under such a burst. With it, a live stream waits for at most one beginning
 * and what the loop's turn had to read. Nothing waits when the server is idle: the first beginning of a turn passes
 * at once. The work is the same; it is only taken in a fairer order.
 *
 * Also tried: holding new beginnings back while a turn of the loop took long (the streams' tokens filling it). On
 * 1,000 streams opened at once it did not help (p99 of the added inter-token delay 24–88 ms over 7 runs, against
 * 25–52 ms without), and was dropped.
 */
export class TurnGate {
  /** Whether a beginning went through in this turn of the loop. */
  private passed = false;
  private readonly waiting: Array<() => void> = [];

  /** Resolves when the caller may begin: at once if nothing else began in this turn of the loop. */
  pass(): Promise<void> {
    if (!this.passed && this.waiting.length === 0) {
      this.passed = true;
      setImmediate(this.nextTurn);
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Runs after the loop's poll (setImmediate): lets the longest waiter begin, and comes back next turn. */
  private readonly nextTurn = (): void => {
    const next = this.waiting.shift();
    if (!next) {
      this.passed = false;
      return;
    }
    next();
    setImmediate(this.nextTurn);
  };
}
