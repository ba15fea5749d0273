import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { describe, type TestContext, test } from 'node:test';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { type ServerProcess, spawnServer, tempDir } from '../support/server.ts';

/**
 * The crash loop: a real server process is SIGKILLed at seeded-random moments while clients keep adding messages
 * and starting runs (polled and streamed) on a few threads, then restarted on the same data, KILLS times. After the
 * last restart, once the killed servers' leases have lapsed: every message and run the server acknowledged (a 2xx
 * the client received) exists, every run is terminal, and no run answered twice. Every server lives until a run was
 * started on it. No message or step is left in progress.
 */

const KILLS = 10;
const THREADS = 3;
const SEED = 0xc4a5;
const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'expired', 'incomplete']);

class Random {
  private state: number;
  constructor(seed: number) {
    this.state = seed;
  }
  /** An integer in [min, max). */
  between(min: number, max: number): number {
    this.state = (this.state * 1103515245 + 12345) & 0x7fffffff;
    return min + (this.state % (max - min));
  }
}

interface Acknowledged {
  messages: Map<string, { threadId: string; text: string }>;
  runs: Map<string, string>; // run id → thread id
}

/** The server went away under the request: nothing was acknowledged. */
class Gone extends Error {}

/** The fields of the objects and lists this test reads. */
interface Body {
  id: string;
  status: string;
  content: Array<{ text: { value: string } }>;
  data: Array<{ role: string; run_id: string; type: string; status: string }>;
  has_more: boolean;
  last_id: string;
}

async function call(url: string, method: string, body?: unknown): Promise<{ status: number; json: Body }> {
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, json: (text === '' ? {} : JSON.parse(text)) as Body };
  } catch {
    throw new Gone();
  }
}

