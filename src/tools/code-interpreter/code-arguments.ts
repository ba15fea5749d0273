import type { FunctionDefinition } from '../../domain/objects.ts';

/**
 * What the model calls to run code: a function `python` taking `{code}` — the name and shape OpenAI's and Llama's
 * models were trained on for a code interpreter — or `code_interpreter` when the run has a `python` function of its
 * own. Models write the code as a JSON string, or (llama.cpp's Python tool) as the raw arguments; both are taken.
 */

export const PYTHON_FUNCTION: FunctionDefinition = {
  name: 'python',
  description:
    'Runs Python code in a stateful session (like a Jupyter notebook) and returns what it prints, the value of its ' +
    'last expression, or its error. Variables, imports and files persist between calls in this conversation. The ' +
    'working directory is /mnt/data, where the files you were given are. There is no internet access.',
  parameters: {
    type: 'object',
    properties: { code: { type: 'string', description: 'The Python code to run.' } },
    required: ['code'],
    additionalProperties: false,
  },
};

export const ALTERNATE_NAME = 'code_interpreter';

const CODE_KEY = /"code"\s*:\s*"/;

/**
 * The code of a call's complete arguments: `{"code": "..."}` (a JSON string of the code also works), or the
 * arguments themselves when they are not JSON (raw code). JSON that does not parse but has a `"code"` string (a
 * model that wrote raw line breaks inside it) gives that string as far as it goes, as it streamed.
 */
export function codeOf(args: string): string {
  try {
    const value: unknown = JSON.parse(args);
    if (typeof value === 'string') return value;
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const { code } = value as Record<string, unknown>;
      if (typeof code === 'string') return code;
    }
  } catch {
    // not JSON: below
  }
  return codeSoFar(args);
}

/**
 * The code as far as the arguments written so far show it: the decoded prefix of the `code` string of a JSON
 * object being written, or the raw text when the arguments do not start as a JSON object. It only ever grows as the
 * arguments do (an escape sequence cut by a chunk waits for the rest), so each increment can be streamed.
 */
export function codeSoFar(partial: string): string {
  return codeReader()(partial);
}

/**
 * Before `"code": "` is found, how much of the arguments a reader keeps looking in (their end): more than any key
 * with its spacing, so that arguments with no `code` key do not make every fragment search all of them again.
 */
const KEY_WINDOW = 256;

/**
 * A reader of one call's arguments as the model writes them (ServerTool.inputReader): given each fragment, what it
 * adds to the code — `codeSoFar` of all the fragments so far, less what it returned before. It keeps only what it
 * cannot decode yet (the object's start before the `code` key, an escape cut by a chunk), so a long cell costs one
 * pass over its arguments, not one per fragment.
 */
export function codeReader(): (fragment: string) => string {
  let state: 'start' | 'raw' | 'key' | 'string' | 'end' = 'start';
  let pending = '';
  return (fragment) => {
    if (state === 'raw') return fragment;
    if (state === 'end') return '';
    pending += fragment;
    if (state === 'start') {
      const start = pending.search(/\S/);
      if (start === -1) return '';
      if (pending[start] !== '{') {
        state = 'raw';
        const all = pending;
        pending = '';
        return all;
      }
      state = 'key';
    }
    if (state === 'key') {
      const key = CODE_KEY.exec(pending);
      if (!key) {
        if (pending.length > KEY_WINDOW) pending = pending.slice(-KEY_WINDOW);
        return '';
      }
      pending = pending.slice(key.index + key[0].length);
      state = 'string';
    }
    const { out, end, closed } = decodeJsonString(pending);
    pending = pending.slice(end);
    if (closed) state = 'end';
    return out;
  };
}

const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/**
 * A JSON string's content from the start of `text` up to its closing quote (`closed`), or as far as it is complete;
 * `end` is where decoding stopped (the quote, a cut escape, or the end of the text).
 */
function decodeJsonString(text: string): { out: string; end: number; closed: boolean } {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === '"') return { out, end: i, closed: true };
    if (ch !== '\\') {
      out += ch;
      i++;
      continue;
    }
    const next = text[i + 1];
    if (next === undefined) break; // the escape is cut: wait for the rest
    if (next === 'u') {
      const hex = text.slice(i + 2, i + 6);
      if (hex.length < 4) break;
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) {
        out += text.slice(i, i + 6);
        i += 6;
        continue;
      }
      const unit = Number.parseInt(hex, 16);
      // A high surrogate waits for its low half, so a pair is never sent split.
      if (unit >= 0xd800 && unit <= 0xdbff) {
        const low = text.slice(i + 6, i + 12);
        if (low.length < 6) break;
        if (/^\\u[dD][c-fC-F][0-9a-fA-F]{2}$/.test(low)) {
          out += String.fromCharCode(unit, Number.parseInt(low.slice(2), 16));
          i += 12;
          continue;
        }
      }
      out += String.fromCharCode(unit);
      i += 6;
      continue;
    }
    out += ESCAPES[next] ?? next;
    i += 2;
  }
  return { out, end: i, closed: false };
}
