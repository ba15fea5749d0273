import { html } from 'htm/preact';
import type { Assistant } from 'openai/resources/beta/assistants';
import type { Thread } from 'openai/resources/beta/threads/threads';
import { useState } from 'preact/hooks';
import { del, getAll, post } from '../api.ts';
import { ErrorAlert, useLoad } from '../components.ts';
import { href, navigate } from '../router.ts';
import { AssistantForm } from './assistant-form.ts';
import { preferAssistant } from './thread.ts';

/** The project's assistants: create, edit, delete, and start a chat with one in a new thread. */
export function AssistantsView() {
  const assistants = useLoad(() => getAll<Assistant>('/assistants', { order: 'desc' }), []);
  /** The assistant being edited, `null` for a new one, `undefined` when the form is closed. */
  const [editing, setEditing] = useState<Assistant | null>();
  const [error, setError] = useState<unknown>();

  const remove = async (assistant: Assistant) => {
    if (!confirm(`Delete the assistant ${assistant.name || assistant.id}?`)) return;
    await del(`/assistants/${assistant.id}`);
    assistants.reload();
  };
  const chat = async (assistant: Assistant) => {
    const thread = await post<Thread>('/threads', {});
    preferAssistant(thread.id, assistant.id);
    navigate(href.thread(thread.id));
  };

  return html`
    <section>
      <div class="view-header">
        <h1>Assistants</h1>
        <button type="button" onClick=${() => setEditing(null)} disabled=${editing !== undefined}>New assistant</button>
      </div>
      <${ErrorAlert} error=${error ?? assistants.error} />
      ${
        editing !== undefined &&
        html`<${AssistantForm}
          key=${editing?.id ?? 'new'}
          assistant=${editing}
          onSaved=${() => {
            setEditing(undefined);
            assistants.reload();
          }}
          onCancel=${() => setEditing(undefined)}
        />`
      }
      ${assistants.value?.length === 0 && html`<p class="muted">No assistants yet.</p>`}
      <ul aria-label="Assistants" class="cards">
        ${(assistants.value ?? []).map(
          (assistant) => html`
            <li key=${assistant.id} class="card">
              <div class="item-title">${assistant.name || assistant.id}</div>
              <div class="muted small"><code>${assistant.id}</code> · ${assistant.model}</div>
              ${assistant.tools.length > 0 && html`<div class="small">Tools: ${assistant.tools.map((tool) => (tool.type === 'function' ? tool.function.name : tool.type)).join(', ')}</div>`}
              <div class="actions">
                <button type="button" onClick=${() => chat(assistant).catch(setError)}>Chat</button>
                <button type="button" class="secondary" onClick=${() => setEditing(assistant)}>Edit</button>
                <button type="button" class="danger" onClick=${() => remove(assistant).catch(setError)}>Delete</button>
              </div>
            </li>
          `,
        )}
      </ul>
    </section>
  `;
}
