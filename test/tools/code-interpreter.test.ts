import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import type OpenAI from 'openai';
import { AssistantStream } from 'openai/lib/AssistantStream';
import { pino } from 'pino';
import type { SandboxPool } from '../../src/sandbox/sandbox-pool.ts';
import { PYTHON_FUNCTION } from '../../src/tools/code-interpreter/code-arguments.ts';
import { codeInterpreterTool } from '../../src/tools/code-interpreter/code-interpreter-tool.ts';
import { startedPool } from '../sandbox/support.ts';
import { aRun, aStoredFile } from '../support/builders.ts';
import { eventually } from '../support/eventually.ts';
import type { RecordedRequest, ToolCallsReply } from '../support/fake-upstream.ts';
import { pngSize } from '../support/images.ts';
import { SdkHarness, toolMessages } from '../support/sdk-harness.ts';
import { postSse, readSse, type SseEvent } from '../support/sse.ts';

/**
 * code_interpreter executed inside runs, through the official SDK against a live server with the real sandbox
 * (bubblewrap + Debian's Python with numpy, pandas, matplotlib: .ci/run installs them; without them these tests
 * fail, they do not skip). The fake upstream plays the model: it calls the offered `python` function with code,
 * then answers. Every JSON response and SSE frame is checked against the official schema (SdkHarness).
 */

const SALES_CSV = 'region,amount\nnorth,10\nsouth,20\neast,30\n';

function python(code: string, raw = false): ToolCallsReply {
  return { toolCalls: [{ name: 'python', arguments: raw ? code : JSON.stringify({ code }) }] };
}

type CodeCall = OpenAI.Beta.Threads.Runs.CodeInterpreterToolCall;

/** The pids of the processes that see /mnt/data/<name>: those of the one sandbox whose code wrote it. */
function processesSeeing(name: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry) && existsSync(`/proc/${entry}/root/mnt/data/${name}`))
    .map(Number);
}

/** Kills the sandbox whose code wrote /mnt/data/<name>, as if it died; resolves once the server has reaped it. */
async function killSessionSeeing(name: string): Promise<void> {
  const pids = processesSeeing(name);
  assert.notDeepEqual(pids, []);
  // bubblewrap, outside the sandbox: gone once the server has reaped it, i.e. has seen the session's process end.
  const parents = pids.map((pid) => Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]));
  const bwrap = parents.filter((pid) => !pids.includes(pid));
  assert.equal(bwrap.length, 1);
  for (const pid of pids)
    try {
      process.kill(pid, 'SIGKILL');
    } catch (error) {
      // Gone already: the sandbox's init took the others with it.
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  await eventually('the sandbox process reaped', 5_000, () => (existsSync(`/proc/${bwrap[0]}`) ? undefined : true));
}

function codeCalls(step: OpenAI.Beta.Threads.Runs.RunStep | undefined): CodeCall[] {
  assert.ok(step, 'there is a step');
  assert.equal(step.step_details.type, 'tool_calls');
  return (step.step_details as OpenAI.Beta.Threads.Runs.ToolCallsStepDetails).tool_calls.filter(
    (c): c is CodeCall => c.type === 'code_interpreter',
  );
}

function systemMessage(request: RecordedRequest | undefined): string {
  assert.ok(request, 'there is a request');
  return String(request.body.messages.find((m) => m.role === 'system')?.['content'] ?? '');
}

class CodeHarness extends SdkHarness {
  async assistant(fileIds: string[] = [], tools: OpenAI.Beta.AssistantTool[] = [{ type: 'code_interpreter' }]) {
    return this.client.beta.assistants.create({
      model: 'gpt-test',
      instructions: 'Compute with Python.',
      tools,
      tool_resources: { code_interpreter: { file_ids: fileIds } },
    });
  }

  async download(fileId: string): Promise<Buffer> {
    return Buffer.from(await (await this.client.files.content(fileId)).arrayBuffer());
  }

  /**
   * A run of the thread in which the model calls `python` with `code`, then answers `text`: the run (completed), the
   * output the model read back, and the system message it was given.
   */
  async runCode(threadId: string, assistantId: string, code: string, text = 'Done.') {
    const seen = this.upstream.requests.length;
    this.upstream.enqueue(python(code), { text });
    const run = await this.client.beta.threads.runs.createAndPoll(threadId, { assistant_id: assistantId });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    return {
      run,
      output: toolMessages(this.upstream.requests[seen + 1])[0]!,
      system: systemMessage(this.upstream.requests[seen]),
    };
  }
}

