import { type ChatMessage, type ChatResponseFormat, type ChatTool, textWithImageNotes } from '../provider.ts';
import { joinedInRows, refusesRowsOfRoles } from './alternating-roles.ts';
import { hasLooseArguments, REFUSES_LOOSE_ARGUMENTS } from './object-arguments.ts';

/** `max_completion_tokens` is OpenAI's name; the older `max_tokens` is the one every other endpoint accepts. */
export type CompletionLimitField = 'max_tokens' | 'max_completion_tokens';

/**
 * Request fields an endpoint may refuse that a run can do without, each with how the endpoint's error names it:
 * Mistral's API refuses `stream_options` (422, "Extra inputs are not permitted"; it reports usage anyway), xAI's
 * reasoning models `reasoning_effort`, thinking modes (Qwen's, Kimi's, GLM's) a `tool_choice` other than `auto`,
 * some servers `parallel_tool_calls`, `temperature` or `top_p`. Without them the backend's defaults hold.
 */
const OPTIONAL_FIELDS = [
  { field: 'stream_options', named: /stream[_ ]?options|include_usage/i },
  // Ollama maps it to `think`, and a model without thinking answers `"llama3.2" does not support thinking`, or
  // `think value "medium" is not supported for this model`.
  { field: 'reasoning_effort', named: /reasoning[_ ]?effort|does not support thinking|think value/i },
  { field: 'tool_choice', named: /tool[_ ]?choice/i },
  { field: 'parallel_tool_calls', named: /parallel[_ ]?tool[_ ]?calls/i },
  { field: 'temperature', named: /\btemperature\b/i },
  { field: 'top_p', named: /\btop[_ ]?p\b/i },
] as const;

type OptionalField = (typeof OPTIONAL_FIELDS)[number]['field'];

/** The fields the model's reasoning goes back in (the provider's REASONING_FIELDS), as an error names them. */
const REASONING_NAMED = /reasoning_content|reasoning_details|thinking_blocks|\breasoning\b/i;

/**
 * How a server says its model reads no images: llama.cpp's without a projector (a 500, "image input is not supported
 * - hint: … provide the mmproj"), vLLM's ("is not a multimodal model"), LM Studio's ("does not support images"),
 * OpenAI's older models ("image_url is only supported by certain models").
 */
const REFUSES_IMAGES =
  /image input is not supported|mmproj|not a multimodal model|does not support (images|image input|vision)|image_url is only supported/i;

/** How servers say they do not take a field. */
const UNKNOWN = /unsupported|not supported|does not support|unknown|unrecognized|extra inputs|not permitted/i;

/**
 * How OpenAI says a schema it was sent is wrong ("Invalid schema for response_format …: In context=(…), 'default' is
 * not permitted"): the client's to fix, though worded like a refused field.
 */
const WRONG_SCHEMA = /invalid schema|in context=/i;

/**
 * What an endpoint turned out to refuse for one model, learnt from its errors (once per process and model: the model's
 * name does not say which server, template or version answers, and another model behind the same endpoint may take
 * what this one refused), and the requests shaped accordingly from then on. A refusal that names something learnable
 * makes the request be sent again at once, reshaped; any other is the error it is.
 */
export class LearntShape {
  /** Messages of one role in a row are sent joined (alternating-roles.ts). */
  private joinRows = false;
  /** Images are sent as notes in the text (imageUrlNote): the model reads none. */
  private noImages = false;
  private readonly dropped = new Set<OptionalField>();
  /** The request is sent with `stream: false`, and its answer read whole (chat-completions-client.ts). */
  private unstreamedTools = false;
  /** Tool calls' arguments in the history are sent as JSON objects (object-arguments.ts). */
  private objects = false;
  /** The model's reasoning is not sent back with its tool calls: the endpoint refused it as a field it does not know. */
  private noReasoning = false;
  /** Tools are sent without their `strict`: the endpoint refused it as a field it does not know. */
  private noStrict = false;
  /** How far `response_format` is eased: as asked, JSON mode instead of a schema, or asked for in words only. */
  private format: 'as-asked' | 'json-mode' | 'in-words' = 'as-asked';
  private limit: CompletionLimitField;

  constructor(limitField: CompletionLimitField) {
    this.limit = limitField;
  }

  /** The field a completion's token bound goes in. */
  get limitField(): CompletionLimitField {
    return this.limit;
  }

  /** Whether tool calls' arguments in the history go as JSON objects. */
  get objectArguments(): boolean {
    return this.objects;
  }

  /** Whether the model's reasoning goes back with its tool calls (ModelReasoning). */
  get sendsReasoning(): boolean {
    return !this.noReasoning;
  }

  messages(messages: ChatMessage[]): ChatMessage[] {
    const seen = this.noImages ? withoutImages(messages) : messages;
    return this.joinRows ? joinedInRows(seen) : seen;
  }

  /**
   * The `response_format` to send for `asked`, and what to tell the model in words where the endpoint refused it: a
   * schema it refused (DeepSeek: "This response_format type is unavailable now") is asked for as JSON mode with the
   * schema in words; JSON mode it refused (Gemini with tools: "Function calling with a response mime type:
   * 'application/json' is unsupported") in words alone.
   */
  responseFormat(asked: ChatResponseFormat | undefined): { format?: ChatResponseFormat; instruction?: string } {
    if (asked === undefined || asked.type === 'text' || this.format === 'as-asked') return { format: asked };
    const schema = asked.type === 'json_schema' ? asked.json_schema.schema : undefined;
    const instruction =
      schema === undefined
        ? 'Answer with one JSON object and nothing else.'
        : `Answer with one JSON object and nothing else, matching this JSON schema: ${JSON.stringify(schema)}`;
    return this.format === 'json-mode' ? { format: { type: 'json_object' }, instruction } : { instruction };
  }

