import { newId } from '../domain/ids.ts';
import type { Message, MessageIncompleteReason } from '../domain/objects.ts';
import type { RunStreamEvent } from '../domain/run-events.ts';
import type { Run, RunToolCall, Usage } from '../domain/runs.ts';
import type { StoredStep } from '../storage/store.ts';
import { ZERO_USAGE } from './run-accounting.ts';
import type { RunEventBus } from './run-event-bus.ts';

/**
 * What one model turn has produced so far, published as it arrives in the order the official SDK's AssistantStream
 * enforces: one step open at a time, one message open at a time; a step or message is announced (`created`,
 * `in_progress`) before its first delta; the first delta of a text part or tool call carries its full shape and
 * later deltas only the new fragment (the SDK concatenates strings, so nothing is ever sent twice).
 *
 * Nothing here touches the database: the executor commits the turn's result at its end and then publishes the
 * closing events through `close*` below.
 */
export class TurnOutput {
  readonly at: number;
  private readonly run: Run;
  private readonly bus: RunEventBus;
  /** The message being written, with its text so far, and its message_creation step. */
  message: Message | undefined;
  messageStep: StoredStep | undefined;
  private text = '';
  /** A message finished early because tool calls followed its text: stored with the turn. */
  earlier: { message: Message; step: StoredStep } | undefined;
  toolStep: StoredStep | undefined;
  readonly calls: RunToolCall[] = [];
  /** Whether anything of this turn has been published: then it can no longer be retried invisibly. */
  published = false;

  constructor(run: Run, bus: RunEventBus, at: number) {
    this.run = run;
    this.bus = bus;
    this.at = at;
  }

  get textSoFar(): string {
    return this.text;
  }

  addText(chunk: string): void {
    if (chunk === '' || this.toolStep) return; // text after tool calls has nowhere to go in the Assistants model
    const first = this.text === '';
    this.openMessage();
    this.text += chunk;
    this.message!.content = [{ type: 'text', text: { value: this.text, annotations: [] } }];
    this.emit({
      event: 'thread.message.delta',
      data: {
        id: this.message!.id,
        object: 'thread.message.delta',
        delta: {
          content: [{ index: 0, type: 'text', text: first ? { value: chunk, annotations: [] } : { value: chunk } }],
        },
      },
    });
  }

  addToolCall(index: number, name: string | undefined, fragment: string | undefined, parallel: boolean): void {
    if (!parallel && index > 0) return; // parallel_tool_calls: false keeps the first call only
    if (this.message) this.finishMessageEarly();
    this.openToolStep();
    const step = this.toolStep!;
    let call = this.calls[index];
    if (!call) {
      call = { id: newId('call'), type: 'function', function: { name: name ?? '', arguments: '' } };
      this.calls[index] = call;
      this.emitToolDelta(step.id, {
        index,
        id: call.id,
        type: 'function',
        function: { name: call.function.name, arguments: '', output: null },
      });
    }
    if (fragment) {
      call.function.arguments += fragment;
      this.emitToolDelta(step.id, { index, type: 'function', function: { arguments: fragment } });
    }
    step.step_details = {
      type: 'tool_calls',
      tool_calls: this.calls.filter(Boolean).map((c) => ({ ...c, function: { ...c.function, output: null } })),
    };
  }

  /** A turn that produced nothing still answers with an (empty) message. */
  ensureMessage(): void {
    if (!this.message && !this.toolStep) this.openMessage();
  }

  /** The finished message and its completed step, as they will be stored. */
  finishedMessage(usage: Usage, incomplete: MessageIncompleteReason | null): { message: Message; step: StoredStep } {
    const message: Message = {
      ...this.message!,
      status: incomplete ? 'incomplete' : 'completed',
      incomplete_details: incomplete ? { reason: incomplete } : null,
      completed_at: incomplete ? null : this.at,
      incomplete_at: incomplete ? this.at : null,
    };
    return { message, step: { ...this.messageStep!, status: 'completed', completed_at: this.at, usage } };
  }

  /** Publishes the end of the message and its step, after they were committed. */
  publishMessageEnd(message: Message, step: StoredStep): void {
    this.emit({
      event: message.status === 'incomplete' ? 'thread.message.incomplete' : 'thread.message.completed',
      data: message,
    });
    this.emit({ event: `thread.run.step.${step.status}`, data: step });
  }

  /** Publishes whatever steps and messages of this turn ended with the run (cancel, failure). */
  publishEnded(messages: readonly Message[], steps: readonly StoredStep[]): void {
    for (const message of messages) this.emit({ event: 'thread.message.incomplete', data: message });
    for (const step of steps)
      if (step.status !== 'in_progress') this.emit({ event: `thread.run.step.${step.status}`, data: step });
  }

  private openMessage(): void {
    if (this.message) return;
    this.message = {
      id: newId('message'),
      created_at: this.at,
      thread_id: this.run.thread_id,
      status: 'in_progress',
      incomplete_details: null,
      completed_at: null,
      incomplete_at: null,
      role: 'assistant',
      content: [],
      assistant_id: this.run.assistant_id,
      run_id: this.run.id,
      attachments: [],
      metadata: {},
    };
    this.messageStep = this.newStep({ type: 'message_creation', message_creation: { message_id: this.message.id } });
    this.emit({ event: 'thread.run.step.created', data: this.messageStep });
    this.emit({ event: 'thread.run.step.in_progress', data: this.messageStep });
    this.emit({ event: 'thread.message.created', data: { ...this.message } });
    this.emit({ event: 'thread.message.in_progress', data: { ...this.message } });
    this.bus.setLiveTurn(this.run.id, { step: this.messageStep, message: this.message });
  }

  /** Text came before tool calls: that message is complete, and closes before the tool step opens. */
  private finishMessageEarly(): void {
    const finished = this.finishedMessage(ZERO_USAGE, null);
    this.earlier = finished;
    this.publishMessageEnd(finished.message, finished.step);
    this.message = undefined;
    this.messageStep = undefined;
  }

  private openToolStep(): void {
    if (this.toolStep) return;
    this.toolStep = this.newStep({ type: 'tool_calls', tool_calls: [] });
    this.emit({ event: 'thread.run.step.created', data: { ...this.toolStep } });
    this.emit({ event: 'thread.run.step.in_progress', data: { ...this.toolStep } });
    this.bus.setLiveTurn(this.run.id, { step: this.toolStep, message: undefined });
  }

  private newStep(details: StoredStep['step_details']): StoredStep {
    return {
      id: newId('step'),
      created_at: this.at,
      assistant_id: this.run.assistant_id,
      thread_id: this.run.thread_id,
      run_id: this.run.id,
      type: details.type,
      status: 'in_progress',
      step_details: details,
      last_error: null,
      expired_at: null,
      cancelled_at: null,
      failed_at: null,
      completed_at: null,
      metadata: {},
      usage: null,
      turn_usage: null,
    };
  }

  private emitToolDelta(
    stepId: string,
    call: {
      index: number;
      id?: string;
      type: 'function';
      function: { name?: string; arguments: string; output?: null };
    },
  ): void {
    this.emit({
      event: 'thread.run.step.delta',
      data: {
        id: stepId,
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
