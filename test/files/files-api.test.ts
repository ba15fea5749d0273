import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import OpenAI, { toFile } from 'openai';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { type ServerProcess, spawnServer, tempDir } from '../support/server.ts';
import { createValidatingFetch, type ValidatingFetch } from '../support/validating-fetch.ts';

/**
 * The Files API through the official `openai` SDK against `assistd serve` as its own process, once per storage:
 * SQLite with files in a directory, SQLite with files in the database, and PostgreSQL (files in the database, its
 * default). Every JSON response is checked against the official schema.
 */

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function download(client: OpenAI, id: string): Promise<Buffer> {
  const response = await client.files.content(id);
  return Buffer.from(await response.arrayBuffer());
}

interface Storage {
  env: Record<string, string>;
  /** The blob directory, when files are kept in one. */
  blobDir?: string;
  cleanup(): Promise<void>;
}

function filesSuite(name: string, makeStorage: () => Promise<Storage>): void {
  describe(`Files API through the SDK on ${name}`, () => {
    let storage: Storage;
    let server: ServerProcess;
    let recorder: ValidatingFetch;
    let client: OpenAI;
    let scratch: string;

    before(async () => {
      storage = await makeStorage();
      server = await spawnServer(storage.env);
      recorder = createValidatingFetch();
      client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', fetch: recorder.fetch, maxRetries: 0 });
      scratch = tempDir('assistd-files-');
    });
    after(async () => {
      await server?.stop();
      await storage?.cleanup();
      rmSync(scratch, { recursive: true, force: true });
    });
    afterEach(() => recorder.assertNoViolations());

    test('upload from a file stream and from toFile(buffer); retrieve and download the exact bytes', async () => {
      const binary = randomBytes(300_000);
      const binaryPath = path.join(scratch, 'data.bin');
      writeFileSync(binaryPath, binary);
      const streamed = await client.files.create({ file: createReadStream(binaryPath), purpose: 'assistants' });
      assert.match(streamed.id, /^file-[A-Za-z0-9]{24}$/);
      assert.equal(streamed.object, 'file');
      assert.equal(streamed.bytes, binary.byteLength);
      assert.equal(streamed.filename, 'data.bin');
      assert.equal(streamed.purpose, 'assistants');
      assert.equal(streamed.status, 'processed');
      assert.equal(streamed.expires_at, null); // as OpenAI sent it
      assert.equal((streamed as unknown as { status_details: unknown }).status_details, null);
      assert.ok(Math.abs(streamed.created_at - Date.now() / 1000) < 10);

      const text = 'Grüße, 世界! ✓\nA second line.\n';
      const fromBuffer = await client.files.create({
        file: await toFile(Buffer.from(text, 'utf8'), 'greeting.md'),
        purpose: 'user_data',
      });
      assert.equal(fromBuffer.bytes, Buffer.byteLength(text, 'utf8'));
      assert.equal(fromBuffer.filename, 'greeting.md');

      const empty = await client.files.create({ file: await toFile(Buffer.alloc(0), 'empty.txt'), purpose: 'vision' });
      assert.equal(empty.bytes, 0);

      assert.deepEqual({ ...(await client.files.retrieve(streamed.id)) }, { ...streamed });
      assert.equal(sha256(await download(client, streamed.id)), sha256(binary));
      assert.equal((await download(client, fromBuffer.id)).toString('utf8'), text);
      assert.equal((await download(client, empty.id)).byteLength, 0);

      const response = await client.files.content(streamed.id);
      assert.equal(response.headers.get('content-type'), 'application/octet-stream');
      assert.equal(response.headers.get('content-length'), String(binary.byteLength));
      await response.arrayBuffer();
      const named = await client.files.create({
        file: await toFile(Buffer.from('x'), "my report ü's.txt"),
        purpose: 'assistants',
      });
      const disposition = (await client.files.content(named.id)).headers.get('content-disposition') ?? '';
      assert.equal(
        disposition,
        `attachment; filename="my report _'s.txt"; filename*=UTF-8''my%20report%20%C3%BC%27s.txt`,
      );
      assert.equal(decodeURIComponent(disposition.split("''")[1]!), named.filename);
      await client.files.delete(named.id);
      // FormData sends a quote or a line break in a filename as %22, %0A, %0D (the HTML standard's multipart
      // encoding, which the SDKs follow): the file keeps the name it was given.
      const quoted = await client.files.create({
        file: await toFile(Buffer.from('x'), 'say "hi"\r\n2.txt'),
        purpose: 'assistants',
      });
      assert.equal(quoted.filename, 'say "hi"\r\n2.txt');
      assert.equal(
        (await client.files.content(quoted.id)).headers.get('content-disposition'),
        `attachment; filename="say _hi___2.txt"; filename*=UTF-8''say%20%22hi%22%0D%0A2.txt`,
      );
      await client.files.delete(quoted.id);
      // The SDK's streaming encoder (a file stream) escapes every control character too.
      const oddPath = path.join(scratch, 'tab\there "1".txt');
      writeFileSync(oddPath, 'x');
      const odd = await client.files.create({ file: createReadStream(oddPath), purpose: 'assistants' });
      assert.equal(odd.filename, 'tab\there "1".txt');
      await client.files.delete(odd.id);

      for (const id of [streamed.id, fromBuffer.id, empty.id]) await client.files.delete(id);
    });

    test('a form’s parts are told apart by name, whatever their type: `file` is the file, `purpose` a field', async () => {
      const form = (...parts: string[]) => ({
        method: 'POST',
        headers: { 'content-type': 'multipart/form-data; boundary=xyz' },
        body: `${parts.map((part) => `--xyz\r\n${part}\r\n`).join('')}--xyz--\r\n`,
      });
      const cases = [
        // curl -F 'file=<h.txt;type=application/octet-stream': a file without a name
        form(
          'Content-Disposition: form-data; name="purpose"\r\n\r\nassistants',
          'Content-Disposition: form-data; name="file"\r\nContent-Type: application/octet-stream\r\n\r\nhello',
        ),
        // curl -F 'file=<h.txt': the file's content as a text field
        form(
          'Content-Disposition: form-data; name="file"\r\n\r\nhello',
          'Content-Disposition: form-data; name="purpose"\r\n\r\nassistants',
        ),
        // a purpose typed as bytes
        form(
          'Content-Disposition: form-data; name="file"; filename="h.txt"\r\n\r\nhello',
          'Content-Disposition: form-data; name="purpose"\r\nContent-Type: application/octet-stream\r\n\r\nassistants',
        ),
        // a path is its last part, however its separator was sent: escaped (the node SDK's stream encoder) or not
        form(
          'Content-Disposition: form-data; name="file"; filename="dir%5Ch.txt"\r\n\r\nhello',
          'Content-Disposition: form-data; name="purpose"\r\n\r\nassistants',
        ),
        form(
          'Content-Disposition: form-data; name="file"; filename="C:\\dir\\h.txt"\r\n\r\nhello',
          'Content-Disposition: form-data; name="purpose"\r\n\r\nassistants',
        ),
      ];
      for (const [i, init] of cases.entries()) {
        const response = await recorder.fetch(`${server.url}/v1/files`, init);
        const body = (await response.json()) as { id: string; filename: string; bytes: number; purpose: string };
        assert.equal(response.status, 200, `case ${i}: ${JSON.stringify(body)}`);
        assert.deepEqual([body.filename, body.bytes, body.purpose], [i >= 2 ? 'h.txt' : 'file', 5, 'assistants']);
        assert.equal((await download(client, body.id)).toString(), 'hello');
        await client.files.delete(body.id);
      }
    });

    test('waitForProcessing returns at once: one retrieve, no polling', async () => {
      const file = await client.files.create({ file: await toFile(Buffer.from('x'), 'x.txt'), purpose: 'assistants' });
      const before = recorder.requests.length;
      const processed = await client.files.waitForProcessing(file.id);
      assert.equal(processed.status, 'processed');
      assert.deepEqual(
        recorder.requests.slice(before).map((r) => `${r.method} ${r.path}`),
        [`GET /v1/files/${file.id}`],
      );
      await client.files.delete(file.id);
    });

    test('list with and without purpose, and paginate with limit and after', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const purpose = i % 2 === 0 ? 'assistants' : 'vision';
        ids.push((await client.files.create({ file: await toFile(Buffer.from(`f${i}`), `f${i}.txt`), purpose })).id);
      }
      const all: string[] = [];
      for await (const file of client.files.list()) all.push(file.id);
      assert.deepEqual(all, [...ids].reverse(), 'newest first by default');

      const assistants: string[] = [];
      for await (const file of client.files.list({ purpose: 'assistants' })) assistants.push(file.id);
      assert.deepEqual(assistants, [ids[4], ids[2], ids[0]]);

      const before = recorder.requests.length;
      const paged: string[] = [];
      for await (const file of client.files.list({ limit: 2, order: 'asc' })) paged.push(file.id);
      assert.deepEqual(paged, ids, 'each file once, oldest first');
      const pages = recorder.requests.slice(before).filter((r) => r.path === '/v1/files');
      assert.equal(pages.length, 3, 'pages of 2, 2 and 1');

      const first = await client.files.list({ limit: 2 });
      assert.equal(first.data.length, 2);
      assert.equal(first.has_more, true);

      for (const id of ids) await client.files.delete(id);
      const empty = await client.files.list();
      assert.deepEqual(empty.data, []);
    });

    test('delete: the file is gone for retrieve, content, list and a second delete; its bytes are removed', async () => {
      const file = await client.files.create({
        file: await toFile(randomBytes(2048), 'gone.bin'),
        purpose: 'assistants',
      });
      if (storage.blobDir) assert.ok(existsSync(path.join(storage.blobDir, file.id)));
      const deleted = await client.files.delete(file.id);
      assert.deepEqual({ ...deleted }, { id: file.id, object: 'file', deleted: true });
      const message = `No such File object: ${file.id}`; // the Files API's own wording, as OpenAI answered it
      for (const attempt of [
        () => client.files.retrieve(file.id),
        () => client.files.content(file.id),
        () => client.files.delete(file.id),
      ]) {
        await assert.rejects(attempt(), (error: unknown) => {
          assert.ok(error instanceof OpenAI.NotFoundError);
          assert.deepEqual(error.error, { message, type: 'invalid_request_error', param: 'id', code: null });
          return true;
        });
      }
      if (storage.blobDir) assert.ok(!existsSync(path.join(storage.blobDir, file.id)));
    });

    test('expires_after sets expires_at from created_at', async () => {
      const file = await client.files.create({
        file: await toFile(Buffer.from('soon gone'), 'soon.txt'),
        purpose: 'assistants',
        expires_after: { anchor: 'created_at', seconds: 3600 },
      });
      assert.equal(file.expires_at, file.created_at + 3600);
      assert.equal((await client.files.retrieve(file.id)).expires_at, file.created_at + 3600);
      await client.files.delete(file.id);
    });

    test('a batch file expires after 30 days unless told otherwise; other purposes persist', async () => {
      const upload = async (purpose: 'batch' | 'assistants', expires?: number) =>
        client.files.create({
          file: await toFile(Buffer.from('{}'), 'input.jsonl'),
          purpose,
          ...(expires ? { expires_after: { anchor: 'created_at' as const, seconds: expires } } : {}),
        });
      const batch = await upload('batch');
      assert.equal(batch.expires_at, batch.created_at + 30 * 24 * 3600);
      const sooner = await upload('batch', 3600);
      assert.equal(sooner.expires_at, sooner.created_at + 3600);
      const kept = await upload('assistants');
      assert.equal(kept.expires_at, null);
      for (const file of [batch, sooner, kept]) await client.files.delete(file.id);
    });

    test('bad uploads are clear OpenAI-shaped errors and leave nothing behind', async () => {
      const url = `${server.url}/v1/files`;
      const form = (parts: Array<[string, string | Blob, string?]>) => {
        const body = new FormData();
        for (const [key, value, filename] of parts) {
          if (typeof value === 'string') body.append(key, value);
          else body.append(key, value, filename);
        }
        return body;
      };
      const file = new Blob([Buffer.from('abc')]);
      const cases: Array<{ what: string; init: RequestInit; status: number; param: string | null; code: string }> = [
        {
          what: 'missing file',
          init: { method: 'POST', body: form([['purpose', 'assistants']]) },
          status: 400,
          param: 'file',
          code: 'missing_required_parameter',
        },
        {
          what: 'missing purpose',
          init: { method: 'POST', body: form([['file', file, 'a.txt']]) },
          status: 400,
          param: 'purpose',
          code: 'missing_required_parameter',
        },
        {
          what: 'unknown purpose',
          init: {
            method: 'POST',
            body: form([
              ['file', file, 'a.txt'],
              ['purpose', 'homework'],
            ]),
          },
          status: 400,
          param: 'purpose',
          code: 'invalid_value',
        },
        {
          what: 'two files',
          init: {
            method: 'POST',
            body: form([
              ['file', file, 'a.txt'],
              ['file', file, 'b.txt'],
              ['purpose', 'assistants'],
            ]),
          },
          status: 400,
          param: 'file',
          code: 'invalid_value',
        },
        {
          what: 'an unknown field',
          init: {
            method: 'POST',
            body: form([
              ['file', file, 'a.txt'],
              ['purpose', 'assistants'],
              ['colour', 'blue'],
            ]),
          },
          status: 400,
          param: 'colour',
          code: 'unknown_parameter',
        },
        {
          what: 'expires_after below the minimum',
          init: {
            method: 'POST',
            body: form([
              ['file', file, 'a.txt'],
              ['purpose', 'assistants'],
              ['expires_after[anchor]', 'created_at'],
              ['expires_after[seconds]', '3599'],
            ]),
          },
          status: 400,
          param: 'expires_after.seconds',
          code: 'integer_below_min_value',
        },
        {
          what: 'expires_after above the maximum',
          init: {
            method: 'POST',
            body: form([
              ['file', file, 'a.txt'],
              ['purpose', 'assistants'],
              ['expires_after[anchor]', 'created_at'],
              ['expires_after[seconds]', '2592001'],
            ]),
          },
          status: 400,
          param: 'expires_after.seconds',
          code: 'integer_above_max_value',
        },
        {
          what: 'expires_after with another anchor',
          init: {
            method: 'POST',
            body: form([
              ['file', file, 'a.txt'],
              ['purpose', 'assistants'],
              ['expires_after[anchor]', 'last_active_at'],
              ['expires_after[seconds]', '3600'],
            ]),
          },
          status: 400,
          param: 'expires_after.anchor',
          code: 'invalid_value',
        },
        {
          what: 'a JSON body',
          init: {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ file: 'abc', purpose: 'assistants' }),
          },
          status: 415,
          param: null,
          code: 'unsupported_content_type',
        },
        {
          what: 'a multipart body without a boundary',
          init: { method: 'POST', headers: { 'content-type': 'multipart/form-data' }, body: 'garbage' },
          status: 400,
          param: null,
          code: 'invalid_multipart',
        },
        {
          what: 'a truncated multipart body',
          init: {
            method: 'POST',
            headers: { 'content-type': 'multipart/form-data; boundary=xyz' },
            body: '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nabc',
          },
          status: 400,
          param: null,
          code: 'invalid_multipart',
        },
      ];
      for (const c of cases) {
        const response = await recorder.fetch(url, c.init);
        const body = (await response.json()) as { error: Record<string, unknown> };
        assert.equal(response.status, c.status, `${c.what}: ${JSON.stringify(body)}`);
        assert.equal(body.error['type'], 'invalid_request_error', c.what);
        assert.equal(body.error['param'], c.param, c.what);
        assert.equal(body.error['code'], c.code, c.what);
        assert.equal(typeof body.error['message'], 'string', c.what);
      }
      assert.deepEqual((await client.files.list()).data, [], 'no file was created');
      if (storage.blobDir) {
        assert.deepEqual(readdirSync(storage.blobDir), [], 'no blob was left');
        assert.deepEqual(readdirSync(path.join(storage.blobDir, '..', 'tmp')), [], 'no temporary file was left');
      }
    });

    test('a multipart body to a JSON route is a 415', async () => {
      const body = new FormData();
      body.append('model', 'gpt-4o');
      const response = await recorder.fetch(`${server.url}/v1/assistants`, { method: 'POST', body });
      assert.equal(response.status, 415);
      const error = ((await response.json()) as { error: Record<string, unknown> }).error;
      assert.equal(error['code'], 'unsupported_content_type');
      assert.match(String(error['message']), /takes a JSON body/);
      assert.deepEqual((await client.beta.assistants.list()).data, []);
    });

    test('bad ids and list parameters', async () => {
      // Looked up whatever its form, as OpenAI's Files API did (`fake_id`): not found.
      await assert.rejects(client.files.retrieve('asst_123'), (error: unknown) => {
        assert.ok(error instanceof OpenAI.NotFoundError);
        assert.equal(error.param, 'id');
        return true;
      });
      await assert.rejects(client.files.list({ limit: 10_001 }), OpenAI.BadRequestError);
      await assert.rejects(client.files.list({ limit: 0 }), OpenAI.BadRequestError);
      const ok = await client.files.list({ limit: 10_000 });
      assert.deepEqual(ok.data, []);
    });
  });
}

