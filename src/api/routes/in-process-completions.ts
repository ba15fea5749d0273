import { Readable } from 'node:stream';
import type { FastifyBaseLogger, FastifyReply } from 'fastify';
import { z } from 'zod';
import { unixSeconds } from '../../domain/clock.ts';
import { ApiError, invalidRequest, serverError } from '../../domain/errors.ts';
import { newId } from '../../domain/ids.ts';
import {
  type ChatContentPart,
  type ChatEvent,
  type ChatMessage,
  type ChatRequest,
  type FinishReason,
  type ModelProvider,
  ProviderError,
} from '../../providers/provider.ts';
import { clientGone } from '../client-gone.ts';
import {
  functionTool,
  integer,
  nullAsAbsent,
  reasoningEffort,
  responseFormat,
  temperature,
  topP,
} from '../schemas/common.ts';
import { DATA_DONE, dataFrame, SSE_HEADERS } from '../sse.ts';
import { parseBody } from '../validation.ts';

/**
 * `POST /v1/chat/completions` for a model that runs inside assistd (a GGUF file), which has no endpoint to pass the
 * request on to: the request is read into the backends' ChatRequest, the one the runs' model turns use, and the
 * backend's events are written back as OpenAI's `chat.completion`, or its `chat.completion.chunk` stream.
 */

const textPart = z.strictObject({ type: z.literal('text'), text: z.string() });
const refusalPart = z.strictObject({ type: z.literal('refusal'), refusal: z.string() });
const imagePart = z.strictObject({
  type: z.literal('image_url'),
  image_url: z.strictObject(nullAsAbsent({ url: z.string(), detail: z.enum(['auto', 'low', 'high']).optional() })),
});
const textContent = z.union([z.string(), z.array(textPart).min(1)]);

const instructions = (role: 'system' | 'developer') =>
  z.strictObject(nullAsAbsent({ role: z.literal(role), content: textContent, name: z.string().optional() }));

const message = z.discriminatedUnion('role', [
  instructions('system'),
  instructions('developer'),
  z.strictObject(
    nullAsAbsent({
      role: z.literal('user'),
      content: z.union([z.string(), z.array(z.discriminatedUnion('type', [textPart, imagePart])).min(1)]),
      name: z.string().optional(),
    }),
  ),
  z.strictObject(
    nullAsAbsent({
      role: z.literal('assistant'),
      content: z.union([z.string(), z.array(z.discriminatedUnion('type', [textPart, refusalPart]))]).optional(),
      refusal: z.string().optional(),
      name: z.string().optional(),
      tool_calls: z
        .array(
          z.strictObject({
            id: z.string(),
            type: z.literal('function'),
            function: z.strictObject({ name: z.string(), arguments: z.string() }),
          }),
        )
        .optional(),
    }),
  ),
  z.strictObject({ role: z.literal('tool'), tool_call_id: z.string(), content: textContent }),
]);

/** The fields this backend cannot honour, with the values that ask for nothing (and are taken). */
const UNSUPPORTED: Record<string, (value: unknown) => boolean> = {
  n: (value) => value === 1,
  stop: (value) => Array.isArray(value) && value.length === 0,
  logprobs: (value) => value === false,
  top_logprobs: (value) => value === 0,
  logit_bias: (value) => typeof value === 'object' && value !== null && Object.keys(value).length === 0,
  presence_penalty: (value) => value === 0,
  frequency_penalty: (value) => value === 0,
  modalities: (value) => Array.isArray(value) && value.length === 1 && value[0] === 'text',
  audio: () => false,
  prediction: () => false,
  functions: () => false,
  function_call: () => false,
  web_search_options: () => false,
};

/**
 * What changes the answer, and this backend cannot do, is refused (UNSUPPORTED) rather than ignored; what only
 * files or bills the answer upstream (`user`, `store`, `metadata`, `service_tier`) and `seed` (best effort upstream
 * too) are taken and change nothing.
 */
const chatCompletionRequest = z.strictObject(
  nullAsAbsent({
    model: z.string(),
    messages: z.array(message).min(1),
    tools: z.array(functionTool).optional(),
    tool_choice: z
      .union([
        z.enum(['none', 'auto', 'required']),
        z.strictObject({ type: z.literal('function'), function: z.strictObject({ name: z.string() }) }),
      ])
      .optional(),
    parallel_tool_calls: z.boolean().optional(),
    temperature: temperature.optional(),
    top_p: topP.optional(),
    max_tokens: integer().min(1).optional(),
    max_completion_tokens: integer().min(1).optional(),
    response_format: responseFormat.optional(),
    reasoning_effort: reasoningEffort.optional(),
    stream: z.boolean().optional(),
    stream_options: z
      .strictObject(
        nullAsAbsent({ include_usage: z.boolean().optional(), include_obfuscation: z.boolean().optional() }),
      )
      .optional(),
    seed: integer().optional(),
    user: z.string().optional(),
    store: z.boolean().optional(),
    metadata: z.record(z.string(), z.string()).optional(),
    service_tier: z.string().optional(),
    // Read to be refused by name (UNSUPPORTED), unless they ask for nothing.
    ...Object.fromEntries(Object.keys(UNSUPPORTED).map((name) => [name, z.unknown().optional()])),
  }),
);

