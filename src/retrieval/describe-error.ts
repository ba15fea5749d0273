/** A library's error message, bounded, for a `last_error` message: what went wrong with the file, briefly. */
export function describeError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.length > 200 ? `${message.slice(0, 200)}…` : message;
}