describe('code_interpreter in a run (createAndPoll)', () => {
  const h = new CodeHarness({
    ASSISTD_CODE_INTERPRETER: 'on',
    ASSISTD_SANDBOX_CELL_TIMEOUT_S: '20',
    ASSISTD_MAX_FILE_MB: '1',
  });
  let csvId: string;
  let assistantId: string;

  before(async () => {
    await h.start();
    csvId = await h.upload('sales.csv', SALES_CSV);
    assistantId = (await h.assistant([csvId])).id;
  });
  after(() => h.close());
  afterEach(() => h.recorder.assertNoViolations());

  test('pandas over the uploaded CSV; a second run of the thread reuses the variable the first defined', async () => {
    const thread = await h.client.beta.threads.create({
      messages: [{ role: 'user', content: 'What is the total amount?' }],
    });
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(
      python(
        "import pandas as pd\ndf = pd.read_csv('/mnt/data/sales.csv')\ntotal = int(df['amount'].sum())\nprint(total)",
      ),
      { text: 'The total amount is 60.' },
    );
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));

    const requests = h.upstream.requests.slice(seen);
    assert.equal(requests.length, 2);
    const offered = requests[0]!.body.tools?.find((t) => t.function.name === 'python');
    assert.deepEqual(offered?.function, PYTHON_FUNCTION);
    const note = systemMessage(requests[0]);
    assert.ok(note.startsWith('Compute with Python.'), note);
    assert.match(note, /\/mnt\/data, holding the files the user gave you: sales\.csv/);
    assert.match(note, /no internet/);
    // The libraries the startup probe found, the optional ones that .ci/run installs among them.
    assert.match(note, /numpy, pandas, matplotlib, [^.]*openpyxl, seaborn[^.]* are installed/);
    assert.equal(toolMessages(requests[1])[0], '60\n');

    const steps = await h.steps(thread.id, run.id);
    assert.deepEqual(
      steps.map((s) => [s.type, s.status]),
      [
        ['tool_calls', 'completed'],
        ['message_creation', 'completed'],
      ],
    );
    const [call] = codeCalls(steps[0]);
    assert.match(call!.id, /^call_/);
    assert.deepEqual(call!.code_interpreter, {
      input:
        "import pandas as pd\ndf = pd.read_csv('/mnt/data/sales.csv')\ntotal = int(df['amount'].sum())\nprint(total)",
      outputs: [{ type: 'logs', logs: '60\n' }],
    });

    // The same thread, a new run: the session kept `total`.
    await h.client.beta.threads.messages.create(thread.id, { role: 'user', content: 'And twice that?' });
    h.upstream.enqueue(python('total * 2'), { text: 'Twice the total is 120.' });
    const second = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(second.status, 'completed', JSON.stringify(second.last_error));
    const [again] = codeCalls((await h.steps(thread.id, second.id))[0]);
    assert.deepEqual(again!.code_interpreter.outputs, [{ type: 'logs', logs: '120\n' }]);
  });

  test('a matplotlib plot: an image output and an image_file part of the answer, whose file is a PNG', async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Plot the sales.' }] });
    h.upstream.enqueue(
      python(
        "import pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('sales.csv')\nplt.bar(df['region'], df['amount'])\nplt.title('Sales')\nprint('plotted')",
      ),
      { text: 'Here is the chart of sales by region.' },
    );
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const [call] = codeCalls((await h.steps(thread.id, run.id))[0]);
    const outputs = call!.code_interpreter.outputs;
    assert.equal(outputs.length, 2);
    assert.deepEqual(outputs[0], { type: 'logs', logs: 'plotted\n' });
    assert.equal(outputs[1]!.type, 'image');
    const imageId = (outputs[1] as OpenAI.Beta.Threads.Runs.CodeInterpreterToolCall.CodeInterpreter.Image).image
      .file_id;

    const message = await h.answer(thread.id, run.id);
    assert.deepEqual(message.content[0], { type: 'image_file', image_file: { file_id: imageId, detail: 'auto' } });
    assert.equal(message.content[1]?.type, 'text');
    const file = await h.client.files.retrieve(imageId);
    assert.equal(file.purpose, 'assistants_output');
    const png = await h.download(imageId);
    assert.equal(file.bytes, png.length);
    const { width, height } = pngSize(png);
    assert.ok(width > 0 && height > 0, 'a valid PNG');
  });

  test('a CSV written by the code and linked as sandbox:/mnt/data/out.csv gets a file_path annotation', async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Double the amounts.' }] });
    h.upstream.enqueue(
      python("import pandas as pd\nd = pd.read_csv('sales.csv')\nd['amount'] *= 2\nd.to_csv('out.csv', index=False)"),
      {
        text: [
          'Done: [download out.csv](sandbox:/mnt/',
          'data/out.csv) — ',
          'and sandbox:/mnt/data/missing.csv is not there.',
        ],
      },
    );
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const message = await h.answer(thread.id, run.id);
    const text = (message.content[0] as OpenAI.Beta.Threads.TextContentBlock).text;
    const link = 'sandbox:/mnt/data/out.csv';
    const start = text.value.indexOf(link);
    assert.equal(text.annotations.length, 1, 'the link to a missing file gets no annotation');
    const annotation = text.annotations[0] as OpenAI.Beta.Threads.FilePathAnnotation;
    assert.deepEqual(annotation, {
      type: 'file_path',
      text: link,
      start_index: start,
      end_index: start + link.length,
      file_path: { file_id: annotation.file_path.file_id },
    });
    const csv = await h.download(annotation.file_path.file_id);
    assert.equal(csv.toString(), 'region,amount\nnorth,20\nsouth,40\neast,60\n');
    const file = await h.client.files.retrieve(annotation.file_path.file_id);
    assert.equal(file.filename, 'out.csv');
    assert.equal(file.purpose, 'assistants_output');

    // A follow-up run that runs no code links the file again: a new file of its bytes as they are now.
    await h.client.beta.threads.messages.create(thread.id, { role: 'user', content: 'The link again, please.' });
    h.upstream.enqueue({ text: [`Here it is again: [out.csv](${link}).`] });
    const again = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(again.status, 'completed', JSON.stringify(again.last_error));
    const [relinked] = ((await h.answer(thread.id, again.id)).content[0] as OpenAI.Beta.Threads.TextContentBlock).text
      .annotations as OpenAI.Beta.Threads.FilePathAnnotation[];
    assert.equal(relinked?.text, link);
    assert.notEqual(relinked.file_path.file_id, annotation.file_path.file_id);
    assert.equal((await h.download(relinked.file_path.file_id)).toString(), csv.toString());
  });

  test('an Excel workbook written and read with pandas (openpyxl), and display() as in a notebook', async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'As Excel, please.' }] });
    const { output } = await h.runCode(
      thread.id,
      assistantId,
      "import pandas as pd\npd.read_csv('sales.csv').to_excel('sales.xlsx', index=False)\n" +
        "display(pd.read_excel('sales.xlsx')['amount'].sum())",
    );
    assert.equal(output, '60\n');
  });

  test("a file whose bytes are missing from this process's storage: the model and the vector store say so", async () => {
    const lost = await h.upload('lost.csv', 'a\n1\n');
    // Bytes another process's directory holds, or that were deleted behind the server's back.
    rmSync(path.join(h.server.dataDir, 'files', 'blobs', lost));
    const thread = await h.client.beta.threads.create({
      messages: [
        { role: 'user', content: 'Read it.', attachments: [{ file_id: lost, tools: [{ type: 'code_interpreter' }] }] },
      ],
    });
    const { output } = await h.runCode(thread.id, assistantId, 'print(1)');
    assert.ok(output.includes(`lost.csv (${lost}): The content of file '${lost}' is missing from storage.\n`), output);
    const store = await h.client.vectorStores.create({});
    const file = await h.client.vectorStores.files.createAndPoll(store.id, { file_id: lost });
    assert.equal(file.status, 'failed');
    assert.deepEqual(file.last_error, { code: 'server_error', message: 'The file could not be read from storage.' });
  });

  test('a name over 255 bytes is shortened; a deleted file is named to the model; an over-limit link is plain', async () => {
    const long = await h.upload(`${'é'.repeat(150)}.csv`, 'x\n1\n'); // 304 bytes of name: more than Linux takes
    const gone = await h.upload('gone.csv', 'y\n');
    const thread = await h.client.beta.threads.create({
      messages: [
        { role: 'user', content: 'Look.', attachments: [{ file_id: long, tools: [{ type: 'code_interpreter' }] }] },
      ],
      tool_resources: { code_interpreter: { file_ids: [gone] } },
    });
    await h.client.files.delete(gone);
    const { run, output, system } = await h.runCode(
      thread.id,
      assistantId,
      "import os\nopen('big.bin', 'wb').write(bytes(1_500_000))\nprint(sorted(n for n in os.listdir('.') if n.endswith('.csv')))",
      'Here: [big](sandbox:/mnt/data/big.bin) and [sales](sandbox:/mnt/data/sales.csv)',
    );
    assert.ok(output.includes(`These files no longer exist and are not in /mnt/data: ${gone}.`), output);
    // 'é' is 2 bytes: 125 of them and '.csv' make 254 bytes.
    assert.ok(output.includes(`['sales.csv', '${'é'.repeat(125)}.csv']`), output);
    assert.match(system, new RegExp(`sales\\.csv, ${'é'.repeat(125)}\\.csv\\.`));

    // 1.5 MB is over the Files API's 1 MB here: the link names no file; the other one does.
    const text = ((await h.answer(thread.id, run.id)).content[0] as OpenAI.Beta.Threads.TextContentBlock).text;
    assert.deepEqual(
      text.annotations.map((a) => a.text),
      ['sandbox:/mnt/data/sales.csv'],
    );
  });

  test('text before calls linking a file that cannot be made: stored without the link, as the client left it', async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Make a file.' }] });
    const made = `${thread.id}.txt`;
    // Each run: a file written by the last cell is linked by text before the calls. Its session died since: the file
    // is looked for once a new process has started, after the calls began, and so the message they finished names
    // it; it is not found. The stream's end waits for the test to act on that message.
    const turn = async (act: (message: OpenAI.Beta.Threads.Message) => Promise<unknown>) => {
      await h.runCode(thread.id, assistantId, `open('${made}', 'w').write('x')`, 'Made.');
      await killSessionSeeing(made);
      let release!: () => void;
      h.upstream.enqueue(
        {
          textBefore: ['Earlier: [the file](sandbox:', `/mnt/data/${made}).`],
          toolCalls: [{ name: 'python', arguments: JSON.stringify({ code: 'print(2)' }) }],
          holdLast: new Promise<void>((resolve) => {
            release = resolve;
          }),
        },
        { text: 'Done.' },
      );
      await h.client.beta.threads.messages.create(thread.id, { role: 'user', content: 'Link them.' });
      const created = await h.client.beta.threads.runs.create(thread.id, { assistant_id: assistantId });
      const early = await eventually('the message before the calls, completed', 10_000, async () => {
        const [message] = (await h.client.beta.threads.messages.list(thread.id, { run_id: created.id })).data;
        return message?.status === 'completed' ? message : undefined;
      });
      const annotated = (early.content[0] as OpenAI.Beta.Threads.TextContentBlock).text.annotations;
      assert.deepEqual(
        annotated.map((a) => a.text),
        [`sandbox:/mnt/data/${made}`],
        'finished before its file could be made: the link is annotated',
      );
      await act(early);
      release();
      const run = await h.client.beta.threads.runs.poll(created.id, { thread_id: thread.id });
      assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
      return { run, early };
    };

    // Rated while the model wrote its calls: kept when the link whose file could not be made is taken out.
    const rated = await turn((m) =>
      h.client.beta.threads.messages.update(m.id, { thread_id: thread.id, metadata: { rated: 'good' } }),
    );
    const kept = await h.client.beta.threads.messages.retrieve(rated.early.id, { thread_id: thread.id });
    const text = (kept.content[0] as OpenAI.Beta.Threads.TextContentBlock).text;
    assert.deepEqual(text, { value: `Earlier: [the file](sandbox:/mnt/data/${made}).`, annotations: [] });
    assert.deepEqual(kept.metadata, { rated: 'good' });

    // Deleted meanwhile: it stays deleted, the run's answer is stored.
    const deleted = await turn((m) => h.client.beta.threads.messages.delete(m.id, { thread_id: thread.id }));
    await assert.rejects(
      h.client.beta.threads.messages.retrieve(deleted.early.id, { thread_id: thread.id }),
      (e: { status?: number }) => e.status === 404,
    );
    const answers = (await h.client.beta.threads.messages.list(thread.id, { run_id: deleted.run.id })).data;
    assert.deepEqual(
      answers.map((m) => (m.content[0] as OpenAI.Beta.Threads.TextContentBlock).text.value),
      ['Done.'],
    );
  });

  test("a session whose process died between runs gets the run's files again", async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Mark it.' }] });
    const marker = `${thread.id}.mark`;
    h.upstream.enqueue(python(`open('${marker}', 'w').write('x')`), { text: 'Marked.' });
    const first = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(first.status, 'completed', JSON.stringify(first.last_error));
    await killSessionSeeing(marker);

    await h.client.beta.threads.messages.create(thread.id, { role: 'user', content: 'Total?' });
    const { output } = await h.runCode(thread.id, assistantId, "print(open('sales.csv').read().count('\\n'))");
    assert.match(output, /^The Python session was restarted before this code ran/);
    assert.match(output, /\n4\n$/, 'sales.csv is in /mnt/data again');
  });

  test('two files of one name from two assistants, on one thread: each run reads its own', async () => {
    const x = await h.assistant([await h.upload('same.csv', 'from x\n')]);
    const y = await h.assistant([await h.upload('same.csv', 'from y\n')]);
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Read it.' }] });
    const outputs: string[] = [];
    for (const assistant of [x, y, x])
      outputs.push((await h.runCode(thread.id, assistant.id, "print(open('same.csv').read(), end='')")).output);
    assert.deepEqual(outputs, ['from x\n', 'from y\n', 'from x\n']);
  });

  test('a later file of a name already taken is named to the model as a later file of that name', async () => {
    const first = await h.upload('data.csv', 'v\n1\n');
    const second = await h.upload('data.csv', 'v\n2\n');
    const attach = (id: string) => [{ file_id: id, tools: [{ type: 'code_interpreter' as const }] }];
    const thread = await h.client.beta.threads.create({
      messages: [
        { role: 'user', content: 'Here is data.csv.', attachments: attach(first) },
        { role: 'user', content: 'Here is the corrected data.csv.', attachments: attach(second) },
      ],
    });
    const { output, system } = await h.runCode(thread.id, assistantId, `print(open('data-${second}.csv').read())`);
    assert.ok(system.includes(`data.csv, data-${second}.csv (a later file also named data.csv).`), system);
    assert.equal(output, 'v\n2\n\n');
  });

  test('tool_choice {type: code_interpreter} forces the python function; raw code as arguments runs', async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: '2**10?' }] });
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(python('print(2**10)', true), { text: '1024' });
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistantId,
      tool_choice: { type: 'code_interpreter' },
    });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    assert.deepEqual(run.tool_choice, { type: 'code_interpreter' });
    assert.deepEqual(h.upstream.requests[seen]!.body['tool_choice'], {
      type: 'function',
      function: { name: 'python' },
    });
    const [call] = codeCalls((await h.steps(thread.id, run.id))[0]);
    assert.deepEqual(call!.code_interpreter, { input: 'print(2**10)', outputs: [{ type: 'logs', logs: '1024\n' }] });

    // A named built-in tool the run does not have is the client's mistake.
    const refused = await fetch(`${h.server.url}/v1/threads/${thread.id}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: assistantId, tool_choice: { type: 'file_search' } }),
    });
    assert.equal(refused.status, 400);
    const body = (await refused.json()) as { error: { param: string; message: string } };
    assert.equal(body.error.param, 'tool_choice.type');
  });

  test('an assistant with a python function of its own: code_interpreter is offered as `code_interpreter`', async () => {
    const own: OpenAI.Beta.FunctionTool = {
      type: 'function',
      function: { name: 'python', description: 'the client’s own', parameters: { type: 'object', properties: {} } },
    };
    const assistant = await h.assistant([], [{ type: 'code_interpreter' }, own]);
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: '3*3?' }] });
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(
      { toolCalls: [{ name: 'code_interpreter', arguments: JSON.stringify({ code: 'print(3*3)' }) }] },
      { text: '9' },
    );
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const names = h.upstream.requests[seen]!.body.tools?.map((t) => t.function.name).sort();
    assert.deepEqual(names, ['code_interpreter', 'python']);
    const [call] = codeCalls((await h.steps(thread.id, run.id))[0]);
    assert.deepEqual(call!.code_interpreter.outputs, [{ type: 'logs', logs: '9\n' }]);
  });

  test('a file attached to a later message for code_interpreter is in /mnt/data on the next run, until deleted; under its id too', async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Hello' }] });
    h.upstream.enqueue({ text: 'Hi.' });
    await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    const notes = await h.upload('notes.txt', 'alpha\nbeta\n');
    await h.client.beta.threads.messages.create(thread.id, {
      role: 'user',
      content: 'How many lines?',
      attachments: [{ file_id: notes, tools: [{ type: 'code_interpreter' }] }],
    });
    // Upstream placed a file under its id alone: programs tell their model it is at /mnt/data/file-…
    const { output, system } = await h.runCode(
      thread.id,
      assistantId,
      `print(len(open('/mnt/data/notes.txt').read().splitlines()), open('/mnt/data/${notes}').read() == open('/mnt/data/${csvId}').read())`,
    );
    assert.match(system, /sales\.csv, notes\.txt/);
    assert.equal(output, '2 False\n');
    const same = await h.runCode(thread.id, assistantId, `print(open('/mnt/data/${notes}').read().split())`);
    assert.equal(same.output, "['alpha', 'beta']\n");

    // Deleted since, it is gone from /mnt/data too, as the model is told; so is its id.
    await h.client.files.delete(notes);
    const after = await h.runCode(
      thread.id,
      assistantId,
      `import os\nprint(os.path.exists('/mnt/data/notes.txt'), os.path.lexists('/mnt/data/${notes}'))`,
    );
    assert.ok(after.output.endsWith('\nFalse False\n'), after.output);
    assert.ok(after.output.includes(`These files no longer exist and are not in /mnt/data: ${notes}.`), after.output);
  });

  test('deleting the thread ends its session: its Python process and its /mnt/data files are gone', async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Make a big file.' }] });
    const marker = `${thread.id}.bin`;
    h.upstream.enqueue(python(`open('${marker}', 'wb').write(bytes(8 << 20))\nkept = 1`), { text: 'Done.' });
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    assert.notDeepEqual(processesSeeing(marker), [], "the session's processes hold the file");

    assert.equal((await h.client.beta.threads.delete(thread.id)).deleted, true);
    await eventually("the deleted thread's session to end", 5_000, () =>
      processesSeeing(marker).length === 0 ? true : undefined,
    );
  });

  test('an error in the code: the traceback is the output, the model reads it and the run goes on', async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Divide.' }] });
    const { run, output } = await h.runCode(thread.id, assistantId, '1/0', 'That divides by zero.');
    assert.match(output, /ZeroDivisionError/);
    const [call] = codeCalls((await h.steps(thread.id, run.id))[0]);
    assert.match((call!.code_interpreter.outputs[0] as { logs: string }).logs, /ZeroDivisionError/);
  });

  test('arguments without code run nothing and the model is told how to call; raw code opening with a brace runs', async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Squares?' }] });
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(python('{"script": "print(1)"}', true), python('{x: x**2 for x in range(3)}', true), {
      text: 'Done.',
    });
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    assert.equal(
      toolMessages(h.upstream.requests[seen + 1])[0],
      'Error: No code ran: the arguments must be {"code": "<python source>"}, the code a non-empty string.',
    );
    assert.equal(toolMessages(h.upstream.requests[seen + 2])[1], '{0: 0, 1: 1, 2: 4}\n');
    const steps = await h.steps(thread.id, run.id);
    assert.deepEqual(codeCalls(steps[0])[0]!.code_interpreter, { input: '', outputs: [] });
    assert.deepEqual(codeCalls(steps[1])[0]!.code_interpreter, {
      input: '{x: x**2 for x in range(3)}',
      outputs: [{ type: 'logs', logs: '{0: 0, 1: 1, 2: 4}\n' }],
    });
  });

  test("a Python process that ends under its cell: the model reads why, once; the run's next cell runs anew", async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Exit.' }] });
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(python('import os\nos._exit(3)'), python("print(open('sales.csv').read().count('\\n'))"), {
      text: 'Done.',
    });
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    assert.equal(
      toolMessages(h.upstream.requests[seen + 1])[0],
      '[The Python process ended (exited with code 3): the session was restarted. Its variables and the files in ' +
        '/mnt/data are lost.]',
    );
    assert.equal(toolMessages(h.upstream.requests[seen + 2])[1], '4\n', 'not told again; sales.csv placed again');
  });

  test('a cell that shows nothing has no outputs, as upstream’s; the model is told it printed nothing', async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Set x.' }] });
    const { run, output } = await h.runCode(thread.id, assistantId, 'x = 1', 'x is set.');
    assert.equal(output, '[The code ran and printed nothing.]');
    const [call] = codeCalls((await h.steps(thread.id, run.id))[0]);
    assert.deepEqual(call!.code_interpreter, { input: 'x = 1', outputs: [] });
  });
});

/** Names of the events of a raw stream, and the frames of one kind. */
const ofKind = (events: SseEvent[], name: string) => events.filter((e) => e.event === name).map((e) => e.data);

describe('code_interpreter, streamed', () => {
  const h = new CodeHarness({ ASSISTD_CODE_INTERPRETER: 'on' });
  let assistantId: string;
  const CODE =
    'import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nsquares = [i * i for i in range(4)]\nprint(squares)';
  const ANSWER = ['The squares are 0, 1, 4 and 9 ', '(see [squares.txt](sandbox:/mnt/data/sq', 'uares.txt)).'];
  const CODE_WITH_FILE = `${CODE}\n_ = open('squares.txt', 'w').write(str(squares))`;

  before(async () => {
    await h.start();
    assistantId = (await h.assistant()).id;
  });
  after(() => h.close());
  afterEach(() => h.recorder.assertNoViolations());

  test('raw SSE: the official event order; the input streamed as written; outputs; image part; annotation', async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Squares?' }] });
    h.upstream.enqueue(python(CODE_WITH_FILE), { text: ANSWER });
    const events = await postSse(`${h.server.url}/v1/threads/${thread.id}/runs`, {
      assistant_id: assistantId,
      stream: true,
    });
    const names = events.map((e) => e.event);
    const firstMessage = names.indexOf('thread.message.created');
    const stepDeltas = names.filter((n) => n === 'thread.run.step.delta').length;
    assert.ok(stepDeltas >= 3, 'the call announced, its input in increments, its outputs');
    assert.deepEqual(names.slice(0, 5), [
      'thread.run.created',
      'thread.run.queued',
      'thread.run.in_progress',
      'thread.run.step.created',
      'thread.run.step.in_progress',
    ]);
    assert.deepEqual(names.slice(5, 5 + stepDeltas), Array(stepDeltas).fill('thread.run.step.delta'));
    assert.deepEqual(names.slice(5 + stepDeltas, firstMessage), [
      'thread.run.step.completed',
      'thread.run.step.created',
      'thread.run.step.in_progress',
    ]);
    assert.deepEqual(names.slice(firstMessage, firstMessage + 2), [
      'thread.message.created',
      'thread.message.in_progress',
    ]);
    assert.deepEqual(names.slice(-4), [
      'thread.message.completed',
      'thread.run.step.completed',
      'thread.run.completed',
      'done',
    ]);

    // The call: its full shape with an empty input, then increments of the input, then the outputs.
    const calls = ofKind(events, 'thread.run.step.delta').map((d) => d.delta.step_details.tool_calls[0]);
    assert.deepEqual(calls[0], {
      index: 0,
      id: calls[0].id,
      type: 'code_interpreter',
      code_interpreter: { input: '', outputs: [] },
    });
    const inputs = calls.slice(1, -1).map((c) => c.code_interpreter.input);
    assert.ok(inputs.length >= 2 && inputs.every((i) => typeof i === 'string' && i !== ''));
    assert.equal(inputs.join(''), CODE_WITH_FILE);
    const outputs = calls.at(-1).code_interpreter.outputs;
    assert.deepEqual(outputs[0], { index: 0, type: 'logs', logs: '[0, 1, 4, 9]\n' });
    assert.equal(outputs[1].index, 1);
    assert.equal(outputs[1].type, 'image');
    const imageId = outputs[1].image.file_id;
    const completedStep = ofKind(events, 'thread.run.step.completed')[0];
    assert.deepEqual(completedStep.step_details.tool_calls[0].code_interpreter, {
      input: CODE_WITH_FILE,
      outputs: [
        { type: 'logs', logs: '[0, 1, 4, 9]\n' },
        { type: 'image', image: { file_id: imageId } },
      ],
    });

    // The answer: the image part first, then the text, the link held back until complete.
    const contents = ofKind(events, 'thread.message.delta').map((d) => d.delta.content[0]);
    assert.deepEqual(contents[0], { index: 0, type: 'image_file', image_file: { file_id: imageId, detail: 'auto' } });
    const texts = contents.slice(1).map((c) => c.text);
    assert.ok(contents.slice(1).every((c) => c.index === 1 && c.type === 'text'));
    const linkDelta = texts.find((t) => t.annotations?.length > 0);
    assert.ok(linkDelta.value.includes('sandbox:/mnt/data/squares.txt'), 'the link is sent whole, with its annotation');
    const message = ofKind(events, 'thread.message.completed')[0];
    assert.equal(texts.map((t) => t.value).join(''), message.content[1].text.value, 'streamed text = stored text');
    assert.equal(message.content[1].text.value, ANSWER.join(''));
    const [annotation] = message.content[1].text.annotations;
    assert.deepEqual({ ...linkDelta.annotations[0], index: undefined }, { ...annotation, index: undefined });
    assert.equal((await h.download(annotation.file_path.file_id)).toString(), '[0, 1, 4, 9]');
    assert.deepEqual(await h.client.beta.threads.messages.retrieve(message.id, { thread_id: thread.id }), message);
  });

  test("AssistantStream: toolCallDelta shows the code and the logs as the SDK's example prints them", async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Squares?' }] });
    h.upstream.enqueue(python(CODE_WITH_FILE), { text: ANSWER });
    let printed = '';
    const images: string[] = [];
    const stream = h.client.beta.threads.runs
      .stream(thread.id, { assistant_id: assistantId })
      .on('toolCallCreated', (call) => {
        printed += `\n${call.type}\n`;
      })
      .on('toolCallDelta', (delta) => {
        // The official example, verbatim in substance.
        if (delta.type === 'code_interpreter') {
          if (delta.code_interpreter?.input) printed += delta.code_interpreter.input;
          if (delta.code_interpreter?.outputs) {
            printed += '\noutput >\n';
            for (const output of delta.code_interpreter.outputs)
              if (output.type === 'logs') printed += `\n${output.logs}\n`;
          }
        }
      })
      .on('imageFileDone', (image) => images.push(image.file_id));
    const run = await stream.finalRun();
    assert.equal(run.status, 'completed');
    assert.equal(printed, `\ncode_interpreter\n${CODE_WITH_FILE}\noutput >\n\n[0, 1, 4, 9]\n\n`);
    const steps = await stream.finalRunSteps();
    const [call] = codeCalls(steps[0]);
    assert.equal(call!.code_interpreter.input, CODE_WITH_FILE);
    const messages = await stream.finalMessages();
    const stored = await h.client.beta.threads.messages.retrieve(messages[0]!.id, { thread_id: thread.id });
    assert.deepEqual(messages[0], stored, 'what the SDK accumulated is what is stored');
    assert.equal(images.length, 1);
    assert.deepEqual(stored.content[0], { type: 'image_file', image_file: { file_id: images[0], detail: 'auto' } });
  });

  test('a file_path annotation names a file that exists when it arrives (a Markdown image is fetched at once)', async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Plot it.' }] });
    let release = () => {};
    const holdLast = new Promise<void>((resolve) => {
      release = resolve;
    });
    h.upstream.enqueue(python("import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.savefig('chart.png')"), {
      text: ['Here: ![chart](sandbox:/mnt/data/chart.png) ', 'is the chart.'],
      holdLast,
    });
    // What the assistants quickstart does with each file_path annotation as it arrives: its file is fetched.
    const fetched: Array<Promise<string>> = [];
    const stream = h.client.beta.threads.runs
      .stream(thread.id, { assistant_id: assistantId })
      .on('textDelta', (delta) => {
        for (const annotation of delta.annotations ?? [])
          if (annotation.type === 'file_path')
            fetched.push(
              h.client.files.retrieve(annotation.file_path!.file_id!).then(
                (file) => file.filename,
                (error: { status?: number }) => `error ${error.status}`,
              ),
            );
        release(); // the model's last words come once the first text has reached the client
      });
    const run = await stream.finalRun();
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    assert.deepEqual(await Promise.all(fetched), ['chart.png']);
    const [message] = await stream.finalMessages();
    assert.deepEqual(message, await h.client.beta.threads.messages.retrieve(message!.id, { thread_id: thread.id }));
  });

  test('AssistantStream, two calls in one turn: each created once and done once, with its outputs', async () => {
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Two sums.' }] });
    h.upstream.enqueue(
      {
        toolCalls: [
          { name: 'python', arguments: JSON.stringify({ code: 'print(1 + 1)' }) },
          { name: 'python', arguments: JSON.stringify({ code: 'print(2 + 2)' }) },
        ],
      },
      { text: '2 and 4.' },
    );
    const seen: string[] = [];
    // The code boxes of OpenAI's assistants quickstart: one opened empty by toolCallCreated, filled by toolCallDelta.
    const boxes: string[] = [];
    const stream = h.client.beta.threads.runs
      .stream(thread.id, { assistant_id: assistantId })
      .on('toolCallCreated', (call) => {
        seen.push(`created ${call.id}`);
        boxes.push('');
      })
      .on('toolCallDelta', (delta) => {
        if (delta.type === 'code_interpreter' && delta.code_interpreter?.input)
          boxes[boxes.length - 1] += delta.code_interpreter.input;
      })
      .on('toolCallDone', (call) => {
        const outputs = call.type === 'code_interpreter' ? call.code_interpreter.outputs : [];
        seen.push(`done ${call.id} ${outputs.map((o) => (o.type === 'logs' ? o.logs.trim() : o.type)).join()}`);
      });
    const run = await stream.finalRun();
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const [first, second] = codeCalls((await stream.finalRunSteps())[0]);
    assert.deepEqual(seen, [
      `created ${first!.id}`,
      `done ${first!.id} 2`,
      `created ${second!.id}`,
      `done ${second!.id} 4`,
    ]);
    // The second call is held until the first has run, and still shows its code in deltas after its creation.
    assert.deepEqual(boxes, ['print(1 + 1)', 'print(2 + 2)']);
  });

  test('re-attached (/events) while a cell runs: the snapshot holds only announced calls; the SDK accumulates the stored steps', async () => {
    const weather: OpenAI.Beta.FunctionTool = {
      type: 'function',
      function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
    };
    const assistant = await h.assistant([], [{ type: 'code_interpreter' }, weather]);
    const thread = await h.client.beta.threads.create({
      messages: [{ role: 'user', content: 'Slow sum, then weather.' }],
    });
    h.upstream.enqueue({
      toolCalls: [
        { name: 'python', arguments: JSON.stringify({ code: 'import time\ntime.sleep(1.5)\nprint(1 + 1)' }) },
        { name: 'get_weather', arguments: '{"city":"Paris"}' },
      ],
    });
    const run = await h.client.beta.threads.runs.create(thread.id, { assistant_id: assistant.id });
    await eventually('the cell to be running', 10_000, async () => {
      const steps = await h.client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id });
      return steps.data.length > 0 ? true : undefined;
    });
    const events = await readSse(await fetch(`${h.server.url}/v1/threads/${thread.id}/runs/${run.id}/events`));
    const created = events.find((e) => e.event === 'thread.run.step.created');
    assert.ok(created, 'the snapshot has the step being executed');
    assert.deepEqual(
      created.data.step_details.tool_calls.map((c: { type: string }) => c.type),
      ['code_interpreter'],
      'the function written after it is not shown before it is announced',
    );
    const lines = events
      .filter((e) => e.event !== 'done')
      .map((e) => `${JSON.stringify({ event: e.event, data: e.data })}\n`)
      .join('');
    const stream = AssistantStream.fromReadableStream(new Response(lines).body!);
    const final = await stream.finalRun();
    assert.equal(final.status, 'requires_action');
    const stored = await h.steps(thread.id, run.id);
    // The step is still in progress: the SDK's copy is its accumulation of deltas, whose entries keep their `index`.
    const withoutIndex = (value: unknown): unknown =>
      Array.isArray(value)
        ? value.map(withoutIndex)
        : value !== null && typeof value === 'object'
          ? Object.fromEntries(
              Object.entries(value)
                .filter(([key]) => key !== 'index')
                .map(([key, inner]) => [key, withoutIndex(inner)]),
            )
          : value;
    assert.deepEqual(
      (await stream.finalRunSteps()).map((s) => withoutIndex(s.step_details)),
      stored.map((s) => s.step_details),
      'each call once: no id, name, input or arguments added to itself',
    );
    await h.client.beta.threads.runs.cancel(run.id, { thread_id: thread.id });
  });

  test('arguments that are one JSON string, and raw code opening with a docstring: streamed input = stored', async () => {
    const docstring = `"""Squares."""\n${CODE}`;
    for (const [args, code] of [
      [JSON.stringify(CODE), CODE],
      [docstring, docstring],
    ] as const) {
      const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Squares?' }] });
      h.upstream.enqueue(python(args, true), { text: ['Done.'] });
      let input = '';
      const stream = h.client.beta.threads.runs
        .stream(thread.id, { assistant_id: assistantId })
        .on('toolCallDelta', (delta) => {
          if (delta.type === 'code_interpreter') input += delta.code_interpreter?.input ?? '';
        });
      assert.equal((await stream.finalRun()).status, 'completed');
      const [call] = codeCalls((await stream.finalRunSteps())[0]);
      assert.equal(call!.code_interpreter.input, code);
      assert.equal(input, code, 'what the client was streamed is what is stored');
      assert.deepEqual(call!.code_interpreter.outputs[0], { type: 'logs', logs: '[0, 1, 4, 9]\n' });
    }
  });
});

describe('code_interpreter with a small context window', () => {
  const h = new CodeHarness({ ASSISTD_CODE_INTERPRETER: 'on', ASSISTD_CONTEXT_WINDOW: '4096' });
  before(() => h.start());
  after(() => h.close());
  afterEach(() => h.recorder.assertNoViolations());

  test("a long output is cut to what the window has left for the model, its head and tail kept; the step's logs whole", async () => {
    const assistant = await h.assistant();
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Show the table.' }] });
    const code =
      "import pandas as pd\ndf = pd.DataFrame({'n': range(1500), 'square': [i * i for i in range(1500)]})\nprint(df.to_string())";
    const { run, output } = await h.runCode(thread.id, assistant.id, code, 'A long table.');
    const [call] = codeCalls((await h.steps(thread.id, run.id))[0]);
    const logs = (call!.code_interpreter.outputs[0] as { logs: string }).logs;
    assert.ok(logs.length > 19_000, `the step keeps the cell's logs as the sandbox gave them: ${logs.length}`);
    assert.ok(Buffer.byteLength(output) < 2_048, `${Buffer.byteLength(output)} bytes for the model`);
    assert.ok(output.startsWith(logs.slice(0, 100)), output);
    assert.ok(output.endsWith('1499  2247001\n'), output);
    // What was left out: the sandbox's cut and this one, counted together.
    const driverCut = Number(/output truncated: ([\d,]+) more/.exec(logs)![1]!.replaceAll(',', ''));
    const left = Number(/\n…\[output truncated: ([\d,]+) more characters\]\n/.exec(output)![1]!.replaceAll(',', ''));
    const note = /\n…\[output truncated: [\d,]+ more characters\]\n/;
    assert.equal(left, driverCut + logs.replace(note, '').length - output.replace(note, '').length);
  });
});

