import { html } from 'htm/preact';
import type { Thread } from 'openai/resources/beta/threads/threads';
import { useState } from 'preact/hooks';
import { get, type Page, post } from '../api.ts';
import { dateTime, ErrorAlert, useLoad } from '../components.ts';
import { href, navigate } from '../router.ts';

const PAGE_SIZE = 20;

/** `key=value` lines as metadata (blank lines skipped); throws on a line without `=`. */
function parseMetadata(text: string): Record<string, string> {
  const metadata: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const at = line.indexOf('=');
    if (at <= 0) throw new Error(`Thread metadata: “${line}” is not key=value.`);
    metadata[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return metadata;
}

/**
 * The project's threads, newest first, a page at a time (assistd's `GET /v1/threads`), optionally only those whose
 * metadata has a key with a value; and a form to start a new one.
 */
export function ThreadsView() {
  const [key, setKey] = useState('');
  const [value, setValue] = useState('');
  const [filter, setFilter] = useState<Record<string, string>>();
  /** The `after` cursors of the pages before this one: "Previous page" goes back to the last. */
  const [cursors, setCursors] = useState<Array<string | undefined>>([]);
  const [after, setAfter] = useState<string>();
  const threads = useLoad(
    () => get<Page<Thread>>('/threads', { limit: PAGE_SIZE, order: 'desc', after, metadata: filter }),
    [after, filter],
  );

  const search = (metadata: Record<string, string> | undefined) => {
    setFilter(metadata);
    setCursors([]);
    setAfter(undefined);
  };
  const page = threads.value;

  return html`
    <section>
      <div class="view-header">
        <h1>Threads</h1>
      </div>
      <${NewThread} />
      <form
        class="search"
        role="search"
        aria-label="Threads by metadata"
        onSubmit=${(event: Event) => {
          event.preventDefault();
          search(key.trim() === '' ? undefined : { [key.trim()]: value });
        }}
      >
        <div class="field">
          <label for="search-key">Metadata key</label>
          <input id="search-key" value=${key} onInput=${(e: Event) => setKey((e.currentTarget as HTMLInputElement).value)} />
        </div>
        <div class="field">
          <label for="search-value">Metadata value</label>
          <input
            id="search-value"
            value=${value}
            onInput=${(e: Event) => setValue((e.currentTarget as HTMLInputElement).value)}
          />
        </div>
        <div class="actions">
          <button type="submit">Search</button>
          <button
            type="button"
            class="secondary"
            onClick=${() => {
              setKey('');
              setValue('');
              search(undefined);
            }}
          >
            Clear search
          </button>
        </div>
      </form>
      <${ErrorAlert} error=${threads.error} />
      ${page?.data.length === 0 && html`<p class="muted">${filter ? 'No thread has this metadata.' : 'No threads yet.'}</p>`}
      <ul aria-label="Threads" class="cards">
        ${(page?.data ?? []).map(
          (thread) => html`
            <li key=${thread.id} class="card">
              <a href=${href.thread(thread.id)} class="item-title"><code>${thread.id}</code></a>
              <div class="muted small">${dateTime(thread.created_at)}</div>
              ${
                Object.keys(thread.metadata ?? {}).length > 0 &&
                html`<div class="metadata small">
                  ${Object.entries(thread.metadata as Record<string, string>).map(
                    ([k, v]) => html`<span class="tag" key=${k}>${k}=${v}</span> `,
                  )}
                </div>`
              }
            </li>
          `,
        )}
      </ul>
      <div class="actions pager">
        <button
          type="button"
          class="secondary"
          disabled=${cursors.length === 0}
          onClick=${() => {
            setAfter(cursors.at(-1));
            setCursors(cursors.slice(0, -1));
          }}
        >
          Previous page
        </button>
        <button
          type="button"
          class="secondary"
          disabled=${!page?.has_more}
          onClick=${() => {
            setCursors([...cursors, after]);
            setAfter(page?.last_id ?? undefined);
          }}
        >
          Next page
        </button>
      </div>
    </section>
  `;
}

/** "New thread": its metadata, one `key=value` a line; the new thread opens. */
function NewThread() {
  const [open, setOpen] = useState(false);
  const [metadata, setMetadata] = useState('');
  const [error, setError] = useState<unknown>();
  if (!open)
    return html`<div class="actions"><button type="button" onClick=${() => setOpen(true)}>New thread</button></div>`;
  return html`
    <form
      class="card stack"
      aria-label="New thread"
      onSubmit=${async (event: Event) => {
        event.preventDefault();
        setError(undefined);
        try {
          const thread = await post<Thread>('/threads', { metadata: parseMetadata(metadata) });
          navigate(href.thread(thread.id));
        } catch (failure) {
          setError(failure);
        }
      }}
    >
      <div class="field">
        <label for="thread-metadata">Thread metadata</label>
        <textarea
          id="thread-metadata"
          rows="3"
          placeholder="customer=acme"
          value=${metadata}
          onInput=${(e: Event) => setMetadata((e.currentTarget as HTMLTextAreaElement).value)}
        ></textarea>
      </div>
      <${ErrorAlert} error=${error} />
      <div class="actions">
        <button type="submit">Create thread</button>
        <button type="button" class="secondary" onClick=${() => setOpen(false)}>Cancel</button>
      </div>
    </form>
  `;
}
