import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { forgetKey, saveKey, storedKey } from './api.ts';
import { href, type Route, useRoute } from './router.ts';
import { AssistantsView } from './views/assistants.ts';
import { FilesView } from './views/files.ts';
import { KeyForm } from './views/key-form.ts';
import { RunTimelineView } from './views/run-timeline.ts';
import { ThreadView } from './views/thread.ts';
import { ThreadsView } from './views/threads.ts';
import { VectorStoresView } from './views/vector-stores.ts';

const SECTIONS = [
  { label: 'Assistants', href: href.assistants, views: ['assistants'] },
  { label: 'Threads', href: href.threads, views: ['threads', 'thread', 'run'] },
  { label: 'Files', href: href.files, views: ['files'] },
  { label: 'Vector stores', href: href.vectorStores, views: ['vector-stores'] },
];

/** The page: the key form until a key is saved, then the header, the navigation and the view of the hash route. */
export function App() {
  const [key, setKey] = useState(storedKey);
  const route = useRoute();
  if (!key)
    return html`<${KeyForm}
      onSave=${(entered: string) => {
        saveKey(entered);
        setKey(entered);
      }}
    />`;
  return html`
    <header class="header">
      <a class="brand" href=${href.assistants}>assistd playground</a>
      <nav aria-label="Main">
        <ul>
          ${SECTIONS.map(
            (section) =>
              html`<li>
                <a href=${section.href} aria-current=${section.views.includes(route.view) ? 'page' : undefined}
                  >${section.label}</a
                >
              </li>`,
          )}
        </ul>
      </nav>
      <button
        type="button"
        class="secondary"
        onClick=${() => {
          forgetKey();
          setKey(null);
        }}
      >
        Forget key
      </button>
    </header>
    <main class="main"><${View} route=${route} /></main>
  `;
}

function View({ route }: { route: Route }) {
  switch (route.view) {
    case 'assistants':
      return html`<${AssistantsView} />`;
    case 'threads':
      return html`<${ThreadsView} />`;
    case 'thread':
      return html`<${ThreadView} key=${route.threadId} threadId=${route.threadId} />`;
    case 'run':
      return html`<${RunTimelineView} key=${route.runId} threadId=${route.threadId} runId=${route.runId} />`;
    case 'files':
      return html`<${FilesView} />`;
    case 'vector-stores':
      return html`<${VectorStoresView} storeId=${route.storeId} />`;
  }
}
