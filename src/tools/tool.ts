import type { FunctionDefinition, Message, MessageContent, TextAnnotation } from '../domain/objects.ts';
import type { ToolCallDelta } from '../domain/run-events.ts';
import type { Run, RunErrorCode, ServerToolType, ToolCallDetails } from '../domain/runs.ts';
import type { Scope } from '../storage/store.ts';

/**
 * What a server-side tool is: a tool the server executes itself, inside the run (file_search, code_interpreter),
 * as opposed to a `function`, which the client executes while the run waits in `requires_action`.
 *
 * The executor (runs/run-executor.ts) knows this interface, never a tool: the model is offered each enabled tool's
 * `function`; a call of it becomes an entry of the turn's tool_calls step, shaped by `describe`, which the executor
 * streams and stores; `execute` runs it and returns its final details and the text the model reads. A tool is
 * added by writing its folder under src/tools and registering it in the composition root (main.ts).
 */
export interface ServerTool {
  /** The run tool that enables it (`{type: 'code_interpreter'}` in `run.tools`); also the type of its call details. */
  readonly type: ServerToolType;
  /** The function the model calls, offered to it while the run's tools include `type`. */
  readonly function: FunctionDefinition;
  /**
   * The function's name when a function of the run's client already has `function.name` (e.g. an assistant with a
   * `python` function of its own and code_interpreter). Without one, such a run is refused.
   */
  readonly alternateName?: string;
  /**
   * For tools whose details have an `input` the client watches being written (code_interpreter's code): a reader of
   * one call's arguments (partial JSON), given each fragment as the model writes it, returning what the fragment
   * adds to the input ('' while there is nothing new, e.g. an escape cut by a chunk). The input only ever grows; the
   * model turn streams each increment. A reader keeps only what it cannot read yet, so a long input costs one pass
   * over it. Optional: without it the call is shown once, whole, when it executes.
   */
  inputReader?(): (fragment: string) => string;
  /**
   * A note for the model about the tool (what it can do here, what files it has), added to the run's instructions
   * for every model turn while the tool is enabled. Optional.
   */
  instructions?(context: Pick<ToolContext, 'scope' | 'run'>): Promise<string | undefined>;
  /**
   * Content parts the run's answer shows before its text, given this tool's calls since the run's previous message
   * (e.g. the images code_interpreter cells drew, as `image_file` parts). Streamed as the answer opens. Optional.
   */
  answerParts?(calls: readonly ToolCallDetails[]): MessageContent[];
  /**
   * The call's details before it runs, from the model's complete arguments and the run's tools (e.g. a
   * code_interpreter call's `input` with no outputs yet). Streamed as the call's first delta, and stored while the
   * call executes; kept if it ends without a result (an error output, or its run ended first). Every field the
   * finished details have is there, empty where it has no value yet: typed clients require them.
   */
  describe(call: ServerToolCall, run: Pick<Run, 'tools'>): ToolCallDetails;
  /**
   * Executes the call. Must stop promptly once `context.signal` aborts (cancel, expiry, lease lost, shutdown) and
   * may then throw anything. Throw ToolError to give the model an error output instead of failing the run,
   * ToolRunFailure to fail the run with a `last_error` of the tool's choosing; any other error fails the run with
   * `server_error`.
   */
  execute(call: ServerToolCall, context: ToolContext): Promise<ToolResult>;
  /**
   * The run's execution in this process starts, before its first model turn: once per execution of a run that has
   * the tool. The run does not wait for it (the model is asked meanwhile), and its failure is only logged. Optional.
   */
  executionStarted?(context: Pick<ToolContext, 'scope' | 'run'>): Promise<void>;
  /**
   * The run's execution in this process has stopped (the run ended or paused, or was handed back): what the tool
   * kept for it between its calls is let go. Called once per execution, whatever happened; must not throw.
   */
  executionEnded?(run: Run): void;
  /**
   * What the tool adds to the run's answer, given every call of it in the run so far: the answer's message before it
   * is stored and completed. Optional. It is not streamed: a change of the text here makes the stored text differ
   * from the streamed one (annotations belong in `annotator`, which is).
   */
  finishMessage?(message: Message, calls: readonly ToolCallDetails[]): Message;
  /**
   * Annotations of the run's answer (e.g. citations of this tool's results), found as the answer streams. Called once
   * per answer with every call of the tool in the run so far (none, in a run that made no call of it: a tool whose
   * earlier runs on the thread left something to point at may still annotate); the annotator it returns, if any, is
   * given the answer's text after each chunk. Each annotation is streamed with the chunk that completes it, in the
   * `thread.message.delta` carrying that chunk, and stored with the message, so a stream and the stored message show
   * the same text and annotations. Optional.
   */
  annotator?(calls: readonly ToolCallDetails[], context: Pick<ToolContext, 'scope' | 'run'>): TextAnnotator | undefined;
}

/**
 * Finds a tool's annotations in the run's answer as it streams (ServerTool.annotator). Its indices are into the
 * whole text and count code points (as upstream's, computed in Python).
 */
