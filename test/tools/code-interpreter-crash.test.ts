import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { alive, commandOf, descendants } from '../support/processes.ts';
import { type ServerProcess, spawnServer, tempDir } from '../support/server.ts';

/**
 * `assistd serve` killed with SIGKILL while a code_interpreter cell runs: the sandbox (bubblewrap and the Python
 * session in it) dies with it — nothing is left running on the host — and the run, resumed by the next start,
 * ends rather than staying in progress.
 */

describe('SIGKILL of the server while a cell runs', () => {
  let upstream: FakeUpstream;
  let server: ServerProcess | undefined;
  const dataDir = tempDir();
  const env = () => ({
    ASSISTD_DATA_DIR: dataDir,
    ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
    ASSISTD_UPSTREAM_MAX_RETRIES: '0',
    ASSISTD_CODE_INTERPRETER: 'on',
    ASSISTD_WORKER_LEASE_S: '2',
    // The resumed run executes the same cell again; the limit ends it.
    ASSISTD_SANDBOX_CELL_TIMEOUT_S: '8',
  });

  before(async () => {
    upstream = await FakeUpstream.start();
  });
  after(async () => {
    await server?.stop('SIGKILL');
    await upstream.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('leaves no sandbox process behind; the restarted server ends the run', async () => {
    server = await spawnServer(env());
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0 });
    const assistant = await client.beta.assistants.create({ model: 'gpt-test', tools: [{ type: 'code_interpreter' }] });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Wait.' }] });
    const cell = 'import time\nprint("started", flush=True)\ntime.sleep(600)';
    upstream.enqueue({ toolCalls: [{ name: 'python', arguments: JSON.stringify({ code: cell }) }] });
    const run = await client.beta.threads.runs.create(thread.id, { assistant_id: assistant.id });

    // The cell is running: a python3 inside bwrap below the server, as nobody on the host.
    const pid = server.child.pid!;
    const sandbox = await eventually('the cell to be running in the sandbox', 20_000, async () => {
      const steps = await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id });
      const below = descendants(pid);
      const commands = below.map(commandOf);
      return steps.data.length > 0 && commands.includes('bwrap') && commands.includes('python3') ? below : undefined;
    });
    await new Promise((resolve) => setTimeout(resolve, 300)); // the cell itself, not only the session, is running

    await server.stop('SIGKILL');
    server = undefined;
    await eventually('every sandbox process to be gone', 5_000, async () => (sandbox.some(alive) ? undefined : true));
    assert.deepEqual(
      sandbox.filter(alive).map((p) => `${p} ${commandOf(p)}`),
      [],
      'sandbox processes outlived the server',
    );

    // The next start resumes the run: the call is executed again in a new session (until the cell's time limit),
    // and the model answers.
    upstream.enqueue({ text: 'It took too long.' });
    server = await spawnServer(env());
    const again = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0 });
    const ended = await eventually('the run to end after the restart', 60_000, async () => {
      const r = await again.beta.threads.runs.retrieve(run.id, { thread_id: thread.id });
      return ['completed', 'failed', 'expired', 'cancelled', 'incomplete'].includes(r.status) ? r : undefined;
    });
    assert.equal(ended.status, 'completed', JSON.stringify(ended.last_error));
    const steps = await again.beta.threads.runs.steps.list(run.id, { thread_id: thread.id, order: 'asc' });
    const call = (steps.data[0]!.step_details as OpenAI.Beta.Threads.Runs.ToolCallsStepDetails).tool_calls[0]!;
    assert.equal(call.type, 'code_interpreter');
    assert.match(JSON.stringify(call), /started/);
  });
});
