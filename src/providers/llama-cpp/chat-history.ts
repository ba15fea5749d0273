/**
 * Chat Completions messages → node-llama-cpp's chat history. Pure; type-only imports, so loading this module never
 * loads node-llama-cpp.
 *
 * The model's chat template (through node-llama-cpp's chat wrapper) decides how the history is rendered; this only
 * regroups it. Chat Completions spreads a tool round over an assistant message with `tool_calls` and one `tool`
 * message per call; node-llama-cpp wants one model response holding each call together with its result. So an
 * assistant message that follows tool results continues the model response they belong to, and a request that
 * ends with tool results ends with that response open: the model *continues* it, as it was trained to. Any other
 * assistant message starts a response of its own, and a request that ends with one gets an empty response to
 * generate the next reply into (LlamaChat would otherwise continue the old one).
 */
import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelResponse } from 'node-llama-cpp';
import { type ChatMessage, textWithImageNotes } from '../provider.ts';

export function toChatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  const calls = new Map<string, ChatModelFunctionCall>();
  let response: ChatModelResponse | undefined;
  let previous: ChatMessage['role'] | undefined;
  const modelResponse = () => {
    if (!response) {
      response = { type: 'model', response: [] };
      history.push(response);
    }
    return response;
  };

  for (const message of messages) {
    switch (message.role) {
      case 'system':
        response = undefined;
        history.push({ type: 'system', text: message.content });
        break;
      case 'user':
        response = undefined;
        history.push({ type: 'user', text: userText(message.content) });
        break;
      case 'assistant': {
        if (previous !== 'tool') response = undefined;
        const model = modelResponse();
        if (message.content !== null && message.content !== '') model.response.push(message.content);
        message.tool_calls?.forEach((call, i) => {
          const item: ChatModelFunctionCall = {
            type: 'functionCall',
            name: call.function.name,
            params: parseJson(call.function.arguments),
            result: undefined,
            startsNewChunk: i === 0,
          };
          calls.set(call.id, item);
          model.response.push(item);
        });
        break;
      }
      case 'tool': {
        const call = calls.get(message.tool_call_id);
        if (call) call.result = parseJson(message.content);
        else modelResponse().response.push(message.content);
        break;
      }
    }
    previous = message.role;
  }
  if (previous === 'assistant') history.push({ type: 'model', response: [] });
  return history;
}

/** Arguments and tool outputs are JSON more often than not: the model sees them as JSON, else as the string. */
function parseJson(text: string): unknown {
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The embedded backend reads no images. */
const userText = textWithImageNotes;
