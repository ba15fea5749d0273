/**
 * Pass-through benchmark: what assistd adds to a chat completion it passes on (src/api/routes/pass-through.ts),
 * from the client's point of view. The official SDK streams `chat.completions.create({ stream: true })` twice,
 * interleaved: straight from the fake upstream (in this process), and through `assistd serve` (its own process,
 * SQLite) passing it on to the same fake. Each is timed from the moment the client sends its request (just before
 * the SDK call) to its first content chunk, and to the stream's end. Reported: p50 / p90 of each side, and the
 * p50 added. Run with `npm run bench:pass-through`.
 *
 * Settings: BENCH_RUNS (completions per side, default 100), BENCH_CHUNK_MS (the fake's token spacing, default 20).
 */
import OpenAI from 'openai';
import { FakeUpstream } from '../test/support/fake-upstream.ts';
import {
  cleanups,
  interleaved,
  loadAverage,
  log,
  machine,
  positiveInteger,
  runBench,
  startAssistd,
  summarizeP50P90,
  table,
  tokens,
} from './support.ts';

const RUNS = positiveInteger('BENCH_RUNS', 100);
const CHUNK_MS = positiveInteger('BENCH_CHUNK_MS', 20);
const REPLY = tokens(5);

interface Timing {
  firstMs: number;
  endMs: number;
}

/** One streamed completion, timed from its request to its first content chunk and to its end; its text checked. */
function timer(client: OpenAI) {
  return async (): Promise<Timing> => {
    const start = performance.now();
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'A title for this thread?' }],
      stream: true,
    });
    let text = '';
    let firstMs = Number.NaN;
    for await (const chunk of stream) {
      const piece = chunk.choices[0]?.delta.content;
      if (piece && Number.isNaN(firstMs)) firstMs = performance.now() - start;
      text += piece ?? '';
    }
    const endMs = performance.now() - start;
    if (text !== REPLY.join('')) throw new Error(`the completion streamed ${JSON.stringify(text)}`);
    return { firstMs, endMs };
  };
}

await runBench(async () => {
  log(`${machine()}; load ${loadAverage()}`);
  const upstream = await FakeUpstream.start({ chunkDelayMs: CHUNK_MS });
  cleanups.push(() => upstream.close());
  upstream.setDefault({ text: REPLY });
  const assistd = await startAssistd('sqlite', upstream.baseUrl, { prefix: 'assistd-bench-pass-through-' });
  const direct = new OpenAI({ baseURL: upstream.baseUrl, apiKey: 'bench', maxRetries: 0 });

  // Warm both paths (connections, JIT) before timing.
  await interleaved(5, timer(direct), timer(assistd.client));
  const [straight, passed] = await interleaved(RUNS, timer(direct), timer(assistd.client));

  const summary = (timings: Timing[], field: keyof Timing) => summarizeP50P90(timings.map((t) => t[field]));
  const rows: string[][] = [];
  for (const [what, field] of [
    ['first content chunk', 'firstMs'],
    ['end of the stream', 'endMs'],
  ] as const) {
    const a = summary(straight, field);
    const b = summary(passed, field);
    rows.push([
      what,
      a.p50.toFixed(2),
      a.p90.toFixed(2),
      b.p50.toFixed(2),
      b.p90.toFixed(2),
      (b.p50 - a.p50).toFixed(2),
    ]);
  }
  log(
    `\n${RUNS} streamed completions per side, ${REPLY.length} tokens ${CHUNK_MS} ms apart, from the client's request:`,
  );
  log(table(['until', 'direct p50 ms', 'direct p90 ms', 'through assistd p50 ms', 'p90 ms', 'added p50 ms'], rows));
  await assistd.stop();
});
