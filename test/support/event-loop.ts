/** The turns of the event loop counted from now until `stop()`: a statement that holds the loop lets none go by. */
export interface TurnCounter {
  readonly count: number;
  stop(): void;
}

export function countTurns(): TurnCounter {
  let count = 0;
  let ticking = true;
  const tick = () => {
    count += 1;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    get count() {
      return count;
    },
    stop() {
      ticking = false;
    },
  };
}
