import { unixSeconds } from '../domain/clock.ts';
import { newId } from '../domain/ids.ts';
import type { Message, MessageContent, TextAnnotation } from '../domain/objects.ts';
import type { AnnotationDelta, MessageDelta, RunStreamEvent, ToolCallDelta } from '../domain/run-events.ts';
import { finishMessage, openMessage, openStep, transitionStep } from '../domain/run-state-machine.ts';
import type { ModelToolCall, Run, StoredStep, ToolCallDetails, Usage } from '../domain/runs.ts';
import { addReasoning, type ModelReasoning } from '../providers/provider.ts';
import type { ServerTool, TextAnnotator } from '../tools/tool.ts';
import { ZERO_USAGE } from './run-accounting.ts';
import type { RunEventBus } from './run-event-bus.ts';

/** What a model turn has produced that is not committed yet, as a run's ending must record it (run-ending.ts). */
export interface TurnSoFar {
  /** A message finished early in the turn (text came before tool calls): stored as it is. */
  earlier: { message: Message; step: StoredStep } | undefined;
  /** The message being written, and its message_creation step. */
  message: { message: Message; step: StoredStep } | undefined;
  /** The turn's tool_calls step, while the model is still writing its calls. */
  toolStep: StoredStep | undefined;
  /** What the turn has used so far, when it is cut short (estimated: the upstream reports usage at its end). */
  usage?: Usage | undefined;
}

/**
 * One model turn's output, published as it arrives in the order the official SDK's AssistantStream enforces: one
 * step open at a time, one message open at a time; a step or message is announced (`created`, `in_progress`)
 * before its first delta; the first delta of a text part or tool call carries its full shape and later deltas only
 * the new fragment (the SDK concatenates strings, so nothing is ever sent twice).
 *
 * The answer's annotations (e.g. a server-side tool's citations, see ServerTool.annotator) are found as its text
 * streams, and each is sent with the text delta that completes it; text that may still become one (a link being
 * written) is held back until it is complete, so an annotation goes out with all of its text. The message keeps
 * what was sent, so what a stream accumulates is what is stored. Parts the answer shows before its text (a
 * server-side tool's images, ServerTool.answerParts) are sent as it opens.
 *
 * A server-side tool's call is streamed while the model writes it only if the tool shows its input being written
 * (ServerTool.inputReader: code_interpreter's code); otherwise its details are shaped by the tool and run-executor.ts
 * streams them whole when the call executes.
 *
 * A call of a function the model was not offered (a smaller model's guess: `python` with no code_interpreter, a
 * misspelt name) is answered here with an error the model reads next turn, and is never shown: a step shows only
 * the calls of the run's tools, as with OpenAI's models, which never call another. Clients count on it: Semantic
 * Kernel takes every function call of a completed step for one it was asked to execute, and fails on any other.
 *
 * Nothing here touches the database: the executor is told of each step (and message) as it opens (`begun`), and
 * stores it in progress, and takes the turn's result at its end (`messageResult`, `toolCallsResult`) to commit it.
 */
export class ModelTurn {
  private readonly run: Run;
  private readonly bus: RunEventBus;
  private readonly serverTools: ReadonlyMap<string, ServerTool>;
  private message: Message | undefined;
  private messageStep: StoredStep | undefined;
  /**
   * The answer's text as the model wrote it: what of it has been sent, and the rest (held back, or just written).
   * Both grow by `+=` and neither is searched or sliced whole: V8 copies a string built that way whole to do either,
   * which for every token would grow as the square of the answer's length. What is sent is cut from `unsent` alone.
   */
  private sent = '';
  private unsent = '';
  private readonly annotate: TextAnnotator | undefined;
  private readonly leadingParts: readonly MessageContent[];
  private annotations: TextAnnotation[] = [];
  /** What the model wrote beside its answer in the endpoint's own fields (never published), by field. */
  private reasoning: ModelReasoning = {};
  /**
   * The model's refusal to answer (OpenAI's models, with structured outputs), a `refusal` part of the message after
   * any text, at `refusalIndex`: text written after it is dropped, so that the parts keep their indexes.
   */
  private refusal = '';
  private refusalIndex = 0;
  /** The model answered without a word: the answer is one empty text part (messageResult). */
  private saidNothing = false;
  private earlier: { message: Message; step: StoredStep } | undefined;
  private toolStep: StoredStep | undefined;
  /** The names of the functions offered to the model; a call of another is answered here (see above). */
  private readonly offered: readonly string[];
  private readonly calls: Array<Call | undefined> = [];
  /**
   * Of each server-side call shown as it is written, by call index: its input streamed so far, the reader of its
   * arguments' fragments (ServerTool.inputReader), and its details with an empty input (for the live step).
   */
  private readonly inputs: Array<{ soFar: string; read: (fragment: string) => string; empty: ToolCallDetails }> = [];
  /** How many of the tool step's calls (a prefix) have been announced in deltas as they were written. */
  private announced = 0;
  /**
   * Told of each step the turn begins (with its message), once announced, and of a message it finishes early (text
   * before its calls): the executor stores them as announced, before the turn's end.
   */
  private readonly begun: ((step: StoredStep, message?: Message) => void) | undefined;
  /** Whether anything of this turn has been published: then it can no longer be retried invisibly. */
  published = false;

