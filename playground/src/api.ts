/**
 * The playground's only way to the server: assistd's public API under /v1, called with the key its user entered (kept
 * in session storage, so it lives as long as the tab and never appears in a URL).
 */

const KEY_ITEM = 'assistd.apiKey';

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY_ITEM);
}

export function saveKey(key: string): void {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(KEY_ITEM);
}

/** An error answer of the API: `message` is its `error.message`, what the page shows. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

/** A list page of the API (`object: "list"`). */
export interface Page<T> {
  data: T[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

export type Query = Record<string, string | number | string[] | Record<string, string> | undefined>;

/**
 * `?a=1&include[]=x&metadata[k]=v`: arrays as `name[]` (the API's `include[]`), objects as `name[key]` (the thread
 * list's metadata filter), undefined left out.
 */
export function queryString(query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) params.append(`${name}[]`, item);
    else if (typeof value === 'object')
      for (const [key, item] of Object.entries(value)) params.append(`${name}[${key}]`, item);
    else params.append(name, String(value));
  }
  const text = params.toString();
  return text === '' ? '' : `?${text}`;
}

function headers(json: boolean): Record<string, string> {
  const result: Record<string, string> = { authorization: `Bearer ${storedKey() ?? ''}` };
  if (json) result['content-type'] = 'application/json';
  return result;
}

/** The API's error of a failed response, or one naming the HTTP status when the body is not the API's. */
export async function errorOf(response: Response): Promise<ApiError> {
  const text = await response.text().catch(() => '');
  try {
    const { error } = JSON.parse(text) as { error?: { message?: string; code?: string | null } };
    if (error?.message) return new ApiError(response.status, error.message, error.code ?? null);
  } catch {
    // Not JSON (a proxy's page, say): the status says what happened.
  }
  return new ApiError(response.status, `The server answered ${response.status} ${response.statusText}.`);
}

/** A `fetch` of an API path with the key; throws the API's error when the answer is not a success. */
export async function send(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
  const response = await fetch(`/v1${path}`, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? null : JSON.stringify(body),
    signal: signal ?? null,
  });
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function get<T>(path: string, query?: Query): Promise<T> {
  return (await send('GET', path + queryString(query))).json() as Promise<T>;
}

export async function post<T>(path: string, body: unknown = {}): Promise<T> {
  return (await send('POST', path, body)).json() as Promise<T>;
}

export async function del(path: string): Promise<void> {
  await send('DELETE', path);
}

/** Every item of a list, page after page (for lists a page shows whole: a thread's messages, a store's files). */
export async function getAll<T extends { id: string }>(path: string, query: Query = {}): Promise<T[]> {
  const items: T[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await get<Page<T>>(path, { limit: 100, ...query, after });
    items.push(...page.data);
    const last = page.data.at(-1);
    if (!page.has_more || last === undefined) return items;
    after = last.id;
  }
}

/** A file's bytes, fetched with the key (an `img` or a link cannot send it), as a blob. */
export async function fileBlob(fileId: string): Promise<Blob> {
  return (await send('GET', `/files/${encodeURIComponent(fileId)}/content`)).blob();
}

/**
 * Uploads one file (`POST /v1/files`, multipart) with XMLHttpRequest: unlike fetch, it reports upload progress.
 * Resolves with the file object; rejects with the API's error.
 */
export function uploadFile<T>(file: File, purpose: string, onProgress: (fraction: number) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open('POST', '/v1/files');
    request.setRequestHeader('authorization', `Bearer ${storedKey() ?? ''}`);
    request.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener('load', () => {
      if (request.status >= 200 && request.status < 300) resolve(JSON.parse(request.responseText) as T);
      else
        errorOf(new Response(request.responseText, { status: request.status, statusText: request.statusText })).then(
          reject,
        );
    });
    request.addEventListener('error', () => reject(new Error(`The upload of ${file.name} failed: no answer.`)));
    const form = new FormData();
    form.append('purpose', purpose);
    form.append('file', file);
    request.send(form);
  });
}

/** What a caught error says to the user. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
