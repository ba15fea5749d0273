import assert from 'node:assert/strict';
import OpenAI, { toFile } from 'openai';
import { FakeUpstream, type RecordedRequest } from './fake-upstream.ts';
import { startTestServer, type TestServer, type TestServerOptions } from './server.ts';
import { createValidatingFetch, type ValidatingFetch } from './validating-fetch.ts';

/** The one value of `include[]`. */
export const INCLUDE_CONTENT = 'step_details.tool_calls[*].file_search.results[*].content' as const;

/** The tool messages the model was sent in this request (the outputs of the calls it made before). */
export function toolMessages(request: RecordedRequest | undefined): string[] {
  assert.ok(request, 'there is a request');
  return request.body.messages.filter((m) => m.role === 'tool').map((m) => String(m['content']));
}

/**
 * One in-process test server pointed at its own fake model (no retries), and an official SDK client whose JSON
 * responses are all checked against the schema; `close` fails the test on any violation seen.
 */
export class SdkHarness {
  upstream!: FakeUpstream;
  server!: TestServer;
  client!: OpenAI;
  recorder!: ValidatingFetch;

  constructor(
    protected readonly env: Record<string, string> = {},
    protected readonly options: TestServerOptions = {},
  ) {}

  async start(): Promise<void> {
    this.upstream = await FakeUpstream.start();
    this.server = await startTestServer(
      { ASSISTD_UPSTREAM_BASE_URL: this.upstream.baseUrl, ASSISTD_UPSTREAM_MAX_RETRIES: '0', ...this.env },
      this.options,
    );
    this.recorder = createValidatingFetch();
    this.client = new OpenAI({
      baseURL: `${this.server.url}/v1`,
      apiKey: 'test',
      fetch: this.recorder.fetch,
      maxRetries: 0,
    });
  }

  /** Uploads `text` as a file named `name` (purpose `assistants`); its id. */
  async upload(name: string, text: string): Promise<string> {
    const file = await this.client.files.create({ file: await toFile(Buffer.from(text), name), purpose: 'assistants' });
    return file.id;
  }

  /** A run's steps, oldest first; with the file_search results' text when `include`. */
  async steps(threadId: string, runId: string, include = false): Promise<OpenAI.Beta.Threads.Runs.RunStep[]> {
    const list = await this.client.beta.threads.runs.steps.list(runId, {
      thread_id: threadId,
      order: 'asc',
      ...(include ? { include: [INCLUDE_CONTENT] } : {}),
    });
    return list.data;
  }

  /** The one message a run wrote. */
  async answer(threadId: string, runId: string): Promise<OpenAI.Beta.Threads.Message> {
    const messages = await this.client.beta.threads.messages.list(threadId, { run_id: runId });
    assert.equal(messages.data.length, 1, 'one answer');
    return messages.data[0]!;
  }

  async close(): Promise<void> {
    await this.server?.close();
    await this.upstream?.close();
    this.recorder?.assertNoViolations({ all: true });
  }
}
