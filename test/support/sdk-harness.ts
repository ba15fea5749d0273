import OpenAI from 'openai';
import { FakeUpstream } from './fake-upstream.ts';
import { startTestServer, type TestServer, type TestServerOptions } from './server.ts';
import { createValidatingFetch, type ValidatingFetch } from './validating-fetch.ts';

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

  async close(): Promise<void> {
    await this.server?.close();
    await this.upstream?.close();
    this.recorder?.assertNoViolations({ all: true });
  }
}
