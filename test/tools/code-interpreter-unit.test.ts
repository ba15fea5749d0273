import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { frame } from '../../src/api/sse.ts';
import type { Message, MessageContent } from '../../src/domain/objects.ts';
import type { MessageDelta, RunStepDelta, RunStreamEvent } from '../../src/domain/run-events.ts';
import type { Run, ToolCallDetails } from '../../src/domain/runs.ts';
import { ModelTurn } from '../../src/runs/model-turn.ts';
import { RunEventBus } from '../../src/runs/run-event-bus.ts';
import { codeOf, codeReader, codeSoFar } from '../../src/tools/code-interpreter/code-arguments.ts';
import {
  type CellResult,
  type CodeInterpreterBackend,
  codeInterpreterTool,
  type PythonSession,
  placements,
} from '../../src/tools/code-interpreter/code-interpreter-tool.ts';
import { sandboxLinkAnnotator } from '../../src/tools/code-interpreter/sandbox-links.ts';
import { type TextAnnotator, ToolError } from '../../src/tools/tool.ts';
import { annotateInPieces } from '../support/annotators.ts';
import { aCodeInterpreterForTurns, aRun, aStoredFile } from '../support/builders.ts';
import { assertMatchesSchema } from '../support/openapi.ts';

/**
 * code_interpreter's pure parts: the code of a call's arguments (whole and as they stream), the `sandbox:` links of
 * an answer becoming file_path annotations (whole and streamed in every split), where the run's files go in
 * /mnt/data; and what it relies on in ModelTurn: a call's input streamed as the model writes it, text held back
 * while a link is incomplete, image parts before the answer's text.
 */

describe('the code of a call', () => {
  test('JSON arguments, a JSON string, raw code, and JSON broken by raw line breaks', () => {
    assert.equal(codeOf('{"code": "print(1)\\nx = 2"}'), 'print(1)\nx = 2');
    assert.equal(codeOf('"print(1)"'), 'print(1)');
    assert.equal(codeOf(' "print(1)\\n" \n'), 'print(1)\n');
    // Raw code that starts with a string literal, and a string left open, are raw code.
    assert.equal(codeOf('"a".upper()'), '"a".upper()');
    assert.equal(codeOf('"""Doc."""\nprint(1)'), '"""Doc."""\nprint(1)');
    assert.equal(codeOf('"abc'), '"abc');
    assert.equal(codeOf('import math\nprint(math.pi)'), 'import math\nprint(math.pi)');
    assert.equal(codeOf('{"code": "print(1)\nprint(2)"}'), 'print(1)\nprint(2)');
    assert.equal(codeOf('{"code": "a = \\"\\u00e9\\ud83d\\ude80\\t\\\\\\/"}'), 'a = "é🚀\t\\/');
  });

  test('arguments without code to run give none; raw code that opens with a brace is code', () => {
    for (const args of [
      '{"script": "print(1)"}',
      '{"code": 5}',
      '""',
      '',
      '  ',
      '{"a": 1}',
      '{"code": " \\n"}',
      '{"code": ""}',
    ])
      assert.equal(codeOf(args), '', args);
    // Python that is not JSON, though it starts as an object would: no `"code": "` in it.
    assert.equal(codeOf('{x: x**2 for x in range(3)}'), '{x: x**2 for x in range(3)}');
    assert.equal(codeOf('{1, 2} | {3}'), '{1, 2} | {3}');
    assert.equal(codeOf('{"a": 1}["a"]'), '{"a": 1}["a"]');
    // Whatever the arguments, the code streamed is a prefix of the code shown once they are complete.
    assert.equal(codeSoFar('{x: x**2 for x in range(3)}'), '');
  });

  test('as arguments stream, the code so far only grows and ends as the whole code, in every split', () => {
    const args = JSON.stringify({ code: 'import pandas as pd\ndf = pd.read_csv("a.csv")\nprint("é🚀\\t", df)' });
    const whole = codeOf(args);
    for (let cut = 0; cut <= args.length; cut++) {
      const before = codeSoFar(args.slice(0, cut));
      const after = codeSoFar(args);
      assert.ok(after.startsWith(before), `split at ${cut}: ${JSON.stringify(before)}`);
    }
    assert.equal(codeSoFar(args), whole);
    const raw = 'x = 1\nprint(x)';
    for (let cut = 0; cut <= raw.length; cut++) assert.ok(raw.startsWith(codeSoFar(raw.slice(0, cut))));
  });

  test('a reader given the fragments returns, joined, the code so far at every point, in every split', () => {
    const cases = [
      JSON.stringify({ code: 'print("é🚀\\t\\u00e9")\nx = 1' }),
      `  {"language": "python", "code" :  "a = \\"\\ud83d\\ude80\\"\\nb = 2", "x": 1}`,
      '  import math\nprint(math.pi)',
      `{"note": "${'long text, no key yet; '.repeat(40)}", "code": "print(1)"}`,
      // Arguments that start with a quote: raw code once they show it, a JSON string's content only when complete.
      '"""Squares."""\nprint([i * i for i in range(4)])',
      '"a b".split()',
      '"a\\tb" \n+ "c"',
      '"line\nbreak"',
      '"bad \\x escape"',
      ' "\\u00e9\\ud83d\\ude80 \\"quoted\\"\\nprint(1)" ',
    ];
    for (const args of cases)
      for (let cut = 0; cut <= args.length; cut++)
        for (const size of [1, 3, 7]) {
          const read = codeReader();
          let code = read(args.slice(0, cut));
          assert.equal(code, codeSoFar(args.slice(0, cut)));
          for (let at = cut; at < args.length; at += size) {
            code += read(args.slice(at, at + size));
            assert.equal(code, codeSoFar(args.slice(0, Math.min(args.length, at + size))), `${args} at ${at}`);
          }
          // All of the code, except for arguments that are one JSON string: nothing until they are complete.
          assert.equal(code, oneJsonString(args) ? '' : codeOf(args));
        }
  });
});

