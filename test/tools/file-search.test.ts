import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { FILE_SEARCH_FUNCTION } from '../../src/tools/file-search/file-search-tool.ts';
import {
  COFFEE,
  codePointSlice,
  FileSearchHarness,
  fileSearchCall,
  fileSearchCalls,
  INCLUDE_CONTENT,
  PARKING,
  textPart,
  toolMessages,
} from '../support/file-search.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';

/**
 * file_search executed inside runs, through the official SDK against a live server (the tool is registered by the
 * composition root), with the fake upstream as the model: it calls the offered `file_search` function, then answers
 * citing a result by its marker. The step is upstream's (results with their text only when include[] asks), and the
 * answer's markers that point at results become file_citation annotations with exact indices.
 */

/** The database a suite's server uses: its settings, and how to remove it afterwards. */
interface Database {
  env: Record<string, string>;
  drop(): Promise<void>;
}

const sqlite = async (): Promise<Database> => ({ env: {}, drop: async () => {} });

async function postgres(url: string): Promise<Database> {
  const database = await createTestDatabase(url);
  return { env: { ASSISTD_DATABASE_URL: database.url }, drop: () => database.drop() };
}

const postgresUrl = postgresUrlOrSkip();
fileSearchSuite('SQLite', sqlite);
if (postgresUrl) fileSearchSuite('PostgreSQL', () => postgres(postgresUrl));
else describe('file_search in a run on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});

function fileSearchSuite(name: string, makeDatabase: () => Promise<Database>): void {
  describe(`file_search in a run (createAndPoll) on ${name}`, () => {
    let database: Database;
    let h: FileSearchHarness;
    let store: { id: string; files: Record<string, string> };
    let assistantId: string;

    before(async () => {
      database = await makeDatabase();
      h = new FileSearchHarness(database.env);
      await h.start();
      store = await h.vectorStore({ 'coffee.txt': COFFEE, 'parking.md': PARKING });
      assistantId = (await h.assistant([store.id])).id;
    });
    after(async () => {
      await h?.close();
      await database?.drop();
    });
    afterEach(() => h.recorder.assertNoViolations());

    test('the model searches, reads numbered results, cites one: the step and the annotation are upstream’s', async () => {
      const thread = await h.thread();
      const seen = h.upstream.requests.length;
      const answer = 'The espresso machine is descaled on Fridays【0:0†coffee.txt】.';
      h.upstream.enqueue(fileSearchCall('When is the office espresso machine descaled?'), { text: [answer] });
      const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
      assert.equal(run.status, 'completed', JSON.stringify(run.last_error));

      // The model was offered the function, and read the results under their markers.
      const requests = h.upstream.requests.slice(seen);
      assert.equal(requests.length, 2);
      const offered = requests[0]!.body.tools?.find((t) => t.function.name === 'file_search');
      assert.deepEqual(offered?.function, FILE_SEARCH_FUNCTION);
      const [output] = toolMessages(requests[1]);
      assert.ok(output?.includes(`【0:0†coffee.txt】\n${COFFEE}`), output);

      const steps = await h.steps(thread.id, run.id);
      assert.deepEqual(
        steps.map((s) => [s.type, s.status]),
        [
          ['tool_calls', 'completed'],
          ['message_creation', 'completed'],
        ],
      );
      const [call] = fileSearchCalls(steps[0]);
      assert.match(call!.id, /^call_/);
      assert.deepEqual(call!.file_search.ranking_options, { ranker: 'default_2024_08_21', score_threshold: 0 });
      const results = call!.file_search.results!;
      assert.ok(results.length >= 1);
      assert.deepEqual(results[0], {
        file_id: store.files['coffee.txt'],
        file_name: 'coffee.txt',
        score: results[0]!.score,
      });
      for (const result of results) {
        assert.ok(result.score > 0 && result.score <= 1, `score ${result.score}`);
        assert.equal(result.content, undefined, 'no content without include[]');
      }

      // include[] on the steps list and on retrieve: the same results, with their text.
      const included = await h.steps(thread.id, run.id, true);
      const [withContent] = fileSearchCalls(included[0]);
      assert.deepEqual(withContent!.file_search.results![0], {
        ...results[0],
        content: [{ type: 'text', text: COFFEE }],
      });
      const retrieved = await h.client.beta.threads.runs.steps.retrieve(steps[0]!.id, {
        thread_id: thread.id,
        run_id: run.id,
        include: [INCLUDE_CONTENT],
      });
      assert.deepEqual(retrieved, included[0]);
      // The indexed form of qs (axios-based clients), and the plain key, are read as include[] is.
      for (const key of ['include%5B0%5D', 'include']) {
        const indexed = await h.server.api.get<{ data: unknown[] }>(
          `/v1/threads/${thread.id}/runs/${run.id}/steps?order=asc&${key}=${encodeURIComponent(INCLUDE_CONTENT)}`,
        );
        assert.deepEqual(indexed.body.data, JSON.parse(JSON.stringify(included)), key);
      }
      const plain = await h.client.beta.threads.runs.steps.retrieve(steps[0]!.id, {
        thread_id: thread.id,
        run_id: run.id,
      });
      assert.deepEqual(plain, steps[0]);

      const message = await h.answer(thread.id, run.id);
      const text = textPart(message);
      assert.equal(text.value, answer);
      const marker = '【0:0†coffee.txt】';
      assert.deepEqual(text.annotations, [
        {
          type: 'file_citation',
          text: marker,
          start_index: answer.indexOf(marker),
          end_index: answer.indexOf(marker) + marker.length,
          file_citation: { file_id: store.files['coffee.txt'] },
        },
      ]);
    });

    test('two searches in one run: the second call’s markers are 1:i, and the answer cites both', async () => {
      const thread = await h.thread('Coffee and parking?');
      const seen = h.upstream.requests.length;
      const answer = 'Fridays【0:0†coffee.txt】, and level minus two【1:0†parking.md】.';
      h.upstream.enqueue(
        fileSearchCall('When is the espresso machine descaled?'),
        fileSearchCall('Where do visitors park in the garage?', 'visitor parking level'),
        { text: ['Fridays【0:0†coffee', '.txt】, and level minus two【1:0†', 'parking.md】.'] },
      );
      const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
      assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
      const [, second] = toolMessages(h.upstream.requests.at(-1));
      assert.ok(second?.includes(`【1:0†parking.md】\n${PARKING}`), second);
      assert.equal(h.upstream.requests.length - seen, 3);

      const steps = await h.steps(thread.id, run.id);
      assert.deepEqual(
        steps.map((s) => s.type),
        ['tool_calls', 'tool_calls', 'message_creation'],
      );
      assert.equal(fileSearchCalls(steps[1])[0]!.file_search.results![0]!.file_id, store.files['parking.md']);
      const text = textPart(await h.answer(thread.id, run.id));
      assert.equal(text.value, answer);
      assert.deepEqual(
        text.annotations.map((a) => [a.text, a.type === 'file_citation' ? a.file_citation.file_id : '', a.start_index]),
        [
          ['【0:0†coffee.txt】', store.files['coffee.txt'], answer.indexOf('【0:0')],
          ['【1:0†parking.md】', store.files['parking.md'], answer.indexOf('【1:0')],
        ],
      );
    });

    test('markers that point nowhere get no annotation', async () => {
      const thread = await h.thread();
      const answer = 'Fridays【0:9†coffee.txt】 or 【4:0†elsewhere.txt】 or 【zero】, but see【0:0†coffee.txt】.';
      h.upstream.enqueue(fileSearchCall('espresso machine descaling'), { text: answer });
      const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
      assert.equal(run.status, 'completed');
      const text = textPart(await h.answer(thread.id, run.id));
      assert.equal(text.value, answer);
      assert.deepEqual(
        text.annotations.map((a) => a.text),
        ['【0:0†coffee.txt】'],
      );
    });

    test('a non-BMP emoji before a marker: indices count code points, as upstream (Python) does', async () => {
      const thread = await h.thread();
      const answer = '☕🚀 Descaled on Fridays【0:0†coffee.txt】 👩‍💻.';
      h.upstream.enqueue(fileSearchCall('espresso machine descaling'), {
        text: ['☕🚀 Descaled on Fridays【', '0:0†coffee.txt】 👩‍💻.'],
      });
      const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
      assert.equal(run.status, 'completed');
      const text = textPart(await h.answer(thread.id, run.id));
      assert.equal(text.value, answer);
      const [citation] = text.annotations;
      assert.ok(citation);
      assert.equal(codePointSlice(text.value, citation.start_index, citation.end_index), '【0:0†coffee.txt】');
      assert.equal(citation.start_index, [...answer.slice(0, answer.indexOf('【'))].length);
      assert.equal(citation.start_index, answer.indexOf('【') - 1, '🚀 is one code point but two UTF-16 units');
    });

    test('max_num_results and score_threshold of the tool definition are honoured and reported', async () => {
      const strict = await h.assistant([store.id], { max_num_results: 1, ranking_options: { score_threshold: 0 } });
      const thread = await h.thread();
      h.upstream.enqueue(fileSearchCall('espresso', 'visitors park garage'), { text: 'ok' });
      const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: strict.id });
      assert.equal(run.status, 'completed');
      const [call] = fileSearchCalls((await h.steps(thread.id, run.id))[0]);
      assert.equal(call!.file_search.results!.length, 1);

      const picky = await h.assistant([store.id], { ranking_options: { ranker: 'auto', score_threshold: 1 } });
      const thread2 = await h.thread();
      h.upstream.enqueue(fileSearchCall('espresso'), { text: 'nothing' });
      const run2 = await h.client.beta.threads.runs.createAndPoll(thread2.id, { assistant_id: picky.id });
      const [call2] = fileSearchCalls((await h.steps(thread2.id, run2.id))[0]);
      assert.deepEqual(call2!.file_search, {
        ranking_options: { ranker: 'default_2024_08_21', score_threshold: 1 },
        results: [],
      });
      assert.match(toolMessages(h.upstream.requests.at(-1))[0]!, /nothing in the files matched/);
    });

    test('a deleted vector store is no longer named by its assistant or thread, and a run finds nothing in it', async () => {
      // OpenAI's cookbook (Assistants API overview) deletes the store, then runs its assistant: the assistant shows
      // no store, the model's search finds nothing, and the run goes on to its function call.
      const gone = await h.client.vectorStores.create({ name: 'short-lived' });
      const assistant = await h.client.beta.assistants.create({
        model: 'gpt-test',
        tools: [{ type: 'file_search' }, { type: 'function', function: { name: 'display_quiz' } }],
        tool_resources: { file_search: { vector_store_ids: [gone.id] }, code_interpreter: { file_ids: [] } },
      });
      const thread = await h.client.beta.threads.create({
        messages: [{ role: 'user', content: 'Make a quiz.' }],
        tool_resources: { file_search: { vector_store_ids: [gone.id] } },
      });
      await h.client.vectorStores.delete(gone.id);
      const kept = await h.client.beta.assistants.retrieve(assistant.id);
      assert.deepEqual(kept.tool_resources, {
        file_search: { vector_store_ids: [] },
        code_interpreter: { file_ids: [] },
      });
      assert.deepEqual((await h.client.beta.threads.retrieve(thread.id)).tool_resources?.file_search, {
        vector_store_ids: [],
      });

      h.upstream.enqueue(fileSearchCall('quiz topics'), { toolCalls: [{ name: 'display_quiz', arguments: '{}' }] });
      const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
      assert.equal(run.status, 'requires_action', JSON.stringify(run.last_error));
      assert.equal(run.required_action?.submit_tool_outputs.tool_calls[0]?.function.name, 'display_quiz');
      const steps = await h.steps(thread.id, run.id);
      // A call that found nothing still has every field of its details (openai-kotlin requires them).
      assert.deepEqual(fileSearchCalls(steps[0])[0]!.file_search, NOT_SEARCHED);
      assert.match(toolMessages(h.upstream.requests.at(-1))[0]!, /there are no files to search/);
      await h.client.beta.threads.runs.cancel(run.id, { thread_id: thread.id });
    });

    test('a call the model got wrong is answered with an error, and its details show no results', async () => {
      const thread = await h.thread();
      h.upstream.enqueue({ toolCalls: [{ name: 'file_search', arguments: '{"queries":[]}' }] }, { text: 'Sorry.' });
      const run = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistantId });
      assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
      assert.match(toolMessages(h.upstream.requests.at(-1))[0]!, /^Error: file_search takes/);
      const steps = await h.steps(thread.id, run.id);
      assert.deepEqual(fileSearchCalls(steps[0])[0]!.file_search, NOT_SEARCHED);
    });
  });
}

/** The details of a call that did not search: the run's ranking options and no results, as upstream showed them. */
const NOT_SEARCHED = { ranking_options: { ranker: 'default_2024_08_21', score_threshold: 0 }, results: [] };
