/**
 * The note put where a cell's logs were cut: by the driver (driver.py writes the same words, in Python), by the
 * session's own cap (sandbox-session.ts), and by code_interpreter when it cuts them again to fit the model's context
 * window, which reads the count of an earlier note to add it to its own.
 */
export function truncationNote(dropped: number): string {
  return `\n…[output truncated: ${dropped.toLocaleString('en-US')} more characters]\n`;
}

/** A truncation note in logs; its group 1 is the count of characters left out, with its thousands separators. */
export const TRUNCATION_NOTE = /\n…\[output truncated: ([\d,]+) more characters\]\n/;
