import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseInclude } from '../../src/api/include.ts';
import { serializeRunStep } from '../../src/api/serializers.ts';
import { frame } from '../../src/api/sse.ts';
import { invalidRequest, notFound } from '../../src/domain/errors.ts';
import type { TextAnnotation } from '../../src/domain/objects.ts';
import type { MessageDelta, RunStreamEvent } from '../../src/domain/run-events.ts';
import type { FileSearchToolCallDetails, Run, ToolCallDetails } from '../../src/domain/runs.ts';
import type { ChunkHit, VectorStoreView } from '../../src/domain/vector-stores.ts';
import { ModelTurn } from '../../src/runs/model-turn.ts';
import { RunEventBus } from '../../src/runs/run-event-bus.ts';
import { DEFAULT_SCOPE, type Scope } from '../../src/storage/store.ts';
import { citationAnnotator, citationMarker, citationsOf } from '../../src/tools/file-search/citations.ts';
import {
  type FileSearchBackend,
  type FileSearchOptions,
  fileSearchTool,
  parseQueries,
} from '../../src/tools/file-search/file-search-tool.ts';
import { resultsText } from '../../src/tools/file-search/results-text.ts';
import { vectorStoreBackend } from '../../src/tools/file-search/vector-store-backend.ts';
import { resultTokenBudget, type ToolContext, ToolError, ToolRunFailure } from '../../src/tools/tool.ts';
import { annotateInPieces } from '../support/annotators.ts';
import { aRun, aStep } from '../support/builders.ts';
import { assertMatchesSchema } from '../support/openapi.ts';

/**
 * The file_search tool without a server: marker parsing into annotations (whole and streamed in every split), the
 * token budget of what the model reads, the arguments, and execute() against a fake backend (which stores, the wait
 * for ingestion, missing and expired stores, ranking settings, step details). Also the pieces it relies on outside
 * its folder: ModelTurn streaming annotations in its deltas, and the serializer's `include[]`.
 */

const FILE_A = 'file-aaaaaaaaaaaaaaaaaaaaaaaa';
const FILE_B = 'file-bbbbbbbbbbbbbbbbbbbbbbbb';

function searchCall(id: string, results: Array<{ file_id: string; file_name: string }>): FileSearchToolCallDetails {
  return {
    id,
    type: 'file_search',
    file_search: {
      ranking_options: { ranker: 'default_2024_08_21', score_threshold: 0 },
      results: results.map((r) => ({ ...r, score: 0.5, content: [{ type: 'text' as const, text: 'x' }] })),
    },
  };
}

/** Two calls: call 0 found coffee.txt then parking.md; call 1 found parking.md. */
const CALLS: ToolCallDetails[] = [
  searchCall('call_0', [
    { file_id: FILE_A, file_name: 'coffee.txt' },
    { file_id: FILE_B, file_name: 'parking.md' },
  ]),
  searchCall('call_1', [{ file_id: FILE_B, file_name: 'parking.md' }]),
];

/** What a client slicing by code points (as Python does) reads between the indices. */
function byCodePoints(text: string, a: TextAnnotation): string {
  return [...text].slice(a.start_index, a.end_index).join('');
}

