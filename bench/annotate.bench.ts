/**
 * What a tool's annotations cost a streamed answer: a model turn (src/runs/model-turn.ts) fed an answer one token at
 * a time, as the executor feeds it, with file_search's citation annotator or code_interpreter's `sandbox:` link
 * annotator, beside the same turn with no annotator (the baseline, measured in the same run). The answer holds a
 * citation marker and a link every ~200 tokens, and the annotations found are checked against the whole text's. Time
 * per token at several answer lengths: flat means a long answer costs as many times more as it is longer; rising
 * means every token pays for the whole text before it. In process (no server): the turn's events go to a bus with
 * one listener, as a stream has. Run with `npm run bench:annotate`.
 *
 * Shorter answers are fed again until about 50,000 tokens have gone through, and the median time counts.
 *
 * Settings: BENCH_ANNOTATE_TOKENS (comma-separated answer lengths in tokens, default 1000,10000,50000).
 */

import { ModelTurn } from '../src/runs/model-turn.ts';
import { RunEventBus } from '../src/runs/run-event-bus.ts';
import { sandboxLinkAnnotator } from '../src/tools/code-interpreter/sandbox-links.ts';
import { citationAnnotator, citationMarker, citationsOf } from '../src/tools/file-search/citations.ts';
import type { TextAnnotator } from '../src/tools/tool.ts';
import { aRun } from '../test/support/builders.ts';
import { loadAverage, log, machine, percentile, runBench, table } from './support.ts';

const LENGTHS = (process.env.BENCH_ANNOTATE_TOKENS ?? '1000,10000,50000')
  .split(',')
  .map((n) => Number.parseInt(n, 10))
  .filter((n) => Number.isInteger(n) && n > 0);
/** Lengths below this are fed this many tokens in all. */
const REPEATED_TOKENS = 50_000;
const CALLS = [
  {
    id: 'call_bench',
    type: 'file_search' as const,
    file_search: {
      ranking_options: { ranker: 'default_2024_08_21' as const, score_threshold: 0 },
      results: [{ file_id: 'file-cited', file_name: 'notes.md', score: 1, content: [] }],
    },
  },
];

/** An answer of `count` tokens, with a citation and a sandbox link every 200 tokens. */
function answerTokens(count: number): string[] {
  const tokens: string[] = [];
  for (let i = 0; i < count; i++) {
    if (i % 200 === 100) tokens.push(` ${citationMarker(0, 0, 'notes.md')}`);
    else if (i % 200 === 150) tokens.push(' [out](sandbox:', '/mnt/data/', 'out.csv)');
    else tokens.push(' tok');
  }
  return tokens.slice(0, count);
}

type Kind = 'none' | 'citations' | 'sandbox links';

function annotatorOf(kind: Kind): TextAnnotator | undefined {
  if (kind === 'citations') return citationAnnotator(CALLS);
  if (kind === 'sandbox links') return sandboxLinkAnnotator((path) => (path === 'out.csv' ? 'file-out' : undefined));
  return undefined;
}

/** Feeds the tokens to a fresh turn; ms, and the annotations of its final message. */
function feed(kind: Kind, tokens: readonly string[]): { ms: number; annotations: number } {
  const bus = new RunEventBus();
  const run = aRun('thread_bench', { status: 'in_progress' });
  let events = 0;
  bus.subscribeThread(run.thread_id, () => events++);
  const turn = new ModelTurn(run, bus, new Map(), 1_700_000_000, annotatorOf(kind));
  const start = performance.now();
  for (const token of tokens) turn.addText(token);
  const { message } = turn.messageResult({ prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }, null, (m) => m);
  const ms = performance.now() - start;
  if (events === 0) throw new Error('the turn published nothing');
  const part = message.content.at(-1);
  return { ms, annotations: part?.type === 'text' ? part.text.annotations.length : 0 };
}

async function main(): Promise<void> {
  log(machine());
  log(`load average at start (1/5/15 min): ${loadAverage()}`);
  log(`node ${process.version}; answers of ${LENGTHS.join(', ')} tokens, fed one token at a time to a model turn`);
  log('');
  const kinds: Kind[] = ['none', 'citations', 'sandbox links'];
  const rows: string[][] = [];
  for (const length of LENGTHS) {
    const tokens = answerTokens(length);
    const text = tokens.join('');
    const expected: Record<Kind, number> = {
      none: 0,
      citations: citationsOf(text, CALLS).length,
      'sandbox links': (text.match(/sandbox:\/mnt\/data\/out\.csv/g) ?? []).length,
    };
    for (const kind of kinds) feed(kind, tokens.slice(0, 5000)); // warm-up
    // Short answers are fed several times (the median counts), so that every length feeds about as many tokens.
    const repeats = Math.max(1, Math.ceil(REPEATED_TOKENS / length));
    const perToken: Partial<Record<Kind, number>> = {};
    for (const kind of kinds) {
      const times: number[] = [];
      for (let r = 0; r < repeats; r++) {
        const { ms, annotations } = feed(kind, tokens);
        if (annotations !== expected[kind])
          throw new Error(
            `${kind}: ${annotations} annotations in a ${length}-token answer, expected ${expected[kind]}`,
          );
        times.push(ms);
      }
      perToken[kind] =
        (percentile(
          times.sort((a, b) => a - b),
          50,
        ) *
          1000) /
        length;
    }
    for (const kind of kinds)
      rows.push([
        kind,
        length.toLocaleString('en-US'),
        String(expected[kind]),
        perToken[kind]!.toFixed(2),
        `${(perToken[kind]! / perToken.none!).toFixed(2)}×`,
      ]);
  }
  log(table(['annotator', 'tokens', 'annotations', 'µs per token', '÷ no annotator'], rows));
  log('');
  log(`load average at end (1/5/15 min): ${loadAverage()}`);
}

await runBench(main, 'the benchmark');
