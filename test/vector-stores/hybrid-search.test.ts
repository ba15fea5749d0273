import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import { after, afterEach, before, describe, test } from 'node:test';
import OpenAI, { toFile } from 'openai';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import { startServer } from '../../src/main.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { FileSearchHarness, fileSearchCall, fileSearchCalls } from '../support/file-search.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { startTestServer, type TestServer, tempDir } from '../support/server.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

/**
 * Hybrid search through the official SDK, on SQLite and PostgreSQL: a server with an embedding model (the fake
 * upstream's `/v1/embeddings`, whose vectors put synonyms on one dimension: test/support/fake-upstream.ts CONCEPTS)
 * finds a document by a query that shares none of its words; the same server without one does not. Every JSON
 * response is schema-checked, and `x-assistd-ranking` says which ranking answered.
 */

const CAR = 'Our garage offers car servicing on weekdays; book two days ahead.';
const PIZZA = 'The canteen serves pizza on Fridays and pasta on Mondays.';
const ENGINES = 'Engine oil maintenance schedule for the delivery vans.';

interface Database {
  env: Record<string, string>;
  cleanup(): Promise<void>;
}

function hybridSuite(name: string, database: () => Promise<Database>): void {
  describe(`hybrid search through the SDK on ${name}`, () => {
    let db: Database;
    let upstream: FakeUpstream;
    let recorder: ValidatingFetch;
    let current: TestServer | undefined;
    before(async () => {
      db = await database();
      upstream = await FakeUpstream.start();
      recorder = createValidatingFetch();
    });
    after(async () => {
      await current?.close();
      await upstream?.close();
      await db?.cleanup();
    });
    afterEach(() => recorder.assertNoViolations());

    /**
     * A server on the suite's database, the previous one closed first (so that only this one ingests); with `model`,
     * embeddings from the fake upstream under that name.
     */
    async function server(model?: string) {
      await current?.close();
      current = undefined;
      const embeddings: Record<string, string> = model
        ? { ASSISTD_EMBEDDINGS_BASE_URL: upstream.baseUrl, ASSISTD_EMBEDDINGS_MODEL: model }
        : {};
      const started = await startTestServer({ ...db.env, ASSISTD_UPSTREAM_MAX_RETRIES: '0', ...embeddings });
      current = started;
      const client = new OpenAI({ baseURL: `${started.url}/v1`, apiKey: 'k', fetch: recorder.fetch, maxRetries: 0 });
      return { server: started, client };
    }

    async function storeWith(client: OpenAI, files: Record<string, string>) {
      const store = await client.vectorStores.create({ name: 'hybrid' });
      const ids: Record<string, string> = {};
      for (const [filename, text] of Object.entries(files)) {
        const file = await client.vectorStores.files.uploadAndPoll(
          store.id,
          await toFile(Buffer.from(text), filename),
          {
            pollIntervalMs: 20,
          },
        );
        assert.equal(file.status, 'completed', JSON.stringify(file.last_error));
        ids[filename] = file.id;
      }
      return { id: store.id, files: ids };
    }

    async function search(client: OpenAI, storeId: string, body: OpenAI.VectorStores.VectorStoreSearchParams) {
      const { data, response } = await client.vectorStores.search(storeId, body).withResponse();
      return { hits: data.data, ranking: response.headers.get('x-assistd-ranking') };
    }

    test('a query sharing no word with the document is found by hybrid search only', async () => {
      const keywordOnly = await server();
      const plain = await storeWith(keywordOnly.client, { 'car.txt': CAR, 'pizza.txt': PIZZA });
      const missed = await search(keywordOnly.client, plain.id, { query: 'automobile maintenance' });
      assert.equal(missed.ranking, 'keyword');
      assert.deepEqual(missed.hits, [], 'no word of the query is in any document');
      assert.equal(upstream.embeddingRequests.length, 0, 'no embedding model: nothing embedded');

      const hybrid = await server('concepts-v1');
      const embedded = await storeWith(hybrid.client, { 'car.txt': CAR, 'pizza.txt': PIZZA });
      const found = await search(hybrid.client, embedded.id, { query: 'automobile maintenance' });
      assert.equal(found.ranking, 'hybrid');
      assert.deepEqual(
        found.hits.map((h) => [h.filename, h.file_id, h.score]),
        [['car.txt', embedded.files['car.txt'], 0.5]],
        'first by vectors alone (1 would be first by both); pizza is no candidate: its vector is orthogonal',
      );

      // A chunk that both rankings hold comes before one that only vectors found.
      const engines = await hybrid.client.vectorStores.files.uploadAndPoll(
        embedded.id,
        await toFile(Buffer.from(ENGINES), 'engines.txt'),
        { pollIntervalMs: 20 },
      );
      assert.equal(engines.status, 'completed');
      const both = await search(hybrid.client, embedded.id, { query: 'automobile maintenance' });
      assert.deepEqual(
        both.hits.map((h) => h.filename),
        ['engines.txt', 'car.txt'],
      );

      // A store embedded before embeddings were configured holds no vectors: searched by keywords, and says so.
      const old = await search(hybrid.client, plain.id, { query: 'automobile maintenance' });
      assert.equal(old.ranking, 'keyword');
      assert.deepEqual(old.hits, []);
    });

    test('fused scores: 1 for a chunk both rankings put first; threshold, max_num_results and filters honoured', async () => {
      const { client } = await server('concepts-v1');
      const store = await client.vectorStores.create({ name: 'fusion' });
      for (const [filename, text, team] of [
        ['both.txt', 'Car servicing prices for every car we repair.', 'fleet'],
        ['vector.txt', 'Automobile handbook: maintenance, and more maintenance.', 'fleet'],
        ['keyword.txt', 'Prices of the canteen, car park excluded.', 'canteen'],
        ['other.txt', 'Weather forecast: rain and storm.', 'canteen'],
      ] as const) {
        const file = await client.files.create({
          file: await toFile(Buffer.from(text), filename),
          purpose: 'assistants',
        });
        const added = await client.vectorStores.files.createAndPoll(store.id, {
          file_id: file.id,
          attributes: { team },
        });
        assert.equal(added.status, 'completed');
      }
      const all = await search(client, store.id, { query: 'car servicing prices' });
      assert.equal(all.ranking, 'hybrid');
      assert.equal(all.hits[0]?.filename, 'both.txt');
      assert.equal(all.hits[0]?.score, 1, 'first by keywords and by vectors');
      assert.deepEqual(
        all.hits.map((h) => h.filename).sort(),
        ['both.txt', 'keyword.txt', 'vector.txt'],
        'other.txt has no query word and an orthogonal vector',
      );
      for (let i = 1; i < all.hits.length; i++) assert.ok(all.hits[i - 1]!.score >= all.hits[i]!.score);

      const two = await search(client, store.id, { query: 'car servicing prices', max_num_results: 2 });
      assert.deepEqual(
        two.hits.map((h) => h.filename),
        all.hits.slice(0, 2).map((h) => h.filename),
      );
      const threshold = all.hits[1]!.score;
      const above = await search(client, store.id, {
        query: 'car servicing prices',
        ranking_options: { score_threshold: threshold },
      });
      assert.ok(above.hits.every((h) => h.score >= threshold));
      assert.equal(above.hits.length, all.hits.filter((h) => h.score >= threshold).length);

      const canteen = await search(client, store.id, {
        query: 'car servicing prices',
        filters: { type: 'eq', key: 'team', value: 'canteen' },
      });
      assert.deepEqual(
        canteen.hits.map((h) => h.filename),
        ['keyword.txt'],
      );
      const several = await search(client, store.id, { query: ['weather', 'automobile'] });
      assert.deepEqual(
        several.hits.map((h) => h.filename).slice(0, 1),
        ['other.txt'],
        'each query is searched; the best score of a chunk counts',
      );
      assert.ok(several.hits.some((h) => h.filename === 'vector.txt'));
    });

    test('chunks are embedded in batches of 64, one request per batch', async () => {
      const { client } = await server('concepts-v1');
      const before = upstream.embeddingRequests.length;
      const text = Array.from({ length: 800 }, (_, i) => `Line ${i} is about car repair number ${i}.`).join('\n');
      const store = await client.vectorStores.create({ name: 'batches' });
      const file = await client.files.create({
        file: await toFile(Buffer.from(text), 'long.txt'),
        purpose: 'assistants',
      });
      await client.vectorStores.files.create(store.id, {
        file_id: file.id,
        chunking_strategy: { type: 'static', static: { max_chunk_size_tokens: 100, chunk_overlap_tokens: 0 } },
      });
      const done = await client.vectorStores.files.poll(store.id, file.id, { pollIntervalMs: 20 });
      assert.equal(done.status, 'completed');
      const chunks = (await client.vectorStores.files.content(file.id, { vector_store_id: store.id })).data.length;
      assert.ok(chunks > 64, `${chunks} chunks`);
      const requests = upstream.embeddingRequests.slice(before).map((r) => r.body);
      assert.equal(requests.length, Math.ceil(chunks / 64));
      assert.ok(requests.every((body) => body.model === 'concepts-v1' && Array.isArray(body.input)));
      assert.deepEqual(
        requests.map((body) => body.input.length),
        [...Array.from({ length: requests.length - 1 }, () => 64), chunks - 64 * (requests.length - 1)],
      );
    });

    test('a store embedded by one model is searched by keywords under another, and takes none of its vectors', async () => {
      const first = await server('concepts-v1');
      const store = await storeWith(first.client, { 'car.txt': CAR });
      assert.equal((await search(first.client, store.id, { query: 'automobile' })).hits.length, 1);

      const second = await server('concepts-v2');
      const requests = upstream.embeddingRequests.length;
      const changed = await search(second.client, store.id, { query: 'automobile' });
      assert.equal(changed.ranking, 'keyword');
      assert.deepEqual(changed.hits, []);
      assert.equal(upstream.embeddingRequests.length, requests, 'the query was not embedded');
      // A file added under the other model is indexed by keywords only: not embedded at all.
      const file = await second.client.vectorStores.files.uploadAndPoll(
        store.id,
        await toFile(Buffer.from('Automobile insurance papers.'), 'insurance.txt'),
        { pollIntervalMs: 20 },
      );
      assert.equal(file.status, 'completed');
      assert.equal(upstream.embeddingRequests.length, requests);

      // Back under the first model: hybrid again; the file added meanwhile has no vector.
      const again = await server('concepts-v1');
      const back = await search(again.client, store.id, { query: 'vehicle' });
      assert.equal(back.ranking, 'hybrid');
      assert.deepEqual(
        back.hits.map((h) => h.filename),
        ['car.txt'],
      );
    });

    test('an embedding endpoint that keeps failing fails the file with server_error and says why', async () => {
      const { client } = await server('concepts-v1');
      upstream.enqueueEmbeddingErrors({ status: 503 });
      const file = await client.vectorStores.files.uploadAndPoll(
        (await client.vectorStores.create({ name: 'down' })).id,
        await toFile(Buffer.from(CAR), 'car.txt'),
        { pollIntervalMs: 20 },
      );
      assert.equal(file.status, 'failed');
      assert.equal(file.last_error?.code, 'server_error');
      assert.match(file.last_error?.message ?? '', /embeddings.*returned 503/);
    });
  });
}