  /** The run this turn belongs to, for log lines. */
  get runId(): string {
    return this.run.id;
  }

  constructor(
    run: Run,
    bus: RunEventBus,
    serverTools: ReadonlyMap<string, ServerTool>,
    offered: readonly string[],
    annotate?: TextAnnotator,
    leadingParts: readonly MessageContent[] = [],
    begun?: (step: StoredStep, message?: Message) => void,
  ) {
    this.begun = begun;
    this.run = run;
    this.bus = bus;
    this.serverTools = serverTools;
    this.offered = offered;
    this.annotate = annotate;
    this.leadingParts = leadingParts;
  }

  /** The text and calls so far, for a token estimate when the upstream reports no usage. */
  get outputText(): string {
    return (
      Object.values(this.reasoning)
        .map((value) => (typeof value === 'string' ? value : JSON.stringify(value)))
        .join('') +
      this.sent +
      this.refusal +
      this.unsent +
      this.calls.map((c) => (c === undefined ? '' : c.name + c.arguments)).join('')
    );
  }

  get hasToolCalls(): boolean {
    return this.toolStep !== undefined;
  }

  /**
   * Whether the last call's arguments are cut short (not JSON), as a reply stopped by its token limit leaves them;
   * the calls before it were finished (the model went on to the next). Raw code for code_interpreter counts as cut:
   * nothing tells where it was meant to end.
   */
  get lastCallUnfinished(): boolean {
    const last = this.madeCalls().at(-1);
    if (!last || last.arguments.trim() === '') return false;
    try {
      JSON.parse(last.arguments);
      return false;
    } catch {
      return true;
    }
  }

  get soFar(): TurnSoFar {
    return {
      earlier: this.earlier,
      message: this.message && this.messageStep ? { message: this.message, step: this.messageStep } : undefined,
      toolStep: this.toolStep,
    };
  }

  addReasoning(field: string, piece: string | unknown[]): void {
    this.reasoning = addReasoning(this.reasoning, field, piece);
  }

  /**
   * Forgets what an attempt that failed before publishing anything left, before the turn is asked again: its
   * reasoning, which the retry writes anew. Kept, it would be joined to the retry's and go back to the model as one
   * (OpenRouter's reasoning_details: both attempts' text under the second's signature).
   */
  discardUnpublished(): void {
    this.reasoning = {};
  }

  addText(chunk: string): void {
    // Text after tool calls has nowhere to go in the Assistants model; after a refusal, it is dropped (refusalIndex).
    if (chunk === '' || this.toolStep || this.refusal !== '') return;
    this.openMessage();
    this.unsent += chunk;
    this.annotate?.write(chunk);
    this.sendText(false);
  }

  addRefusal(chunk: string): void {
    if (chunk === '' || this.toolStep) return;
    this.openMessage();
    if (this.refusal === '') {
      if (this.unsent !== '') this.sendText(true);
      this.refusalIndex = this.leadingParts.length + (this.sent === '' ? 0 : 1);
    }
    this.refusal += chunk;
    this.emitContent([{ index: this.refusalIndex, type: 'refusal', refusal: chunk }]);
  }

  /** The message's parts: what the answer shows before its text, its text, its refusal. */
  private content(): MessageContent[] {
    const content: MessageContent[] = [...this.leadingParts];
    if (this.sent !== '' || this.saidNothing)
      content.push({ type: 'text', text: { value: this.sent, annotations: this.annotations } });
    if (this.refusal !== '') content.push({ type: 'refusal', refusal: this.refusal });
    return content;
  }

