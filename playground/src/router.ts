import { useEffect, useState } from 'preact/hooks';

/** The views, as their hash routes say (`#/threads/<id>` …): a bookmark or a reload opens the same view. */
export type Route =
  | { view: 'assistants' }
  | { view: 'threads' }
  | { view: 'thread'; threadId: string }
  | { view: 'run'; threadId: string; runId: string }
  | { view: 'files' }
  | { view: 'vector-stores'; storeId?: string };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [view, id, sub, subId] = parts;
  if (view === 'threads' && id && sub === 'runs' && subId) return { view: 'run', threadId: id, runId: subId };
  if (view === 'threads' && id) return { view: 'thread', threadId: id };
  if (view === 'threads') return { view: 'threads' };
  if (view === 'files') return { view: 'files' };
  if (view === 'vector-stores') return id ? { view: 'vector-stores', storeId: id } : { view: 'vector-stores' };
  return { view: 'assistants' };
}

export const href = {
  assistants: '#/assistants',
  threads: '#/threads',
  thread: (threadId: string) => `#/threads/${encodeURIComponent(threadId)}`,
  run: (threadId: string, runId: string) =>
    `#/threads/${encodeURIComponent(threadId)}/runs/${encodeURIComponent(runId)}`,
  files: '#/files',
  vectorStores: '#/vector-stores',
  vectorStore: (storeId: string) => `#/vector-stores/${encodeURIComponent(storeId)}`,
};

export function navigate(to: string): void {
  location.hash = to;
}

/** The route of the current hash, following its changes. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const follow = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', follow);
    return () => removeEventListener('hashchange', follow);
  }, []);
  return route;
}