function oneJsonString(args: string): boolean {
  try {
    return typeof JSON.parse(args) === 'string';
  } catch {
    return false;
  }
}

/** A link target (sandbox-links.ts) whose file, if any, is made already. */
function madeFile(id: string | undefined): { id: string; made: boolean } | undefined {
  return id === undefined ? undefined : { id, made: true };
}

describe('sandbox: links', () => {
  const FILES = new Map([
    ['out.csv', 'file-out'],
    ['plots/a b.png', 'file-ab'],
  ]);
  const target = (path: string) => madeFile(FILES.get(path));
  const byCodePoints = (text: string, a: { start_index: number; end_index: number }) =>
    [...text].slice(a.start_index, a.end_index).join('');
  /** The annotations of a whole answer. */
  const linksOf = (text: string) => {
    const links = sandboxLinkAnnotator(target);
    links.write(text);
    return links.annotate(text.length, true);
  };
  /** Where an answer written so far as `text` is held back from. */
  const heldFrom = (text: string) => {
    const links = sandboxLinkAnnotator(target);
    links.write(text);
    return links.heldFrom!();
  };

  test('a Markdown link, a bare link with trailing punctuation, an escaped path; a missing file gets nothing', () => {
    const text =
      '🚀 [Download](sandbox:/mnt/data/out.csv) or sandbox:/mnt/data/out.csv. See [plot](sandbox:/mnt/data/plots/a%20b.png), not sandbox:/mnt/data/nope.txt';
    const found = linksOf(text);
    assert.deepEqual(
      found.map((a) => [a.text, a.file_path?.file_id, byCodePoints(text, a)]),
      [
        ['sandbox:/mnt/data/out.csv', 'file-out', 'sandbox:/mnt/data/out.csv'],
        ['sandbox:/mnt/data/out.csv', 'file-out', 'sandbox:/mnt/data/out.csv'],
        ['sandbox:/mnt/data/plots/a%20b.png', 'file-ab', 'sandbox:/mnt/data/plots/a%20b.png'],
      ],
    );
    assert.ok(found.every((a) => a.type === 'file_path'));
  });

  test('streamed in every split: the same annotations, each once, never before its link has ended', () => {
    const text = 'Here: [out](sandbox:/mnt/data/out.csv), and sandbox:/mnt/data/out.csv';
    const whole = linksOf(text);
    assert.equal(whole.length, 2);
    for (let cut = 1; cut < text.length; cut++) {
      const links = sandboxLinkAnnotator(target);
      links.write(text.slice(0, cut));
      const first = links.annotate(cut, false);
      for (const a of first) assert.ok(a.end_index < cut, `split at ${cut}: a link completes only once it has ended`);
      links.write(text.slice(cut));
      const rest = links.annotate(text.length, true);
      assert.deepEqual([...first, ...rest], whole, `split at ${cut}`);
    }
  });

  test('a long answer in small pieces: the same annotations as the whole text, at the same indices', () => {
    let text = '';
    for (let i = 0; i < 300; i++)
      text += `Part ${i} 🚀 is in [file ${i}](sandbox:/mnt/data/out.csv) and sandbox:/mnt/data/nope.txt, also sandbox:/mnt/data/out.csv. `;
    const whole = linksOf(text);
    assert.equal(whole.length, 600);
    const links = sandboxLinkAnnotator(target);
    const streamed = annotateInPieces(links, text);
    streamed.push(...links.annotate(text.length, true));
    assert.deepEqual(streamed, whole);
    for (const a of whole.slice(-2)) assert.equal(byCodePoints(text, a), 'sandbox:/mnt/data/out.csv');
  });

  test('a Markdown link whose path holds parentheses; a link in angle brackets, spaces and all', () => {
    const files = new Map([
      ['report (1).csv', 'file-r1'],
      ['a b.csv', 'file-ab'],
    ]);
    const text =
      'See [the report](sandbox:/mnt/data/report (1).csv), <sandbox:/mnt/data/a b.csv> and [it](<sandbox:/mnt/data/a b.csv>).';
    const annotationsOf = (pieces: string[]) => {
      const links = sandboxLinkAnnotator((path) => madeFile(files.get(path)));
      const found = [];
      let written = 0;
      for (const piece of pieces) {
        links.write(piece);
        written += piece.length;
        found.push(...links.annotate(Math.min(written, links.heldFrom!() ?? written), false));
      }
      found.push(...links.annotate(written, true));
      return found.map((a) => [a.text, a.file_path?.file_id, byCodePoints(text, a)]);
    };
    const expected = [
      ['sandbox:/mnt/data/report (1).csv', 'file-r1', 'sandbox:/mnt/data/report (1).csv'],
      ['sandbox:/mnt/data/a b.csv', 'file-ab', 'sandbox:/mnt/data/a b.csv'],
      ['sandbox:/mnt/data/a b.csv', 'file-ab', 'sandbox:/mnt/data/a b.csv'],
    ];
    assert.deepEqual(annotationsOf([text]), expected);
    for (let cut = 1; cut < text.length; cut++)
      assert.deepEqual(annotationsOf([text.slice(0, cut), text.slice(cut)]), expected, `split at ${cut}`);
  });

  test('heldFrom: a link being written, or a prefix of one at the end, is held; ended text is not', () => {
    assert.equal(heldFrom('Get it [here](sandbox:/mnt/data/ou'), 'Get it [here]('.length);
    assert.equal(heldFrom('Get it [here](sand'), 'Get it [here]('.length);
    assert.equal(heldFrom('Get it [here](sandbox:/mnt/data/out.csv)'), undefined);
    assert.equal(heldFrom('plain text.'), undefined);
  });
});