type ChatCompletionRequest = z.output<typeof chatCompletionRequest>;

/** Answers a chat completion request with `provider`; `signal` is aborted once the client's answer is done with. */
export async function completeInProcess(
  provider: ModelProvider,
  body: unknown,
  reply: FastifyReply,
  signal: AbortSignal,
) {
  const request = parseBody(chatCompletionRequest, body);
  for (const [name, asksNothing] of Object.entries(UNSUPPORTED)) {
    const value = (request as Record<string, unknown>)[name];
    if (value !== undefined && !asksNothing(value))
      throw new ApiError(
        400,
        `Unsupported parameter: '${name}' is not supported by the model '${request.model}', which runs inside assistd (a GGUF file).`,
        { param: name, code: 'unsupported_parameter' },
      );
  }
  // A call the model is told to make but cannot, as upstream refuses it (the model would answer in text instead).
  const toolNames = new Set((request.tools ?? []).map((tool) => tool.function.name));
  const choice = request.tool_choice;
  if (choice === 'required' && toolNames.size === 0)
    throw invalidRequest(
      "Invalid 'tool_choice': 'required' needs at least one tool in 'tools'.",
      'tool_choice',
      'invalid_value',
    );
  if (typeof choice === 'object' && !toolNames.has(choice.function.name))
    throw invalidRequest(
      `Invalid 'tool_choice': no function named '${choice.function.name}' in 'tools'.`,
      'tool_choice',
      'invalid_value',
    );
  const events = provider.stream(toChatRequest(request), signal)[Symbol.asyncIterator]();
  // The first event is awaited before anything is sent: a request the backend refuses is an error status.
  const first = await events.next().catch((error: unknown) => asApiError(signal.aborted ? clientGone() : error));
  const meta = { id: newId('chatCompletion'), created: unixSeconds(), model: request.model, signal, log: reply.log };
  if (!request.stream) return completion(first, events, meta);
  const chunks = streamedChunks(first, events, meta, request.stream_options?.include_usage === true);
  return reply.headers(SSE_HEADERS).send(Readable.from(chunks, { objectMode: false }));
}

function toChatRequest(request: ChatCompletionRequest): ChatRequest {
  const max = request.max_completion_tokens ?? request.max_tokens;
  const format = request.response_format;
  return {
    model: request.model,
    messages: request.messages.map(toChatMessage),
    ...(request.tools === undefined ? {} : { tools: request.tools }),
    ...(request.tool_choice === undefined ? {} : { tool_choice: request.tool_choice }),
    ...(request.parallel_tool_calls === undefined ? {} : { parallel_tool_calls: request.parallel_tool_calls }),
    ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
    ...(request.top_p === undefined ? {} : { top_p: request.top_p }),
    ...(max === undefined ? {} : { max_tokens: max }),
    ...(format === undefined || format === null || format === 'auto' ? {} : { response_format: format }),
    ...(request.reasoning_effort ? { reasoning_effort: request.reasoning_effort } : {}),
  };
}

type RequestMessage = ChatCompletionRequest['messages'][number];

function toChatMessage(message: RequestMessage): ChatMessage {
  switch (message.role) {
    case 'system':
    case 'developer':
      return { role: 'system', content: joined(message.content) };
    case 'tool':
      return { role: 'tool', tool_call_id: message.tool_call_id, content: joined(message.content) };
    case 'user':
      return {
        role: 'user',
        content:
          typeof message.content === 'string'
            ? message.content
            : message.content.map(
                (part): ChatContentPart =>
                  part.type === 'text' ? part : { type: 'image_url', image_url: withoutUndefined(part.image_url) },
              ),
      };
    case 'assistant': {
      const content = message.content;
      const text =
        content === undefined
          ? (message.refusal ?? null)
          : typeof content === 'string'
            ? content
            : content.map((part) => (part.type === 'text' ? part.text : part.refusal)).join('');
      return {
        role: 'assistant',
        content: text,
        ...(message.tool_calls?.length ? { tool_calls: message.tool_calls } : {}),
      };
    }
  }
}

function joined(content: string | Array<{ text: string }>): string {
  return typeof content === 'string' ? content : content.map((part) => part.text).join('');
}

function withoutUndefined(url: { url: string; detail?: 'auto' | 'low' | 'high' | undefined }) {
  return url.detail === undefined ? { url: url.url } : { url: url.url, detail: url.detail };
}

interface Meta {
  id: string;
  created: number;
  model: string;
  /** Aborted once the client's answer is done with. */
  signal: AbortSignal;
  log: FastifyBaseLogger;
}

