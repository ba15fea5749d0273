import type { Logger } from 'pino';
import type { StoredFile } from '../../domain/files.ts';
import { newId } from '../../domain/ids.ts';
import type { MessageContent } from '../../domain/objects.ts';
import type { CodeInterpreterOutput, Run, ToolCallDetails } from '../../domain/runs.ts';
import { TRUNCATION_NOTE, truncationNote } from '../../sandbox/output-note.ts';
import type { Scope } from '../../storage/store.ts';
import { codePoints } from '../code-points.ts';
import {
  allMade,
  resultTokenBudget,
  type ServerTool,
  type ServerToolCall,
  type TextAnnotator,
  type ToolContext,
  ToolError,
  type ToolResult,
} from '../tool.ts';
import { ALTERNATE_NAME, codeOf, codeReader, codeToRun, PYTHON_FUNCTION } from './code-arguments.ts';
import { sandboxLinkAnnotator } from './sandbox-links.ts';

/**
 * The built-in `code_interpreter` tool: the model calls `python` with code, and the code runs in the thread's
 * Python session, in a sandbox (src/sandbox), like a notebook cell: variables, imports and files persist between
 * calls and runs of the thread while the session lives. Before a cell runs, the files the run gives the code (the
 * assistant's and the thread's `tool_resources.code_interpreter.file_ids`, and message attachments for
 * code_interpreter) are put in /mnt/data by name. What the cell prints becomes a `logs` output; each plot it draws
 * becomes a file (purpose `assistants_output`), an `image` output, and an `image_file` part of the answer. A file the
 * answer links as `sandbox:/mnt/data/<name>` becomes a file with a `file_path` annotation (sandbox-links.ts).
 *
 * When there is no sandbox (disabled, or the host cannot run one), the tool stays offered and each call gets an
 * output saying why code cannot run here; the run goes on.
 */

/** What the tool needs of a sandbox: SandboxPool (src/sandbox) has this shape. */
export interface CodeSandbox {
  /** Whether sessions can be started here, and why not; waits for the startup probe. */
  start(): Promise<SandboxStatus>;
  /**
   * The live session of `key`, or a new one (`fresh`), waiting while every session is in use (until `signal`
   * aborts: rejecting with its reason). Throws when no session can be had.
   */
  session(key: string, options?: { signal?: AbortSignal }): Promise<HeldSession>;
  /** Closes the session of `key`, held or not; the next `session(key)` is a new one. */
  closeSession(key: string, reason: string): Promise<void>;
}

/** A session handed to a call: the sandbox does not evict it for another key until `release()`. */
export interface HeldSession {
  session: PythonSession;
  fresh: boolean;
  release(): void;
}

export type SandboxStatus =
  | {
      available: true;
      detail: string;
      /** What a cell can import; default numpy, pandas, matplotlib. */
      libraries?: string[];
    }
  | { available: false; reason: string };

