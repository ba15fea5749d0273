import { html } from 'htm/preact';
import type { Assistant } from 'openai/resources/beta/assistants';
import type { Message } from 'openai/resources/beta/threads/messages';
import type { Run } from 'openai/resources/beta/threads/runs/runs';
import type { Thread } from 'openai/resources/beta/threads/threads';
import { useEffect, useRef, useState } from 'preact/hooks';
import { get, getAll, type Page, post } from '../api.ts';
import { applyEvent, type ChatState, endProblem, isActive, isCancellable, runOf } from '../chat-events.ts';
import { ErrorAlert } from '../components.ts';
import { href } from '../router.ts';
import { runEvents, type StreamEvent } from '../sse.ts';
import { MessageView } from './message.ts';
import { ToolOutputsForm } from './tool-outputs.ts';

const PREFERRED = 'assistd.assistantFor.';

/** Remembers (for this tab) which assistant a thread is chatted with: "Chat" on an assistant opens its new thread. */
export function preferAssistant(threadId: string, assistantId: string): void {
  sessionStorage.setItem(PREFERRED + threadId, assistantId);
}

interface Loaded {
  thread: Thread;
  assistants: Assistant[];
}

/**
 * A thread as a chat: its messages, a composer that adds a message and runs it streaming (the answer grows as its
 * deltas arrive), the form for a run's tool outputs, and the thread's runs with links to their timelines. A run
 * still going when the view opens is followed through its `/events` stream.
 */
export function ThreadView({ threadId }: { threadId: string }) {
  const path = `/threads/${encodeURIComponent(threadId)}`;
  const [loaded, setLoaded] = useState<Loaded>();
  const [chat, setChat] = useState<ChatState>({ messages: [], run: undefined });
  const [runs, setRuns] = useState<Run[]>([]);
  const [assistantId, setAssistantId] = useState('');
  const [streaming, setStreaming] = useState(false);
  const [error, setError] = useState<unknown>();
  const aborter = useRef<AbortController>();
  const log = useRef<HTMLDivElement>(null);

  /** The thread's messages and runs as the server has them now. */
  const refresh = async () => {
    const [messages, latest] = await Promise.all([
      getAll<Message>(`${path}/messages`, { order: 'asc' }),
      get<Page<Run>>(`${path}/runs`, { order: 'desc', limit: 20 }),
    ]);
    setRuns(latest.data);
    setChat({ messages, run: latest.data[0] });
    return latest.data[0];
  };

  /**
   * Applies a run's events as they come, then shows the thread as the server left it. A run that ended without its
   * answer (failed, expired, incomplete) is said in the alert: its stream ends as any run's, with no `error` event.
   */
  const follow = async (events: (signal: AbortSignal) => AsyncGenerator<StreamEvent>) => {
    const controller = new AbortController();
    aborter.current = controller;
    setStreaming(true);
    setError(undefined);
    try {
      let last: Run | undefined;
      for await (const event of events(controller.signal)) {
        setChat((state) => applyEvent(state, event));
        last = runOf(event) ?? last;
      }
      const problem = endProblem(last);
      if (problem) setError(new Error(problem));
    } catch (failure) {
      if (!controller.signal.aborted) setError(failure);
    } finally {
      if (!controller.signal.aborted) {
        setStreaming(false);
        await refresh().catch(setError);
      }
    }
  };

  // Once: the view is keyed by its thread.
  useEffect(() => {
    (async () => {
      const thread = await get<Thread>(path);
      const assistants = await getAll<Assistant>('/assistants', { order: 'desc' });
      const latest = await refresh();
      const preferred = sessionStorage.getItem(PREFERRED + threadId);
      const chosen = [preferred, latest?.assistant_id].find((id) => assistants.some((a) => a.id === id));
      setAssistantId(chosen ?? assistants[0]?.id ?? '');
      setLoaded({ thread, assistants });
      if (latest && isActive(latest))
        await follow((signal) => runEvents('GET', `${path}/runs/${latest.id}/events`, undefined, signal));
    })().catch(setError);
    return () => aborter.current?.abort();
  }, []);

  // Keeps the newest text in sight while it grows.
  useEffect(() => {
    const element = log.current;
    if (element) element.scrollTop = element.scrollHeight;
  }, [chat.messages]);

  /**
   * Adds the message and starts its run, resolving once the thread has the message (the composer then lets it go):
   * false, the error shown, when the thread refused it. The run streams on (`follow` shows its own errors).
   */
  const sendMessage = async (text: string): Promise<boolean> => {
    setError(undefined);
    try {
      const message = await post<Message>(`${path}/messages`, { role: 'user', content: text });
      setChat((state) => ({ ...state, messages: [...state.messages, message] }));
    } catch (failure) {
      setError(failure);
      return false;
    }
    void follow((signal) => runEvents('POST', `${path}/runs`, { assistant_id: assistantId, stream: true }, signal));
    return true;
  };

  /**
   * Cancels the run. A stream being followed shows its end; a run waiting for tool outputs has no stream, so the
   * thread is read again (the cancel ends a waiting run at once).
   */
  const cancel = async (run: Run) => {
    await post<Run>(`${path}/runs/${run.id}/cancel`);
    if (!streaming) await refresh();
  };

  const submitOutputs = (run: Run, outputs: Array<{ tool_call_id: string; output: string }>) =>
    follow((signal) =>
      runEvents('POST', `${path}/runs/${run.id}/submit_tool_outputs`, { tool_outputs: outputs, stream: true }, signal),
    );

  const run = chat.run;
  const shownRuns = run ? [run, ...runs.filter((r) => r.id !== run.id)] : runs;
  return html`
    <section class="thread-view">
      <h1>Thread ${threadId}</h1>
      <${ErrorAlert} error=${error} />
      ${
        loaded &&
        html`
          <div class="chat-layout">
            <div class="chat">
              <div class="messages" role="log" aria-label="Messages" ref=${log}>
                ${chat.messages.length === 0 && html`<p class="muted">No messages yet.</p>`}
                ${chat.messages.map((message) => html`<${MessageView} key=${message.id} message=${message} />`)}
              </div>
              ${
                run?.status === 'requires_action' &&
                !streaming &&
                html`<${ToolOutputsForm} key=${run.id} run=${run} onSubmit=${(outputs: Array<{ tool_call_id: string; output: string }>) => submitOutputs(run, outputs)} />`
              }
              <${Composer}
                assistants=${loaded.assistants}
                assistantId=${assistantId}
                onAssistant=${setAssistantId}
                busy=${streaming || run?.status === 'requires_action'}
                onSend=${sendMessage}
                onCancel=${run && isCancellable(run) ? () => cancel(run).catch(setError) : undefined}
              />
            </div>
            <${RunsList} threadId=${threadId} runs=${shownRuns} />
          </div>
        `
      }
    </section>
  `;
}