filesSuite('SQLite, files in a directory', async () => {
  const dataDir = tempDir();
  return {
    env: { ASSISTD_DATA_DIR: dataDir },
    blobDir: path.join(dataDir, 'files', 'blobs'),
    cleanup: async () => rmSync(dataDir, { recursive: true, force: true }),
  };
});

filesSuite('SQLite, files in the database', async () => {
  const dataDir = tempDir();
  return {
    env: { ASSISTD_DATA_DIR: dataDir, ASSISTD_FILE_STORAGE: 'database' },
    cleanup: async () => rmSync(dataDir, { recursive: true, force: true }),
  };
});

const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined) test('Files API on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  filesSuite('PostgreSQL (files in the database)', async () => {
    const database = await createTestDatabase(postgresUrl);
    const dataDir = tempDir();
    return {
      env: { ASSISTD_DATABASE_URL: database.url, ASSISTD_DATA_DIR: dataDir },
      cleanup: async () => {
        await database.drop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  });

/**
 * What the official SDK sends, seen by a bare HTTP server: the facts the upload path is built on. If a new SDK
 * changes them, this fails first.
 */
describe('the SDK upload as it arrives on the wire', () => {
  test('a stream upload is chunked with no Content-Length; the file part comes first, as octet-stream', async () => {
    let seen: { headers: IncomingHttpHeaders; body: string } | undefined;
    const server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        seen = { headers: request.headers, body: Buffer.concat(chunks).toString('latin1') };
        response.setHeader('content-type', 'application/json');
        response.end(
          JSON.stringify({
            id: 'file-abc',
            object: 'file',
            bytes: 5,
            created_at: 1,
            filename: 'a.txt',
            purpose: 'assistants',
            status: 'processed',
          }),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const scratch = tempDir('assistd-wire-');
    try {
      const { port } = server.address() as AddressInfo;
      const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'test', maxRetries: 0 });
      const file = path.join(scratch, 'a.txt');
      writeFileSync(file, 'hello');
      await client.files.create({ file: createReadStream(file), purpose: 'assistants' });
      assert.ok(seen);
      assert.equal(seen.headers['content-length'], undefined);
      assert.equal(seen.headers['transfer-encoding'], 'chunked');
      assert.match(seen.headers['content-type'] ?? '', /^multipart\/form-data; boundary=/);
      const filePart = seen.body.indexOf('name="file"');
      const purposePart = seen.body.indexOf('name="purpose"');
      assert.ok(filePart >= 0 && purposePart > filePart, 'file before purpose');
      const fileHeaders = seen.body.slice(filePart, seen.body.indexOf('\r\n\r\n', filePart));
      assert.match(fileHeaders, /filename="a\.txt"/);
      assert.match(fileHeaders, /Content-Type: application\/octet-stream/i);
    } finally {
      server.close();
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