describe('where the run files go in /mnt/data', () => {
  const file = (id: string, filename: string) => aStoredFile({ id, filename });
  test('by name; a clash gets the id added; no path or control characters; each file once', () => {
    const placed = placements([
      file('file-1', 'data.csv'),
      file('file-2', 'data.csv'),
      file('file-3', '../../etc/passwd'),
      file('file-4', 'a\u0000b'),
      file('file-5', '..'),
      file('file-1', 'data.csv'),
      file('file-6', 'README'),
      file('file-7', 'README'),
    ]);
    assert.deepEqual(Object.fromEntries(placed), {
      'file-1': 'data.csv',
      'file-2': 'data-file-2.csv',
      'file-3': 'passwd',
      'file-4': 'ab',
      'file-5': 'file-5',
      'file-6': 'README',
      'file-7': 'README-file-7',
    });
  });

  test('a name taken by a file named like a renamed one gets a count; every name fits 255 bytes, extension kept', () => {
    const placed = placements([
      file('file-a', 'data-file-2.csv'),
      file('file-1', 'data.csv'),
      file('file-2', 'data.csv'),
      file('file-3', `${'é'.repeat(200)}.csv`),
      file('file-4', `${'é'.repeat(200)}.csv`),
      file('file-5', `${'x'.repeat(300)}`),
      file('file-6', `a.${'z'.repeat(300)}`),
    ]);
    assert.equal(placed.get('file-2'), 'data-file-2-2.csv');
    assert.equal(new Set(placed.values()).size, placed.size, 'each file a name of its own');
    assert.equal(placed.get('file-3'), `${'é'.repeat(125)}.csv`, 'shortened at a character, not inside one');
    assert.equal(placed.get('file-4'), `${'é'.repeat(122)}-file-4.csv`);
    assert.equal(placed.get('file-5'), 'x'.repeat(255));
    for (const name of placed.values()) assert.ok(Buffer.byteLength(name) <= 255, name);
    assert.equal(placed.get('file-6'), `a.${'z'.repeat(253)}`, 'a long "extension" is shortened as part of the name');
  });
});