describe('citation markers', () => {
  test('the marker form, with a filename that cannot break it', () => {
    assert.equal(citationMarker(0, 3, 'coffee.txt'), '【0:3†coffee.txt】');
    assert.equal(citationMarker(2, 0, 'odd】name\n.txt'), '【2:0†odd name .txt】');
    assert.equal(citationMarker(1, 1, ''), '【1:1†file】');
  });

  test('markers that point at results become file_citation annotations of exactly the marker', () => {
    const text = 'Descaled on Fridays【0:0†coffee.txt】; visitors park below【1:0†parking.md】.';
    const annotations = citationsOf(text, CALLS);
    assert.deepEqual(annotations, [
      {
        type: 'file_citation',
        text: '【0:0†coffee.txt】',
        start_index: 19,
        end_index: 35,
        file_citation: { file_id: FILE_A },
      },
      {
        type: 'file_citation',
        text: '【1:0†parking.md】',
        start_index: 56,
        end_index: 72,
        file_citation: { file_id: FILE_B },
      },
    ]);
    for (const a of annotations) assert.equal(text.slice(a.start_index, a.end_index), a.text);
  });

  test('a marker pointing nowhere, or malformed, gets no annotation; one without a filename, or with a word for it, still does', () => {
    const text =
      'a【2:0†x.txt】 b【0:7†coffee.txt】 c【0:0 coffee】 d【0:1】 e【1:0†source】 f【x:0†a】 g【0:0†Coffee.TXT】 h【0:1†parking】';
    assert.deepEqual(
      citationsOf(text, CALLS).map((a) => [a.text, a.file_citation?.file_id]),
      [
        ['【0:1】', FILE_B],
        ['【1:0†source】', FILE_B],
        ['【0:0†Coffee.TXT】', FILE_A],
        ['【0:1†parking】', FILE_B],
      ],
    );
    assert.deepEqual(citationsOf('No markers here.', CALLS), []);
    assert.deepEqual(citationsOf('【0:0†coffee.txt】', []), []);
  });

  test('a marker naming another file is not a citation of the result it points at (copied from an earlier answer)', () => {
    // Call numbers start from 0 in every run: an earlier run's 【0:0†coffee.txt】, repeated by the model from the
    // thread's history, points at this run's 0:0, another file.
    const thisRun = [searchCall('call_0', [{ file_id: FILE_B, file_name: 'parking.md' }])];
    const text = 'Visitors park below【0:0†parking.md】; descaled on Fridays【0:0†coffee.txt】.';
    assert.deepEqual(
      citationsOf(text, thisRun).map((a) => [a.text, a.file_citation?.file_id]),
      [['【0:0†parking.md】', FILE_B]],
    );
  });

  test('a name written a little differently still cites its file: extension dropped or added, the whole long name', () => {
    const long = `${'a long name '.repeat(20)}report.pdf`;
    const calls = [
      searchCall('call_0', [
        { file_id: FILE_A, file_name: 'Guide v1.5.pdf' },
        { file_id: FILE_B, file_name: 'notes' },
        { file_id: FILE_A, file_name: long },
      ]),
    ];
    const text = `a【0:0†Guide v1.5】 b【0:1†notes.txt】 c【0:2†${long}】 d【0:0†Section 2.3】 e【0:1†coffee.txt】`;
    assert.deepEqual(
      citationsOf(text, calls).map((a) => a.text.slice(0, 20)),
      ['【0:0†Guide v1.5】', '【0:1†notes.txt】', `【0:2†${long}`.slice(0, 20), '【0:0†Section 2.3】'],
    );
  });

  test('a long filename is cut in its marker, which is still found streamed in small pieces', () => {
    const name = `${'a very long name '.repeat(30)}.txt`;
    const calls = [searchCall('call_0', [{ file_id: FILE_A, file_name: name }])];
    const marker = citationMarker(0, 0, name);
    assert.ok([...marker].length <= 220, `${[...marker].length} characters`);
    const text = `As written${marker}, and again${marker}.`;
    const whole = citationsOf(text, calls);
    assert.equal(whole.length, 2);
    assert.deepEqual(annotateInPieces(citationAnnotator(calls), text), whole);
  });

  test('indices count code points: after an emoji they differ from UTF-16 indices, and the annotation says which', () => {
    const text = 'Coffee ☕ and 🚀 launch【0:0†coffee.txt】 then 👩‍💻【0:1†parking.md】';
    const annotations = citationsOf(text, CALLS);
    assert.equal(annotations.length, 2);
    for (const a of annotations) {
      assert.equal(byCodePoints(text, a), a.text, 'code-point slicing gives the marker');
      assert.notEqual(text.slice(a.start_index, a.end_index), a.text, 'UTF-16 slicing does not (non-BMP before it)');
    }
    // ☕ is in the BMP (one unit), 🚀 is not (two units): the first marker starts one unit later than its index.
    assert.equal(annotations[0]!.start_index, text.indexOf('【') - 1);
    assert.equal(annotations[0]!.end_index - annotations[0]!.start_index, [...'【0:0†coffee.txt】'].length);
  });

  test('streamed: every split of the text into chunks yields the same annotations, each once, when completed', () => {
    const text = 'x🚀【0:0†coffee.txt】y【 not one】【9:9†z】【1:0†parking.md】';
    const whole = citationsOf(text, CALLS);
    assert.equal(whole.length, 2);
    for (let cut = 1; cut < text.length; cut++)
      for (let cut2 = cut; cut2 < text.length; cut2++) {
        const citations = citationAnnotator(CALLS);
        const seen: TextAnnotation[] = [];
        let written = 0;
        for (const end of [cut, cut2, text.length]) {
          citations.write(text.slice(written, end));
          written = end;
          const found = citations.annotate(end);
          for (const a of found)
            assert.ok(
              a.end_index <= [...text.slice(0, end)].length,
              'an annotation is returned only once its marker is complete',
            );
          seen.push(...found);
        }
        assert.deepEqual(seen, whole, `split at ${cut}, ${cut2}`);
      }
  });

  test('a long answer in small pieces: the same citations as the whole text, at the same indices', () => {
    let text = '';
    for (let i = 0; i < 300; i++)
      text += `Fact ${i} ☕🚀【0:0†coffee.txt】, not 【 this, 【9:9†z】 but 【1:0†parking.md】. `;
    const whole = citationsOf(text, CALLS);
    assert.equal(whole.length, 600);
    assert.deepEqual(annotateInPieces(citationAnnotator(CALLS), text), whole);
    assert.equal(byCodePoints(text, whole.at(-1)!), '【1:0†parking.md】');
  });

  test('an opening bracket that never closes does not hide a later marker', () => {
    const citations = citationAnnotator(CALLS);
    let text = '';
    const write = (piece: string) => {
      citations.write(piece);
      text += piece;
      return citations.annotate(text.length);
    };
    assert.deepEqual(write('An odd 【 bracket'), []);
    assert.deepEqual(write(' and a long tail '.repeat(30)), []);
    const found = write('then【0:0†coffee.txt】');
    assert.equal(found.length, 1);
    assert.equal(byCodePoints(text, found[0]!), '【0:0†coffee.txt】');
  });
});