  /**
   * Sends the text not sent yet, up to where an annotation may still be in the making (all of it when `final`), with
   * the annotations it completes.
   */
  private sendText(final: boolean): void {
    const heldFrom = final ? undefined : this.annotate?.heldFrom?.();
    const written = this.sent.length + this.unsent.length;
    const upTo = Math.max(this.sent.length, Math.min(written, heldFrom ?? written));
    const found = this.annotate?.annotate(upTo, final) ?? [];
    if (upTo === this.sent.length && found.length === 0) return;
    const first = this.sent.length === 0;
    const chunk = this.unsent.slice(0, upTo - this.sent.length);
    this.unsent = this.unsent.slice(chunk.length);
    this.sent += chunk;
    const added = found.map((a, i): AnnotationDelta => ({ index: this.annotations.length + i, ...a }));
    if (found.length > 0) this.annotations = [...this.annotations, ...found];
    this.emitContent([
      {
        index: this.leadingParts.length,
        type: 'text',
        text: first || added.length > 0 ? { value: chunk, annotations: added } : { value: chunk },
      },
    ]);
  }

  /**
   * Completes what the answer's annotations point at (ServerTool.annotator's `settle`), once the text written so far
   * is annotated to its end; before the turn is stored. The end of the text is held until what its last
   * annotations point at is made (TextAnnotator.heldFrom). An annotation whose file could not be made is left out of
   * the message (a message ended early by tool calls, sent without waiting, may have streamed it: what is stored
   * names only files that exist).
   */
  async settle(signal: AbortSignal): Promise<void> {
    if (!this.annotate?.settle) return;
    if (this.message) {
      while (this.annotate.heldFrom?.(true) !== undefined) {
        const ready = this.annotate.ready?.();
        if (ready === undefined) break;
        await ready;
      }
      this.sendText(true);
    }
    const unmade = new Set(await this.annotate.settle(signal));
    if (unmade.size === 0) return;
    const kept = (a: TextAnnotation) => {
      const target = a.type === 'file_path' ? a.file_path : a.file_citation;
      return !unmade.has(target?.file_id ?? '');
    };
    this.annotations = this.annotations.filter(kept);
    if (this.message) this.message.content = withAnnotations(this.message.content, kept);
    if (this.earlier)
      this.earlier = {
        ...this.earlier,
        message: { ...this.earlier.message, content: withAnnotations(this.earlier.message.content, kept) },
      };
  }

  addToolCall(
    index: number,
    name: string | undefined,
    fragment: string | undefined,
    parallel: boolean,
    extra?: Record<string, unknown>,
  ): void {
    if (!parallel && index > 0) return; // parallel_tool_calls: false keeps the first call only
    if (this.message) this.finishMessageEarly();
    this.openToolStep();
    let call = this.calls[index];
    const isNew = !call;
    if (!call) {
      const stray = !this.offered.includes(name ?? '');
      // Deltas number the calls the step shows: a stray call before this one is not among them.
      const position = stray ? -1 : this.calls.slice(0, index).filter((c) => c !== undefined && !c.stray).length;
      call = { id: newId('call'), name: name ?? '', arguments: '', position, ...(stray ? { stray } : {}) };
      this.calls[index] = call;
    }
    if (extra) call.extra = { ...call.extra, ...extra };
    if (fragment) call.arguments += fragment;
    if (call.stray) return;

    const tool = this.serverTools.get(call.name);
    const asWritten = this.streamsAsWritten(index);
    const streamed = !tool && asWritten;
    const showsInput = tool?.inputReader !== undefined && asWritten;
    const { position } = call;
    if (isNew && streamed)
      this.emitToolDelta({
        index: position,
        id: call.id,
        type: 'function',
        function: { name: call.name, arguments: '', output: null },
      });
    else if (isNew && showsInput) {
      // The call's full shape first (its input empty), then each increment of the input as it is written.
      const empty = tool.describe({ id: call.id, arguments: '' }, this.run);
      this.inputs[index] = { soFar: '', read: tool.inputReader!(), empty };
      this.emitToolDelta({ index: position, ...empty } as ToolCallDelta);
    }
    if (fragment) {
      if (streamed) this.emitToolDelta({ index: position, type: 'function', function: { arguments: fragment } });
      else if (showsInput) this.streamInput(index, position, tool, fragment);
    }
    // The turn's step (what a run stopped now stores; /events shows its announced calls: announcedCalls) follows the
    // calls being written; any other server-side call is described once, as it starts (its details come whole when
    // it executes). The details are replaced, never changed in place: announced copies of the step share them.
    if (!isNew && tool && !showsInput) return;
    if (isNew && (streamed || showsInput)) this.announced = position + 1;
    const live = [...(this.toolStep!.step_details as { tool_calls: ToolCallDetails[] }).tool_calls];
    live.splice(position, isNew ? 0 : 1, showsInput ? this.liveDetails(index, tool) : this.details(call));
    this.toolStep!.step_details = { type: 'tool_calls', tool_calls: live };
  }

