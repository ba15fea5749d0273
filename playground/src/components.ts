import { html } from 'htm/preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { fileBlob, messageOf } from './api.ts';

/** An API error (its `error.message`) or any other failure, announced to screen readers. */
export function ErrorAlert({ error }: { error: unknown }) {
  if (error === undefined || error === null) return null;
  return html`<p role="alert" class="alert">${messageOf(error)}</p>`;
}

export interface Loaded<T> {
  value: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/** The result of `load`, run again when `deps` change or on `reload()`; an older answer never overwrites a newer. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ value: T | undefined; error: unknown; loading: boolean }>({
    value: undefined,
    error: undefined,
    loading: true,
  });
  const [generation, setGeneration] = useState(0);
  // Runs when `deps` change, not when `load` does: it is a new closure every render.
  useEffect(() => {
    let current = true;
    setState((previous) => ({ ...previous, loading: true }));
    load().then(
      (value) => current && setState({ value, error: undefined, loading: false }),
      (error: unknown) => current && setState((previous) => ({ value: previous.value, error, loading: false })),
    );
    return () => {
      current = false;
    };
  }, [...deps, generation]);
  const reload = useCallback(() => setGeneration((n) => n + 1), []);
  return { ...state, reload };
}

/** An image file of the API (a plot of code_interpreter): its bytes fetched with the key, shown from a blob URL. */
export function FileImage({ fileId }: { fileId: string }) {
  const [url, setUrl] = useState<string>();
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    let objectUrl: string | undefined;
    let current = true;
    fileBlob(fileId).then(
      (blob) => {
        if (!current) return;
        objectUrl = URL.createObjectURL(blob);
        setUrl(objectUrl);
      },
      (failure: unknown) => current && setError(failure),
    );
    return () => {
      current = false;
      if (objectUrl) URL.revokeObjectURL(objectUrl);
    };
  }, [fileId]);
  if (error) return html`<${ErrorAlert} error=${error} />`;
  return html`<img class="file-image" alt=${`Image ${fileId}`} src=${url} />`;
}

/** A Unix time (seconds) as the user's local date and time. */
export function dateTime(seconds: number | null | undefined): string {
  return seconds ? new Date(seconds * 1000).toLocaleString() : '';
}

/** A Unix time (seconds) as the time of day, to the second (`12:00:01`). */
export function timeOfDay(seconds: number): string {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}
