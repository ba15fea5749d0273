import { z } from 'zod';
import {
  assistantTool,
  integer,
  metadata,
  nullAsAbsent,
  reasoningEffort,
  responseFormat,
  temperature,
  toolResources,
  topP,
} from './common.ts';
import { createMessageRequest } from './messages.ts';
import { createThreadRequest } from './threads.ts';

/**
 * A run's token budgets. The schema sets both a minimum of 256, and OpenAI held `max_prompt_tokens` to it; it took a
 * `max_completion_tokens` of 16 (ruby-openai's README example, recorded from api.openai.com with assistants=v2 in
 * its spec/fixtures/cassettes/runs_create.yml): a short answer's bound.
 */
const promptBudget = integer().min(256).nullable().optional();
const completionBudget = integer().min(1).nullable().optional();

const truncationStrategy = z
  .strictObject({
    type: z.enum(['auto', 'last_messages']),
    last_messages: integer().min(1).nullable().optional(),
  })
  .superRefine((value, ctx) => {
    if (value.type === 'last_messages' && (value.last_messages === undefined || value.last_messages === null))
      ctx.addIssue({
        code: 'custom',
        path: ['last_messages'],
        message: "Missing required parameter: 'truncation_strategy.last_messages'.",
        params: { code: 'missing_required_parameter' },
      });
  })
  .nullable()
  .optional();

/**
 * A built-in tool named as the tool choice. `AssistantsNamedToolChoice` declares `function` for every `type`; a
 * built-in tool's is dropped. go-openai's `ToolChoice` always sends one
 * (`{"type":"file_search","function":{"name":""}}`), and the Python SDK's dump a null one.
 */
function namedBuiltIn<T extends 'code_interpreter' | 'file_search'>(type: T) {
  return z
    .strictObject(nullAsAbsent({ type: z.literal(type), function: z.strictObject({ name: z.string() }).optional() }))
    .transform(() => ({ type }));
}

const toolChoice = z
  .union([
    z.enum(['none', 'auto', 'required']),
    z.discriminatedUnion('type', [
      z.strictObject(
        nullAsAbsent({ type: z.literal('function'), function: z.strictObject({ name: z.string().min(1) }) }),
      ),
      namedBuiltIn('code_interpreter'),
      namedBuiltIn('file_search'),
    ]),
  ])
  .nullable()
  .optional();

/**
 * The settings a run takes on top of its assistant's, shared by both ways of creating a run. Its `tools` may be as
 * many as an assistant's (128), not the spec's 20: Semantic Kernel sends every function of its kernel with each run,
 * and Azure's agents took 30 and more.
 */
const runSettings = {
  assistant_id: z.string().min(1),
  model: z.string().min(1).nullable().optional(),
  instructions: z.string().max(256_000).nullable().optional(),
  tools: z.array(assistantTool).max(128).nullable().optional(),
  metadata: metadata.optional(),
  temperature: temperature.optional(),
  top_p: topP.optional(),
  stream: z.boolean().nullable().optional(),
  max_prompt_tokens: promptBudget,
  max_completion_tokens: completionBudget,
  truncation_strategy: truncationStrategy,
  tool_choice: toolChoice,
  parallel_tool_calls: z.boolean().optional(),
  response_format: responseFormat.optional(),
};

/** `CreateRunRequest` */
export const createRunRequest = z.strictObject(
  nullAsAbsent({
    ...runSettings,
    reasoning_effort: reasoningEffort.optional(),
    additional_instructions: z.string().max(256_000).nullable().optional(),
    additional_messages: z.array(createMessageRequest).nullable().optional(),
  }),
);

/** `CreateThreadAndRunRequest` */
export const createThreadAndRunRequest = z.strictObject(
  nullAsAbsent({ ...runSettings, thread: createThreadRequest.optional(), tool_resources: toolResources.optional() }),
);

/** `ModifyRunRequest` */
export const modifyRunRequest = z.strictObject(nullAsAbsent({ metadata: metadata.optional() }));

/** `SubmitToolOutputsRunRequest` */
export const submitToolOutputsRequest = z.strictObject(
  nullAsAbsent({
    tool_outputs: z.array(
      z.strictObject(nullAsAbsent({ tool_call_id: z.string().min(1), output: z.string().optional() })),
    ),
    stream: z.boolean().nullable().optional(),
  }),
);