  /** Sends what a fragment of a server-side call's arguments added to its input, if anything: increments only. */
  private streamInput(index: number, position: number, tool: ServerTool, fragment: string): void {
    const input = this.inputs[index]!;
    const added = input.read(fragment);
    if (added === '') return;
    input.soFar += added;
    this.emitToolDelta({ index: position, type: tool.type, [tool.type]: { input: added } } as ToolCallDelta);
  }

  /** A call shown as it is written, as far as it is: its details with the input streamed so far. */
  private liveDetails(index: number, tool: ServerTool): ToolCallDetails {
    const { empty, soFar } = this.inputs[index]!;
    const details = empty as unknown as Record<string, object>;
    return { ...empty, [tool.type]: { ...details[tool.type], input: soFar } } as ToolCallDetails;
  }

  /**
   * The turn ended with tool calls: its step, still in progress, with the calls it shows and the turn's usage; the
   * model's side of all of its calls, in the order written, a stray one with its answer (an error).
   */
  toolCallsResult(usage: Usage): { step: StoredStep; earlier: TurnSoFar['earlier'] } {
    this.completeEmptyArguments();
    const known = this.offered.length === 0 ? 'There are no tools.' : `The tools are: ${this.offered.join(', ')}.`;
    const step: StoredStep = {
      ...this.toolStep!,
      step_details: { type: 'tool_calls', tool_calls: this.madeCalls().map((c) => this.details(c)) },
      model_calls: this.calls.flatMap((c): ModelToolCall[] => {
        if (c === undefined) return [];
        const { stray, position: _, ...call } = c;
        return [{ ...call, output: stray ? `Error: there is no tool named '${c.name}'. ${known}` : null }];
      }),
      model_reasoning: Object.keys(this.reasoning).length === 0 ? null : this.reasoning,
      turn_usage: usage,
    };
    return { step, earlier: this.earlier };
  }

  /**
   * The turn ended with an answer: its message (one empty text part if the model said nothing), ended by the state
   * machine, with its completed step and the events that announce both.
   */
  messageResult(
    usage: Usage,
    incomplete: 'max_tokens' | 'content_filter' | null,
    finish: (message: Message) => Message,
  ): { message: Message; step: StoredStep; events: RunStreamEvent[] } {
    this.openMessage(false); // opened at its end (the model said nothing): stored with it, not before
    this.sendText(true);
    // An answer has a part to read: programs read `content[0]` of the run's message (AG2, OpenAI's cookbook), and
    // Semantic Kernel raises on a message without one.
    if (this.content().length === 0) {
      this.saidNothing = true;
      this.emitContent([{ index: 0, type: 'text', text: { value: '', annotations: [] } }]);
    }
    const at = unixSeconds(); // when the answer ended, not when the model was asked
    const ended = finishMessage(finish(this.message!), at, incomplete);
    const step = transitionStep(this.messageStep!, { type: 'complete', at, usage });
    return { message: ended.message, step: step.step, events: [...ended.events, ...step.events] };
  }

  /**
   * A function called with no arguments at all (some endpoints send none where OpenAI sends `{}`) is given `{}`:
   * clients parse the arguments as JSON. A call streamed as written gets it as its last delta.
   */
  private completeEmptyArguments(): void {
    for (const [index, call] of this.calls.entries()) {
      if (call === undefined || call.arguments.trim() !== '' || this.serverTools.has(call.name)) continue;
      call.arguments += '{}';
      if (!call.stray && this.streamsAsWritten(index))
        this.emitToolDelta({
          index: call.position,
          type: 'function',
          function: { arguments: '{}' },
        });
    }
  }

  /** Whether the call at `index` streams as it is written; held (after a server-side call), it goes out later. */
  private streamsAsWritten(index: number): boolean {
    return streamsAsWritten(this.calls.slice(0, index).map((c) => c !== undefined && this.serverTools.has(c.name)));
  }