interface ComposerProps {
  assistants: Assistant[];
  assistantId: string;
  onAssistant: (id: string) => void;
  busy: boolean;
  /** Resolves true once the message is sent, false when it was not (it stays in the box to send again). */
  onSend: (text: string) => Promise<boolean>;
  onCancel: (() => void) | undefined;
}

/**
 * The assistant to run, the message, Send (Enter; Shift+Enter for a new line) and, during a run, Cancel run. The
 * message is cleared once sent, not before, so a refused one is not lost; while it is being sent, Send waits (a
 * second Enter would send it twice) and the box is read-only (an edit would be cleared with it).
 */
function Composer({ assistants, assistantId, onAssistant, busy, onSend, onCancel }: ComposerProps) {
  const [text, setText] = useState('');
  const [sending, setSending] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    if (busy || sending || text.trim() === '' || assistantId === '') return;
    setSending(true);
    try {
      if (await onSend(text)) setText('');
    } finally {
      setSending(false);
    }
  };
  return html`
    <form class="composer" onSubmit=${submit}>
      <div class="field">
        <label for="composer-assistant">Assistant</label>
        <select
          id="composer-assistant"
          value=${assistantId}
          onChange=${(event: Event) => onAssistant((event.currentTarget as HTMLSelectElement).value)}
        >
          ${assistants.length === 0 && html`<option value="">No assistants: create one first</option>`}
          ${assistants.map((a) => html`<option key=${a.id} value=${a.id}>${a.name || a.id}</option>`)}
        </select>
      </div>
      <div class="field">
        <label for="composer-message">Message</label>
        <textarea
          id="composer-message"
          rows="3"
          readonly=${sending}
          value=${text}
          onInput=${(event: Event) => setText((event.currentTarget as HTMLTextAreaElement).value)}
          onKeyDown=${(event: KeyboardEvent) => {
            if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) submit(event);
          }}
        ></textarea>
      </div>
      <div class="actions">
        <button type="submit" disabled=${busy || sending}>Send</button>
        ${onCancel && html`<button type="button" class="secondary" onClick=${onCancel}>Cancel run</button>`}
      </div>
    </form>
  `;
}

function RunsList({ threadId, runs }: { threadId: string; runs: Run[] }) {
  return html`
    <aside class="runs">
      <h2>Runs</h2>
      ${runs.length === 0 && html`<p class="muted">No runs yet.</p>`}
      <ul aria-label="Runs" class="plain-list">
        ${runs.map(
          (run) => html`
            <li key=${run.id} class="run-item">
              <code>${run.id}</code>
              <span class=${`status status-${run.status}`}>${run.status}</span>
              <a href=${href.run(threadId, run.id)}>Timeline</a>
            </li>
          `,
        )}
      </ul>
    </aside>
  `;
}
