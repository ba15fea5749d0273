import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import OpenAI, { toFile } from 'openai';
import pg from 'pg';
import { SQLITE_FILE_NAME } from '../../src/storage/sqlite/open-sqlite-store.ts';
import { docDocument, docxDocument, htmlDocument, pdfDocument } from '../support/documents.ts';
import { eventually } from '../support/eventually.ts';
import { onePixelPng } from '../support/images.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { type ServerProcess, spawnServer, tempDir } from '../support/server.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

/**
 * Vector stores through the official SDK against `assistd serve` as its own process, on SQLite and PostgreSQL: the
 * helpers (`uploadAndPoll`, `createAndPoll`, batches), ingestion of each supported format, failures of one file,
 * cancel, deletion, attribute filters, search, expiry and bad input. Every JSON response is schema-checked.
 */

interface Backend {
  env: Record<string, string>;
  /** Runs SQL against the server's database (to move an expiry into the past). */
  sql(statement: string): Promise<void>;
  cleanup(): Promise<void>;
}

function vectorStoresSuite(name: string, makeBackend: () => Promise<Backend>): void {
  describe(`vector stores through the SDK on ${name}`, () => {
    let backend: Backend;
    let server: ServerProcess;
    let recorder: ValidatingFetch;
    let client: OpenAI;

    before(async () => {
      backend = await makeBackend();
      server = await spawnServer(backend.env);
      recorder = createValidatingFetch();
      client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
    });
    after(async () => {
      await server?.stop();
      await backend?.cleanup();
    });
    afterEach(() => recorder.assertNoViolations());

    const text = (body: string, name: string) => toFile(Buffer.from(body, 'utf8'), name);

    test('uploadAndPoll indexes .txt, .md, .pdf, .doc, .docx and .html files; counts and search follow', async () => {
      const store = await client.vectorStores.create({ name: 'handbook', metadata: { team: 'docs' } });
      assert.equal(store.object, 'vector_store');
      assert.equal(store.status, 'completed');
      assert.deepEqual(store.file_counts, { in_progress: 0, completed: 0, failed: 0, cancelled: 0, total: 0 });

      const uploads = [
        await text('The office espresso machine is descaled every Friday by the facilities team.', 'coffee.txt'),
        await text('# Parking\n\nVisitors park on level minus two; bring the blue ticket.', 'parking.md'),
        await toFile(
          pdfDocument([['Quarterly revenue grew thanks to the aquarium subscription service.']]),
          'report.pdf',
        ),
        await toFile(
          docDocument(['Travel claims are refunded within three weeks by the walrus office.']),
          'travel.doc',
        ),
        await toFile(
          await docxDocument(['Holiday requests need approval from the zeppelin department.']),
          'policy.docx',
        ),
        await toFile(
          htmlDocument('<p>Wifi password rotation happens on the first <b>Monday</b> of each month.</p>'),
          'it.html',
        ),
      ];
      for (const upload of uploads) {
        const file = await client.vectorStores.files.uploadAndPoll(store.id, upload);
        assert.equal(file.status, 'completed', `${file.id}: ${JSON.stringify(file.last_error)}`);
        assert.equal(file.vector_store_id, store.id);
        assert.ok(file.usage_bytes > 0);
        assert.deepEqual(file.chunking_strategy, {
          type: 'static',
          static: { max_chunk_size_tokens: 800, chunk_overlap_tokens: 400 },
        });
        assert.deepEqual(file.attributes, {}); // added without: an empty object, as OpenAI answered
      }
      const after = await client.vectorStores.retrieve(store.id);
      assert.equal(after.status, 'completed');
      assert.deepEqual(after.file_counts, { in_progress: 0, completed: 6, failed: 0, cancelled: 0, total: 6 });
      assert.ok(after.usage_bytes > 0);

      for (const [query, filename] of [
        ['espresso descaled', 'coffee.txt'],
        ['where do visitors park', 'parking.md'],
        ['aquarium subscription revenue', 'report.pdf'],
        ['walrus refunds travel claims', 'travel.doc'],
        ['zeppelin approval', 'policy.docx'],
        ['wifi password', 'it.html'],
      ] as const) {
        const page = await client.vectorStores.search(store.id, { query });
        assert.ok(page.data.length > 0, `no hit for ${query}`);
        assert.equal(page.data[0]!.filename, filename, query);
        for (const hit of page.data) assert.ok(hit.score >= 0 && hit.score <= 1);
        // A file added without attributes has an empty object here: async-openai and openai-php fail on null.
        for (const hit of page.data) assert.deepEqual(hit.attributes, {});
      }

      const listed: string[] = [];
      for await (const file of client.vectorStores.files.list(store.id, { limit: 2 })) listed.push(file.id);
      assert.equal(listed.length, 6);
      await client.vectorStores.delete(store.id);
    });

    test('an unsupported file fails alone with unsupported_file; the rest complete', async () => {
      const store = await client.vectorStores.create({ name: 'mixed' });
      const image = await client.vectorStores.files.uploadAndPoll(store.id, await toFile(onePixelPng(), 'pixel.png'));
      assert.equal(image.status, 'failed');
      assert.equal(image.last_error?.code, 'unsupported_file');
      const binary = await client.vectorStores.files.uploadAndPoll(
        store.id,
        await toFile(Buffer.from([0, 159, 146, 150, 0, 1, 2]), 'data.txt'),
      );
      assert.equal(binary.status, 'failed');
      assert.equal(binary.last_error?.code, 'invalid_file');
      const ok = await client.vectorStores.files.uploadAndPoll(store.id, await text('Fine text.', 'fine.txt'));
      assert.equal(ok.status, 'completed');
      const counts = (await client.vectorStores.retrieve(store.id)).file_counts;
      assert.deepEqual(counts, { in_progress: 0, completed: 1, failed: 2, cancelled: 0, total: 3 });
      const failed = await client.vectorStores.files.list(store.id, { filter: 'failed' });
      assert.deepEqual(failed.data.map((f) => f.id).sort(), [image.id, binary.id].sort());
      await client.vectorStores.delete(store.id);
    });

    test('batches: uploadAndPoll of 20 files, createAndPoll with per-file attributes, and cancel mid-way', async () => {
      const store = await client.vectorStores.create({ name: 'batches' });
      const files = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          text(`Document number ${i} mentions the keyword item${i}.`, `doc${i}.txt`),
        ),
      );
      const batch = await client.vectorStores.fileBatches.uploadAndPoll(store.id, { files });
      assert.equal(batch.object as string, 'vector_store.file_batch');
      assert.equal(batch.status, 'completed');
      assert.deepEqual(batch.file_counts, { in_progress: 0, completed: 20, failed: 0, cancelled: 0, total: 20 });
      const inBatch: string[] = [];
      for await (const file of client.vectorStores.fileBatches.listFiles(batch.id, { vector_store_id: store.id }))
        inBatch.push(file.id);
      assert.equal(inBatch.length, 20);

      const a = await client.files.create({
        file: await text('Alpha fact about comets.', 'a.txt'),
        purpose: 'assistants',
      });
      const b = await client.files.create({
        file: await text('Beta fact about comets.', 'b.txt'),
        purpose: 'assistants',
      });
      const withAttributes = await client.vectorStores.fileBatches.createAndPoll(store.id, {
        files: [
          { file_id: a.id, attributes: { category: 'alpha', year: 2021 } },
          { file_id: b.id, attributes: { category: 'beta', year: 2024 } },
        ],
      });
      assert.equal(withAttributes.status, 'completed');
      const fileA = await client.vectorStores.files.retrieve(a.id, { vector_store_id: store.id });
      assert.deepEqual(fileA.attributes, { category: 'alpha', year: 2021 });

      const many = [];
      for (let i = 0; i < 60; i++)
        many.push(
          (await client.files.create({ file: await text(`Cancel me ${i}.`, `c${i}.txt`), purpose: 'assistants' })).id,
        );
      const pending = await client.vectorStores.fileBatches.create(store.id, { file_ids: many });
      const cancelled = await client.vectorStores.fileBatches.cancel(pending.id, { vector_store_id: store.id });
      const settled = await client.vectorStores.fileBatches.poll(store.id, cancelled.id, { pollIntervalMs: 50 });
      assert.equal(settled.status, 'cancelled');
      const counts = settled.file_counts;
      assert.equal(counts.in_progress, 0);
      assert.ok(counts.cancelled > 0, JSON.stringify(counts));
      assert.equal(counts.completed + counts.cancelled + counts.failed, 60);

      // A batch no longer in progress has nothing to cancel: the answer is the batch as it was, and it stays so (a
      // client cancelling right after creating a batch of small files may find it done already).
      for (const done of [batch, settled]) {
        const answered = await client.vectorStores.fileBatches.cancel(done.id, { vector_store_id: store.id });
        assert.deepEqual(answered, done);
        const again = await client.vectorStores.fileBatches.retrieve(done.id, { vector_store_id: store.id });
        assert.deepEqual(again, done);
      }
      await client.vectorStores.delete(store.id);
    });

    test('attribute filters narrow a search; deleting a file removes its chunks from every store', async () => {
      const one = await client.vectorStores.create({ name: 'one' });
      const two = await client.vectorStores.create({ name: 'two' });
      const shared = await client.files.create({
        file: await text('The lighthouse keeper logs every passing ship.', 'lighthouse.txt'),
        purpose: 'assistants',
      });
      const other = await client.files.create({
        file: await text('The lighthouse museum opens at nine.', 'museum.txt'),
        purpose: 'assistants',
      });
      await client.vectorStores.files.createAndPoll(one.id, {
        file_id: shared.id,
        attributes: { kind: 'log', year: 2020 },
      });
      await client.vectorStores.files.createAndPoll(one.id, {
        file_id: other.id,
        attributes: { kind: 'museum', year: 2024 },
      });
      await client.vectorStores.files.createAndPoll(two.id, { file_id: shared.id });

      const all = await client.vectorStores.search(one.id, { query: 'lighthouse' });
      assert.equal(all.data.length, 2);
      const logs = await client.vectorStores.search(one.id, {
        query: 'lighthouse',
        filters: { type: 'eq', key: 'kind', value: 'log' },
      });
      assert.deepEqual(
        logs.data.map((d) => d.file_id),
        [shared.id],
      );
      assert.deepEqual(logs.data[0]!.attributes, { kind: 'log', year: 2020 });
      const recent = await client.vectorStores.search(one.id, {
        query: 'lighthouse',
        filters: {
          type: 'and',
          filters: [
            { type: 'gte', key: 'year', value: 2021 },
            { type: 'in', key: 'kind', value: ['museum', 'gallery'] },
          ],
        },
      });
      assert.deepEqual(
        recent.data.map((d) => d.file_id),
        [other.id],
      );

      const content = await client.vectorStores.files.content(shared.id, { vector_store_id: one.id });
      assert.match(content.data.map((d) => d.text).join(''), /lighthouse keeper/);

      await client.files.delete(shared.id);
      for (const store of [one, two]) {
        const hits = await client.vectorStores.search(store.id, { query: 'keeper passing ship' });
        assert.ok(!hits.data.some((d) => d.file_id === shared.id), 'the deleted file is not found');
      }
      assert.equal((await client.vectorStores.retrieve(two.id)).file_counts.total, 0);
      await client.vectorStores.delete(one.id);
      await client.vectorStores.delete(two.id);
    });

    test('a file added again keeps its index: attributes change in place; a new chunking strategy re-indexes it', async () => {
      const store = await client.vectorStores.create({ name: 'again' });
      const file = await client.files.create({
        file: await text('The harbour master counts the fishing boats at dawn.', 'harbour.txt'),
        purpose: 'assistants',
      });
      const first = await client.vectorStores.files.createAndPoll(store.id, { file_id: file.id, attributes: { a: 1 } });
      assert.equal(first.status, 'completed');
      assert.ok(first.usage_bytes > 0);

      // As a second message attaching the same file does: nothing to index again, nothing hidden meanwhile.
      const again = await client.vectorStores.files.create(store.id, { file_id: file.id });
      assert.deepEqual({ ...again }, { ...first });
      const relabelled = await client.vectorStores.files.create(store.id, { file_id: file.id, attributes: { a: 2 } });
      assert.deepEqual({ ...relabelled }, { ...first, attributes: { a: 2 } });
      const counted = await client.vectorStores.retrieve(store.id);
      assert.equal(counted.status, 'completed');
      assert.deepEqual(counted.file_counts, { in_progress: 0, completed: 1, failed: 0, cancelled: 0, total: 1 });
      const hits = await client.vectorStores.search(store.id, { query: 'harbour fishing boats' });
      assert.deepEqual(
        hits.data.map((hit) => [hit.file_id, hit.attributes]),
        [[file.id, { a: 2 }]],
      );

      const small = { type: 'static' as const, static: { max_chunk_size_tokens: 100, chunk_overlap_tokens: 20 } };
      const rechunked = await client.vectorStores.files.create(store.id, {
        file_id: file.id,
        chunking_strategy: small,
      });
      assert.equal(rechunked.status, 'in_progress');
      const indexed = await client.vectorStores.files.poll(store.id, file.id, { pollIntervalMs: 50 });
      assert.equal(indexed.status, 'completed');
      assert.deepEqual(indexed.chunking_strategy, small);
      await client.vectorStores.delete(store.id);
    });

    test('create with file_ids and a static chunking strategy; modify; list; delete', async () => {
      const long = Array.from({ length: 400 }, (_, i) => `Sentence ${i} about orbital mechanics.`).join(' ');
      const file = await client.files.create({ file: await text(long, 'orbits.txt'), purpose: 'assistants' });
      const store = await client.vectorStores.create({
        name: 'orbits',
        file_ids: [file.id],
        chunking_strategy: { type: 'static', static: { max_chunk_size_tokens: 100, chunk_overlap_tokens: 20 } },
        expires_after: { anchor: 'last_active_at', days: 7 },
      });
      assert.equal(store.expires_after?.days, 7);
      assert.equal(store.expires_at, (store.last_active_at ?? 0) + 7 * 86_400);
      const indexed = await client.vectorStores.files.poll(store.id, file.id, { pollIntervalMs: 50 });
      assert.equal(indexed.status, 'completed');
      assert.deepEqual(indexed.chunking_strategy, {
        type: 'static',
        static: { max_chunk_size_tokens: 100, chunk_overlap_tokens: 20 },
      });
      // The parsed content, in the chunks' order, each chunk less what it repeats of the one before: a client that
      // joins the parts (as glific's and others' do) gets the file's text, each sentence once.
      const chunks = await client.vectorStores.files.content(file.id, { vector_store_id: store.id });
      assert.ok(chunks.data.length > 10, `${chunks.data.length} chunks`);
      assert.equal(chunks.data.map((part) => part.text).join(''), long);

      const renamed = await client.vectorStores.update(store.id, { name: 'planets', metadata: { v: '2' } });
      assert.equal(renamed.name, 'planets');
      assert.deepEqual(renamed.metadata, { v: '2' });
      const listed = await client.vectorStores.list();
      assert.ok(listed.data.some((s) => s.id === store.id));
      const deleted = await client.vectorStores.delete(store.id);
      assert.deepEqual({ ...deleted }, { id: store.id, object: 'vector_store.deleted', deleted: true });
      await assert.rejects(client.vectorStores.retrieve(store.id), OpenAI.NotFoundError);
    });

    test('create with null for the fields a client leaves unset (as Flowise sends them): as if left out', async () => {
      const store = await client.vectorStores.create({
        name: null,
        description: null,
        expires_after: null,
        file_ids: null,
        chunking_strategy: null,
      } as unknown as OpenAI.VectorStores.VectorStoreCreateParams);
      assert.equal(store.name, '');
      assert.equal(store.expires_after, undefined);
      assert.equal(store.expires_at, null);
      assert.equal(store.file_counts.total, 0);
      await client.vectorStores.delete(store.id);
    });

    test('an expired store says so, and is not searched', async () => {
      const store = await client.vectorStores.create({
        name: 'ephemeral',
        expires_after: { anchor: 'last_active_at', days: 1 },
      });
      await backend.sql(`update vector_stores set expires_at = 1 where id = '${store.id}'`);
      await eventually('the store to expire', 10_000, async () =>
        (await client.vectorStores.retrieve(store.id)).status === 'expired' ? true : undefined,
      );
      await assert.rejects(client.vectorStores.search(store.id, { query: 'anything' }), (error: unknown) => {
        assert.ok(error instanceof OpenAI.BadRequestError);
        assert.equal(error.code, 'vector_store_expired');
        return true;
      });
      // Its expiry cannot be moved (it would claim a future expires_at while expired); its name can change.
      for (const expires_after of [{ anchor: 'last_active_at' as const, days: 30 }, null])
        await assert.rejects(client.vectorStores.update(store.id, { expires_after }), (error: unknown) => {
          assert.ok(error instanceof OpenAI.BadRequestError);
          assert.equal(error.code, 'vector_store_expired');
          assert.equal(error.param, 'expires_after');
          return true;
        });
      const renamed = await client.vectorStores.update(store.id, { name: 'gone' });
      assert.equal(renamed.status, 'expired');
      assert.equal(renamed.expires_at, 1);
    });

    test('bad input is a clear OpenAI-shaped error', async () => {
      const store = await client.vectorStores.create({ name: 'strict' });
      const file = await client.files.create({ file: await text('x', 'x.txt'), purpose: 'assistants' });
      const cases: Array<[string, () => Promise<unknown>, number, string | null]> = [
        [
          'over 500 file_ids',
          () => client.vectorStores.create({ file_ids: Array.from({ length: 501 }, () => file.id) }),
          400,
          'file_ids',
        ],
        ['an unknown file', () => client.vectorStores.files.create(store.id, { file_id: 'file-nope' }), 404, null],
        [
          'static chunks below 100 tokens',
          () =>
            client.vectorStores.files.create(store.id, {
              file_id: file.id,
              chunking_strategy: { type: 'static', static: { max_chunk_size_tokens: 99, chunk_overlap_tokens: 0 } },
            }),
          400,
          'chunking_strategy.static.max_chunk_size_tokens',
        ],
        [
          'an overlap over half',
          () =>
            client.vectorStores.files.create(store.id, {
              file_id: file.id,
              chunking_strategy: { type: 'static', static: { max_chunk_size_tokens: 200, chunk_overlap_tokens: 101 } },
            }),
          400,
          'chunking_strategy.static.chunk_overlap_tokens',
        ],
        [
          'a bad filter',
          () =>
            client.vectorStores.search(store.id, {
              query: 'x',
              filters: { type: 'like', key: 'a', value: 'b' } as unknown as OpenAI.ComparisonFilter,
            }),
          400,
          'filters.type',
        ],
        [
          // Before, the first branch of ComparisonFilter | CompoundFilter answered: "Unknown parameter:
          // 'filters.filters'", about a compound filter that was right.
          'a bad filter inside a compound filter',
          () =>
            client.vectorStores.search(store.id, {
              query: 'x',
              filters: { type: 'and', filters: [{ type: 'like', key: 'a', value: 'b' } as never] },
            }),
          400,
          'filters.filters[0].type',
        ],
        [
          'a comparison missing its value, inside a compound filter',
          () =>
            client.vectorStores.search(store.id, {
              query: 'x',
              filters: { type: 'or', filters: [{ type: 'eq', key: 'a' } as never] },
            }),
          400,
          'filters.filters[0].value',
        ],
        [
          'a compound filter with an unknown field',
          () =>
            client.vectorStores.search(store.id, {
              query: 'x',
              filters: { type: 'or', filters: [{ type: 'eq', key: 'a', value: 1 }], extra: 1 } as never,
            }),
          400,
          'filters.extra',
        ],
        [
          "'in' with one value",
          () =>
            client.vectorStores.search(store.id, { query: 'x', filters: { type: 'in', key: 'a', value: 1 } as never }),
          400,
          'filters.value',
        ],
        [
          "'eq' with a list, in a compound filter",
          () =>
            client.vectorStores.search(store.id, {
              query: 'x',
              filters: { type: 'and', filters: [{ type: 'eq', key: 'a', value: [1, 2] as never }] },
            }),
          400,
          'filters.filters[0].value',
        ],
        [
          'a file batch with neither file_ids nor files',
          () => client.vectorStores.fileBatches.create(store.id, {} as never),
          400,
          'none',
        ],
        [
          'max_num_results 0',
          () => client.vectorStores.search(store.id, { query: 'x', max_num_results: 0 }),
          400,
          'max_num_results',
        ],
        [
          'max_num_results 51',
          () => client.vectorStores.search(store.id, { query: 'x', max_num_results: 51 }),
          400,
          'max_num_results',
        ],
        ['an empty query', () => client.vectorStores.search(store.id, { query: '' }), 400, 'query'],
        [
          'a bad status filter',
          () => client.vectorStores.files.list(store.id, { filter: 'done' as 'completed' }),
          400,
          'filter',
        ],
        ['an unknown store', () => client.vectorStores.retrieve('vs_nope'), 404, null],
        [
          'an unknown store in an assistant',
          () =>
            client.beta.assistants.create({
              model: 'gpt-test',
              tools: [{ type: 'file_search' }],
              tool_resources: { file_search: { vector_store_ids: ['vs_nope'] } },
            }),
          404,
          null,
        ],
        ['a wrong id prefix', () => client.vectorStores.retrieve('asst_1'), 400, 'vector_store_id'],
      ];
      for (const [what, call, status, param] of cases) {
        await assert.rejects(call(), (error: unknown) => {
          assert.ok(error instanceof OpenAI.APIError, `${what}: ${String(error)}`);
          assert.equal(error.status, status, `${what}: ${error.message}`);
          if (param === 'none') assert.equal(error.param, null, `${what}: names no parameter`);
          else if (param !== null) assert.equal(error.param, param, `${what}: ${error.message}`);
          return true;
        });
      }
      await client.vectorStores.delete(store.id);
    });
  });
}

vectorStoresSuite('SQLite', async () => {
  const dataDir = tempDir();
  return {
    env: { ASSISTD_DATA_DIR: dataDir },
    sql: async (statement) => {
      const db = new BetterSqlite3(path.join(dataDir, SQLITE_FILE_NAME));
      try {
        db.pragma('busy_timeout = 5000');
        db.exec(statement);
      } finally {
        db.close();
      }
    },
    cleanup: async () => rmSync(dataDir, { recursive: true, force: true }),
  };
});

const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined) test('vector stores on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  vectorStoresSuite('PostgreSQL', async () => {
    const database = await createTestDatabase(postgresUrl);
    const dataDir = tempDir();
    return {
      env: { ASSISTD_DATABASE_URL: database.url, ASSISTD_DATA_DIR: dataDir },
      sql: async (statement) => {
        const db = new pg.Client({ connectionString: database.url });
        await db.connect();
        try {
          await db.query(statement);
        } finally {
          await db.end();
        }
      },
      cleanup: async () => {
        await database.drop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  });