describe('the session a run holds, and the files it is given', () => {
  const noFiles: CodeInterpreterBackend = {
    runFiles: async () => ({ files: [], missing: [] }),
    readFile: async () => undefined,
    saveFile: async () => {
      throw new Error('no files here');
    },
    lastCall: async () => undefined,
  };

  const printed = (logs: string): CellResult => ({ logs, images: [], outcome: 'ok' });

  /**
   * The tool over a fake sandbox (a session per thread) whose leases are logged in `events`, files in `written`; its
   * cells' results are `cell`'s, and a session whose cell was 'killed' is fresh at its next lease, as the pool's.
   */
  function toolOver(
    backend: CodeInterpreterBackend,
    events: string[] = [],
    cell: (code: string) => CellResult = () => printed(''),
  ) {
    let leases = 0;
    const written = new Map<string, number>();
    const sessions = new Map<string, PythonSession>();
    const restarted = new Set<string>();
    const sessionOf = (key: string) => {
      let session = sessions.get(key);
      const fresh = !session || restarted.delete(key);
      if (!session) {
        session = {
          runCell: async (code: string) => {
            const result = cell(code);
            if (result.outcome === 'killed') restarted.add(key);
            return result;
          },
          writeFile: async (name: string, bytes: Uint8Array) => {
            written.set(name, bytes.byteLength);
          },
          readFile: async () => new Uint8Array(),
          removeFile: async (name: string) => {
            written.delete(name);
          },
          linkFile: async () => {},
          listFiles: async () => [],
        };
        sessions.set(key, session);
      }
      return { session, fresh };
    };
    const tool = codeInterpreterTool({
      sandbox: {
        start: async () => ({ available: true, detail: 'fake' }),
        session: async (key) => {
          const n = ++leases;
          events.push(`lease ${n}`);
          return { ...sessionOf(key), release: () => events.push(`release ${n}`) };
        },
        closeSession: async (key) => {
          events.push(`close ${key}`);
          sessions.delete(key);
        },
      },
      backend,
      logger: pino({ level: 'silent' }),
      cellTimeoutMs: 1000,
      maxFileBytes: 1000,
      sandboxFileBytes: 1000,
    });
    return { tool, written };
  }

  function contextOf(
    run: Run,
    signal = new AbortController().signal,
    { calls = [] as ToolCallDetails[], contextTokensLeft = undefined as number | undefined } = {},
  ) {
    return { scope: { projectId: 'proj_pin' }, run, signal, calls, contextTokensLeft, progress: () => {} };
  }

  test("a run's first lease is kept between its calls, let go when its execution ends; later leases at each call's end", async () => {
    const events: string[] = [];
    const { tool } = toolOver(noFiles, events);
    const run = aRun('thread_pin', { status: 'in_progress' });
    const context = contextOf(run);
    await tool.execute({ id: 'call_1', arguments: '{"code": "x = 1"}' }, context);
    await tool.execute({ id: 'call_2', arguments: '{"code": "x"}' }, context);
    assert.deepEqual(events, ['lease 1', 'lease 2', 'release 2'], 'the first lease is still held');
    tool.executionEnded!(run);
    tool.executionEnded!(run);
    assert.deepEqual(events, ['lease 1', 'lease 2', 'release 2', 'release 1'], 'let go once');
  });

  test('a file over the sandbox limit is named to the model, never read; a cancel stops the placing of files', async () => {
    const file = (id: string, filename: string, bytes: number) => aStoredFile({ id, filename, bytes });
    const read: string[] = [];
    let stop: AbortController | undefined;
    const { tool, written } = toolOver({
      ...noFiles,
      runFiles: async () => ({
        files: [file('file-big', 'big.bin', 1001), file('file-1', 'a.csv', 10), file('file-2', 'b.csv', 10)],
        missing: [],
      }),
      readFile: async (_scope, id) => {
        read.push(id);
        stop?.abort(new Error('cancelled')); // the run is cancelled while its first file is read
        return new Uint8Array(10);
      },
    });
    const placed = await tool.execute(
      { id: 'call_1', arguments: '{"code": "1"}' },
      contextOf(aRun('thread_files', { status: 'in_progress' })),
    );
    assert.match(placed.output, /could not be put in \/mnt\/data: big\.bin \(file-big\): larger than the 0 MiB/);
    assert.deepEqual(read, ['file-1', 'file-2'], 'the big file is not read');
    assert.deepEqual([...written.keys()], ['a.csv', 'b.csv']);

    read.length = 0;
    stop = new AbortController();
    await assert.rejects(
      tool.execute(
        { id: 'call_2', arguments: '{"code": "1"}' },
        contextOf(aRun('thread_files_2', { status: 'in_progress' }), stop.signal),
      ),
      /cancelled/,
    );
    assert.deepEqual(read, ['file-1'], 'no file read once the run was cancelled');
  });

  test("a session older than the thread's last code (run in another process meanwhile) is started again", async () => {
    let last: string | undefined;
    const events: string[] = [];
    const { tool } = toolOver({ ...noFiles, lastCall: async () => last }, events);
    const run = (id: string) => aRun('thread_hop', { id, status: 'in_progress' });
    await tool.execute({ id: 'call_1', arguments: '{"code": "x = 1"}' }, contextOf(run('run_1')));
    tool.executionEnded!(run('run_1'));
    last = 'call_1'; // the session ran it: kept
    const kept = await tool.execute({ id: 'call_2', arguments: '{"code": "x"}' }, contextOf(run('run_2')));
    tool.executionEnded!(run('run_2'));
    assert.doesNotMatch(kept.output, /restarted/);
    assert.ok(!events.some((e) => e.startsWith('close')));
    last = 'call_elsewhere'; // a run of the thread ran code in another process since
    const again = await tool.execute({ id: 'call_3', arguments: '{"code": "x"}' }, contextOf(run('run_3')));
    assert.ok(events.includes('close thread_hop'), events.join(', '));
    assert.match(again.output, /The Python session was restarted before this code ran/);
  });

  test('a call without code runs nothing and tells the model how to call; raw code that opens with a brace runs', async () => {
    const ran: string[] = [];
    const { tool } = toolOver(noFiles, [], (code) => {
      ran.push(code);
      return printed('{0: 0, 1: 1, 2: 4}\n');
    });
    const run = aRun('thread_args', { status: 'in_progress' });
    for (const args of ['{"script": "print(1)"}', '{"code": 5}', '""', '', '{"a": 1}', '{"code": "  "}'])
      await assert.rejects(
        tool.execute({ id: 'call_bad', arguments: args }, contextOf(run)),
        (error) =>
          error instanceof ToolError &&
          error.message ===
            'No code ran: the arguments must be {"code": "<python source>"}, the code a non-empty string.',
        args,
      );
    assert.deepEqual(ran, [], 'no cell ran');
    const brace = '{x: x**2 for x in range(3)}';
    // The call without code before it (its input empty) ran nothing: the new session is not news to the model.
    const calls = [tool.describe({ id: 'call_bad', arguments: '{"script": "print(1)"}' }, run)];
    const done = await tool.execute({ id: 'call_brace', arguments: brace }, contextOf(run, undefined, { calls }));
    assert.deepEqual(ran, [brace]);
    assert.equal(done.output, '{0: 0, 1: 1, 2: 4}\n');
    assert.deepEqual(done.details, {
      id: 'call_brace',
      type: 'code_interpreter',
      code_interpreter: { input: brace, outputs: [{ type: 'logs', logs: '{0: 0, 1: 1, 2: 4}\n' }] },
    });
  });

  test("a killed cell's true cause; the next call of the run is not told again of the restart it was told of", async () => {
    const ended =
      '[The Python process ended (exited with code 3): the session was restarted. Its variables and the files in /mnt/data are lost.]';
    const calls: ToolCallDetails[] = [];
    const { tool } = toolOver({ ...noFiles, lastCall: async () => calls.at(-1)?.id }, [], (code) => {
      if (code === 'exit') return { logs: ended, images: [], outcome: 'killed', killed: 'ended' };
      if (code === 'spin')
        return { logs: '[The cell did not stop…]', images: [], outcome: 'killed', killed: 'interrupt' };
      return printed('1\n');
    });
    const run = aRun('thread_killed', { status: 'in_progress' });
    const call = async (id: string, code: string) => {
      const result = await tool.execute(
        { id, arguments: JSON.stringify({ code }) },
        contextOf(run, undefined, { calls }),
      );
      calls.push(result.details);
      return result.output;
    };
    // The sandbox's logs say what happened, once (before, every kill added "did not stop when interrupted").
    assert.equal(await call('call_1', 'exit'), ended);
    assert.equal(await call('call_2', 'print(1)'), '1\n', 'told already, by the output just before');
    assert.equal(await call('call_3', 'spin'), '[The cell did not stop…]');
    assert.equal(await call('call_4', 'print(1)'), '1\n');
    // A later run of the thread: the restart it did not see is its news.
    const next = aRun('thread_killed', { status: 'in_progress' });
    await call('call_5', 'exit');
    tool.executionEnded!(run);
    const output = (await tool.execute({ id: 'call_6', arguments: '{"code": "print(1)"}' }, contextOf(next))).output;
    assert.match(output, /^The Python session was restarted before this code ran/);
  });

  test("a long output is cut to the context window's room for the model, head and tail kept; the step keeps it whole", async () => {
    // As the sandbox gives them: cut already, with its note.
    const logs = `${'é'.repeat(4000)}\n…[output truncated: 5,000 more characters]\n${'z'.repeat(4000)}`;
    const { tool } = toolOver(noFiles, [], () => printed(logs));
    const run = aRun('thread_long', { status: 'in_progress' });
    const execute = (contextTokensLeft: number | undefined) =>
      tool.execute(
        { id: 'call_long', arguments: '{"code": "print(long)"}' },
        contextOf(run, undefined, { contextTokensLeft }),
      );

    const small = await execute(1000);
    assert.deepEqual(small.details.type === 'code_interpreter' && small.details.code_interpreter.outputs, [
      { type: 'logs', logs },
    ]);
    // Half of what the window has left, at a byte a token (a bound every tokenizer keeps to).
    assert.ok(Buffer.byteLength(small.output) <= 500, `${Buffer.byteLength(small.output)} bytes`);
    assert.ok(Buffer.byteLength(small.output) > 450, `${Buffer.byteLength(small.output)} bytes`);
    const [, head, dropped, tail] = /^(é+)\n…\[output truncated: ([\d,]+) more characters\]\n(z+)$/.exec(small.output)!;
    assert.ok(head!.length > 50 && tail!.length > 100, small.output);
    assert.equal(Number(dropped!.replaceAll(',', '')), 5000 + 8000 - head!.length - tail!.length, 'both cuts counted');

    assert.equal((await execute(undefined)).output, logs, 'no model backend: as the sandbox gave them');
    assert.equal((await execute(100_000)).output, logs, 'room enough');
  });
});