/** Starts a streamed run; acknowledged once its `thread.run.created` event arrives; read until the stream ends. */
async function streamRun(base: string, threadId: string, assistantId: string, ack: Acknowledged): Promise<void> {
  let response: Response;
  try {
    response = await fetch(`${base}/v1/threads/${threadId}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ assistant_id: assistantId, stream: true }),
    });
  } catch {
    throw new Gone();
  }
  if (response.status !== 200) {
    await response.text().catch(() => undefined);
    return; // the thread still had an active run
  }
  const decoder = new TextDecoder();
  let buffered = '';
  try {
    for await (const chunk of response.body!) {
      buffered += decoder.decode(chunk as Uint8Array, { stream: true });
      const created = /event: thread\.run\.created\ndata: (\{.*\})\n/.exec(buffered);
      if (created) ack.runs.set(JSON.parse(created[1]!).id, threadId);
    }
  } catch {
    throw new Gone();
  }
}

/** One client: messages and runs on its thread, until the server is gone. */
async function client(base: string, threadId: string, assistantId: string, ack: Acknowledged, random: Random) {
  for (let i = 0; ; i++) {
    const text = `message ${threadId} ${ack.messages.size} ${random.between(0, 1e9)}`;
    const message = await call(`${base}/v1/threads/${threadId}/messages`, 'POST', { role: 'user', content: text });
    if (message.status === 200) ack.messages.set(message.json.id, { threadId, text });
    if (i % 2 === 0) {
      await streamRun(base, threadId, assistantId, ack);
      continue;
    }
    const run = await call(`${base}/v1/threads/${threadId}/runs`, 'POST', { assistant_id: assistantId });
    if (run.status !== 200) {
      await new Promise((r) => setTimeout(r, 30)); // an active run holds the thread: try again shortly
      continue;
    }
    ack.runs.set(run.json.id, threadId);
    for (;;) {
      const polled = await call(`${base}/v1/threads/${threadId}/runs/${run.json.id}`, 'GET');
      if (TERMINAL.has(polled.json?.status)) break;
      await new Promise((r) => setTimeout(r, 30));
    }
  }
}

async function crashLoop(t: TestContext, env: Record<string, string>): Promise<void> {
  const upstream = await FakeUpstream.start();
  // Slow enough that kills land mid-stream: five chunks, 60 ms apart.
  upstream.setDefault({ text: ['The ', 'answer ', 'comes ', 'in ', 'pieces.'], chunkDelayMs: 60 });
  const settings = { ...env, ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl, ASSISTD_WORKER_LEASE_S: '1' };
  const random = new Random(SEED);
  const ack: Acknowledged = { messages: new Map(), runs: new Map() };
  let server: ServerProcess | undefined = await spawnServer(settings);
  try {
    const assistant = await call(`${server.url}/v1/assistants`, 'POST', { model: 'gpt-test' });
    const threads: string[] = [];
    for (let i = 0; i < THREADS; i++) threads.push((await call(`${server.url}/v1/threads`, 'POST', {})).json.id);

    for (let kill = 0; kill < KILLS; kill++) {
      const base = server.url;
      const clients = threads.map((id) =>
        client(base, id, assistant.json.id, ack, random).catch((error: unknown) => {
          if (!(error instanceof Gone)) throw error;
        }),
      );
      // Killed at a random moment, but not before a run was started in this life: a slow start (a loaded machine)
      // would otherwise see whole lives with no run in them.
      const runsBefore = ack.runs.size;
      await Promise.all([
        new Promise((r) => setTimeout(r, random.between(200, 900))),
        eventually(`a run started by server ${kill + 1}`, 30_000, () =>
          ack.runs.size > runsBefore ? true : undefined,
        ),
      ]);
      await server.stop('SIGKILL');
      await Promise.all(clients);
      server = await spawnServer(settings);
    }

    // The last server resumes what the killed ones held once their leases lapse.
    const url = server.url;
    const statuses = new Map<string, string>();
    await eventually('every acknowledged run to end', 60_000, async () => {
      for (const [runId, threadId] of ack.runs) {
        if (TERMINAL.has(statuses.get(runId) ?? '')) continue;
        const run = await call(`${url}/v1/threads/${threadId}/runs/${runId}`, 'GET');
        assert.equal(run.status, 200, `acknowledged run ${runId} is gone`);
        statuses.set(runId, run.json.status);
      }
      return [...statuses.values()].every((s) => TERMINAL.has(s)) ? true : undefined;
    });

    for (const [id, { threadId, text }] of ack.messages) {
      const message = await call(`${url}/v1/threads/${threadId}/messages/${id}`, 'GET');
      assert.equal(message.status, 200, `acknowledged message ${id} is gone`);
      assert.equal(message.json.content[0]?.text.value, text);
    }
    const answers = new Map<string, number>();
    for (const threadId of threads) {
      let after: string | undefined;
      for (;;) {
        const page = await call(
          `${url}/v1/threads/${threadId}/messages?order=asc&limit=100${after ? `&after=${after}` : ''}`,
          'GET',
        );
        for (const message of page.json.data) {
          // A message begun by a killed server is deleted when its run is taken over or ended.
          assert.notEqual(message.status, 'in_progress', `run ${message.run_id} left a message in progress`);
          if (message.role === 'assistant') answers.set(message.run_id, (answers.get(message.run_id) ?? 0) + 1);
        }
        if (!page.json.has_more) break;
        after = page.json.last_id;
      }
    }
    for (const [runId, count] of answers) assert.equal(count, 1, `run ${runId} answered ${count} times`);
    for (const [runId, threadId] of ack.runs) {
      const steps = await call(`${url}/v1/threads/${threadId}/runs/${runId}/steps`, 'GET');
      assert.ok(
        steps.json.data.every((s) => s.status !== 'in_progress'),
        `run ${runId} left a step in progress`,
      );
      const creations = steps.json.data.filter((s) => s.type === 'message_creation');
      assert.ok(creations.length <= 1, `run ${runId} has ${creations.length} message_creation steps`);
      if (statuses.get(runId) === 'completed')
        assert.equal(answers.get(runId), 1, `completed run ${runId} has no answer`);
    }

    const byStatus: Record<string, number> = {};
    for (const status of statuses.values()) byStatus[status] = (byStatus[status] ?? 0) + 1;
    t.diagnostic(
      `${KILLS} kills; acknowledged ${ack.messages.size} messages and ${ack.runs.size} runs; runs by final status ${JSON.stringify(byStatus)}`,
    );
  } finally {
    await server?.stop();
    await upstream.close();
  }
}

// The two stores' loops at once: each mostly waits, for its kills and its servers' starts.
describe('SIGKILL crash loop', { concurrency: 2 }, () => {
  test('SQLite', async (t) => {
    const dataDir = tempDir();
    try {
      await crashLoop(t, { ASSISTD_DATA_DIR: dataDir });
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  const postgresUrl = postgresUrlOrSkip();
  test('PostgreSQL', { skip: postgresUrl === undefined && POSTGRES_SKIP_REASON }, async (t) => {
    const database = await createTestDatabase(postgresUrl!);
    const dataDir = tempDir();
    try {
      await crashLoop(t, { ASSISTD_DATABASE_URL: database.url, ASSISTD_DATA_DIR: dataDir });
    } finally {
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
