/**
 * Runs `task` every `ms`, one pass at a time: a pass still running when the next is due (the database slow to
 * answer, or away) is not joined by another, which would pile up behind it.
 */
export function every(ms: number, task: () => Promise<void>): NodeJS.Timeout {
  let running = false;
  return setInterval(() => {
    if (running) return;
    running = true;
    void task().finally(() => {
      running = false;
    });
  }, ms);
}
