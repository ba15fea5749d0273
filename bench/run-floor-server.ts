/**
 * The floor for part 1 of bench/runs.bench.ts and bench/stream.bench.ts: runs answered by the same stack assistd is
 * built on, with nothing of its own. `POST /v1/threads/:thread/runs` starts a streamed chat completion on
 * FLOOR_UPSTREAM_URL (node:http with a keep-alive agent, eventsource-parser and JSON.parse per chunk, as assistd's
 * upstream client does). Without `stream`, it answers a queued run, and the held `GET …/runs/:run` (what the SDK's
 * `createAndPoll` sends next) answers once the completion has ended, with the run completed. With `stream: true`, it
 * answers the run's events as Server-Sent Events, in the official order: the run's at once, the step's and the
 * message's with the first token, a `thread.message.delta` per token (serialized per token, as any server must),
 * then the ends and `done`. No database, no validation, no logging, no metrics: what any server relaying a model
 * call behind this API pays for its HTTP traffic. Prints `floor listening on <url>` once it listens.
 */
import http from 'node:http';
import { createParser } from 'eventsource-parser';
import Fastify, { type FastifyReply } from 'fastify';
import { listenAsFloor } from './floor-listen.ts';

const upstreamUrl = process.env.FLOOR_UPSTREAM_URL;
if (!upstreamUrl) throw new Error('FLOOR_UPSTREAM_URL is required');
const endpoint = new URL(`${upstreamUrl.replace(/\/+$/, '')}/chat/completions`);
const agent = new http.Agent({ keepAlive: true });

/** A run shaped and sized like assistd's, with the ids and status of the moment. */
function run(threadId: string, id: string, status: 'queued' | 'completed', createdAt: number) {
  const done = status === 'completed';
  return {
    id,
    object: 'thread.run',
    created_at: createdAt,
    assistant_id: 'asst_Floor000000000000000000000',
    thread_id: threadId,
    status,
    started_at: done ? createdAt : null,
    expires_at: done ? null : createdAt + 600,
    cancelled_at: null,
    failed_at: null,
    completed_at: done ? Math.floor(Date.now() / 1000) : null,
    required_action: null,
    last_error: null,
    model: 'gpt-4o-mini',
    instructions: '',
    tools: [],
    tool_resources: {},
    metadata: {},
    incomplete_details: null,
    usage: done ? { prompt_tokens: 8, completion_tokens: 7, total_tokens: 15 } : null,
    temperature: 1,
    top_p: 1,
    max_prompt_tokens: null,
    max_completion_tokens: null,
    truncation_strategy: { type: 'auto', last_messages: null },
    response_format: 'auto',
    tool_choice: 'auto',
    parallel_tool_calls: true,
  };
}

/** Streams one chat completion, giving each content piece to `onContent`; resolves with its text at its end. */
function complete(prompt: string, onContent: (content: string) => void = () => {}): Promise<string> {
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: prompt }], stream: true });
  return new Promise((resolve, reject) => {
    const request = http.request(endpoint, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    request.on('error', reject);
    request.on('response', (response) => {
      let text = '';
      response.setEncoding('utf8');
      const parser = createParser({
        onEvent: (event) => {
          if (event.data === '[DONE]') return;
          const chunk = JSON.parse(event.data) as { choices?: Array<{ delta?: { content?: string } }> };
          const content = chunk.choices?.[0]?.delta?.content ?? '';
          if (content === '') return;
          text += content;
          onContent(content);
        },
      });
      response.on('data', (piece: string) => parser.feed(piece));
      response.on('end', () => resolve(text));
      response.on('error', reject);
    });
    request.end(body);
  });
}

