import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { type ServerProcess, spawnToolServer, tempDir } from '../support/server.ts';
import { addCall, parseToolLog, type ToolLogEntry } from '../support/test-tools.ts';
import { createValidatingFetch } from '../support/validating-fetch.ts';

/**
 * A server killed while a server-side tool runs: the call was committed before the tool ran, so the next start
 * (once the lease lapses) executes that call again — not the model turn that made it — and the run completes with one
 * answer. Separate processes (support/tool-server.ts: `assistd serve` with the test tool), the fake model in this one.
 */

const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'expired', 'incomplete']);
const TEST_TIMEOUT_MS = 90_000;

function readLog(file: string): ToolLogEntry[] {
  return existsSync(file) ? parseToolLog(readFileSync(file, 'utf8')) : [];
}

function toolCallsOf(step: OpenAI.Beta.Threads.Runs.RunStep): OpenAI.Beta.Threads.Runs.ToolCall[] {
  assert.equal(step.step_details.type, 'tool_calls');
  return (step.step_details as OpenAI.Beta.Threads.Runs.ToolCallsStepDetails).tool_calls;
}

/**
 * The scenario on one storage (`storageEnv` adds e.g. ASSISTD_DATABASE_URL): turn 1 add(2,3), turn 2 add(4,5) whose
 * execution hangs, SIGKILL, restart, the run completes.
 */
async function killDuringSecondCall(upstream: FakeUpstream, storageEnv: Record<string, string> = {}): Promise<void> {
  const dataDir = tempDir();
  const logDir = tempDir('assistd-tool-log-');
  const logFile = path.join(logDir, 'tool.jsonl');
  const env = {
    ASSISTD_DATA_DIR: dataDir,
    ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
    ASSISTD_UPSTREAM_MAX_RETRIES: '0',
    ASSISTD_WORKER_LEASE_S: '1',
    TEST_TOOL_LOG: logFile,
    ...storageEnv,
  };
  const recorder = createValidatingFetch();
  const clientOf = (server: ServerProcess) =>
    new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
  const seen = upstream.requests.length;
  // The first execution answers at once; the second (add(4,5)) would take a minute: the kill lands during it.
  let server: ServerProcess | undefined = await spawnToolServer({ ...env, TEST_TOOL_DELAY_MS: '0,60000' });
  try {
    let client = clientOf(server);
    upstream.enqueue(addCall(2, 3), addCall(4, 5), { text: ['The ', 'answer'] });
    const assistant = await client.beta.assistants.create({ model: 'm', tools: [{ type: 'code_interpreter' }] });
    const thread = await client.beta.threads.create({
      messages: [{ role: 'user', content: 'What is 2 + 3, then 4 + 5?' }],
    });
    const run = await client.beta.threads.runs.create(thread.id, { assistant_id: assistant.id });

    const beforeKill = await eventually('the second call to start', 30_000, () => {
      const entries = readLog(logFile);
      return entries.filter((e) => e.event === 'start').length >= 2 ? entries : undefined;
    });
    assert.deepEqual(
      beforeKill.map((e) => e.event),
      ['start', 'finish', 'start'],
    );
    const [first, , second] = beforeKill as [ToolLogEntry, ToolLogEntry, ToolLogEntry];
    assert.equal(beforeKill[1]!.callId, first.callId);
    assert.notEqual(second.callId, first.callId);
    assert.equal(upstream.requests.length - seen, 2, 'two model turns before the kill');
    await server.stop('SIGKILL');
    server = undefined;

    server = await spawnToolServer({ ...env, TEST_TOOL_DELAY_MS: '0' });
    client = clientOf(server);
    const final = await eventually('the run to end', 30_000, async () => {
      const current = await client.beta.threads.runs.retrieve(run.id, { thread_id: thread.id });
      return TERMINAL.has(current.status) ? current : undefined;
    });
    assert.equal(final.status, 'completed', `run ended ${final.status}: ${JSON.stringify(final.last_error)}`);

    // First call: started and finished once; second: started twice (the killed execution, the resumed one), finished
    // once. The killed process never got to abort it.
    assert.deepEqual(readLog(logFile), [
      { event: 'start', callId: first.callId },
      { event: 'finish', callId: first.callId },
      { event: 'start', callId: second.callId },
      { event: 'start', callId: second.callId },
      { event: 'finish', callId: second.callId },
    ]);
    // Turn 2's model call is not repeated: it was committed before its tool ran.
    const requests = upstream.requests.slice(seen);
    assert.equal(requests.length, 3, 'exactly three model turns');
    const turn3 = requests[2]!.body.messages as Array<{ role: string; content?: unknown; tool_call_id?: string }>;
    assert.deepEqual(
      turn3.filter((m) => m.role === 'tool').map((m) => [m.tool_call_id, m.content]),
      [
        [first.callId, '5'],
        [second.callId, '9'],
      ],
    );

    const messages = (await client.beta.threads.messages.list(thread.id)).data;
    const answers = messages.filter((m) => m.role === 'assistant');
    assert.equal(answers.length, 1, 'exactly one assistant message');
    assert.equal((answers[0]!.content[0] as OpenAI.Beta.Threads.TextContentBlock).text.value, 'The answer');
    const steps = (await client.beta.threads.runs.steps.list(run.id, { thread_id: thread.id, order: 'asc' })).data;
    assert.deepEqual(
      steps.map((s) => [s.type, s.status]),
      [
        ['tool_calls', 'completed'],
        ['tool_calls', 'completed'],
        ['message_creation', 'completed'],
      ],
    );
    assert.deepEqual(
      steps.slice(0, 2).map((s) => toolCallsOf(s).map((c) => c.id)),
      [[first.callId], [second.callId]],
    );
    assert.deepEqual(toolCallsOf(steps[1]!)[0], {
      id: second.callId,
      type: 'code_interpreter',
      code_interpreter: { input: '4 + 5', outputs: [{ type: 'logs', logs: '9' }] },
    });
    recorder.assertNoViolations({ all: true });
  } finally {
    await server?.stop('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(logDir, { recursive: true, force: true });
  }
}

describe('server-side tools: a crash during an execution', () => {
  let upstream: FakeUpstream;
  before(async () => {
    upstream = await FakeUpstream.start();
  });
  after(async () => upstream?.close());

  test(
    'SQLite: SIGKILL during the second call; after restart the call runs again, the model turn does not',
    { timeout: TEST_TIMEOUT_MS },
    () => killDuringSecondCall(upstream),
  );

  const adminUrl = postgresUrlOrSkip();
  if (adminUrl === undefined) {
    test('PostgreSQL: SIGKILL during the second call', { skip: POSTGRES_SKIP_REASON }, () => {});
  } else {
    test('PostgreSQL: SIGKILL during the second call; after restart the call runs again, the model turn does not', {
      timeout: TEST_TIMEOUT_MS,
    }, async () => {
      const database = await createTestDatabase(adminUrl);
      try {
        await killDuringSecondCall(upstream, { ASSISTD_DATABASE_URL: database.url });
      } finally {
        await database.drop();
      }
    });
  }
});