  private details(call: { id: string; name: string; arguments: string }): ToolCallDetails {
    const tool = this.serverTools.get(call.name);
    if (tool) return tool.describe({ id: call.id, arguments: call.arguments }, this.run);
    return { id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments, output: null } };
  }

  /** The calls the turn's step shows: all but the stray ones. */
  private madeCalls(): Call[] {
    return this.calls.filter((c) => c !== undefined && !c.stray) as Call[];
  }

  private openMessage(store = true): void {
    if (this.message) return;
    const at = unixSeconds();
    const message = openMessage(this.run, at);
    const step = openStep(
      this.run,
      { type: 'message_creation', message_creation: { message_id: message.message.id } },
      at,
    );
    this.message = message.message;
    this.messageStep = step.step;
    for (const event of [...step.events, ...message.events]) this.emit(event);
    // One delta per part: clients read a delta's first part only (Flowise's `delta.content[0]`, for its images).
    for (const [index, part] of this.leadingParts.entries())
      if (part.type === 'image_file') this.emitContent([{ index, type: 'image_file', image_file: part.image_file }]);
    this.bus.setLiveTurn(this.run.id, { step: this.messageStep, message: this.message });
    if (store) this.begun?.(this.messageStep, this.message);
  }

  /** Text came before tool calls: that message is complete, and closes before the tool step opens. */
  private finishMessageEarly(): void {
    const finished = this.messageResult(ZERO_USAGE, null, (m) => m);
    this.earlier = { message: finished.message, step: finished.step };
    for (const event of finished.events) this.emit(event);
    this.begun?.(finished.step, finished.message); // stored as completed, as announced
    this.message = undefined;
    this.messageStep = undefined;
  }

  private openToolStep(): void {
    if (this.toolStep) return;
    const opened = openStep(this.run, { type: 'tool_calls', tool_calls: [] }, unixSeconds());
    this.toolStep = opened.step;
    for (const event of opened.events) this.emit(event);
    this.begun?.(this.toolStep);
    // What a client attaching now is shown: the calls announced so far, which the deltas to come extend.
    const turn = this;
    this.bus.setLiveTurn(this.run.id, {
      get step() {
        return announcedCalls(turn.toolStep!, turn.announced);
      },
      message: undefined,
    });
  }

  /** The message as it now is (content()), and a delta of it: `parts`, what was added to its parts. */
  private emitContent(parts: MessageDelta['delta']['content']): void {
    this.message!.content = this.content();
    this.emit({
      event: 'thread.message.delta',
      data: { id: this.message!.id, object: 'thread.message.delta', delta: { content: parts } },
    });
  }

  private emitToolDelta(call: ToolCallDelta): void {
    this.emit({
      event: 'thread.run.step.delta',
      data: {
        id: this.toolStep!.id,
        object: 'thread.run.step.delta',
        delta: { step_details: { type: 'tool_calls', tool_calls: [call] } },
      },
    });
  }

  private emit(event: RunStreamEvent): void {
    this.published = true;
    this.bus.publish(this.run.thread_id, this.run.id, event);
  }
}

/**
 * A call the model is writing; `stray` when it names no function the model was offered (ModelTurn). `position` is
 * where the turn's step shows it, set once as it begins (-1 for a stray call, which the step does not show).
 */
interface Call {
  id: string;
  name: string;
  arguments: string;
  position: number;
  extra?: Record<string, unknown>;
  stray?: true;
}

/** Message content with only the annotations `kept` keeps. */
function withAnnotations(content: MessageContent[], kept: (a: TextAnnotation) => boolean): MessageContent[] {
  return content.map((part) =>
    part.type === 'text' ? { ...part, text: { ...part.text, annotations: part.text.annotations.filter(kept) } } : part,
  );
}

/**
 * Whether a tool call's deltas stream as the model writes it, given for each call before it in the turn whether it
 * is a server-side call: only while none is. A server-side call has more to stream when it executes, after the turn
 * (its outputs, or all of it), and the SDK's AssistantStream takes any change of a delta's index for the start of
 * another call (toolCallDone, then toolCallCreated): each call's deltas must be contiguous. The calls after the first
 * server-side one are held, and published in order as the run executes its calls (RunExecutor).
 */
export function streamsAsWritten(serverCallsBefore: readonly boolean[]): boolean {
  return !serverCallsBefore.some(Boolean);
}

/**
 * A tool_calls step as a client that attaches now (GET …/events) must be shown it: with its first `count` calls only,
 * those announced in deltas so far. A held call (streamsAsWritten), or a server-side call not streamed as written,
 * is announced whole later: shown before, the SDK would add its details to themselves (`"call_xcall_x"`).
 */
export function announcedCalls(step: StoredStep, count: number): StoredStep {
  const calls = step.step_details.type === 'tool_calls' ? step.step_details.tool_calls : [];
  if (calls.length <= count) return step;
  return { ...step, step_details: { type: 'tool_calls', tool_calls: calls.slice(0, count) } };
}
