/**
 * The floor for part 1 of bench/runs.bench.ts: the two requests of the official SDK's `runs.createAndPoll` answered
 * by the same stack assistd is built on, with nothing of its own. `POST /v1/threads/:thread/runs` starts a streamed
 * chat completion on FLOOR_UPSTREAM_URL (node:http with a keep-alive agent, eventsource-parser and JSON.parse per
 * chunk, as assistd's upstream client does) and answers a queued run; the held `GET …/runs/:run` answers once that
 * stream has ended, with the run completed. No database, no validation, no logging, no metrics: what any server
 * relaying a model call behind this API pays for its HTTP traffic. Prints `floor listening on <url>` once it listens.
 */
import http from 'node:http';
import { createParser } from 'eventsource-parser';
import Fastify from 'fastify';
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

/** Streams one chat completion and resolves with its text once the upstream's response has ended. */
function complete(prompt: string): Promise<string> {
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
          text += chunk.choices?.[0]?.delta?.content ?? '';
        },
      });
      response.on('data', (piece: string) => parser.feed(piece));
      response.on('end', () => resolve(text));
      response.on('error', reject);
    });
    request.end(body);
  });
}

const runs = new Map<string, { createdAt: number; done: Promise<unknown> }>();
let sequence = 0;

const app = Fastify({ logger: false });
app.post<{ Params: { thread: string } }>('/v1/threads/:thread/runs', async (request) => {
  const id = `run_Floor${String(++sequence).padStart(21, '0')}`;
  const createdAt = Math.floor(Date.now() / 1000);
  // Settled either way: a failed upstream call is the bench's to see (the run's GET answers 502).
  const done = complete('Say hello.').then(
    () => undefined,
    (error: Error) => error,
  );
  runs.set(id, { createdAt, done });
  return run(request.params.thread, id, 'queued', createdAt);
});
app.get<{ Params: { thread: string; run: string } }>('/v1/threads/:thread/runs/:run', async (request, reply) => {
  const entry = runs.get(request.params.run);
  if (!entry) return reply.code(404).send({ error: { message: 'No run found', type: 'invalid_request_error' } });
  const failure = await entry.done;
  runs.delete(request.params.run);
  if (failure) return reply.code(502).send({ error: { message: String(failure), type: 'server_error' } });
  return run(request.params.thread, request.params.run, 'completed', entry.createdAt);
});

await listenAsFloor(app);