describe("code_interpreter when the thread's session is gone", () => {
  // Sessions idle for a second are closed: as when a run of the thread lands on another worker, or after a pause.
  const h = new CodeHarness({ ASSISTD_CODE_INTERPRETER: 'on', ASSISTD_SANDBOX_IDLE_S: '1' });
  before(() => h.start());
  after(() => h.close());
  afterEach(() => h.recorder.assertNoViolations());

  test('the next run starts a new session and the model is told its state was reset', async () => {
    const assistant = await h.assistant();
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Remember 7.' }] });
    h.upstream.enqueue(python('kept = 7'), { text: 'Remembered.' });
    const first = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(first.status, 'completed', JSON.stringify(first.last_error));

    await new Promise((resolve) => setTimeout(resolve, 2500));
    await h.client.beta.threads.messages.create(thread.id, { role: 'user', content: 'What was it?' });
    const { output } = await h.runCode(thread.id, assistant.id, 'print(kept)', 'It is gone.');
    assert.match(output, /^The Python session was restarted before this code ran/);
    assert.match(output, /NameError: name 'kept' is not defined/);
  });
});

describe('code_interpreter with the sandbox disabled', () => {
  const h = new CodeHarness({ ASSISTD_CODE_INTERPRETER: 'off' });
  before(() => h.start());
  after(() => h.close());

  test('the run completes; the step says why no code ran; /healthz says why too', async () => {
    const assistant = await h.assistant();
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: '2+2?' }] });
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(python('print(2+2)'), { text: 'It is 4.' });
    const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const [call] = codeCalls((await h.steps(thread.id, run.id))[0]);
    const reason = 'Code execution is unavailable on this server: disabled by ASSISTD_CODE_INTERPRETER=off';
    assert.deepEqual(call!.code_interpreter, { input: 'print(2+2)', outputs: [{ type: 'logs', logs: reason }] });
    assert.match(toolMessages(h.upstream.requests[seen + 1])[0]!, /unavailable on this server/);
    assert.match(systemMessage(h.upstream.requests[seen]), /code execution is unavailable on this server/);
    const health = (await (await fetch(`${h.server.url}/healthz`)).json()) as Record<string, unknown>;
    assert.deepEqual(health, {
      status: 'ok',
      code_interpreter: { available: false, reason: 'disabled by ASSISTD_CODE_INTERPRETER=off' },
    });
  });
});

