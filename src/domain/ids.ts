import { randomBytes } from 'node:crypto';

/** The id prefixes of the official API; clients and SDK error messages rely on them. */
export const ID_PREFIX = {
  assistant: 'asst_',
  thread: 'thread_',
  message: 'msg_',
  run: 'run_',
  step: 'step_',
  call: 'call_',
  file: 'file-',
  vectorStore: 'vs_',
  fileBatch: 'vsfb_',
  request: 'req_',
  project: 'proj_',
  apiKey: 'key_',
  chatCompletion: 'chatcmpl-',
} as const;

export type IdKind = keyof typeof ID_PREFIX;

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const ID_LENGTH = 24; // 24 base62 characters ≈ 142 bits: unguessable, and as long as upstream's ids.
// Bytes ≥ 248 are rejected so that `byte % 62` stays uniform (248 = 4 × 62).
const UNBIASED_LIMIT = 248;

export function newId(kind: IdKind): string {
  let out: string = ID_PREFIX[kind];
  while (out.length < ID_PREFIX[kind].length + ID_LENGTH) {
    for (const byte of randomBytes(32)) {
      if (byte >= UNBIASED_LIMIT) continue;
      out += ALPHABET[byte % 62];
      if (out.length === ID_PREFIX[kind].length + ID_LENGTH) break;
    }
  }
  return out;
}

export function hasPrefix(kind: IdKind, id: string): boolean {
  return id.startsWith(ID_PREFIX[kind]);
}