describe('a model turn with code_interpreter', () => {
  const tool = aCodeInterpreterForTurns();
  const ZERO = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };

  function turnWith(annotator?: TextAnnotator, parts = [] as ConstructorParameters<typeof ModelTurn>[5]) {
    const bus = new RunEventBus();
    const run = aRun('thread_ci', { status: 'in_progress' });
    const events: RunStreamEvent[] = [];
    bus.subscribeThread(run.thread_id, (_runId, event) => events.push(event));
    const turn = new ModelTurn(run, bus, new Map([['python', tool]]), ['python'], annotator, parts);
    return { turn, events };
  }

  function assertOfficialEvents(events: RunStreamEvent[]) {
    for (const event of events) {
      const [, name, data] = /^event: (.+)\ndata: (.+)\n\n$/.exec(frame(event))!;
      assertMatchesSchema('AssistantStreamEvent', { event: name, data: JSON.parse(data!) }, name);
    }
  }

  test("the call's input streams in increments as the model writes it; the step stores the whole code", () => {
    const { turn, events } = turnWith();
    const args = JSON.stringify({ code: 'x = 6 * 7\nprint("é", x)' });
    turn.addToolCall(0, 'python', undefined, true);
    for (let i = 0; i < args.length; i += 3) {
      turn.addToolCall(0, undefined, args.slice(i, i + 3), true);
      // The live step (what /events shows a client attaching now) has the code so far.
      const live = turn.soFar.toolStep!.step_details as { tool_calls: ToolCallDetails[] };
      assert.deepEqual(live.tool_calls, [
        {
          id: live.tool_calls[0]!.id,
          type: 'code_interpreter',
          code_interpreter: { input: codeSoFar(args.slice(0, i + 3)), outputs: [] },
        },
      ]);
    }
    const deltas = events
      .filter((e): e is { event: 'thread.run.step.delta'; data: RunStepDelta } => e.event === 'thread.run.step.delta')
      .map((e) => e.data.delta.step_details.tool_calls[0]!);
    assert.ok(deltas.length > 3);
    assert.deepEqual(deltas[0], {
      index: 0,
      id: deltas[0]!.id,
      type: 'code_interpreter',
      code_interpreter: { input: '', outputs: [] },
    });
    const inputs = deltas.slice(1).map((d) => (d.type === 'code_interpreter' ? d.code_interpreter?.input : undefined));
    assert.ok(
      inputs.every((i) => typeof i === 'string' && i.length > 0),
      'increments only, never empty',
    );
    assert.equal(inputs.join(''), 'x = 6 * 7\nprint("é", x)');
    assert.ok(deltas.every((d) => d.index === 0));
    const { step } = turn.toolCallsResult({ prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 });
    assert.deepEqual(step.step_details, {
      type: 'tool_calls',
      tool_calls: [
        { id: deltas[0]!.id, type: 'code_interpreter', code_interpreter: { input: inputs.join(''), outputs: [] } },
      ],
    });
    assertOfficialEvents(events);
  });

  test('text is held back while a link is written; its annotation rides the delta with all of it; images first', () => {
    const links = sandboxLinkAnnotator((path) => madeFile(path === 'out.csv' ? 'file-out' : undefined));
    const { turn, events } = turnWith(links, [
      { type: 'image_file', image_file: { file_id: 'file-img', detail: 'auto' } },
    ]);
    const chunks = ['Done. [CSV](sand', 'box:/mnt/da', 'ta/out.csv', ') is ready', ' at sandbox:/mnt/data/out.csv'];
    for (const chunk of chunks) turn.addText(chunk);
    const { message } = turn.messageResult({ prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }, null, (m) => m);
    const deltas = events
      .filter((e): e is { event: 'thread.message.delta'; data: MessageDelta } => e.event === 'thread.message.delta')
      .map((e) => e.data.delta.content);
    assert.deepEqual(deltas[0], [
      { index: 0, type: 'image_file', image_file: { file_id: 'file-img', detail: 'auto' } },
    ]);
    const texts = deltas.slice(1).map((content) => {
      const part = content[0]!;
      assert.ok(part.type === 'text' && part.index === 1);
      return part.text;
    });
    assert.deepEqual(
      texts.map((t) => t.value),
      ['Done. [CSV](', 'sandbox:/mnt/data/out.csv) is ready', ' at ', 'sandbox:/mnt/data/out.csv'],
      'a link goes out whole, when it has ended (or the answer has)',
    );
    assert.deepEqual(
      texts.map((t) => (t.annotations ?? []).map((a) => [a.index, a.text, a.file_path?.file_id])),
      [[], [[0, 'sandbox:/mnt/data/out.csv', 'file-out']], [], [[1, 'sandbox:/mnt/data/out.csv', 'file-out']]],
    );
    const text = chunks.join('');
    assert.equal(message.content.length, 2);
    assert.deepEqual(message.content[0], { type: 'image_file', image_file: { file_id: 'file-img', detail: 'auto' } });
    const part = message.content[1]!;
    assert.ok(part.type === 'text');
    assert.equal(part.text.value, text, 'streamed text = stored text');
    assert.deepEqual(
      part.text.annotations,
      texts.flatMap((t) => t.annotations ?? []).map(({ index: _index, ...a }) => a),
      'streamed annotations = stored annotations',
    );
    assertOfficialEvents(events);
  });

  test("images before the text go out one to a delta (clients read a delta's first part only)", () => {
    const image = (id: string) => ({
      type: 'image_file' as const,
      image_file: { file_id: id, detail: 'auto' as const },
    });
    const { turn, events } = turnWith(undefined, [image('file-a'), image('file-b')]);
    turn.addText('Two plots.');
    const deltas = events
      .filter((e): e is { event: 'thread.message.delta'; data: MessageDelta } => e.event === 'thread.message.delta')
      .map((e) => e.data.delta.content);
    assert.deepEqual(deltas, [
      [{ index: 0, ...image('file-a') }],
      [{ index: 1, ...image('file-b') }],
      [{ index: 2, type: 'text', text: { value: 'Two plots.', annotations: [] } }],
    ]);
    assertOfficialEvents(events);
  });

  test('a link is held until its file is made, then goes out with its annotation; a file that could not be made, plain', async () => {
    const files = new Map([
      ['out.csv', { id: 'file-out', made: false }],
      ['lost.csv', { id: 'file-lost', made: false }],
    ]);
    let made = () => {};
    const making = new Promise<void>((resolve) => {
      made = resolve;
    });
    const annotator: TextAnnotator = {
      ...sandboxLinkAnnotator((path) => files.get(path)),
      ready: () => ([...files.values()].some((f) => !f.made) ? making : undefined),
      settle: async () => [],
    };
    const { turn, events } = turnWith(annotator);
    const texts = () =>
      events.flatMap((e) =>
        e.event === 'thread.message.delta'
          ? (e.data as MessageDelta).delta.content.flatMap((p) => (p.type === 'text' ? [p.text] : []))
          : [],
      );
    turn.addText('See [out](sandbox:/mnt/data/out.csv) and [lost](sandbox:/mnt/data/lost.csv)');
    turn.addText(' now.');
    assert.deepEqual(
      texts().map((t) => t.value),
      ['See [out]('],
      'held from the first link whose file is being made',
    );
    files.get('out.csv')!.made = true;
    files.delete('lost.csv'); // could not be made
    made();
    turn.addText(' Then');
    assert.deepEqual(
      texts().map((t) => [t.value, (t.annotations ?? []).map((a) => a.file_path?.file_id)]),
      [
        ['See [out](', []],
        ['sandbox:/mnt/data/out.csv) and [lost](sandbox:/mnt/data/lost.csv) now. Then', ['file-out']],
      ],
    );

    // The answer's last link: settle holds the end of the text until its file is made.
    files.set('end.csv', { id: 'file-end', made: false });
    let madeEnd = () => {};
    const makingEnd = new Promise<void>((resolve) => {
      madeEnd = resolve;
    });
    annotator.ready = () => (files.get('end.csv')!.made ? undefined : makingEnd);
    turn.addText(' sandbox:/mnt/data/end.csv');
    const settled = turn.settle(new AbortController().signal);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(texts().length, 3);
    assert.equal(texts()[2]!.value, ' ', 'the last link is held while its file is made');
    files.get('end.csv')!.made = true;
    madeEnd();
    await settled;
    assert.deepEqual(
      texts()
        .slice(3)
        .map((t) => [t.value, (t.annotations ?? []).map((a) => a.file_path?.file_id)]),
      [['sandbox:/mnt/data/end.csv', ['file-end']]],
    );
    assertOfficialEvents(events);
  });

  test("an annotation whose file could not be made is left out of the stored message, the answer's and an earlier", async () => {
    const ids = new Map([
      ['out.csv', 'file-out'],
      ['lost.csv', 'file-lost'],
    ]);
    const annotator = (): TextAnnotator => ({
      ...sandboxLinkAnnotator((path) => madeFile(ids.get(path))),
      settle: async () => ['file-lost'],
    });
    const text = 'Get [out](sandbox:/mnt/data/out.csv) and [lost](sandbox:/mnt/data/lost.csv)';
    const linked = (message: { content: MessageContent[] }) =>
      message.content.flatMap((p) => (p.type === 'text' ? p.text.annotations.map((a) => a.file_path?.file_id) : []));

    const answer = turnWith(annotator());
    answer.turn.addText(text);
    await answer.turn.settle(new AbortController().signal);
    const { message, events } = answer.turn.messageResult(ZERO, null, (m) => m);
    assert.deepEqual(linked(message), ['file-out']);
    const completed = events.find((e) => e.event === 'thread.message.completed');
    assert.deepEqual(linked(completed!.data as Message), ['file-out'], 'the completed event says what is stored');

    const before = turnWith(annotator());
    before.turn.addText(text);
    before.turn.addToolCall(0, 'python', '{"code": "1"}', true);
    await before.turn.settle(new AbortController().signal);
    const { earlier } = before.turn.toolCallsResult(ZERO);
    assert.deepEqual(linked(earlier!.message), ['file-out']);
  });
});