export interface TextAnnotator {
  /**
   * Takes the answer's next piece: the pieces written so far, in order, are its text. An annotator keeps only the
   * end of the text that may still become an annotation (a link or a marker being written), never all of it: V8
   * copies a string built by `+=` whole to search or slice it, which for every piece of a long answer would grow as
   * the square of its length (a 50,000-token answer held the event loop for 31 s that way: bench/README.md).
   */
  write(piece: string): void;
  /**
   * The annotations that end within the first `upTo` UTF-16 units of the text and were not returned before, in
   * order. `final` is true when those units are the whole answer: an annotation still open at its end (a link not
   * followed by anything) is complete then.
   */
  annotate(upTo: number, final?: boolean): TextAnnotation[];
  /**
   * Where (a UTF-16 index into the text) text that may still become an annotation begins, e.g. a link being written
   * (none when `final`: the text is whole), or an annotation whose target is still being made (a file being saved),
   * or undefined. The stream holds the text back from there until it is complete and its target made, so the
   * annotation goes out with all of its text and points at something that exists.
   */
  heldFrom?(final?: boolean): number | undefined;
  /**
   * While a target heldFrom holds text for is being made, the promise of its end (`allMade`); otherwise undefined.
   */
  ready?(): Promise<void> | undefined;
  /**
   * Completes what the annotations found point at (e.g. the files still being made) before the answer is stored.
   * Returns the file ids it could not make, whose annotations the stored answer leaves out.
   */
  settle?(signal: AbortSignal): Promise<readonly string[]>;
}

export interface ServerToolCall {
  /** The call's id (`call_…`), the same in its step details, its deltas and the model's tool round. */
  id: string;
  /** The arguments as the model wrote them: JSON text, not validated. */
  arguments: string;
}

export interface ToolContext {
  scope: Scope;
  run: Run;
  signal: AbortSignal;
  /**
   * This tool's calls earlier in the run, in order, with their details as stored: this call is the
   * `calls.length`-th (from 0). Stable across a crash and resume, since earlier calls are committed.
   */
  calls: readonly ToolCallDetails[];
  /**
   * About how many tokens of the model's context window the run leaves free for this call's output: the window, less
   * the prompt and completion of the turn that made the call and the outputs of the calls before it in that turn.
   * A tool whose output can be large sizes it to fit. Undefined when the run's model has no backend.
   */
  contextTokensLeft: number | undefined;
  /**
   * Streams progress as a delta of the call's details, in the SDK's accumulation rules (strings are appended,
   * arrays of objects merged by `index`); the executor adds the call's `index` and `type`. E.g.
   * `{ code_interpreter: { outputs: [{ index: 0, type: 'logs', logs: '5' }] } }`.
   */
  progress(delta: ToolCallDeltaBody): void;
}

/** A call delta without its `index`, `id` and `type`, which the executor adds (one shape per tool type). */
export type ToolCallDeltaBody = ToolCallDelta extends infer D
  ? D extends ToolCallDelta
    ? Omit<D, 'index' | 'id' | 'type'>
    : never
  : never;

export interface ToolResult {
  /** The call's final details, as stored and served. */
  details: ToolCallDetails;
  /** What the model reads as the call's result. */
  output: string;
}

/** A failure the model should see (as the call's output) and may recover from, rather than one that fails the run. */
export class ToolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ToolError';
  }
}

/**
 * A failure that ends the run, with this `last_error` (e.g. `invalid_prompt` for a resource the run names that is
 * gone), rather than an output the model could recover from (ToolError) or the generic `server_error`.
 */
export class ToolRunFailure extends Error {
  readonly code: RunErrorCode;

  constructor(code: RunErrorCode, message: string) {
    super(message);
    this.name = 'ToolRunFailure';
    this.code = code;
  }
}

/** The server-side tools this process offers, by the run tool type that enables each. */
export class ToolRegistry {
  private readonly byType = new Map<ServerToolType, ServerTool>();

  constructor(tools: readonly ServerTool[] = []) {
    for (const tool of tools) {
      if (this.byType.has(tool.type)) throw new Error(`Two server-side tools for '${tool.type}'.`);
      this.byType.set(tool.type, tool);
    }
  }

  /**
   * The tools a run enables, by the function name the model calls: the tool's own, or its alternate name when a
   * function of the run's client has that one (the run service refuses a run where both are taken).
   */
  forRun(run: Pick<Run, 'tools'>): Map<string, ServerTool> {
    const clientNames = new Set(run.tools.flatMap((t) => (t.type === 'function' ? [t.function.name] : [])));
    const enabled = new Map<string, ServerTool>();
    for (const t of run.tools) {
      if (t.type === 'function') continue;
      const tool = this.byType.get(t.type);
      if (!tool) continue;
      const name =
        clientNames.has(tool.function.name) && tool.alternateName !== undefined
          ? tool.alternateName
          : tool.function.name;
      enabled.set(name, tool);
    }
    return enabled;
  }

  /** Whether this process has the tool of this type. */
  has(type: ServerToolType): boolean {
    return this.byType.has(type);
  }
}

/** What TextAnnotator.ready gives for the targets being made: the promise of all of their ends, or none. */
export function allMade(making: readonly Promise<unknown>[]): Promise<void> | undefined {
  return making.length === 0 ? undefined : Promise.all(making).then(() => {});
}

/** A call's output gets at most half of what the context window has left: the other half is for the answer and what follows. */
const CONTEXT_SHARE = 0.5;
/**
 * …but never less than this: a context window filled by a long thread is freed by truncating the thread's middle
 * messages (runs/context.ts), and output the model cannot read is of no use.
 */
const MIN_RESULT_TOKENS = 500;

/**
 * The token budget of a server-side call's output (file_search's results, code_interpreter's logs), given what the
 * context window has left (ToolContext.contextTokensLeft) and the tool's own cap.
 */
export function resultTokenBudget(contextTokensLeft: number | undefined, maxResultTokens: number): number {
  if (contextTokensLeft === undefined) return maxResultTokens;
  const share = Math.floor(contextTokensLeft * CONTEXT_SHARE);
  return Math.min(maxResultTokens, Math.max(MIN_RESULT_TOKENS, share));
}
