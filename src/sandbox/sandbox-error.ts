/**
 * A failure of the sandbox a caller should report rather than crash on: unavailable, every session busy, an
 * invalid or unreadable file name, a file too large. Its message is meant to be read by the model or the client.
 */
export class SandboxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SandboxError';
  }
}
