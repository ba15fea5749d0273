import type { ChatMessage, ChatTool } from '../provider.ts';

/**
 * Tool calls in a request's history whose arguments are not a JSON object: cut off by a length limit, written wrong
 * by the model, or raw code for a tool that takes it (llama.cpp's Python tool). OpenAI takes them as they are, and the
 * model then sees what it wrote; servers that parse the history refuse them (vLLM from 0.24: 400 "Unterminated
 * string starting at…"; llama.cpp's server, for templates that want objects: 500 "Failed to parse tool call arguments
 * as JSON"), and are sent them as objects once they have (LearntShape).
 */

/** Whether `text` is a JSON object. */
function isJsonObject(text: string): boolean {
  if (!text.trimStart().startsWith('{')) return false;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}

/** Whether some tool call in `messages` has arguments that are not a JSON object. */
export function hasLooseArguments(messages: ChatMessage[]): boolean {
  return messages.some(
    (m) => m.role === 'assistant' && (m.tool_calls?.some((c) => !isJsonObject(c.function.arguments)) ?? false),
  );
}

/** How a server that parses the history says it could not: a JSON parser's words, or llama.cpp's. */
export const REFUSES_LOOSE_ARGUMENTS =
  /tool call arguments|unterminated string|expecting (?:value|property name|',' delimiter)|extra data|invalid control character|parse error|json/i;

/**
 * A call's arguments as a JSON object: as they are when they are one; otherwise, for a tool whose parameters are one
 * string (code_interpreter's `code`), that string; otherwise none (`{}`).
 */
export function objectArguments(args: string, tool: ChatTool | undefined): string {
  if (isJsonObject(args)) return args;
  const properties = (tool?.function.parameters as { properties?: Record<string, { type?: unknown }> } | undefined)
    ?.properties;
  const names = Object.keys(properties ?? {});
  if (names.length === 1 && properties![names[0]!]!.type === 'string') return JSON.stringify({ [names[0]!]: args });
  return '{}';
}
