import { appendFileSync } from 'node:fs';
import type { Message } from '../../src/domain/objects.ts';
import type { CodeInterpreterToolCallDetails, ToolCallDetails } from '../../src/domain/runs.ts';
import {
  type ServerTool,
  type ServerToolCall,
  type ToolContext,
  ToolError,
  type ToolResult,
} from '../../src/tools/tool.ts';
import type { ToolCallsReply, UpstreamUsage } from './fake-upstream.ts';

/**
 * A test-only server-side tool: `add(a, b)`, standing in for a real one (it is enabled by `{type: 'code_interpreter'}`
 * and shapes its calls as code_interpreter calls). It records every execution, in this process (`executions`) and,
 * for a tool in a spawned server, as JSON lines in a log file (`logFile`, env TEST_TOOL_LOG in tool-server.ts).
 */

export interface AddToolOptions {
  /**
   * How long each execution waits before it answers (ending early, with the signal's reason, when the signal
   * aborts): one value for every call, or one per execution in this process's order (the last one repeating).
   */
  delayMs?: number | readonly number[];
  /** Every execution throws a plain Error (not a ToolError): the run then fails with `server_error`. */
  fail?: boolean;
  /** A file to append `{"event":"start"|"finish"|"abort","callId":…}` lines to, one per event. */
  logFile?: string;
  /**
   * What the tool adds to the run's answer (ServerTool.finishMessage): each `{{sum}}` in the answer's text becomes
   * the sum of the run's last add call, as a citing tool turns its markers into annotations.
   */
  fillSums?: boolean;
}

export interface AddExecution {
  callId: string;
  /** The parsed arguments; null when they were not two numbers. */
  a: number | null;
  b: number | null;
  started: boolean;
  /** It returned its result. */
  finished: boolean;
  /** The execution's signal fired while it ran. */
  aborted: boolean;
  /** What it threw, if it threw. */
  error?: string;
}

export type AddTool = ServerTool & {
  readonly executions: AddExecution[];
  /** Resolves once `condition` holds (checked at every change of `executions`); rejects after `timeoutMs`. */
  waitFor(condition: (executions: readonly AddExecution[]) => boolean, timeoutMs?: number): Promise<void>;
};

export const ADD_FUNCTION = {
  name: 'add',
  description: 'Adds two numbers.',
  parameters: {
    type: 'object',
    properties: { a: { type: 'number' }, b: { type: 'number' } },
    required: ['a', 'b'],
  },
};

export const ADD_ERROR = 'add needs numbers a and b';

/** The arguments as two numbers, or undefined when they are not JSON of that shape. */
export function parseAddArguments(text: string): { a: number; b: number } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object') return undefined;
  const { a, b } = value as Record<string, unknown>;
  if (typeof a !== 'number' || typeof b !== 'number' || !Number.isFinite(a) || !Number.isFinite(b)) return undefined;
  return { a, b };
}

/** `'2 + 3'`; the raw arguments when they are not two numbers (describe must not throw). */
function inputOf(call: ServerToolCall): string {
  const args = parseAddArguments(call.arguments);
  return args ? `${args.a} + ${args.b}` : call.arguments;
}

/** Waits `ms`, or rejects with the signal's reason as soon as it aborts. */
function wait(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  if (ms <= 0) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export function addTool(options: AddToolOptions = {}): AddTool {
  const executions: AddExecution[] = [];
  const waiters = new Set<() => void>();
  const changed = () => {
    for (const waiter of [...waiters]) waiter();
  };
  const log = (event: 'start' | 'finish' | 'abort', callId: string) => {
    if (options.logFile !== undefined) appendFileSync(options.logFile, `${JSON.stringify({ event, callId })}\n`);
  };
  const delayFor = (n: number): number => {
    const { delayMs = 0 } = options;
    if (typeof delayMs === 'number') return delayMs;
    return delayMs[Math.min(n, delayMs.length - 1)] ?? 0;
  };

  const fillSums = (message: Message, calls: readonly ToolCallDetails[]): Message => {
    const last = calls.at(-1);
    const output = last?.type === 'code_interpreter' ? last.code_interpreter.outputs[0] : undefined;
    const sum = output?.type === 'logs' ? output.logs : '?';
    return {
      ...message,
      content: message.content.map((part) =>
        part.type === 'text'
          ? { ...part, text: { ...part.text, value: part.text.value.replaceAll('{{sum}}', sum) } }
          : part,
      ),
    };
  };

  return {
    type: 'code_interpreter',
    function: ADD_FUNCTION,
    executions,
    ...(options.fillSums ? { finishMessage: fillSums } : {}),

    describe(call: ServerToolCall): CodeInterpreterToolCallDetails {
      return { id: call.id, type: 'code_interpreter', code_interpreter: { input: inputOf(call), outputs: [] } };
    },

    async execute(call: ServerToolCall, context: ToolContext): Promise<ToolResult> {
      const args = parseAddArguments(call.arguments);
      const execution: AddExecution = {
        callId: call.id,
        a: args?.a ?? null,
        b: args?.b ?? null,
        started: true,
        finished: false,
        aborted: false,
      };
      const delay = delayFor(executions.length);
      executions.push(execution);
      log('start', call.id);
      const onAbort = () => {
        execution.aborted = true;
        log('abort', call.id);
        changed();
      };
      if (context.signal.aborted) onAbort();
      else context.signal.addEventListener('abort', onAbort, { once: true });
      changed();
      try {
        await wait(delay, context.signal);
        if (options.fail) throw new Error('add exploded');
        if (!args) throw new ToolError(ADD_ERROR);
        const sum = String(args.a + args.b);
        context.progress({ code_interpreter: { outputs: [{ index: 0, type: 'logs', logs: sum }] } });
        const details: CodeInterpreterToolCallDetails = {
          id: call.id,
          type: 'code_interpreter',
          code_interpreter: { input: inputOf(call), outputs: [{ type: 'logs', logs: sum }] },
        };
        execution.finished = true;
        log('finish', call.id);
        return { details, output: sum };
      } catch (error) {
        execution.error = error instanceof Error ? error.message : String(error);
        throw error;
      } finally {
        context.signal.removeEventListener('abort', onAbort);
        changed();
      }
    },

    waitFor(condition, timeoutMs = 5000) {
      if (condition(executions)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!condition(executions)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(`timed out after ${timeoutMs} ms waiting for add executions: ${JSON.stringify(executions)}`),
          );
        }, timeoutMs);
        waiters.add(check);
      });
    },
  };
}

/** The lines a tool with `logFile` wrote, parsed. */
export interface ToolLogEntry {
  event: 'start' | 'finish' | 'abort';
  callId: string;
}

export function parseToolLog(text: string): ToolLogEntry[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as ToolLogEntry);
}

/** The fake upstream's reply calling `add(a, b)` once, with the arguments exactly `{"a":<a>,"b":<b>}`. */
export function addCall(a: number, b: number, usage?: UpstreamUsage | null): ToolCallsReply {
  return {
    toolCalls: [{ name: 'add', arguments: JSON.stringify({ a, b }) }],
    ...(usage === undefined ? {} : { usage }),
  };
}
