/**
 * The floor for bench/token.bench.ts: an HTTP server that, for each request, streams a chat completion from the
 * upstream named by FLOOR_UPSTREAM_URL (node:http, a keep-alive agent, eventsource-parser and JSON.parse per chunk,
 * as assistd's upstream client does) and writes one pre-built SSE frame per content chunk to its client, then
 * `thread.run.completed` and `done` (an `error` frame instead if the upstream did not answer 200). What a token
 * costs here is what any server relaying a stream pays: a read, a parse, a write. Prints `floor listening on <url>`
 * once it listens.
 */
import http from 'node:http';
import { createParser } from 'eventsource-parser';

const upstreamUrl = process.env.FLOOR_UPSTREAM_URL;
if (!upstreamUrl) throw new Error('FLOOR_UPSTREAM_URL is required');
const endpoint = new URL(`${upstreamUrl.replace(/\/+$/, '')}/chat/completions`);
const agent = new http.Agent({ keepAlive: true });
const body = JSON.stringify({ model: 'floor', messages: [{ role: 'user', content: 'Hi' }], stream: true });
/** A message delta frame the size of assistd's for a one-word token. */
const FRAME =
  'event: thread.message.delta\ndata: {"id":"msg_Floor000000000000000000000","object":"thread.message.delta",' +
  '"delta":{"content":[{"index":0,"type":"text","text":{"value":" token"}}]}}\n\n';
/**
 * The end of a stream whose upstream answered, with the run completed as assistd ends it: the bench checks every
 * stream the same way on both paths. Sent in the one write that ends the stream, the same in short and long batches,
 * so not in a token's cost.
 */
const COMPLETED =
  'event: thread.run.completed\ndata: {"id":"run_Floor000000000000000000000","object":"thread.run",' +
  '"status":"completed"}\n\nevent: done\ndata: [DONE]\n\n';
/** The end of a stream whose upstream failed: no `thread.run.completed`, so the bench rejects it. */
const FAILED =
  'event: error\ndata: {"error":{"message":"upstream failed","type":"server_error"}}\n\nevent: done\ndata: [DONE]\n\n';

const server = http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  const upstream = http.request(endpoint, {
    method: 'POST',
    agent,
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
  });
  upstream.on('error', () => res.destroy());
  upstream.on('response', (response) => {
    if (response.statusCode !== 200) {
      response.resume();
      response.on('end', () => res.end(FAILED));
      return;
    }
    response.setEncoding('utf8');
    const parser = createParser({
      onEvent: (event) => {
        if (event.data === '[DONE]') return;
        const chunk = JSON.parse(event.data) as { choices?: Array<{ delta?: { content?: string } }> };
        if (chunk.choices?.[0]?.delta?.content) res.write(FRAME);
      },
    });
    response.on('data', (piece: string) => parser.feed(piece));
    response.on('end', () => res.end(COMPLETED));
  });
  upstream.end(body);
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address() as { port: number };
  process.stdout.write(`floor listening on http://127.0.0.1:${address.port}\n`);
});

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
