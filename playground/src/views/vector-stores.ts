import { html } from 'htm/preact';
import type { FileObject } from 'openai/resources/files';
import type { VectorStoreFile } from 'openai/resources/vector-stores/files';
import type { VectorStore } from 'openai/resources/vector-stores/vector-stores';
import { useEffect, useState } from 'preact/hooks';
import { del, get, getAll, type Page, post } from '../api.ts';
import { ErrorAlert, useLoad } from '../components.ts';
import { fileInfo } from '../files.ts';
import { href, navigate } from '../router.ts';

/** How often a store whose files are still being ingested is asked again. */
const POLL_MS = 1000;

/** The project's vector stores, with their file counts; the selected one with its files' ingestion status. */
export function VectorStoresView({ storeId }: { storeId: string | undefined }) {
  const stores = useLoad(() => getAll<VectorStore>('/vector_stores', { order: 'desc' }), [storeId]);
  const [name, setName] = useState('');
  const [error, setError] = useState<unknown>();

  const create = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    try {
      const store = await post<VectorStore>('/vector_stores', { name: name.trim() });
      setName('');
      navigate(href.vectorStore(store.id));
    } catch (failure) {
      setError(failure);
    }
  };

  return html`
    <section>
      <h1>Vector stores</h1>
      <form class="search" onSubmit=${create} aria-label="New vector store">
        <div class="field">
          <label for="store-name">Store name</label>
          <input
            id="store-name"
            required
            value=${name}
            onInput=${(e: Event) => setName((e.currentTarget as HTMLInputElement).value)}
          />
        </div>
        <div class="actions"><button type="submit">Create store</button></div>
      </form>
      <${ErrorAlert} error=${error ?? stores.error} />
      <div class="split">
        <div>
          ${stores.value?.length === 0 && html`<p class="muted">No vector stores yet.</p>`}
          <ul aria-label="Vector stores" class="cards">
            ${(stores.value ?? []).map(
              (store) => html`
                <li key=${store.id} class=${`card${store.id === storeId ? ' selected' : ''}`}>
                  <a
                    href=${href.vectorStore(store.id)}
                    class="item-title"
                    aria-current=${store.id === storeId ? 'page' : undefined}
                    >${store.name || store.id}</a
                  >
                  <div class="small muted">
                    <span class=${`status status-${store.status}`}>${store.status}</span>
                    ${` · ${store.file_counts.completed} completed, ${store.file_counts.in_progress} in progress, ${store.file_counts.failed} failed`}
                  </div>
                </li>
              `,
            )}
          </ul>
        </div>
        ${storeId && html`<${StoreDetail} key=${storeId} storeId=${storeId} onChanged=${stores.reload} />`}
      </div>
    </section>
  `;
}

function StoreDetail({ storeId, onChanged }: { storeId: string; onChanged: () => void }) {
  const path = `/vector_stores/${encodeURIComponent(storeId)}`;
  const store = useLoad(() => get<VectorStore>(path), []);
  const storeFiles = useLoad(() => getAll<VectorStoreFile>(`${path}/files`), []);
  const files = useLoad(
    () => get<Page<FileObject>>('/files', { purpose: 'assistants', limit: 1000, order: 'desc' }).then((p) => p.data),
    [],
  );
  const [chosen, setChosen] = useState('');
  const [error, setError] = useState<unknown>();

  // Files still being ingested: ask again until each is completed or failed.
  const ingesting = storeFiles.value?.some((file) => file.status === 'in_progress') ?? false;
  useEffect(() => {
    if (!ingesting) return;
    const timer = setTimeout(() => {
      storeFiles.reload();
      onChanged();
    }, POLL_MS);
    return () => clearTimeout(timer);
  }, [ingesting, storeFiles.value]);

  const add = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    if (chosen === '') return;
    try {
      await post(`${path}/files`, { file_id: chosen });
      setChosen('');
      storeFiles.reload();
      onChanged();
    } catch (failure) {
      setError(failure);
    }
  };
  const remove = async () => {
    if (!confirm(`Delete the vector store ${store.value?.name || storeId}? Its files stay.`)) return;
    try {
      await del(path);
      navigate(href.vectorStores);
    } catch (failure) {
      setError(failure);
    }
  };

  const inStore = new Set(storeFiles.value?.map((file) => file.id));
  return html`
    <div class="card stack store-detail">
      <h2>${store.value?.name || storeId}</h2>
      <p class="small muted"><code>${storeId}</code></p>
      <${ErrorAlert} error=${error ?? store.error ?? storeFiles.error} />
      <ul aria-label="Store files" class="plain-list">
        ${storeFiles.value?.length === 0 && html`<li class="muted">No files in this store.</li>`}
        ${(storeFiles.value ?? []).map(
          (file) => html`
            <li key=${file.id} class="run-item">
              <${StoreFileName} fileId=${file.id} />
              <span class=${`status status-${file.status}`}>${file.status}</span>
              ${file.last_error && html`<span class="problem small">${file.last_error.message}</span>`}
            </li>
          `,
        )}
      </ul>
      <form class="search" onSubmit=${add} aria-label="Add a file to the store">
        <div class="field">
          <label for="store-add-file">Add file</label>
          <select id="store-add-file" value=${chosen} onChange=${(e: Event) => setChosen((e.currentTarget as HTMLSelectElement).value)}>
            <option value="">Choose a file</option>
            ${(files.value ?? [])
              .filter((file) => !inStore.has(file.id))
              .map((file) => html`<option key=${file.id} value=${file.id}>${file.filename}</option>`)}
          </select>
        </div>
        <div class="actions"><button type="submit">Add to store</button></div>
      </form>
      <div class="actions"><button type="button" class="danger" onClick=${remove}>Delete store</button></div>
    </div>
  `;
}

function StoreFileName({ fileId }: { fileId: string }) {
  const info = useLoad(() => fileInfo(fileId), [fileId]);
  return html`<span>${info.value?.filename ?? fileId}</span>`;
}
