import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import type OpenAI from 'openai';
import {
  COFFEE,
  FileSearchHarness,
  fileSearchCall,
  fileSearchCalls,
  INCLUDE_CONTENT,
  PARKING,
  textPart,
} from '../support/file-search.ts';
import { postSse, type SseEvent } from '../support/sse.ts';

/**
 * file_search streamed (spec README §3): the tool_calls step opens empty, its call's one delta is
 * `{index, id, type: 'file_search', file_search: {ranking_options, results: []}}` (as upstream streamed it), and the completed step carries the results (with their text
 * only when the run was created with include[]). The answer's annotations ride the text deltas that complete their
 * markers, so what the SDK accumulates — and what a raw client concatenates — is the stored message. Every SSE frame
 * is checked against the official schema (support/sse.ts).
 */

const MARKER = '【0:0†coffee.txt】';
const ANSWER_CHUNKS = ['The espresso machine is ', 'descaled on Fridays【0:', '0†coffee.txt】', '.'];
const ANSWER = ANSWER_CHUNKS.join('');
/** A call's details before its search, as upstream's stream showed them. */
const NOT_YET_SEARCHED = { ranking_options: { ranker: 'default_2024_08_21', score_threshold: 0 }, results: [] };

const EVENTS = [
  'thread.run.created',
  'thread.run.queued',
  'thread.run.in_progress',
  'thread.run.step.created',
  'thread.run.step.in_progress',
  'thread.run.step.delta',
  'thread.run.step.completed',
  'thread.run.step.created',
  'thread.run.step.in_progress',
  'thread.message.created',
  'thread.message.in_progress',
  ...ANSWER_CHUNKS.map(() => 'thread.message.delta'),
  'thread.message.completed',
  'thread.run.step.completed',
  'thread.run.completed',
  'done',
];

function messageDeltas(events: SseEvent[]) {
  return events.filter((e) => e.event === 'thread.message.delta').map((e) => e.data.delta.content[0].text);
}