  /**
   * `body` without the fields the endpoint refused (its tools' `strict` among them), and not streamed where it refused
   * to stream tools.
   */
  without<B extends object>(body: B): B {
    const unstreamed = this.unstreamedTools && 'tools' in body;
    const unstrict = this.noStrict && 'tools' in body;
    if (this.dropped.size === 0 && !unstreamed && !unstrict) return body;
    const kept: Record<string, unknown> = { ...(body as Record<string, unknown>) };
    for (const field of this.dropped) delete kept[field];
    if (unstrict)
      kept['tools'] = (kept['tools'] as ChatTool[]).map(({ function: { strict: _, ...fn }, ...tool }) => ({
        ...tool,
        function: fn,
      }));
    if (unstreamed) {
      kept['stream'] = false;
      delete kept['stream_options'];
    }
    return kept as B;
  }

  /**
   * Learns from an endpoint's refusal (`status`, its error `message`) of the request `sent` (built from
   * `messages`): true when something new was learnt, and the request is to be sent again.
   */
  learn(status: number, message: string, sent: object, messages: ChatMessage[]): boolean {
    if (!this.joinRows && refusesRowsOfRoles(message) && joinedInRows(messages) !== messages) {
      this.joinRows = true;
      return true;
    }
    if (!this.noImages && REFUSES_IMAGES.test(message) && withoutImages(messages) !== messages) {
      this.noImages = true;
      return true;
    }
    // llama.cpp's server before May 2025 (its pull request 12379): a 500 "Cannot use tools with stream". Its answer then comes
    // whole, as the stream's one chunk.
    if (!this.unstreamedTools && 'tools' in sent && /cannot use tools with stream/i.test(message)) {
      this.unstreamedTools = true;
      return true;
    }
    // A server that parses the history's tool-call arguments: vLLM's 400, llama.cpp's 500 (object-arguments.ts).
    if (!this.objects && REFUSES_LOOSE_ARGUMENTS.test(message) && hasLooseArguments(messages)) {
      this.objects = true;
      return true;
    }
    if (status !== 400 && status !== 422) return false;
    // "Unsupported parameter: 'max_tokens' … Use 'max_completion_tokens' instead" (a gateway in front of OpenAI's
    // reasoning models), or an older server that does not know the newer name; not a bound that is too large.
    const other: CompletionLimitField = this.limit === 'max_tokens' ? 'max_completion_tokens' : 'max_tokens';
    if (this.limit in sent && message.includes(this.limit) && (message.includes(other) || UNKNOWN.test(message))) {
      this.limit = other;
      return true;
    }
    // A server behind the endpoint that does not know the reasoning sent back: LiteLLM in front of Mistral's API
    // (422 "body.messages.2.assistant.reasoning_content: Extra inputs are not permitted"), Groq ("property
    // 'reasoning' is unsupported"). The ones that want it back (DeepSeek's thinking mode) never refuse it.
    if (
      !this.noReasoning &&
      REASONING_NAMED.test(message) &&
      UNKNOWN.test(message) &&
      messages.some((m) => m.role === 'assistant' && m.reasoning !== undefined)
    ) {
      this.noReasoning = true;
      return true;
    }
    // A tool's `strict` (OpenAI's structured outputs for its arguments) that the endpoint does not know: Cohere's API
    // through OpenRouter (422 "unknown field: parameter 'strict' is not a valid field"). The tools themselves stay.
    if (
      !this.noStrict &&
      /\bstrict\b/i.test(message) &&
      UNKNOWN.test(message) &&
      !WRONG_SCHEMA.test(message) &&
      ((sent as { tools?: ChatTool[] }).tools ?? []).some((tool) => 'strict' in tool.function)
    ) {
      this.noStrict = true;
      return true;
    }
    // Structured output the endpoint does not offer (not a schema it finds wrong, WRONG_SCHEMA), in its words or in
    // the types it names instead: LM Studio refuses JSON mode with "'response_format.type' must be 'json_schema' or
    // 'text'".
    const format = (sent as { response_format?: ChatResponseFormat }).response_format;
    if (
      format !== undefined &&
      this.format !== 'in-words' &&
      /response[_ ]?format|mime type/i.test(message) &&
      !WRONG_SCHEMA.test(message) &&
      (UNKNOWN.test(message) || /unavailable|type\W+must be/i.test(message))
    ) {
      this.format = format.type === 'json_schema' && this.format === 'as-asked' ? 'json-mode' : 'in-words';
      return true;
    }
    const refused = OPTIONAL_FIELDS.find(({ field, named }) => field in sent && named.test(message));
    if (refused === undefined) return false;
    this.dropped.add(refused.field);
    return true;
  }
}

/**
 * The messages with each user message's images as notes in its text, as the embedded backend reads them: the model
 * learns that there was an image. Returned as they are when there is none.
 */
function withoutImages(messages: ChatMessage[]): ChatMessage[] {
  const hasImages = (m: ChatMessage) =>
    m.role === 'user' && typeof m.content !== 'string' && m.content.some((part) => part.type === 'image_url');
  if (!messages.some(hasImages)) return messages;
  return messages.map((m) =>
    m.role === 'user' && hasImages(m) ? { role: 'user', content: textWithImageNotes(m.content) } : m,
  );
}