/** A token counter for tests: one token per word. */
const words = (text: string) => text.split(/\s+/).filter(Boolean).length;

describe('what the model reads: results within a token budget', () => {
  const results = [
    { file_name: 'a.txt', text: 'alpha '.repeat(40).trim() },
    { file_name: 'b.txt', text: 'beta '.repeat(40).trim() },
    { file_name: 'c.txt', text: 'gamma '.repeat(40).trim() },
  ];

  test('every result under its marker, best first, when they fit', () => {
    const out = resultsText({ turn: 2, queries: ['q'], results, budgetTokens: 10_000, countTokens: words });
    assert.equal(out.shown, 3);
    const a = out.text.indexOf('【2:0†a.txt】\nalpha');
    const b = out.text.indexOf('【2:1†b.txt】\nbeta');
    const c = out.text.indexOf('【2:2†c.txt】\ngamma');
    assert.ok(a > 0 && b > a && c > b, out.text);
    assert.match(out.text, /cite it by writing its marker exactly/);
    assert.doesNotMatch(out.text, /left out/);
  });

  test('the lowest-ranked results are dropped first, and the text stays within the budget', () => {
    const full = words(
      resultsText({ turn: 0, queries: ['q'], results, budgetTokens: 10_000, countTokens: words }).text,
    );
    for (const budget of [full - 1, full - 45, 120, 80]) {
      const out = resultsText({ turn: 0, queries: ['q'], results, budgetTokens: budget, countTokens: words });
      assert.ok(words(out.text) <= budget, `${words(out.text)} > ${budget}`);
      assert.ok(out.shown < 3 && out.shown >= 1);
      assert.ok(out.text.includes('【0:0†a.txt】'), 'the best result stays');
      if (out.shown < 3) assert.ok(!out.text.includes('【0:2†c.txt】'), 'the worst goes first');
      assert.match(out.text, /left out to fit the context window/);
    }
  });

  test('a best result larger than the budget is cut to fit, never dropped', () => {
    const out = resultsText({ turn: 0, queries: ['q'], results, budgetTokens: 50, countTokens: words });
    assert.equal(out.shown, 1);
    assert.ok(words(out.text) <= 50);
    assert.match(out.text, /【0:0†a.txt】\nalpha( alpha)*…/);
  });

  test('no results: says so', () => {
    const out = resultsText({ turn: 1, queries: ['x', 'y'], results: [], budgetTokens: 100, countTokens: words });
    assert.deepEqual(out, { text: 'file_search call 1: nothing in the files matched ["x","y"].', shown: 0 });
  });

  test('the budget: half of what the context has left, between 500 and the cap', () => {
    assert.equal(resultTokenBudget(undefined, 16_000), 16_000);
    assert.equal(resultTokenBudget(100_000, 16_000), 16_000);
    assert.equal(resultTokenBudget(6000, 16_000), 3000);
    assert.equal(resultTokenBudget(300, 16_000), 500);
    assert.equal(resultTokenBudget(0, 16_000), 500);
  });
});