describe('file_search, streamed', () => {
  const h = new FileSearchHarness();
  let store: { id: string; files: Record<string, string> };
  let assistantId: string;

  before(async () => {
    await h.start();
    store = await h.vectorStore({ 'coffee.txt': COFFEE, 'parking.md': PARKING });
    assistantId = (await h.assistant([store.id])).id;
  });
  after(() => h.close());
  afterEach(() => h.recorder.assertNoViolations());

  for (const include of [false, true])
    test(`raw SSE${include ? ' with include[]' : ''}: the event order, the call's delta, annotations in the deltas`, async () => {
      const thread = await h.thread();
      h.upstream.enqueue(fileSearchCall('When is the espresso machine descaled?'), { text: ANSWER_CHUNKS });
      const query = include ? `?include%5B%5D=${encodeURIComponent(INCLUDE_CONTENT)}` : '';
      const events = await postSse(`${h.server.url}/v1/threads/${thread.id}/runs${query}`, {
        assistant_id: assistantId,
        stream: true,
      });
      assert.deepEqual(
        events.map((e) => e.event),
        EVENTS,
      );
      const runId = events[0]!.data.id as string;

      // The tool step: empty, one delta with the call's id, then the results.
      const created = events[3]!.data;
      assert.equal(created.type, 'tool_calls');
      assert.deepEqual(created.step_details, { type: 'tool_calls', tool_calls: [] });
      const [callDelta] = events[5]!.data.delta.step_details.tool_calls;
      assert.match(callDelta.id, /^call_/);
      assert.deepEqual(callDelta, { index: 0, type: 'file_search', id: callDelta.id, file_search: NOT_YET_SEARCHED });
      const completed = events[6]!.data;
      assert.equal(completed.id, created.id);
      assert.equal(completed.status, 'completed');
      const [call] = completed.step_details.tool_calls;
      assert.equal(call.id, callDelta.id);
      assert.deepEqual(call.file_search.ranking_options, { ranker: 'default_2024_08_21', score_threshold: 0 });
      assert.equal(call.file_search.results[0].file_id, store.files['coffee.txt']);
      if (include) assert.deepEqual(call.file_search.results[0].content, [{ type: 'text', text: COFFEE }]);
      else
        assert.ok(
          call.file_search.results.every((r: object) => !('content' in r)),
          'no content without include[]',
        );

      // The answer: the marker split over two chunks is held back until it closes, then goes out whole with its
      // annotation.
      const deltas = messageDeltas(events);
      assert.deepEqual(
        deltas.map((d) => d.value),
        ['The espresso machine is ', 'descaled on Fridays', MARKER, '.'],
      );
      const start = ANSWER.indexOf(MARKER);
      const citation = {
        type: 'file_citation',
        text: MARKER,
        start_index: start,
        end_index: start + MARKER.length,
        file_citation: { file_id: store.files['coffee.txt'] },
      };
      assert.deepEqual(
        deltas.map((d) => d.annotations),
        [[], undefined, [{ index: 0, ...citation }], undefined],
      );
      const message = events.find((e) => e.event === 'thread.message.completed')!.data;
      assert.equal(message.content[0].text.value, ANSWER);
      assert.equal(deltas.map((d) => d.value).join(''), message.content[0].text.value, 'streamed text = stored text');
      assert.deepEqual(message.content[0].text.annotations, [citation]);

      // What the stream showed is what is stored (the steps listed with the same include[]).
      const stored = await h.steps(thread.id, runId, include);
      assert.deepEqual(stored[0], completed);
      assert.deepEqual(await h.client.beta.threads.messages.retrieve(message.id, { thread_id: thread.id }), message);
    });

  test('AssistantStream: the file_search call, textDelta/textDone consistent, annotations in finalMessages()', async () => {
    const thread = await h.thread();
    h.upstream.enqueue(fileSearchCall('When is the espresso machine descaled?'), { text: ANSWER_CHUNKS });
    const created: OpenAI.Beta.Threads.Runs.ToolCall[] = [];
    const done: OpenAI.Beta.Threads.Runs.ToolCall[] = [];
    const textDeltas: OpenAI.Beta.Threads.TextDelta[] = [];
    let textDone: OpenAI.Beta.Threads.Text | undefined;
    let accumulated: OpenAI.Beta.Threads.Text | undefined;
    const stream = h.client.beta.threads.runs
      .stream(thread.id, { assistant_id: assistantId, include: [INCLUDE_CONTENT] })
      .on('toolCallCreated', (call) => created.push(structuredClone(call)))
      .on('toolCallDone', (call) => done.push(structuredClone(call)))
      .on('textDelta', (delta, snapshot) => {
        textDeltas.push(structuredClone(delta));
        accumulated = structuredClone(snapshot);
      })
      .on('textDone', (text) => {
        textDone = structuredClone(text);
      });
    const run = await stream.finalRun();
    assert.equal(run.status, 'completed');
    const steps = await stream.finalRunSteps();
    const messages = await stream.finalMessages();

    assert.equal(created.length, 1);
    assert.deepEqual(created[0], {
      index: 0,
      type: 'file_search',
      id: created[0]!.id,
      file_search: NOT_YET_SEARCHED,
    });
    const [finalCall] = fileSearchCalls(steps[0]);
    assert.equal(finalCall!.id, created[0]!.id);
    assert.deepEqual(finalCall!.file_search.results![0]!.content, [{ type: 'text', text: COFFEE }]);
    assert.equal(done.length, 1);

    // Every textDelta has a value (an annotation never comes alone); they add up to the stored text.
    assert.ok(textDeltas.every((d) => typeof d.value === 'string'));
    assert.equal(textDeltas.map((d) => d.value).join(''), ANSWER);
    assert.equal(accumulated?.value, ANSWER, 'the snapshot the SDK accumulated');
    assert.equal(accumulated?.annotations?.length, 1);
    assert.equal(textDone?.value, ANSWER);

    assert.equal(messages.length, 1);
    const stored = await h.client.beta.threads.messages.retrieve(messages[0]!.id, { thread_id: thread.id });
    assert.deepEqual(messages[0], stored);
    const text = textPart(stored);
    assert.deepEqual(textDone, text);
    const start = ANSWER.indexOf(MARKER);
    assert.deepEqual(text.annotations, [
      {
        type: 'file_citation',
        text: MARKER,
        start_index: start,
        end_index: start + MARKER.length,
        file_citation: { file_id: store.files['coffee.txt'] },
      },
    ]);
    // The accumulated annotation is the stored one, plus the delta's `index`.
    assert.deepEqual(accumulated?.annotations?.[0], { index: 0, ...text.annotations[0] });
  });
});
