import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { eventually } from '../support/eventually.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

/**
 * A run's model request leaves before the answer to the request that started the run (src/runs/run-service.ts,
 * `queued`): the model's first token is what the client ends up waiting for, and writing the answer first delayed
 * the model's request by as long as that write took.
 *
 * The upstream here is a plain HTTP server in this process that notes when a request reaches it, then answers with
 * a one-chunk stream. The server under test writes the model's request and then its answer to the client, both on
 * loopback sockets read by this process, in the order they were written. A first run opens the upstream connection
 * (a request on a connection still being opened leaves once it is open: nothing waits for that), so that the runs
 * under test find it open.
 */
describe('the model is asked before the client is answered', () => {
  let upstream: Server;
  let server: TestServer;
  const order: string[] = [];

  before(async () => {
    upstream = createServer((req, res) => {
      order.push('model asked');
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = { id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm' };
        res.write(`data: ${JSON.stringify({ ...chunk, choices: [{ index: 0, delta: { content: 'Hi' } }] })}\n\n`);
        res.write(
          `data: ${JSON.stringify({ ...chunk, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
        );
        res.end('data: [DONE]\n\n');
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const { port } = upstream.address() as AddressInfo;
    server = await startTestServer({
      ASSISTD_UPSTREAM_BASE_URL: `http://127.0.0.1:${port}/v1`,
      ASSISTD_UPSTREAM_MAX_RETRIES: '0',
    });
    const { threadId, assistantId } = await threadAndAssistant();
    const run = await server.api.post(`/v1/threads/${threadId}/runs`, { assistant_id: assistantId });
    await completed(threadId, run.body.id as string);
  });

  after(async () => {
    await server.close();
    upstream.closeAllConnections();
    await new Promise((resolve) => upstream.close(resolve));
  });

  async function threadAndAssistant(): Promise<{ threadId: string; assistantId: string }> {
    const assistant = await server.api.post('/v1/assistants', { model: 'gpt-4o' });
    const thread = await server.api.post('/v1/threads', { messages: [{ role: 'user', content: 'Hello' }] });
    return { threadId: thread.body.id as string, assistantId: assistant.body.id as string };
  }

  async function completed(threadId: string, runId: string): Promise<void> {
    await eventually('the run completed', 5000, async () => {
      const run = await server.api.get(`/v1/threads/${threadId}/runs/${runId}`);
      return run.body.status === 'completed' ? run : undefined;
    });
  }

  /** Creates a run on a new thread, noting in `order` when the answer's headers arrive. */
  async function createRun(stream: boolean): Promise<{ threadId: string; response: Response }> {
    const { threadId, assistantId } = await threadAndAssistant();
    order.length = 0;
    const response = await fetch(`${server.url}/v1/threads/${threadId}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: assistantId, stream }),
    });
    order.push('run answered');
    return { threadId, response };
  }

  test('a polled run: its creation is answered after its model request', async () => {
    const { threadId, response } = await createRun(false);
    const run = (await response.json()) as { id: string };
    assert.equal(response.status, 200);
    assert.deepEqual(order, ['model asked', 'run answered']);
    await completed(threadId, run.id);
  });

  test('a streamed run: its first frames are written after its model request', async () => {
    const { response } = await createRun(true);
    const text = await response.text();
    assert.deepEqual(order, ['model asked', 'run answered']);
    assert.match(text, /event: thread\.run\.created\n[\s\S]*event: thread\.run\.completed\n[\s\S]*data: \[DONE\]/);
  });

  test('a run that stops before asking a model (none is configured for it) is answered too', async () => {
    const alone = await startTestServer();
    try {
      const assistant = await alone.api.post('/v1/assistants', { model: 'nowhere-model' });
      const thread = await alone.api.post('/v1/threads', {});
      const run = await alone.api.post(`/v1/threads/${thread.body.id}/runs`, { assistant_id: assistant.body.id });
      assert.equal(run.status, 200);
      await eventually('the run failed', 5000, async () => {
        const now = await alone.api.get(`/v1/threads/${thread.body.id}/runs/${run.body.id}`);
        return now.body.status === 'failed' ? now : undefined;
      });
    } finally {
      await alone.close();
    }
  });
});
