import type { ChatWrapper, ChatWrapperGeneratedContextState, LlamaText } from 'node-llama-cpp';
import type { NodeLlamaCpp } from './llama-runtime.ts';

/**
 * A chat wrapper that leaves the model no way but a function call, for a `tool_choice` that forces one (`required`,
 * or a named function, in which case only that function is offered). node-llama-cpp has no option for it: the model
 * decides between answering and calling, and an API user is promised a call. Its chat wrappers can say, though, how
 * each response must begin, and this one says "a function call" through their own mechanism:
 *
 * - a template with prefix triggers (how a response may begin, e.g. gpt-oss's channels) loses the triggers of a
 *   text answer, and a response that matches no trigger becomes a call (`noPrefixTrigger` of type `functionCall`).
 *   Thoughts may still come first, where the template has them;
 * - any other template gets the same `noPrefixTrigger` with no triggers: the function-calling prefix is put into the
 *   context, and the model generates only a function's name (a grammar of the offered names), then its arguments;
 * - a template whose responses begin in function-calling mode already (functionary) may no longer leave it.
 *
 * The prompt renders as the wrapped template renders it (the same tokens, so the KV cache and the token counts
 * hold); only what the model may generate next changes.
 */
export function forcingFunctionCall(wrapper: ChatWrapper, lib: NodeLlamaCpp): ChatWrapper {
  // Everything else (settings, how calls and results render) is the wrapper's own.
  const forcing: ChatWrapper = Object.create(wrapper);
  forcing.generateContextState = (options) => forceCall(wrapper.generateContextState(options), lib);
  return forcing;
}

function forceCall(state: ChatWrapperGeneratedContextState, lib: NodeLlamaCpp): ChatWrapperGeneratedContextState {
  if (state.functionCall || state.ignoreStartText) {
    const { contextText, stopGenerationTriggers, ignoreStartText } = state;
    return {
      contextText,
      stopGenerationTriggers,
      ...(ignoreStartText ? { ignoreStartText } : {}),
      functionCall: { initiallyEngaged: true, disengageInitiallyEngaged: [] },
    };
  }
  const { functionCall: _, ignoreStartText: __, ...triggered } = state;
  const prefixTriggers = (triggered.prefixTriggers ?? []).filter((trigger) => trigger.type !== 'response');
  let inject: LlamaText = lib.LlamaText([]);
  if (triggered.noPrefixTrigger?.type === 'functionCall') inject = triggered.noPrefixTrigger.inject;
  else {
    // What the template's own function-call trigger puts into the context before the function-calling prefix.
    const call = prefixTriggers.find((trigger) => trigger.type === 'functionCall');
    if (call)
      inject = lib.LlamaText([call.replaceTrigger === false ? (call.triggers[0] ?? '') : '', call.inject ?? '']);
  }
  return { ...triggered, prefixTriggers, noPrefixTrigger: { type: 'functionCall', inject } };
}