hybridSuite('SQLite', async () => {
  const dataDir = tempDir();
  return { env: { ASSISTD_DATA_DIR: dataDir }, cleanup: async () => rmSync(dataDir, { recursive: true, force: true }) };
});

const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined) test('hybrid search on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  hybridSuite('PostgreSQL', async () => {
    const database = await createTestDatabase(postgresUrl);
    return { env: { ASSISTD_DATABASE_URL: database.url }, cleanup: () => database.drop() };
  });

describe('hybrid search in a file_search run, and what startup says', () => {
  const harness = new FileSearchHarness({ ASSISTD_EMBEDDINGS_MODEL: 'concepts-v1' });
  before(() => harness.start());
  after(() => harness.close());

  test('file_search finds the document by a query sharing none of its words', async () => {
    const store = await harness.vectorStore({ 'car.txt': CAR, 'pizza.txt': PIZZA });
    harness.upstream.enqueue(fileSearchCall('automobile maintenance'), { text: 'Book two days ahead.' });
    const assistant = await harness.assistant([store.id]);
    const thread = await harness.thread('How do I get my automobile maintained?');
    const run = await harness.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(run.status, 'completed', JSON.stringify(run.last_error));
    const steps = await harness.steps(thread.id, run.id, true);
    const [call] = fileSearchCalls(steps.find((s) => s.type === 'tool_calls'));
    const results = call?.file_search.results ?? [];
    assert.equal(results[0]?.file_name, 'car.txt', JSON.stringify(call));
    assert.ok(!results.some((r) => r.file_name === 'pizza.txt'));
    assert.ok(harness.upstream.embeddingRequests.length >= 2, 'the files and the query were embedded');
  });

  test('startup says once whether search is hybrid or keyword-only', async () => {
    for (const [env, expected] of [
      [{}, /No embedding model is configured.*keywords only/],
      [{ ASSISTD_EMBEDDINGS_MODEL: 'concepts-v1' }, /Embedding model concepts-v1: .*hybrid/],
    ] as const) {
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk, _encoding, done) {
          lines.push(...chunk.toString().split('\n').filter(Boolean));
          done();
        },
      });
      const dataDir = tempDir();
      const config = loadConfig({
        HOST: '127.0.0.1',
        PORT: '0',
        ASSISTD_DATA_DIR: dataDir,
        ASSISTD_UPSTREAM_BASE_URL: harness.upstream.baseUrl,
        ...env,
      });
      const running = await startServer(config, pino({ level: 'info' }, sink));
      await running.close();
      rmSync(dataDir, { recursive: true, force: true });
      const said = lines.map((line) => JSON.parse(line).msg as string).filter((msg) => expected.test(msg));
      assert.equal(said.length, 1, lines.join('\n'));
    }
  });
});