describe('the arguments', () => {
  test('queries, leniently', () => {
    assert.deepEqual(parseQueries('{"queries":["a"," b ","a",""]}'), ['a', 'b']);
    assert.deepEqual(parseQueries('{"query":"solo"}'), ['solo']);
    assert.deepEqual(parseQueries('{"queries":"one"}'), ['one']);
    assert.deepEqual(parseQueries(JSON.stringify({ queries: ['1', '2', '3', '4', '5', '6', '7'] })), [
      '1',
      '2',
      '3',
      '4',
      '5',
    ]);
  });

  test('anything else is the model’s error to fix (a ToolError)', () => {
    for (const bad of ['', 'not json', '[]', '{"queries":[]}', '{"queries":[1]}', '{"queries":["  "]}', '{}'])
      assert.throws(() => parseQueries(bad), ToolError, bad);
  });
});

// ── execute() against a fake backend ─────────────────────────────────────────

function aStore(id: string, overrides: Partial<VectorStoreView> = {}): VectorStoreView {
  return {
    id,
    created_at: 1,
    name: null,
    description: null,
    metadata: {},
    expires_after: null,
    expires_at: null,
    last_active_at: 1,
    expired: false,
    file_counts: { in_progress: 0, completed: 1, failed: 0, cancelled: 0, total: 1 },
    usage_bytes: 10,
    ...overrides,
  };
}

function hit(fileId: string, filename: string, score: number, text: string, store = 'vs_a'): ChunkHit {
  return { vector_store_id: store, file_id: fileId, filename, chunk_index: 0, text, score };
}

class FakeBackend implements FileSearchBackend {
  stores = new Map<string, VectorStoreView[]>(); // each read takes the next state; the last one stays
  assistant: string[] = [];
  thread: string[] = [];
  hits: ChunkHit[] = [];
  searches: Array<{ ids: readonly string[]; queries: readonly string[]; options: FileSearchOptions }> = [];
  used: string[][] = [];
  reads = 0;

  async resolveStores() {
    return { assistant: this.assistant, thread: this.thread };
  }
  async getStore(_scope: Scope, id: string) {
    this.reads++;
    const states = this.stores.get(id);
    if (!states) return undefined;
    return states.length > 1 ? states.shift() : states[0];
  }
  async search(_scope: Scope, ids: readonly string[], queries: readonly string[], options: FileSearchOptions) {
    this.searches.push({ ids, queries, options });
    return this.hits;
  }
  async markUsed(_scope: Scope, ids: readonly string[]) {
    this.used.push([...ids]);
  }
}

function runWith(tools: Run['tools']): Run {
  return aRun('thread_x', { tools });
}

function contextFor(run: Run, overrides: Partial<ToolContext> = {}): ToolContext {
  return {
    scope: DEFAULT_SCOPE,
    run,
    signal: new AbortController().signal,
    calls: [],
    contextTokensLeft: undefined,
    progress: () => {},
    ...overrides,
  };
}

