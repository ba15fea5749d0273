/**
 * Lets the costly beginnings of work — creating a run, starting a model turn (reading the thread, counting its
 * tokens, opening the upstream request), committing a turn's end — through one per turn of the event loop, and
 * none while the loop is busy with the streams already running.
 *
 * Without it, runs created together (a thousand clients opening streams at once) run as one block of work of a few
 * milliseconds each: the requests that arrived in one poll of the loop are handled back to back, and every live
 * stream waits for all of them, seconds under such a burst. Letting one through per turn is not enough either: the
 * loop turns fast, more and more streams start, and once their tokens alone fill the processor every stream
 * stutters. So a turn of the loop that took longer than BUSY_TURN_MS (it had many tokens to read and write) lets
 * nothing begin: the streams already running keep their rhythm, and new work waits for room — at most
 * MAX_HOLD_MS at a time, so that it always advances. Nothing waits when the server is idle: the first beginning of
 * a turn passes at once. The work is the same; it is only taken in a fairer order.
 */
export class TurnGate {
  /** Whether a beginning went through in this turn of the loop. */
  private passed = false;
  private readonly waiting: Array<() => void> = [];
  /** When the last turn of the loop seen here began (performance.now()). */
  private turnStartedAt = 0;
  /** Since when a busy loop has held the waiters back, if it has. */
  private heldSince: number | undefined;

  /** Resolves when the caller may begin: at once if nothing else began in this turn of the loop. */
  pass(): Promise<void> {
    if (!this.passed && this.waiting.length === 0) {
      this.passed = true;
      this.turnStartedAt = performance.now();
      setImmediate(this.nextTurn);
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Runs after the loop's poll (setImmediate): lets the longest waiter begin unless the loop is busy. */
  private readonly nextTurn = (): void => {
    const now = performance.now();
    const turnMs = now - this.turnStartedAt;
    this.turnStartedAt = now;
    if (this.waiting.length === 0) {
      this.passed = false;
      this.heldSince = undefined;
      return;
    }
    if (turnMs > BUSY_TURN_MS) {
      this.heldSince ??= now;
      if (now - this.heldSince < MAX_HOLD_MS) {
        setImmediate(this.nextTurn);
        return;
      }
    }
    this.heldSince = undefined;
    this.waiting.shift()!();
    setImmediate(this.nextTurn);
  };
}

/** A turn of the loop longer than this was busy with running work: nothing new begins in the next. */
const BUSY_TURN_MS = 10;
/** The longest a busy loop holds back what waits to begin. */
const MAX_HOLD_MS = 250;
