import { assertValidResponse } from './openapi.ts';

/**
 * A `fetch` for the official SDK (`new OpenAI({ fetch })`) that checks every JSON response against the official
 * schema. A violation is recorded, never thrown: throwing from fetch would turn it into a connection error that the
 * SDK retries or rewraps. Tests must call `assertNoViolations()` (e.g. in afterEach/after) to make them fail.
 */

type FetchFn = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface RecordedRequest {
  method: string;
  path: string;
  search: string;
  status: number;
}

export interface Violation extends RecordedRequest {
  problem: string;
}

export interface ValidatingFetch {
  readonly fetch: FetchFn;
  /** Every request made through `fetch`, in order. */
  readonly requests: RecordedRequest[];
  /** Every schema violation (or unreadable JSON body) seen so far. */
  readonly violations: Violation[];
  /** Throws, listing them, if any violation was recorded since the last call (or ever, with `all`). */
  assertNoViolations(options?: { all?: boolean }): void;
}

function describeRequest(input: string | URL | Request, init: RequestInit | undefined): { method: string; url: URL } {
  const href = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  const method = init?.method ?? (typeof input === 'object' && !(input instanceof URL) ? input.method : undefined);
  return { method: (method ?? 'GET').toUpperCase(), url: new URL(href) };
}

function isJson(contentType: string | null): boolean {
  if (contentType === null) return false;
  const mime = contentType.split(';')[0]!.trim().toLowerCase();
  return mime === 'application/json' || mime.endsWith('+json');
}

export function createValidatingFetch(
  base: FetchFn = (input, init) => globalThis.fetch(input, init),
  { quiet = false }: { quiet?: boolean } = {},
): ValidatingFetch {
  const requests: RecordedRequest[] = [];
  const violations: Violation[] = [];
  let reported = 0;

  const validatingFetch: FetchFn = async (input, init) => {
    const { method, url } = describeRequest(input, init);
    const response = await base(input, init);
    const request: RecordedRequest = { method, path: url.pathname, search: url.search, status: response.status };
    requests.push(request);
    if (!isJson(response.headers.get('content-type'))) return response;
    // Read a clone to the end before handing the response over, so the violation is recorded before the SDK call
    // that made the request resolves.
    const text = await response.clone().text();
    try {
      const body: unknown = JSON.parse(text);
      assertValidResponse(method, url.pathname, response.status, body);
    } catch (error) {
      const problem = error instanceof SyntaxError ? `invalid JSON body: ${text.slice(0, 500)}` : String(error);
      violations.push({ ...request, problem });
      if (!quiet)
        process.stderr.write(`schema violation: ${method} ${url.pathname} → ${response.status}: ${problem}\n`);
    }
    return response;
  };

  return {
    fetch: validatingFetch,
    requests,
    violations,
    assertNoViolations({ all = false } = {}) {
      const found = all ? violations : violations.slice(reported);
      reported = violations.length;
      if (found.length > 0)
        throw new Error(
          `${found.length} response(s) violate the official schema:\n` +
            found.map((v) => `- ${v.method} ${v.path}${v.search} → ${v.status}: ${v.problem}`).join('\n'),
        );
    },
  };
}