const FILE_SEARCH = { type: 'file_search' as const };

describe('file_search execute() with a fake backend', () => {
  test('an execution starting marks the assistant’s and the thread’s stores used, without searching', async () => {
    const backend = new FakeBackend();
    backend.assistant = ['vs_a'];
    backend.thread = ['vs_t', 'vs_u'];
    await fileSearchTool({ backend }).executionStarted!({ scope: DEFAULT_SCOPE, run: runWith([FILE_SEARCH]) });
    assert.deepEqual(backend.used, [['vs_a', 'vs_t', 'vs_u']]);
    assert.deepEqual(backend.searches, []);
  });

  test('searches the assistant’s and the thread’s stores, applies the settings, shapes the step and the output', async () => {
    const backend = new FakeBackend();
    backend.assistant = ['vs_a'];
    backend.thread = ['vs_t'];
    backend.stores.set('vs_a', [aStore('vs_a')]);
    backend.stores.set('vs_t', [aStore('vs_t')]);
    backend.hits = [
      hit(FILE_B, 'parking.md', 0.4, 'Visitors park on level -2.', 'vs_t'),
      hit(FILE_A, 'coffee.txt', 0.9, 'The espresso machine is descaled on Fridays.'),
      hit(FILE_A, 'coffee.txt', 0.1, 'Below the threshold.'),
    ];
    const tool = fileSearchTool({ backend, countTokens: words });
    const run = runWith([
      { type: 'file_search', file_search: { max_num_results: 2, ranking_options: { score_threshold: 0.2 } } },
    ]);
    const result = await tool.execute(
      { id: 'call_1', arguments: '{"queries":["When is the espresso machine descaled?","descaling"]}' },
      contextFor(run, { calls: [CALLS[0]!] }),
    );
    assert.deepEqual(backend.searches, [
      {
        ids: ['vs_a', 'vs_t'],
        queries: ['When is the espresso machine descaled?', 'descaling'],
        options: { maxNumResults: 2, scoreThreshold: 0.2 },
      },
    ]);
    assert.deepEqual(result.details, {
      id: 'call_1',
      type: 'file_search',
      file_search: {
        ranking_options: { ranker: 'default_2024_08_21', score_threshold: 0.2 },
        results: [
          {
            file_id: FILE_A,
            file_name: 'coffee.txt',
            score: 0.9,
            content: [{ type: 'text', text: 'The espresso machine is descaled on Fridays.' }],
          },
          {
            file_id: FILE_B,
            file_name: 'parking.md',
            score: 0.4,
            content: [{ type: 'text', text: 'Visitors park on level -2.' }],
          },
        ],
      },
    });
    // This is the run's second file_search call: its markers are 1:i.
    assert.match(result.output, /【1:0†coffee.txt】\nThe espresso machine is descaled on Fridays\./);
    assert.match(result.output, /【1:1†parking.md】\nVisitors park on level -2\./);
    assert.doesNotMatch(result.output, /Below the threshold/);
    // Before it runs (and if it ends without results), a call shows the run's ranking options and no results, as
    // upstream streamed it: typed clients (openai-kotlin) require both fields.
    assert.deepEqual(tool.describe({ id: 'call_1', arguments: '' }, run), {
      id: 'call_1',
      type: 'file_search',
      file_search: { ranking_options: { ranker: 'default_2024_08_21', score_threshold: 0.2 }, results: [] },
    });
  });

  test('defaults: 20 results, threshold 0; no stores: nothing searched, and the model is told', async () => {
    const backend = new FakeBackend();
    const tool = fileSearchTool({ backend });
    const result = await tool.execute(
      { id: 'call_2', arguments: '{"queries":["x"]}' },
      contextFor(runWith([FILE_SEARCH])),
    );
    assert.equal(backend.searches.length, 0);
    assert.deepEqual(result.details.type === 'file_search' && result.details.file_search, {
      ranking_options: { ranker: 'default_2024_08_21', score_threshold: 0 },
      results: [],
    });
    assert.match(result.output, /no files to search/);

    backend.thread = ['vs_t'];
    backend.stores.set('vs_t', [aStore('vs_t')]);
    await tool.execute({ id: 'call_3', arguments: '{"queries":["x"]}' }, contextFor(runWith([FILE_SEARCH])));
    assert.deepEqual(backend.searches[0]!.options, { maxNumResults: 20, scoreThreshold: 0 });
  });

  test('a small context leaves room for fewer results: the step shows the ones the model read', async () => {
    const backend = new FakeBackend();
    backend.assistant = ['vs_a'];
    backend.stores.set('vs_a', [aStore('vs_a')]);
    backend.hits = Array.from({ length: 10 }, (_, i) => hit(FILE_A, `f${i}.txt`, 1 - i / 20, 'word '.repeat(200)));
    const tool = fileSearchTool({ backend, countTokens: words });
    const roomy = await tool.execute({ id: 'c', arguments: '{"query":"x"}' }, contextFor(runWith([FILE_SEARCH])));
    const tight = await tool.execute(
      { id: 'c', arguments: '{"query":"x"}' },
      contextFor(runWith([FILE_SEARCH]), { contextTokensLeft: 1300 }),
    );
    const shown = (r: typeof roomy) => (r.details.type === 'file_search' ? r.details.file_search.results!.length : -1);
    assert.equal(shown(roomy), 10);
    assert.equal(shown(tight), 3, 'half of 1300 tokens holds three 200-word results');
    assert.ok(words(tight.output) <= 650);
  });

  test('waits while the thread’s store ingests files, then searches; the assistant’s store is not waited for', async () => {
    const backend = new FakeBackend();
    backend.assistant = ['vs_a'];
    backend.thread = ['vs_t'];
    const busy = { in_progress: 1, completed: 0, failed: 0, cancelled: 0, total: 1 };
    backend.stores.set('vs_a', [aStore('vs_a', { file_counts: busy })]);
    backend.stores.set('vs_t', [
      aStore('vs_t', { file_counts: busy }),
      aStore('vs_t', { file_counts: busy }),
      aStore('vs_t'),
    ]);
    const tool = fileSearchTool({ backend, ingestionPollMs: 5 });
    await tool.execute({ id: 'c', arguments: '{"query":"x"}' }, contextFor(runWith([FILE_SEARCH])));
    assert.equal(backend.reads, 4, 'one read of the assistant’s store, three of the thread’s');
    assert.equal(backend.searches.length, 1);
  });

  test('the wait is bounded: files still ingesting after it are searched as they are', async () => {
    const backend = new FakeBackend();
    backend.thread = ['vs_t'];
    backend.stores.set('vs_t', [
      aStore('vs_t', { file_counts: { in_progress: 2, completed: 0, failed: 0, cancelled: 0, total: 2 } }),
    ]);
    const tool = fileSearchTool({ backend, ingestionWaitMs: 60, ingestionPollMs: 10 });
    await tool.execute({ id: 'c', arguments: '{"query":"x"}' }, contextFor(runWith([FILE_SEARCH])));
    assert.ok(backend.reads >= 2, `the store was read again while it waited (${backend.reads} reads)`);
    assert.equal(backend.searches.length, 1);
  });

  test('an abort while waiting stops the call at once, with the signal’s reason', async () => {
    const backend = new FakeBackend();
    backend.thread = ['vs_t'];
    backend.stores.set('vs_t', [
      aStore('vs_t', { file_counts: { in_progress: 1, completed: 0, failed: 0, cancelled: 0, total: 1 } }),
    ]);
    const tool = fileSearchTool({ backend, ingestionWaitMs: 60_000, ingestionPollMs: 50 });
    const controller = new AbortController();
    setTimeout(() => controller.abort('cancel'), 30);
    await assert.rejects(
      tool.execute(
        { id: 'c', arguments: '{"query":"x"}' },
        contextFor(runWith([FILE_SEARCH]), { signal: controller.signal }),
      ),
      (error) => error === 'cancel',
    );
    // The wait was a minute long: the call ended on the abort, not at the wait's end.
    assert.equal(backend.searches.length, 0);
  });

  test('a store that is gone is not searched; one that has expired fails the run with invalid_prompt, naming it', async () => {
    const backend = new FakeBackend();
    backend.assistant = ['vs_gone'];
    backend.thread = ['vs_gone_too'];
    const tool = fileSearchTool({ backend });
    const run = runWith([FILE_SEARCH]);
    const result = await tool.execute({ id: 'c', arguments: '{"query":"x"}' }, contextFor(run));
    assert.equal(backend.searches.length, 0);
    assert.match(result.output, /there are no files to search/);
    backend.assistant = [];
    backend.thread = ['vs_old'];
    backend.stores.set('vs_old', [aStore('vs_old', { expired: true })]);
    await assert.rejects(tool.execute({ id: 'c', arguments: '{"query":"x"}' }, contextFor(run)), (error) => {
      assert.ok(error instanceof ToolRunFailure);
      assert.match(error.message, /Vector store vs_old \(the thread's\) has expired/);
      return true;
    });
    assert.equal(backend.searches.length, 0);
  });

  test('bad arguments are a ToolError (the model sees it and may retry)', async () => {
    const tool = fileSearchTool({ backend: new FakeBackend() });
    await assert.rejects(
      tool.execute({ id: 'c', arguments: '{"q":1}' }, contextFor(runWith([FILE_SEARCH]))),
      ToolError,
    );
  });
});

// ── outside the tool's folder ──────────────────────────────────────────────────

describe('annotations streamed by a model turn', () => {
  test('a marker is held back until it closes: the delta that carries it whole carries its annotation', () => {
    const bus = new RunEventBus();
    const run = aRun('thread_stream', { status: 'in_progress' });
    const events: RunStreamEvent[] = [];
    bus.subscribeThread(run.thread_id, (_runId, event) => events.push(event));
    const turn = new ModelTurn(run, bus, new Map(), [], citationAnnotator(CALLS));
    const chunks = ['Fridays 🚀【0:', '0†coffee.txt】 and【1:0†', 'parking.md】【0:0†c】.', ' Done【5:5†x】.'];
    for (const chunk of chunks) turn.addText(chunk);
    const deltas = events
      .filter((e): e is { event: 'thread.message.delta'; data: MessageDelta } => e.event === 'thread.message.delta')
      .map((e) => {
        const part = e.data.delta.content[0]!;
        assert.ok(part.type === 'text');
        return part.text;
      });
    assert.deepEqual(
      deltas.map((d) => d.value),
      ['Fridays 🚀', '【0:0†coffee.txt】 and', '【1:0†parking.md】【0:0†c】.', ' Done【5:5†x】.'],
      'the text is streamed as it came, each marker whole',
    );
    for (const delta of deltas)
      for (const a of delta.annotations ?? []) assert.ok(delta.value.includes(a.text), `${a.text} in its delta`);
    assert.deepEqual(deltas[0]!.annotations, [], 'the first delta carries the full shape');
    assert.deepEqual(
      deltas.map((d) => (d.annotations ?? []).map((a) => [a.index, a.text])),
      [
        [],
        [[0, '【0:0†coffee.txt】']],
        [
          [1, '【1:0†parking.md】'],
          [2, '【0:0†c】'],
        ],
        [],
      ],
    );
    assert.equal(deltas[3]!.annotations, undefined, 'a later delta without annotations carries only its text');
    const text = chunks.join('');
    const { message } = turn.messageResult({ prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }, null, (m) => m);
    const part = message.content[0]!;
    assert.ok(part.type === 'text');
    assert.equal(part.text.value, text);
    assert.deepEqual(part.text.annotations, citationsOf(text, CALLS));
    const streamed = deltas.flatMap((d) => d.annotations ?? []).map(({ index: _index, ...a }) => a);
    assert.deepEqual(streamed, part.text.annotations, 'streamed annotations = stored annotations');
    // Every event as its SSE frame is an AssistantStreamEvent of the official schema.
    for (const event of events) {
      const [, name, data] = /^event: (.+)\ndata: (.+)\n\n$/.exec(frame(event))!;
      assertMatchesSchema('AssistantStreamEvent', { event: name, data: JSON.parse(data!) }, name);
    }
  });
});

describe('include[] and the step serializer', () => {
  const run = aRun('thread_inc');
  const step = aStep(run, {
    status: 'completed',
    step_details: { type: 'tool_calls', tool_calls: [CALLS[0]!, CALLS[1]!] },
  });

  test('results keep their content only when include[] asks for it', () => {
    const plain = serializeRunStep(step);
    const details = plain.step_details as { tool_calls: FileSearchToolCallDetails[] };
    assert.ok(details.tool_calls.every((c) => c.file_search.results!.every((r) => !('content' in r))));
    assert.deepEqual(Object.keys(details.tool_calls[0]!.file_search.results![0]!), ['file_id', 'file_name', 'score']);
    assert.deepEqual(serializeRunStep(step, { fileSearchContent: true }).step_details, step.step_details);
    const stored = CALLS[0] as FileSearchToolCallDetails;
    assert.ok(stored.file_search.results![0]!.content, 'the stored details are untouched');
  });

  test('parseInclude takes the SDK’s bracket form and refuses other values', () => {
    const value = 'step_details.tool_calls[*].file_search.results[*].content';
    assert.deepEqual(parseInclude({}), { fileSearchContent: false });
    assert.deepEqual(parseInclude({ 'include[]': value }), { fileSearchContent: true });
    assert.deepEqual(parseInclude({ 'include[]': [value, value] }), { fileSearchContent: true });
    assert.throws(() => parseInclude({ 'include[]': [value, 'other'] }), /Invalid value: 'other'/);
    assert.deepEqual(parseInclude({ 'include[0]': value, 'include[1]': value }), { fileSearchContent: true });
    assert.throws(() => parseInclude({ 'include[1]': 'other' }), /Invalid value: 'other'/);
    assert.deepEqual(parseInclude({ 'include[x]': 'other', included: 'other' }), { fileSearchContent: false });
  });
});

describe('vectorStoreBackend', () => {
  const hit = (file: string, score: number): ChunkHit => ({
    vector_store_id: 'vs_kept',
    file_id: file,
    filename: `${file}.txt`,
    text: `text of ${file}`,
    score,
    chunk_index: 0,
  });

  /** A backend over a fake service whose stores answer a search with `answers[id]`: hits, or the error it throws. */
  function backendOver(answers: Record<string, ChunkHit[] | Error>) {
    return vectorStoreBackend({
      store: {} as never,
      vectorStores: {
        touch: async () => {},
        search: async (_scope, id) => {
          const answer = answers[id];
          if (answer instanceof Error) throw answer;
          return { hits: answer ?? [] } as never;
        },
      },
    });
  }
  const options = { maxNumResults: 5, scoreThreshold: 0 } as never;

  test('a store deleted once the call has named it is not searched; the others are', async () => {
    const backend = backendOver({ vs_gone: notFound('vector store', 'vs_gone'), vs_kept: [hit(FILE_A, 0.5)] });
    const hits = await backend.search(DEFAULT_SCOPE, ['vs_gone', 'vs_kept'], ['q'], options);
    assert.deepEqual(
      hits.map((h) => h.file_id),
      [FILE_A],
    );
  });

  test('a store that expired once the call has named it fails the run with invalid_prompt, naming it', async () => {
    const expired = invalidRequest('Vector store vs_old has expired.', 'vector_store_id', 'vector_store_expired');
    const backend = backendOver({ vs_old: expired });
    await assert.rejects(backend.search(DEFAULT_SCOPE, ['vs_old'], ['q'], options), (error: unknown) => {
      assert.ok(error instanceof ToolRunFailure);
      assert.equal(error.code, 'invalid_prompt');
      assert.match(error.message, /vs_old has expired/);
      return true;
    });
  });

  test('any other error of a search is the tool failing', async () => {
    const backend = backendOver({ vs_a: new Error('disk on fire') });
    await assert.rejects(backend.search(DEFAULT_SCOPE, ['vs_a'], ['q'], options), /disk on fire/);
  });
});