export interface PythonSession {
  runCell(code: string, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<CellResult>;
  /**
   * Writes the file whole or not at all; rejects with a message the model can read (an invalid name, the session
   * ended…), or with `signal`'s reason.
   */
  writeFile(name: string, bytes: Uint8Array, options?: { signal?: AbortSignal }): Promise<void>;
  readFile(name: string, maxBytes: number): Promise<Uint8Array>;
  /** Removes a file of /mnt/data; done also when there was no such file. */
  removeFile(name: string): Promise<void>;
  /** Makes /mnt/data/<name> a symbolic link to `target`, a file beside it (replacing a symbolic link there). */
  linkFile(name: string, target: string): Promise<void>;
  listFiles(): Promise<Array<{ name: string; size: number; mtimeMs: number }>>;
}

export interface CellResult {
  logs: string;
  images: Uint8Array[];
  outcome: 'ok' | 'error' | 'timeout' | 'killed' | 'aborted';
  /**
   * With 'killed', why: the cell ignored its interrupt, its Python process ended under it, or its session closed. The
   * logs say it to the model, in the sandbox's words (sandbox-session.ts).
   */
  killed?: 'interrupt' | 'ended' | 'closed';
}

/** What the tool needs of the rest of the server (code-interpreter-backend.ts over the Store and FileService). */
export interface CodeInterpreterBackend {
  /**
   * The files the run's code is given, each once, in this order: the assistant's tool_resources, the thread's,
   * then the thread's message attachments for code_interpreter; and the ids named there of files that no longer
   * exist (deleted or expired), which the model is told about.
   */
  runFiles(scope: Scope, run: Run): Promise<RunFiles>;
  readFile(scope: Scope, id: string): Promise<Uint8Array | undefined>;
  /** Makes a file of the run's output (purpose `assistants_output`), under `id` if one was promised. */
  saveFile(scope: Scope, file: { id?: string; filename: string; bytes: Uint8Array }): Promise<StoredFile>;
  /**
   * The id of the thread's latest code_interpreter call that ran code (`ranCode`) and completed in an earlier run (the
   * session's state is that call's, or later), if any.
   */
  lastCall(scope: Scope, run: Run): Promise<string | undefined>;
}

export interface RunFiles {
  files: StoredFile[];
  missing: string[];
}

export interface CodeInterpreterToolOptions {
  sandbox: CodeSandbox;
  backend: CodeInterpreterBackend;
  logger: Logger;
  /** A cell's time limit; a run's `expires_at` shortens it. */
  cellTimeoutMs: number;
  /** The largest file a link in an answer can hand back (the Files API's limit). */
  maxFileBytes: number;
  /** The largest file the sandbox holds (ASSISTD_SANDBOX_MAX_FILE_MB): a larger run file is not placed. */
  sandboxFileBytes: number;
}

/** The sessions' files whose content the tool knows, per thread: what links can point at. */
interface ThreadFiles {
  session: PythonSession;
  /** The files a link can hand back: listed after the thread's last cell, and not over the Files API's limit. */
  names: ReadonlySet<string>;
}

/** A file an answer links to (sandbox-links.ts), made of the sandbox file's bytes while the answer streams. */
interface LinkedFile {
  id: string;
  made: boolean;
  /** It could not be made: the link is left plain. */
  failed: boolean;
  making: Promise<void>;
}

/**
 * What the model is told of a call without code, which runs nothing. It does not name the function: the model called
 * it `python` or `code_interpreter` (code-arguments.ts).
 */
const ARGUMENTS_ERROR = 'No code ran: the arguments must be {"code": "<python source>"}, the code a non-empty string.';

/** Threads whose files are remembered at once; the oldest is forgotten beyond this. */
const MAX_REMEMBERED_THREADS = 10_000;

export function codeInterpreterTool(options: CodeInterpreterToolOptions): ServerTool {
  const { sandbox, backend, logger } = options;
  /** The run files each session has in /mnt/data: file id → name. A new session starts with none. */
  const placed = new WeakMap<PythonSession, Map<string, string>>();
  const threadFiles = new Map<string, ThreadFiles>();
  /** The session lease each executing run holds until its execution ends, by run id. */
  const pinned = new Map<string, HeldSession>();
  /** The calls each session has run the code of: its state is theirs. A new session has none. */
  const ran = new WeakMap<PythonSession, Set<string>>();
  /**
   * By run id, until its execution ends, the run's last call whose cell was killed: its output told the model that
   * the session was restarted, which the call right after it need not say again.
   */
  const killedCalls = new Map<string, string>();

  function remember(threadId: string, files: ThreadFiles): void {
    threadFiles.delete(threadId);
    threadFiles.set(threadId, files);
    const oldest = threadFiles.keys().next().value;
    if (threadFiles.size > MAX_REMEMBERED_THREADS && oldest !== undefined) threadFiles.delete(oldest);
  }

  /**
   * Puts the run's files the session does not have yet in /mnt/data. What the model is told of those it cannot have:
   * files that no longer exist, files the sandbox refused (each named with why); the others are placed all the same.
   */
  async function placeFiles(scope: Scope, session: PythonSession, run: Run, signal: AbortSignal): Promise<string[]> {
    const { files, missing } = await backend.runFiles(scope, run);
    const has = placed.get(session) ?? new Map<string, string>();
    placed.set(session, has);
    const gone = [...missing];
    const refused: string[] = [];
    const sizes = new Map(files.map((file) => [file.id, file.bytes]));
    for (const [id, name] of placements(files)) {
      if (has.get(id) === name) continue;
      signal.throwIfAborted();
      if ((sizes.get(id) ?? 0) > options.sandboxFileBytes) {
        // Not even read: a file the sandbox would cut short is not there at all.
        const limit = `${Math.floor(options.sandboxFileBytes / 1024 / 1024)} MiB`;
        refused.push(`${name} (${id}): larger than the ${limit} a file here may have`);
        continue;
      }
      let bytes: Uint8Array | undefined;
      try {
        bytes = await backend.readFile(scope, id);
      } catch (error) {
        refused.push(`${name} (${id}): ${clause(error)}`);
        continue;
      }
      if (!bytes) {
        gone.push(id);
        continue;
      }
      try {
        await session.writeFile(name, bytes, { signal });
        // Another file that was there under this name (an earlier run's) is not any more, nor its id's link.
        for (const [other, at] of has)
          if (at === name) {
            has.delete(other);
            if (other !== name) await session.removeFile(other);
          }
        has.set(id, name);
        if (name !== id) await linkById(session, id, name, run, signal);
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        // Its process may have died under it, with the files placed before: the next call places them all again.
        placed.delete(session);
        logger.warn({ err: error, fileId: id, threadId: run.thread_id }, 'a run file could not be put in /mnt/data');
        refused.push(`${name} (${id}): ${clause(error)}`);
      }
    }
    // A file placed by an earlier run and deleted since goes from /mnt/data too, as the model is told.
    for (const id of gone) {
      const name = has.get(id);
      if (name === undefined) continue;
      signal.throwIfAborted();
      try {
        await session.removeFile(name);
        if (name !== id) await session.removeFile(id);
        has.delete(id);
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        logger.warn(
          { err: error, fileId: id, threadId: run.thread_id },
          'a deleted file could not be removed from /mnt/data',
        );
      }
    }
    const notes: string[] = [];
    if (gone.length > 0) notes.push(`These files no longer exist and are not in /mnt/data: ${gone.join(', ')}.`);
    if (refused.length > 0) notes.push(`These files could not be put in /mnt/data: ${refused.join('; ')}.`);
    return notes;
  }

  /**
   * Names a placed file by its id too (/mnt/data/file-…, a symbolic link), as upstream placed it: programs told
   * their model where a file was by its id. One the link cannot be made for (the code wrote a file of that name) is
   * still there under its name.
   */
  async function linkById(session: PythonSession, id: string, name: string, run: Run, signal: AbortSignal) {
    try {
      await session.linkFile(id, name);
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      logger.warn(
        { err: error, fileId: id, threadId: run.thread_id },
        "a run file's id could not name it in /mnt/data",
      );
    }
  }

  /** An error's message as a clause of a longer sentence: without its final period. */
  function clause(error: unknown): string {
    return (error as Error).message.replace(/\.$/, '');
  }

  async function execute(call: ServerToolCall, context: ToolContext): Promise<ToolResult> {
    const { scope, run, signal } = context;
    const code = codeToRun(call.arguments);
    if (code === undefined) throw new ToolError(ARGUMENTS_ERROR);
    const result = (outputs: CodeInterpreterOutput[], output: string): ToolResult => ({
      details: { id: call.id, type: 'code_interpreter', code_interpreter: { input: code, outputs } },
      output,
    });
    const unavailable = (reason: string) => {
      const text = `Code execution is unavailable on this server: ${reason}`;
      context.progress({ code_interpreter: { outputs: [{ index: 0, type: 'logs', logs: text }] } });
      return result([{ type: 'logs', logs: text }], `${text} Answer without running code.`);
    };

    const status = await sandbox.start();
    if (!status.available) return unavailable(status.reason);
    // A run stopped meanwhile starts no session: if its thread was deleted, the sandbox has closed the thread's
    // session already, and a new one would live on until it idled out.
    if (signal.aborted) throw signal.reason;
    // The call the session should have run last: this run's previous one that ran code, or the thread's last before
    // this run.
    const previous = context.calls.findLast(ranCode)?.id ?? (await backend.lastCall(scope, run));
    let opened: HeldSession;
    try {
      opened = await sandbox.session(run.thread_id, { signal });
      if (!opened.fresh && previous !== undefined && !ran.get(opened.session)?.has(previous)) {
        // The thread's last code ran in another process (this session is older: a thread whose runs went from this
        // process to another and back): its state is not what the model saw last. Start again, and say so.
        opened.release();
        await sandbox.closeSession(run.thread_id, "its state is older than the thread's last code");
        opened = await sandbox.session(run.thread_id, { signal });
      }
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      return unavailable((error as Error).message);
    }
    const { session, fresh } = opened;
    if (fresh) {
      // A new process (the last one died, even between calls): /mnt/data is empty, no code has run.
      placed.delete(session);
      ran.delete(session);
    }
    // The run's first lease is kept until its execution ends (executionEnded): between its calls, while the model
    // writes the next one, the session is not evicted for another thread's, which would lose the run's variables.
    const first = !pinned.has(run.id);
    if (first) pinned.set(run.id, opened);
    const release = first ? () => {} : opened.release;
    // Held until the call is done: its files are placed before the cell and listed after it, with awaits between,
    // in any of which another thread's new session could otherwise evict it.
    try {
      const notes: string[] = [];
      const told = previous !== undefined && killedCalls.get(run.id) === previous;
      if (fresh && previous !== undefined && !told)
        notes.push(
          'The Python session was restarted before this code ran: variables, imports and files written by earlier ' +
            'code are gone. The files you were given are in /mnt/data again.',
        );
      notes.push(...(await placeFiles(scope, session, run, signal)));

      const left = run.expires_at === null ? Number.POSITIVE_INFINITY : run.expires_at * 1000 - Date.now() - 1000;
      const calls = ran.get(session) ?? new Set<string>();
      ran.set(session, calls);
      calls.add(call.id);
      const cell = await session.runCell(code, {
        timeoutMs: Math.max(1000, Math.min(options.cellTimeoutMs, left)),
        signal,
      });
      if (signal.aborted) throw signal.reason;
      if (cell.outcome === 'killed') {
        placed.delete(session); // a new sandbox: the files go in again
        killedCalls.set(run.id, call.id);
      }

      // A cell that showed nothing has no outputs, as upstream's (the model is told so: modelOutput).
      const outputs: CodeInterpreterOutput[] = [];
      if (cell.logs !== '') outputs.push({ type: 'logs', logs: cell.logs });
      for (const [n, png] of cell.images.entries()) {
        const file = await backend.saveFile(scope, { filename: `${call.id}-${n}.png`, bytes: png });
        outputs.push({ type: 'image', image: { file_id: file.id } });
      }
      if (outputs.length > 0)
        context.progress({
          code_interpreter: {
            outputs: outputs.map((o, index) =>
              o.type === 'logs' ? { index, type: 'logs', logs: o.logs } : { index, type: 'image', image: o.image },
            ),
          },
        });
      try {
        const names = new Set(
          (await session.listFiles()).filter((f) => f.size <= options.maxFileBytes).map((f) => f.name),
        );
        remember(run.thread_id, { session, names });
      } catch (error) {
        logger.warn({ err: error, threadId: run.thread_id }, 'could not list the files of a code_interpreter session');
      }
      // The model reads what fits its context window: the share of what the window has left that file_search's
      // results get, with no cap of its own (the sandbox's cap of the logs is one). The step keeps the logs whole.
      const budget = resultTokenBudget(context.contextTokensLeft, Number.POSITIVE_INFINITY);
      return result(outputs, modelOutput(cell, outputs, notes, options.cellTimeoutMs, budget * BYTES_PER_TOKEN));
    } finally {
      release();
    }
  }

  /**
   * The answer's `sandbox:` links to the files of the thread's session, in a run that ran code or a later one
   * (a follow-up that links a file again); none when this process has run no cell of the thread.
   */
  function annotator(
    _calls: readonly ToolCallDetails[],
    context: Pick<ToolContext, 'scope' | 'run'>,
  ): TextAnnotator | undefined {
    const files = threadFiles.get(context.run.thread_id);
    if (!files) return undefined;
    /** The files the answer links to, by path: each made once, as its first link is complete. */
    const linked = new Map<string, LinkedFile>();
    const make = async (path: string, file: LinkedFile) => {
      try {
        const bytes = await files.session.readFile(path, options.maxFileBytes);
        await backend.saveFile(context.scope, { id: file.id, filename: path.split('/').pop()!, bytes });
        file.made = true;
      } catch (error) {
        // A file listed after the last cell can still be gone: its session closed since (evicted, idle, deleted).
        logger.warn(
          { err: error, fileId: file.id, path, runId: context.run.id },
          'a file the answer links could not be read from the sandbox; its link is left plain',
        );
        file.failed = true;
      }
    };
    const links = sandboxLinkAnnotator((path) => {
      if (!files.names.has(path)) return undefined;
      let file = linked.get(path);
      if (!file) {
        file = { id: newId('file'), made: false, failed: false, making: Promise.resolve() };
        file.making = make(path, file);
        linked.set(path, file);
      }
      return file.failed ? undefined : file;
    });
    const making = () => [...linked.values()].filter((f) => !f.made && !f.failed).map((f) => f.making);
    return {
      ...links,
      ready: () => allMade(making()),
      async settle() {
        await Promise.all(making());
        return [...linked.values()].filter((f) => f.failed).map((f) => f.id);
      },
    };
  }

  return {
    type: 'code_interpreter',
    function: PYTHON_FUNCTION,
    alternateName: ALTERNATE_NAME,
    inputReader: codeReader,
    describe: (call) => ({
      id: call.id,
      type: 'code_interpreter',
      code_interpreter: { input: codeOf(call.arguments), outputs: [] },
    }),
    execute,
    executionEnded(run) {
      pinned.get(run.id)?.release();
      pinned.delete(run.id);
      killedCalls.delete(run.id);
    },
    annotator,
    answerParts: (calls) =>
      calls.flatMap((c): MessageContent[] =>
        c.type === 'code_interpreter'
          ? c.code_interpreter.outputs.flatMap((o): MessageContent[] =>
              o.type === 'image'
                ? [{ type: 'image_file', image_file: { file_id: o.image.file_id, detail: 'auto' } }]
                : [],
            )
          : [],
      ),
    instructions: async ({ scope, run }) => {
      const status = await sandbox.start();
      if (!status.available)
        return `You have a Python tool, but code execution is unavailable on this server (${status.reason}). If the user asks for something that needs running code, say so.`;
      const { files } = await backend.runFiles(scope, run);
      const placed = placements(files);
      // A file whose name another took first (an earlier one, e.g. data.csv corrected in a later message) is told
      // apart: the model cannot see which message attached which file.
      const names = files.map((file) => {
        const name = placed.get(file.id)!;
        const own = safeName(file.filename, file.id);
        return name === own ? name : `${name} (a later file also named ${own})`;
      });
      const libraries = status.libraries ?? ['numpy', 'pandas', 'matplotlib'];
      return [
        'You have a Python tool: it runs Python 3 code in a stateful session, like a Jupyter notebook. Variables, ' +
          'imports and files persist between calls in this conversation (the session may be reset after a long ' +
          `pause). ${libraries.join(', ')} are installed; there is no internet access and no package can be ` +
          'installed.',
        names.length === 0
          ? 'The working directory is /mnt/data; the user has given you no files.'
          : `The working directory is /mnt/data, holding the files the user gave you: ${names.join(', ')}.`,
        'Plots drawn with matplotlib are shown to the user. To give the user a file, save it under /mnt/data and ' +
          'link it as sandbox:/mnt/data/<name>.',
      ].join(' ');
    },
  };
}

/**
 * Whether a call's details are those of a call with code to run: one without (its input empty) ran nothing, and left
 * the session as it was.
 */
export function ranCode(call: ToolCallDetails): boolean {
  return call.type === 'code_interpreter' && call.code_interpreter.input !== '';
}

/**
 * Where each file goes in /mnt/data: its name; a file whose name is taken gets its id added (`data-file-….csv`), and a
 * count after it should that be taken too. Every name fits Linux's 255 bytes, its extension kept.
 */
export function placements(files: readonly StoredFile[]): Map<string, string> {
  const byId = new Map<string, string>();
  const used = new Set<string>();
  for (const file of files) {
    if (byId.has(file.id)) continue;
    const name = safeName(file.filename, file.id);
    let placed = name;
    for (let n = 1; used.has(placed); n++) placed = withSuffix(name, n === 1 ? `-${file.id}` : `-${file.id}-${n}`);
    used.add(placed);
    byId.set(file.id, placed);
  }
  return byId;
}

/** The longest file name Linux takes, in bytes (NAME_MAX). */
const MAX_NAME_BYTES = 255;
/** A longer "extension" is part of the name, shortened with it. */
const MAX_EXTENSION_BYTES = 32;

/** A file name as /mnt/data can take it: its last path segment, without control characters, at most 255 bytes. */
function safeName(filename: string, id: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
  const name = (filename.split(/[/\\]/).pop() ?? '').replace(/[\u0000-\u001f]/g, '').trim();
  return name === '' || name === '.' || name === '..' ? id : withSuffix(name, '');
}

/** `name` with `suffix` before its extension, the rest of the name shortened to fit MAX_NAME_BYTES. */
function withSuffix(name: string, suffix: string): string {
  const dot = name.lastIndexOf('.');
  const extension = dot > 0 && Buffer.byteLength(name.slice(dot)) <= MAX_EXTENSION_BYTES ? name.slice(dot) : '';
  const stem = name.slice(0, name.length - extension.length);
  const room = MAX_NAME_BYTES - Buffer.byteLength(suffix) - Buffer.byteLength(extension);
  return `${prefixOfBytes(stem, room)}${suffix}${extension}`;
}

/** The longest prefix of `text` of at most `max` UTF-8 bytes that cuts no character. */
function prefixOfBytes(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text;
  let bytes = 0;
  let end = 0;
  for (const ch of text) {
    bytes += Buffer.byteLength(ch);
    if (bytes > max) break;
    end += ch.length;
  }
  return text.slice(0, end);
}

/**
 * How many UTF-8 bytes of text the model is given for each token its context window has left. The tool has no token
 * counter, and could not have the right one: the run counts its prompt with the model's own tokenizer when its
 * backend has one (llama.cpp's), which can make several times the tokens o200k_base counts (Llama 2's and Mistral's
 * make a token of each digit of a table, o200k_base one of three). So the text is sized by a bound that holds for
 * every tokenizer instead: none makes more tokens of a text than it has bytes (a byte-level BPE token is at least one
 * byte; SentencePiece falls back to a token a byte). Prose takes ~4 bytes a token: the model may be shown less than
 * would fit, never more.
 */
const BYTES_PER_TOKEN = 1;

/** What the model reads of a cell, in at most about `maxBytes`: its output, what happened to it, the images it drew. */
function modelOutput(
  cell: CellResult,
  outputs: readonly CodeInterpreterOutput[],
  notes: readonly string[],
  cellTimeoutMs: number,
  maxBytes: number,
): string {
  const after: string[] = [];
  const images = outputs.flatMap((o) => (o.type === 'image' ? [o.image.file_id] : []));
  if (images.length > 0)
    after.push(`[${images.length === 1 ? 'An image was' : `${images.length} images were`} shown to the user.]`);
  if (cell.outcome === 'timeout')
    after.push(
      `[The code was interrupted: it ran longer than the time limit (${Math.round(cellTimeoutMs / 1000)} s at most). Variables defined before it are kept.]`,
    );
  const around = [...notes, ...after];
  // The notes are short and each matters: the logs get what they leave.
  const room = maxBytes - Buffer.byteLength(around.join('\n')) - around.length;
  const parts = [...notes, ...(cell.logs === '' ? [] : [fitted(cell.logs, room)]), ...after];
  if (parts.length === 0) parts.push('[The code ran and printed nothing.]');
  return parts.join('\n');
}

/**
 * `logs` in at most about `maxBytes` UTF-8 bytes: their head and tail, with the sandbox's note between them saying how
 * many characters were left out, those the sandbox left out already (its note, which the cut takes in) counted too.
 */
function fitted(logs: string, maxBytes: number): string {
  if (Buffer.byteLength(logs) <= maxBytes) return logs;
  const half = Math.max(0, Math.floor((maxBytes - Buffer.byteLength(truncationNote(logs.length))) / 2));
  let start = prefixOfBytes(logs, half).length;
  let end = logs.length - suffixOfBytes(logs, half).length;
  let before = 0;
  const earlier = TRUNCATION_NOTE.exec(logs);
  if (earlier && earlier.index < end && earlier.index + earlier[0].length > start) {
    start = Math.min(start, earlier.index);
    end = Math.max(end, earlier.index + earlier[0].length);
    before = Number(earlier[1]!.replaceAll(',', '')) - codePoints(earlier[0], 0, earlier[0].length);
  }
  // Characters as the sandbox counts them (Python's: code points).
  const dropped = before + codePoints(logs, start, end);
  return `${logs.slice(0, start)}${truncationNote(dropped)}${logs.slice(end)}`;
}

/** The longest suffix of `text` of at most `max` UTF-8 bytes that cuts no character. */
function suffixOfBytes(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text;
  let bytes = 0;
  let start = text.length;
  for (const ch of [...text].reverse()) {
    bytes += Buffer.byteLength(ch);
    if (bytes > max) break;
    start -= ch.length;
  }
  return text.slice(start);
}
