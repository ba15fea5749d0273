/**
 * The embedded backend: what a run on a GGUF model costs through assistd, beside the same generation made directly
 * with node-llama-cpp in this process (same file, same context size, threads and chat template, same prompt).
 *
 * The model is a scripted test model (test/support/gguf.ts) that never ends its turn, so each generation is exactly
 * BENCH_TOKENS tokens; it is tiny, so the figures show assistd's own cost (HTTP, database, run lifecycle, the
 * per-token event path) rather than llama.cpp's. With a real model the generation dominates and the ratio tends to 1.
 *
 *   npm run bench:embedded                       # 20 runs of 256 tokens each way
 *   BENCH_RUNS=50 BENCH_TOKENS=512 npm run bench:embedded
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { getLlama, LlamaChat, resolveChatWrapper } from 'node-llama-cpp';
import OpenAI from 'openai';
import { writeScriptedGguf } from '../test/support/gguf.ts';
import { spawnServer, tempDir } from '../test/support/server.ts';
import {
  cleanups,
  interleaved,
  loadAverage,
  log,
  machine,
  positiveInteger,
  runBench,
  summarizeP50P90,
  table,
  withTimeout,
} from './support.ts';

const RUNS = positiveInteger('BENCH_RUNS', 20);
const TOKENS = Math.max(256, positiveInteger('BENCH_TOKENS', 256)); // the API's minimum max_completion_tokens
const CONTEXT = 4096;
const PROMPT = 'Say something.';

async function main() {
  const dir = tempDir('assistd-bench-embedded-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const modelPath = path.join(dir, 'loop.gguf');
  writeScriptedGguf(modelPath, { reply: ['tick'], chains: [['tick', ' tock', 'tick']] });

  // Direct: node-llama-cpp in this process, one context sequence reused like assistd's.
  const llama = await getLlama({ gpu: false, build: 'never', progressLogs: false });
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: CONTEXT, threads: 1, sequences: 1 });
  const chat = new LlamaChat({ contextSequence: context.getSequence(), chatWrapper: resolveChatWrapper(model) });
  cleanups.push(() => context.dispose());
  const direct = async (): Promise<number> => {
    const start = performance.now();
    const result = await chat.generateResponse([{ type: 'user', text: PROMPT }], {
      maxTokens: TOKENS,
      temperature: 1,
    });
    const elapsed = performance.now() - start;
    if (result.metadata.stopReason !== 'maxTokens') throw new Error(`direct: stopped by ${result.metadata.stopReason}`);
    return elapsed;
  };

  const server = await withTimeout(
    spawnServer({
      ASSISTD_DATA_DIR: path.join(dir, 'data'),
      ASSISTD_MODEL_FILE: modelPath,
      ASSISTD_LLAMA_THREADS: '1',
      ASSISTD_LLAMA_CONTEXT_SIZE: String(CONTEXT),
    }),
    'assistd',
  );
  cleanups.push(() => server.stop());
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  const assistant = await client.beta.assistants.create({ model: 'loop' });
  const viaAssistd = async (): Promise<number> => {
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: PROMPT }] });
    const start = performance.now();
    const run = await client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistant.id,
      max_completion_tokens: TOKENS,
    });
    const elapsed = performance.now() - start;
    if (run.status !== 'incomplete' || run.usage?.completion_tokens !== TOKENS)
      throw new Error(`assistd: run ${run.status}, ${run.usage?.completion_tokens} tokens`);
    return elapsed;
  };
  const firstToken = async (): Promise<number> => {
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: PROMPT }] });
    const start = performance.now();
    let first: number | undefined;
    const stream = client.beta.threads.runs
      .stream(thread.id, { assistant_id: assistant.id, max_completion_tokens: TOKENS })
      .on('textDelta', () => {
        first ??= performance.now() - start;
      });
    await stream.finalRun();
    if (first === undefined) throw new Error('no text delta');
    return first;
  };
  const directFirstToken = async (): Promise<number> => {
    const start = performance.now();
    let first: number | undefined;
    await chat.generateResponse([{ type: 'user', text: PROMPT }], {
      maxTokens: TOKENS,
      temperature: 1,
      onTextChunk: (text) => {
        if (text !== '') first ??= performance.now() - start;
      },
    });
    if (first === undefined) throw new Error('no text chunk');
    return first;
  };

  // Warm-up: the first generation of each side pays for allocations.
  await direct();
  await viaAssistd();

  log(machine());
  log(`load average before: ${loadAverage()}`);
  log(`${RUNS} runs each way, ${TOKENS} tokens per run, context ${CONTEXT}, 1 thread\n`);
  const [assistdMs, directMs] = await interleaved(RUNS, viaAssistd, direct);
  const [streamFirstMs, directFirstMs] = await interleaved(RUNS, firstToken, directFirstToken);
  const run = summarizeP50P90(assistdMs);
  const gen = summarizeP50P90(directMs);
  const first = summarizeP50P90(streamFirstMs);
  const directFirst = summarizeP50P90(directFirstMs);
  const ms = (n: number) => n.toFixed(1);
  log(
    table(
      ['', 'p50 ms', 'p90 ms'],
      [
        [`direct generation (${TOKENS} tokens)`, ms(gen.p50), ms(gen.p90)],
        [`assistd createAndPoll (${TOKENS} tokens)`, ms(run.p50), ms(run.p90)],
        ['direct first text chunk', ms(directFirst.p50), ms(directFirst.p90)],
        ['assistd runs.stream first textDelta', ms(first.p50), ms(first.p90)],
      ],
    ),
  );
  log('');
  log(`createAndPoll ÷ direct generation: ${(run.p50 / gen.p50).toFixed(2)}× (p50)`);
  log(`added per run: ${ms(run.p50 - gen.p50)} ms; per token: ${((run.p50 - gen.p50) / TOKENS).toFixed(3)} ms`);
  log(`first token added by a stream: ${ms(first.p50 - directFirst.p50)} ms (p50)`);
  log(`load average after: ${loadAverage()}`);
}

await runBench(main);
