/**
 * What the built-in tools' streamed parts cost a long answer, per token: a model turn (src/runs/model-turn.ts) fed
 * one token at a time, as the executor feeds it,
 * - an answer with file_search's citation annotator, or code_interpreter's `sandbox:` link annotator, beside the
 *   same answer with no annotator (the answer holds a citation marker and a link every ~200 tokens; the annotations
 *   found are checked against the whole text's);
 * - a code_interpreter call's arguments (`{"code": "…"}`), its code streamed as `input` deltas as it is written,
 *   beside the same arguments as a function call of the client's, streamed as they come (the code streamed is
 *   checked against the whole arguments' code).
 * Flat time per token means a long answer costs as many times more as it is longer; rising means every token pays
 * for everything before it. In process (no server): the turn's events go to a bus with one listener, as a stream
 * has. Answers shorter than 50,000 tokens are fed again until about 50,000 tokens have gone through, and the median
 * time counts. Run with `npm run bench:tool-streams`.
 *
 * Settings: BENCH_TOOL_STREAM_TOKENS (comma-separated lengths in tokens, default 1000,10000,50000).
 */
import { ModelTurn } from '../src/runs/model-turn.ts';
import { RunEventBus } from '../src/runs/run-event-bus.ts';
import { codeOf } from '../src/tools/code-interpreter/code-arguments.ts';
import { sandboxLinkAnnotator } from '../src/tools/code-interpreter/sandbox-links.ts';
import { citationAnnotator, citationMarker, citationsOf } from '../src/tools/file-search/citations.ts';
import type { TextAnnotator } from '../src/tools/tool.ts';
import { aCodeInterpreterForTurns, aRun } from '../test/support/builders.ts';
import { loadAverage, log, machine, percentile, runBench, table } from './support.ts';

const LENGTHS = (process.env.BENCH_TOOL_STREAM_TOKENS ?? '1000,10000,50000')
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

type Kind = 'none' | 'citations' | 'sandbox links' | 'function call' | 'code input';

function annotatorOf(kind: Kind): TextAnnotator | undefined {
  if (kind === 'citations') return citationAnnotator(CALLS);
  if (kind === 'sandbox links')
    return sandboxLinkAnnotator((path) => (path === 'out.csv' ? { id: 'file-out', made: true } : undefined));
  return undefined;
}

/** The arguments of a call writing `count` tokens of code, in the pieces a model streams them. */
function codeFragments(count: number): string[] {
  return ['{"code": "', ...Array.from({ length: count - 2 }, (_, i) => (i % 8 === 7 ? '\\n' : 'x = 1;')), '"}'];
}

/** Feeds the tokens to a fresh turn; ms, and the annotations of its answer (or the code its input deltas wrote). */
function feed(kind: Kind, tokens: readonly string[]): { ms: number; found: number | string } {
  const bus = new RunEventBus();
  const run = aRun('thread_bench', { status: 'in_progress' });
  let events = 0;
  let code = '';
  bus.subscribeThread(run.thread_id, (_runId, event) => {
    events++;
    if (event.event !== 'thread.run.step.delta') return;
    const call = (event.data.delta.step_details as { tool_calls?: Array<{ code_interpreter?: { input?: string } }> })
      .tool_calls?.[0];
    code += call?.code_interpreter?.input ?? '';
  });
  const calls = kind === 'function call' || kind === 'code input';
  const turn = new ModelTurn(
    run,
    bus,
    new Map([['python', aCodeInterpreterForTurns()]]),
    ['python', 'client_function'],
    annotatorOf(kind),
  );
  const name = kind === 'code input' ? 'python' : 'client_function';
  const start = performance.now();
  if (calls) for (const token of tokens) turn.addToolCall(0, name, token, true);
  else for (const token of tokens) turn.addText(token);
  const ms = performance.now() - start;
  if (events === 0) throw new Error('the turn published nothing');
  if (calls) return { ms, found: kind === 'code input' ? code : '' };
  const { message } = turn.messageResult({ prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }, null, (m) => m);
  const part = message.content.at(-1);
  return { ms, found: part?.type === 'text' ? part.text.annotations.length : 0 };
}

async function main(): Promise<void> {
  log(machine());
  log(`load average at start (1/5/15 min): ${loadAverage()}`);
  log(
    `node ${process.version}; answers and code of ${LENGTHS.join(', ')} tokens, fed one token at a time to a model turn`,
  );
  log('');
  const kinds: Kind[] = ['none', 'citations', 'sandbox links', 'function call', 'code input'];
  /** What each kind is measured beside. */
  const baseline: Record<Kind, Kind> = {
    none: 'none',
    citations: 'none',
    'sandbox links': 'none',
    'function call': 'function call',
    'code input': 'function call',
  };
  const rows: string[][] = [];
  for (const length of LENGTHS) {
    const answer = answerTokens(length);
    const text = answer.join('');
    const fragments = codeFragments(length);
    const tokensOf = (kind: Kind) => (kind === 'function call' || kind === 'code input' ? fragments : answer);
    const expected: Record<Kind, number | string> = {
      none: 0,
      citations: citationsOf(text, CALLS).length,
      'sandbox links': (text.match(/sandbox:\/mnt\/data\/out\.csv/g) ?? []).length,
      'function call': '',
      'code input': codeOf(fragments.join('')),
    };
    for (const kind of kinds) feed(kind, tokensOf(kind).slice(0, 5000)); // warm-up
    // Short answers are fed several times (the median counts), so that every length feeds about as many tokens.
    const repeats = Math.max(1, Math.ceil(REPEATED_TOKENS / length));
    const perToken: Partial<Record<Kind, number>> = {};
    for (const kind of kinds) {
      const times: number[] = [];
      for (let r = 0; r < repeats; r++) {
        const { ms, found } = feed(kind, tokensOf(kind));
        if (found !== expected[kind])
          throw new Error(`${kind}, ${length} tokens: found ${found}, not ${expected[kind]}`);
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
        typeof expected[kind] === 'number' ? String(expected[kind]) : '',
        perToken[kind]!.toFixed(2),
        kind === baseline[kind] ? '(baseline)' : `${(perToken[kind]! / perToken[baseline[kind]]!).toFixed(2)}×`,
      ]);
  }
  log(table(['stream', 'tokens', 'annotations', 'µs per token', '÷ its baseline'], rows));
  log('');
  log(`load average at end (1/5/15 min): ${loadAverage()}`);
}

await runBench(main, 'the benchmark');