describe('code_interpreter on an API-only process (serve --no-workers)', () => {
  const h = new CodeHarness({ ASSISTD_CODE_INTERPRETER: 'on' }, { workers: false });
  before(() => h.start());
  after(() => h.close());

  test('it runs the code of the runs it streams, and /healthz says the sandbox is available', async () => {
    const health = await eventually('the sandbox probe', 20_000, async () => {
      const body = (await (await fetch(`${h.server.url}/healthz`)).json()) as { code_interpreter: { reason?: string } };
      return body.code_interpreter.reason === 'the sandbox is still being probed' ? undefined : body;
    });
    assert.deepEqual(health, { status: 'ok', code_interpreter: { available: true } });
    const assistant = await h.assistant();
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: '2+2?' }] });
    h.upstream.enqueue(python('print(2 + 2)'), { text: 'It is 4.' });
    const run = await h.client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id }).finalRun();
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const [call] = codeCalls((await h.steps(thread.id, run.id))[0]);
    assert.deepEqual(call!.code_interpreter.outputs, [{ type: 'logs', logs: '4\n' }]);
  });
});

describe('code_interpreter over a session whose lifetime ends while a call places its files', () => {
  let pool: SandboxPool;
  before(async () => {
    pool = await startedPool({ lifetimeMs: 1_000 });
  });
  after(() => pool.close());

  test('the call places them all and runs its cell; the next run has a new session, and is told so', async () => {
    const files = ['a.txt', 'b.txt'].map((filename) => aStoredFile({ filename }));
    let last: string | undefined;
    const tool = codeInterpreterTool({
      sandbox: pool,
      backend: {
        runFiles: async () => ({ files, missing: [] }),
        readFile: async (_scope, id) => {
          // The session's lifetime ends while the second file is read: after one write, before the next.
          if (id === files[1]!.id) await new Promise((resolve) => setTimeout(resolve, 1_300));
          return new TextEncoder().encode(id);
        },
        saveFile: async () => {
          throw new Error('no files made here');
        },
        lastCall: async () => last,
      },
      logger: pino({ level: 'silent' }),
      cellTimeoutMs: 20_000,
      maxFileBytes: 1024,
      sandboxFileBytes: 1024,
    });
    const context = (run: ReturnType<typeof aRun>) => ({
      scope: { projectId: 'proj_lifetime' },
      run,
      signal: new AbortController().signal,
      calls: [],
      contextTokensLeft: undefined,
      progress: () => {},
    });
    const code = JSON.stringify({ code: "print(open('a.txt').read(), open('b.txt').read())" });
    const run = aRun('thread_lifetime', { status: 'in_progress', expires_at: null });
    const placing = await tool.execute({ id: 'call_placing', arguments: code }, context(run));
    assert.equal(placing.output, `${files[0]!.id} ${files[1]!.id}\n`);
    tool.executionEnded!(run);
    last = 'call_placing';

    const next = aRun('thread_lifetime', { status: 'in_progress', expires_at: null });
    const again = await tool.execute({ id: 'call_next', arguments: code }, context(next));
    tool.executionEnded!(next);
    assert.match(again.output, /^The Python session was restarted before this code ran/);
    assert.ok(again.output.endsWith(`\n${files[0]!.id} ${files[1]!.id}\n`), again.output);
  });
});
