import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { type IncomingMessage, request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { memoryOf } from '../support/processes.ts';
import { type ServerProcess, spawnServer, tempDir } from '../support/server.ts';

/** The server's bound on what may wait for one stream's client (ASSISTD_STREAM_BUFFER_KB), here 256 KiB. */
const BUFFER_KB = 256;
/** The stalled run's reply: CHUNKS chunks of CHUNK_CHARS characters (its frames dwarf any socket buffer). */
const CHUNKS = 160;
const CHUNK_CHARS = 100_000;
/** Streams that stop reading, all following the one long run (re-attached through /events). */
const STALLED = 20;
const MiB = 1024 * 1024;
const LONG_REPLY = Array.from({ length: CHUNKS }, (_, i) => String.fromCharCode(97 + (i % 26)).repeat(CHUNK_CHARS));
const SHORT_REPLY = Array.from({ length: 40 }, (_, i) => `word${i} `);

/** Opens a stream (POST or GET) and stops reading once its headers are in; resolves with the paused response. */
function openAndStall(url: string, body?: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: body === undefined ? 'GET' : 'POST',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      res.pause();
      resolve(res);
    });
    req.end(body);
  });
}

/** Reads what is left of a paused response: how it ended, and whether the last frame was `done`. */
function readRest(res: IncomingMessage): Promise<{ ended: 'end' | 'error'; sawDone: boolean; bytes: number }> {
  return new Promise((resolve) => {
    let tail = '';
    let bytes = 0;
    let settled = false;
    const finish = (ended: 'end' | 'error') => {
      if (settled) return;
      settled = true;
      resolve({ ended, sawDone: tail.endsWith('data: [DONE]\n\n'), bytes });
    };
    res.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      tail = (tail + chunk.toString('latin1')).slice(-64);
    });
    res.on('end', () => finish('end'));
    res.on('error', () => finish('error'));
    res.on('close', () => finish('end'));
    res.resume();
  });
}

