import { html } from 'htm/preact';
import type { FileObject } from 'openai/resources/files';
import { useRef, useState } from 'preact/hooks';
import { del, get, type Page, uploadFile } from '../api.ts';
import { dateTime, ErrorAlert, useLoad } from '../components.ts';
import { downloadFile } from '../files.ts';

const PURPOSES = ['assistants', 'vision', 'user_data', 'batch', 'fine-tune'];

interface Upload {
  id: number;
  name: string;
  fraction: number;
}

let uploadIds = 0;

/** The project's files: upload (picker or drag and drop, each with its progress), list, download, delete. */
export function FilesView() {
  const files = useLoad(() => get<Page<FileObject>>('/files', { limit: 1000, order: 'desc' }), []);
  const [purpose, setPurpose] = useState('assistants');
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [error, setError] = useState<unknown>();
  const [dragging, setDragging] = useState(false);
  const picker = useRef<HTMLInputElement>(null);

  const upload = (chosen: FileList | null) => {
    setError(undefined);
    for (const file of Array.from(chosen ?? [])) {
      const id = ++uploadIds;
      setUploads((current) => [...current, { id, name: file.name, fraction: 0 }]);
      uploadFile<FileObject>(file, purpose, (fraction) =>
        setUploads((current) => current.map((u) => (u.id === id ? { ...u, fraction } : u))),
      )
        .then(files.reload, setError)
        .finally(() => setUploads((current) => current.filter((u) => u.id !== id)));
    }
  };
  const remove = async (file: FileObject) => {
    if (!confirm(`Delete ${file.filename}?`)) return;
    await del(`/files/${file.id}`);
    files.reload();
  };

  return html`
    <section>
      <h1>Files</h1>
      <div class="card stack">
        <div class="grid-2">
          <div class="field">
            <label for="upload-purpose">Purpose</label>
            <select id="upload-purpose" value=${purpose} onChange=${(e: Event) => setPurpose((e.currentTarget as HTMLSelectElement).value)}>
              ${PURPOSES.map((p) => html`<option key=${p} value=${p}>${p}</option>`)}
            </select>
          </div>
          <div class="field">
            <label for="upload-files">Upload files</label>
            <input
              id="upload-files"
              ref=${picker}
              type="file"
              multiple
              onChange=${(e: Event) => {
                const input = e.currentTarget as HTMLInputElement;
                upload(input.files);
                input.value = '';
              }}
            />
          </div>
        </div>
        <div
          role="button"
          tabindex="0"
          class=${`drop-zone${dragging ? ' dragging' : ''}`}
          onClick=${() => picker.current?.click()}
          onKeyDown=${(e: KeyboardEvent) => {
            if (e.key === 'Enter' || e.key === ' ') {
              e.preventDefault();
              picker.current?.click();
            }
          }}
          onDragOver=${(e: DragEvent) => {
            e.preventDefault();
            setDragging(true);
          }}
          onDragLeave=${() => setDragging(false)}
          onDrop=${(e: DragEvent) => {
            e.preventDefault();
            setDragging(false);
            upload(e.dataTransfer?.files ?? null);
          }}
        >
          Drop files here
        </div>
        ${uploads.map(
          (u) => html`
            <div key=${u.id} class="upload">
              <span>${u.name}</span>
              <progress aria-label=${`Uploading ${u.name}`} max="1" value=${u.fraction}></progress>
            </div>
          `,
        )}
      </div>
      <${ErrorAlert} error=${error ?? files.error} />
      ${files.value?.data.length === 0 && html`<p class="muted">No files yet.</p>`}
      <ul aria-label="Files" class="cards">
        ${(files.value?.data ?? []).map(
          (file) => html`
            <li key=${file.id} class="card file-item">
              <div>
                <div class="item-title">${file.filename}</div>
                <div class="small muted">
                  <code>${file.id}</code>${` · `}<span>${file.bytes}</span>${` bytes · `}<span>${file.purpose}</span>
                  ${` · ${dateTime(file.created_at)}`}
                </div>
              </div>
              <div class="actions">
                <button type="button" class="secondary" onClick=${() => downloadFile(file.id).catch(setError)}>
                  Download
                </button>
                <button type="button" class="danger" onClick=${() => remove(file).catch(setError)}>Delete</button>
              </div>
            </li>
          `,
        )}
      </ul>
    </section>
  `;
}