/** A run step creating a message, and that message, as the stream's events carry them. */
function answerObjects(threadId: string, runId: string, at: number, status: 'in_progress' | 'completed', text = '') {
  const done = status === 'completed';
  const messageId = `msg_${runId.slice(4)}`;
  const step = {
    id: `step_${runId.slice(4)}`,
    object: 'thread.run.step',
    created_at: at,
    run_id: runId,
    assistant_id: 'asst_Floor000000000000000000000',
    thread_id: threadId,
    type: 'message_creation',
    status,
    cancelled_at: null,
    completed_at: done ? at : null,
    expires_at: null,
    failed_at: null,
    last_error: null,
    step_details: { type: 'message_creation', message_creation: { message_id: messageId } },
    usage: done ? { prompt_tokens: 8, completion_tokens: 7, total_tokens: 15 } : null,
  };
  const message = {
    id: messageId,
    object: 'thread.message',
    created_at: at,
    assistant_id: 'asst_Floor000000000000000000000',
    thread_id: threadId,
    run_id: runId,
    status,
    incomplete_details: null,
    completed_at: done ? at : null,
    incomplete_at: null,
    role: 'assistant',
    content: done ? [{ type: 'text', text: { value: text, annotations: [] } }] : [],
    attachments: [],
    metadata: {},
  };
  return { step, message };
}

const frame = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

/** A streamed run: its events as Server-Sent Events, in the official order, a delta per token. */
function streamRun(threadId: string, id: string, createdAt: number, reply: FastifyReply): void {
  const res = reply.raw;
  reply.hijack();
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  const queued = run(threadId, id, 'queued', createdAt);
  res.write(
    frame('thread.run.created', queued) +
      frame('thread.run.queued', queued) +
      frame('thread.run.in_progress', { ...queued, status: 'in_progress', started_at: createdAt }),
  );
  let opened = false;
  const { step, message } = answerObjects(threadId, id, createdAt, 'in_progress');
  complete('Say hello.', (content) => {
    let frames = '';
    if (!opened) {
      opened = true;
      frames =
        frame('thread.run.step.created', step) +
        frame('thread.run.step.in_progress', step) +
        frame('thread.message.created', message) +
        frame('thread.message.in_progress', message);
    }
    res.write(
      frames +
        frame('thread.message.delta', {
          id: message.id,
          object: 'thread.message.delta',
          delta: { content: [{ index: 0, type: 'text', text: { value: content } }] },
        }),
    );
  }).then(
    (text) => {
      const ended = answerObjects(threadId, id, createdAt, 'completed', text);
      res.end(
        frame('thread.message.completed', ended.message) +
          frame('thread.run.step.completed', ended.step) +
          frame('thread.run.completed', run(threadId, id, 'completed', createdAt)) +
          'event: done\ndata: [DONE]\n\n',
      );
    },
    (error: Error) => res.end(frame('error', { error: { message: String(error), type: 'server_error' } })),
  );
}

const runs = new Map<string, { createdAt: number; done: Promise<unknown> }>();
let sequence = 0;

// Connections closed when the floor stops, even mid-request (see listenAsFloor).
const app = Fastify({ logger: false, forceCloseConnections: true });
app.post<{ Params: { thread: string }; Body: { stream?: boolean } | undefined }>(
  '/v1/threads/:thread/runs',
  async (request, reply) => {
    const id = `run_Floor${String(++sequence).padStart(21, '0')}`;
    const createdAt = Math.floor(Date.now() / 1000);
    if (request.body?.stream === true) return streamRun(request.params.thread, id, createdAt, reply);
    // Settled either way: a failed upstream call is the bench's to see (the run's GET answers 502).
    const done = complete('Say hello.').then(
      () => undefined,
      (error: Error) => error,
    );
    runs.set(id, { createdAt, done });
    return run(request.params.thread, id, 'queued', createdAt);
  },
);
app.get<{ Params: { thread: string; run: string } }>('/v1/threads/:thread/runs/:run', async (request, reply) => {
  const entry = runs.get(request.params.run);
  if (!entry) return reply.code(404).send({ error: { message: 'No run found', type: 'invalid_request_error' } });
  const failure = await entry.done;
  runs.delete(request.params.run);
  if (failure) return reply.code(502).send({ error: { message: String(failure), type: 'server_error' } });
  return run(request.params.thread, request.params.run, 'completed', entry.createdAt);
});

await listenAsFloor(app);