type Events = AsyncIterator<ChatEvent>;

/** A backend's failure as the HTTP error it is: a prompt it refuses is the client's; the rest, the server's. */
function providerApiError(error: ProviderError): ApiError {
  if (error.code === 'invalid_prompt') return new ApiError(400, error.message, { code: 'invalid_prompt' });
  if (error.code === 'rate_limit_exceeded')
    return new ApiError(429, error.message, { type: 'requests', code: 'rate_limit_exceeded' });
  return serverError(error.message);
}

function asApiError(error: unknown): never {
  throw error instanceof ProviderError ? providerApiError(error) : error;
}

/** The events after `first`, `first` included. */
async function* from(first: IteratorResult<ChatEvent>, events: Events): AsyncGenerator<ChatEvent> {
  if (first.done) return;
  yield first.value;
  for (let next = await events.next(); !next.done; next = await events.next()) yield next.value;
}

const finishReason = (reason: FinishReason) => (reason === 'other' ? 'stop' : reason);

interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

async function completion(first: IteratorResult<ChatEvent>, events: Events, meta: Meta) {
  let content: string | null = null;
  let refusal: string | null = null;
  const calls: ToolCall[] = [];
  let usage = { prompt_tokens: 0, completion_tokens: 0 };
  let reason: FinishReason = 'stop';
  try {
    for await (const event of from(first, events)) {
      if (event.type === 'text') content = (content ?? '') + event.text;
      else if (event.type === 'refusal') refusal = (refusal ?? '') + event.text;
      else if (event.type === 'tool_call') {
        let call = calls[event.index];
        if (call === undefined) {
          call = { id: event.id ?? newId('call'), type: 'function', function: { name: '', arguments: '' } };
          calls[event.index] = call;
        }
        call.function.name += event.name ?? '';
        call.function.arguments += event.arguments ?? '';
      } else if (event.type === 'usage') usage = event.usage;
      else if (event.type === 'finish') reason = event.reason;
    }
  } catch (error) {
    asApiError(meta.signal.aborted ? clientGone() : error);
  }
  const toolCalls = calls.filter((call) => call !== undefined);
  return {
    ...envelope(meta, 'chat.completion'),
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content,
          refusal,
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
        },
        logprobs: null,
        finish_reason: finishReason(reason),
      },
    ],
    usage: withTotal(usage),
  };
}

/**
 * The `chat.completion.chunk` stream, as OpenAI writes it: the role first, then each piece as the backend gives it
 * (a call's first delta with its id, type and name), the finish reason in a chunk of its own, the usage in a last
 * chunk without choices when asked for, then `[DONE]`. A failure once the stream has begun is an `error` data
 * frame, which the SDKs raise.
 */
async function* streamedChunks(
  first: IteratorResult<ChatEvent>,
  events: Events,
  meta: Meta,
  includeUsage: boolean,
): AsyncGenerator<string> {
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
    dataFrame({
      ...envelope(meta, 'chat.completion.chunk'),
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      ...(includeUsage ? { usage: null } : {}),
    });
  yield chunk({ role: 'assistant', content: '', refusal: null });
  const begun = new Set<number>();
  let usage: { prompt_tokens: number; completion_tokens: number } | undefined;
  try {
    for await (const event of from(first, events)) {
      if (event.type === 'text') yield chunk({ content: event.text });
      else if (event.type === 'refusal') yield chunk({ refusal: event.text });
      else if (event.type === 'tool_call') {
        const call: Record<string, unknown> = { index: event.index };
        if (!begun.has(event.index)) {
          begun.add(event.index);
          Object.assign(call, { id: event.id ?? newId('call'), type: 'function' });
          call['function'] = { name: event.name ?? '', arguments: event.arguments ?? '' };
        } else call['function'] = { arguments: event.arguments ?? '' };
        yield chunk({ tool_calls: [call] });
      } else if (event.type === 'usage') usage = event.usage;
      else if (event.type === 'finish') yield chunk({}, finishReason(event.reason));
    }
  } catch (error) {
    if (meta.signal.aborted) return;
    if (!(error instanceof ProviderError)) meta.log.error({ err: error }, 'a chat completion stream failed');
    const failure = error instanceof ProviderError ? providerApiError(error) : serverError();
    yield dataFrame({ error: { message: failure.message, type: failure.type, param: null, code: failure.code } });
    return;
  }
  if (includeUsage && usage !== undefined)
    yield dataFrame({ ...envelope(meta, 'chat.completion.chunk'), choices: [], usage: withTotal(usage) });
  yield DATA_DONE;
}

/** What every chat completion and chunk of one answer begins with. */
function envelope(meta: Meta, object: 'chat.completion' | 'chat.completion.chunk') {
  return { id: meta.id, object, created: meta.created, model: meta.model };
}

function withTotal(usage: { prompt_tokens: number; completion_tokens: number }) {
  return { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens };
}
