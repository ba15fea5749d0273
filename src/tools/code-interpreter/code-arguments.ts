import type { FunctionDefinition } from '../../domain/objects.ts';

/**
 * What the model calls to run code: a function `python` taking `{code}` — the name and shape OpenAI's and Llama's
 * models were trained on for a code interpreter — or `code_interpreter` when the run has a `python` function of its
 * own. Models write the code as a JSON string, or (llama.cpp's Python tool) as the raw arguments; both are taken.
 * Arguments that are one JSON string are taken as that string's content; raw code can start with a string literal
 * too (a docstring), so such arguments stream nothing until they show which they are (below: `codeReader`).
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
 * The code of a call's complete arguments as its step shows it: `codeToRun`'s, or '' when they have none.
 */
export function codeOf(args: string): string {
  return codeToRun(args) ?? '';
}

/**
 * The code of a call's complete arguments: `{"code": "..."}` (a JSON string of the code also works), or the
 * arguments themselves when they are not JSON (raw code, even when it opens with a brace: `{x: 1 for x in s}`). JSON
 * that does not parse but has a `"code"` string (a model that wrote raw line breaks inside it) gives that string as
 * far as it goes, as it streamed. Undefined when there is no code to run: a JSON object without a `code` string
 * (`{"script": ...}`, `{"code": 5}`), or code that is blank — the model is told, rather than shown an empty cell's
 * success.
 */
export function codeToRun(args: string): string | undefined {
  let code = args;
  try {
    const value: unknown = JSON.parse(args);
    if (typeof value === 'string') code = value;
    else if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const { code: given } = value as Record<string, unknown>;
      if (typeof given !== 'string') return undefined;
      code = given;
    }
  } catch {
    // Not JSON: raw code, unless it is an object with a `code` string being written (as codeReader streamed it).
    // Arguments that start with a quote and are not one JSON string are raw code (`"a".upper()`, a string left open).
    if (!/^\s*"/.test(args) && CODE_KEY.test(args)) code = codeSoFar(args);
  }
  return code.trim() === '' ? undefined : code;
}

/**
 * The code as far as the arguments written so far show it: the decoded prefix of the `code` string of a JSON
 * object being written, or the raw text when the arguments do not start as a JSON object — except arguments that
 * start with a quote, which show nothing while they could still be one JSON string (its content is the code, and
 * `codeOf` gives it once the arguments are complete) and all of their raw text once they cannot. It only ever grows
 * as the arguments do (an escape sequence cut by a chunk waits for the rest), so each increment can be streamed, and
 * it is always a prefix of `codeOf` of the complete arguments.
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
  let state: 'start' | 'raw' | 'quoted' | 'key' | 'string' | 'end' = 'start';
  let pending = '';
  let scanned = 0; // 'quoted': how far `pending` is known to be a JSON string (and whitespace after it)
  let ended = false; // 'quoted': whether that string has ended
  const raw = () => {
    state = 'raw';
    const all = pending;
    pending = '';
    return all;
  };
  return (fragment) => {
    if (state === 'raw') return fragment;
    if (state === 'end') return '';
    pending += fragment;
    if (state === 'start') {
      const start = pending.search(/\S/);
      if (start === -1) return '';
      if (pending[start] === '"') {
        state = 'quoted';
        scanned = start + 1;
      } else if (pending[start] !== '{') return raw();
      else state = 'key';
    }
    if (state === 'quoted') {
      const scan = scanJsonString(pending, scanned, ended);
      if (scan === 'not') return raw();
      ({ scanned, closed: ended } = scan);
      return '';
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

/**
 * How far `text`, from `from`, goes on being one JSON string (`closed`: its closing quote was reached earlier)
 * followed by whitespace: where the scan stopped (the end, or an escape cut by a chunk) and whether the string has
 * closed — or 'not' once something shows it is not (a raw control character or an invalid escape inside it, or
 * anything but whitespace after it).
 */
function scanJsonString(text: string, from: number, closed: boolean): { scanned: number; closed: boolean } | 'not' {
  let i = from;
  while (i < text.length) {
    const ch = text[i]!;
    if (closed) {
      if (!' \t\n\r'.includes(ch)) return 'not'; // JSON's whitespace
      i++;
    } else if (ch === '"') {
      closed = true;
      i++;
    } else if (ch === '\\') {
      const next = text[i + 1];
      if (next === undefined) break;
      if (next !== 'u') {
        if (!(next in ESCAPES)) return 'not';
        i += 2;
        continue;
      }
      const hex = text.slice(i + 2, i + 6);
      if (!/^[0-9a-fA-F]*$/.test(hex)) return 'not';
      if (hex.length < 4) break;
      i += 6;
    } else if (ch < ' ') return 'not';
    else i++;
  }
  return { scanned: i, closed };
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