describe('a stream whose client stops reading', () => {
  let upstream: FakeUpstream;
  let server: ServerProcess;
  let client: OpenAI;
  let dataDir: string;

  /** Lets the long reply end (its last piece waits for it), once the stalled streams have attached. */
  let releaseLong: () => void = () => {};
  let longEnd: Promise<void> | undefined;

  before(async () => {
    upstream = await FakeUpstream.start();
    // The long reply for the thread that asks for it (its last piece held until the stalled streams have attached,
    // when a test holds it: a re-attach after the end gets the completed run and `done`); a short one for the rest.
    upstream.setDefault((request) =>
      JSON.stringify(request.body.messages).includes('the long one')
        ? { text: LONG_REPLY, chunkDelayMs: 5, ...(longEnd && { holdLast: longEnd }) }
        : { text: SHORT_REPLY, chunkDelayMs: 10 },
    );
    dataDir = tempDir();
    server = await spawnServer({
      ASSISTD_DATA_DIR: dataDir,
      ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
      ASSISTD_STREAM_BUFFER_KB: String(BUFFER_KB),
    });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0 });
  });
  after(async () => {
    await server?.stop();
    await upstream?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  /**
   * One long run followed by `count` clients that stop reading (the run's own POST, then re-attached through
   * /events), with a short stream flowing meanwhile. Returns how each stalled stream ended once read again.
   */
  async function longRunWithStalledStreams(assistantId: string, count: number) {
    longEnd = new Promise<void>((resolve) => {
      releaseLong = resolve;
    });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Say the long one.' }] });
    const started = openAndStall(
      `${server.url}/v1/threads/${thread.id}/runs`,
      JSON.stringify({ assistant_id: assistantId, stream: true }),
    );
    const run = await eventually('the long run', 5000, async () => {
      const page = await client.beta.threads.runs.list(thread.id);
      return page.data[0];
    });
    const stalled = [
      await started,
      ...(await Promise.all(
        Array.from({ length: count - 1 }, () =>
          openAndStall(`${server.url}/v1/threads/${thread.id}/runs/${run.id}/events`),
        ),
      )),
    ];
    releaseLong();
    longEnd = undefined;

    // Meanwhile another client's stream flows, start to end.
    const other = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Say something short.' }] });
    let otherText = '';
    const otherRun = await client.beta.threads.runs
      .stream(other.id, { assistant_id: assistantId })
      .on('textDelta', (delta) => {
        otherText += delta.value ?? '';
      })
      .finalRun();
    assert.equal(otherRun.status, 'completed');
    assert.equal(otherText, SHORT_REPLY.join(''));

    // The long run goes on without its streams, to the end, stored whole.
    const done = await eventually('the long run to complete', 60_000, async () => {
      const current = await client.beta.threads.runs.retrieve(run.id, { thread_id: thread.id });
      return current.status === 'in_progress' || current.status === 'queued' ? undefined : current;
    });
    assert.equal(done.status, 'completed');
    const [message] = (await client.beta.threads.messages.list(thread.id, { run_id: run.id })).data;
    assert.equal((message!.content[0] as OpenAI.Beta.Threads.TextContentBlock).text.value, LONG_REPLY.join(''));

    // Read again now: what the sockets held, then the end of the connection.
    return Promise.all(stalled.map(readRest));
  }

  test('a client that reads keeps its stream, however large the frames of one moment (a 15 MiB message, completed)', async () => {
    const assistant = await client.beta.assistants.create({ model: 'm' });
    const thread = await client.beta.threads.create({ messages: [{ role: 'user', content: 'Say the long one.' }] });
    let streamed = 0;
    const stream = client.beta.threads.runs
      .stream(thread.id, { assistant_id: assistant.id })
      .on('textDelta', (delta) => {
        streamed += delta.value?.length ?? 0;
      });
    const run = await stream.finalRun();
    assert.equal(run.status, 'completed');
    const [message] = await stream.finalMessages();
    assert.equal((message!.content[0] as OpenAI.Beta.Threads.TextContentBlock).text.value, LONG_REPLY.join(''));
    assert.equal(streamed, LONG_REPLY.join('').length);
  });

  test('is closed once its frames pass the bound: memory does not grow with stalled clients; the run completes, other streams flow', async () => {
    const assistant = await client.beta.assistants.create({ model: 'm' });
    const pid = server.child.pid!;
    // A long run with one stalled stream: what the run itself takes (its text, its commit, garbage not yet
    // collected) sets the server's peak.
    const first = await longRunWithStalledStreams(assistant.id, 1);
    const peakAfterOne = memoryOf(pid).peak;
    // The same with STALLED streams: without the bound, each would keep the frames its client did not take in the
    // server (~26 MiB each, beyond the ~4 MiB the kernel's socket buffers hold): 1.2 GiB more, measured.
    const rests = await longRunWithStalledStreams(assistant.id, STALLED);
    const grown = memoryOf(pid).peak - peakAfterOne;
    const reply = LONG_REPLY.join('').length;
    const got = rests.map((r) => r.bytes);
    console.log(
      `server peak memory: ${(peakAfterOne / MiB).toFixed(0)} MiB after a ${(reply / MiB).toFixed(1)} MiB reply ` +
        `with 1 stalled stream, ${(grown / MiB).toFixed(1)} MiB more with ${STALLED} (they got ` +
        `${(Math.min(...got) / MiB).toFixed(1)}–${(Math.max(...got) / MiB).toFixed(1)} MiB before they were closed)`,
    );
    for (const rest of [...first, ...rests]) {
      assert.equal(rest.sawDone, false, 'a stalled stream was not closed');
      assert.ok(rest.bytes < reply, `a stalled stream still got ${rest.bytes} bytes of a ${reply}-character reply`);
    }
    // Half of what the stalled streams would hold without the bound (the reply's frames and the completed
    // message's, ~2 × the reply each, less what the kernel holds); measured with it: 43–143 MiB.
    // Operators see them: one count per stream closed for not reading (the first run's and these).
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, new RegExp(`^assistd_streams_unread_closed_total ${1 + STALLED}$`, 'm'));
    assert.ok(grown < STALLED * reply, `the server's peak memory grew by ${(grown / MiB).toFixed(0)} MiB`);
  });
});
