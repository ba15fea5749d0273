import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, ftruncateSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { loadConfig } from '../../src/config.ts';
import { eventually } from '../support/eventually.ts';
import { memoryOf } from '../support/processes.ts';
import { type ServerProcess, spawnServer, tempDir } from '../support/server.ts';

/**
 * Large and broken uploads against `assistd serve` as its own process (so that its memory is its own): a 300 MB
 * upload and download stream through without being held in memory, a file over the cap (512 MB unless set; 1 MB
 * here, as the refusal is the same at any size) is refused while it streams, and an upload cut off mid-way leaves
 * nothing.
 */

const MB = 1_000_000;

/** A file of `bytes` random bytes (1 MB of randomness repeated with a counter), and its SHA-256. */
function writeRandomFile(file: string, bytes: number): string {
  const hash = createHash('sha256');
  const block = randomBytes(MB);
  const fd = openSync(file, 'w');
  try {
    for (let written = 0, i = 0; written < bytes; i++) {
      block.writeUInt32BE(i, 0);
      const piece = block.subarray(0, Math.min(MB, bytes - written));
      writeSync(fd, piece);
      hash.update(piece);
      written += piece.byteLength;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

describe('large and broken uploads', () => {
  let dataDir: string;
  let scratch: string;
  let server: ServerProcess;
  let client: OpenAI;
  let pid: number;

  const leftovers = () => ({
    blobs: readdirSync(path.join(dataDir, 'files', 'blobs')),
    tmp: readdirSync(path.join(dataDir, 'files', 'tmp')),
  });

  before(async () => {
    dataDir = tempDir();
    scratch = tempDir('assistd-large-');
    server = await spawnServer({ ASSISTD_DATA_DIR: dataDir });
    pid = server.child.pid!;
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0, timeout: 120_000 });
  });
  after(async () => {
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  });

  // The bound is what any upload costs, well under the file's size: the buffers a stream has read and written are
  // freed only at V8's next collection, which their external memory brings on once it passes V8's soft limit
  // (64 MB). On Node 20 the growth was 24–26 MB, on Node 24 56–74 MB for the first large upload after startup
  // (a 500 MB upload after it grew nothing more). A server that held the file would grow by 300 MB.
  test('a 300 MB upload and its download grow the server RSS by less than 96 MB', async () => {
    const file = path.join(scratch, 'big.bin');
    const digest = writeRandomFile(file, 300 * MB);
    // Settle what startup allocated, then take the baseline.
    await client.files.list();
    const baseline = memoryOf(pid).rss;

    const uploaded = await client.files.create({ file: createReadStream(file), purpose: 'assistants' });
    assert.equal(uploaded.bytes, 300 * MB);
    const afterUpload = memoryOf(pid).peak;

    const response = await client.files.content(uploaded.id);
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      bytes += chunk.byteLength;
    }
    assert.equal(bytes, 300 * MB);
    assert.equal(hash.digest('hex'), digest, 'the download is byte-identical');
    const afterDownload = memoryOf(pid).peak;

    const growth = Math.max(afterUpload, afterDownload) - baseline;
    process.stdout.write(
      `# server RSS ${(baseline / MB).toFixed(1)} MB before; peak ${(afterUpload / MB).toFixed(1)} MB after the upload, ` +
        `${(afterDownload / MB).toFixed(1)} MB after the download: growth ${(growth / MB).toFixed(1)} MB\n`,
    );
    assert.ok(growth < 96 * MB, `the server grew by ${(growth / MB).toFixed(1)} MB`);
    await client.files.delete(uploaded.id);
    rmSync(file);
  });

  test('an upload cut off mid-stream leaves nothing behind, and the server goes on', async () => {
    const boundary = 'cutoffboundary';
    const socketClosed = new Promise<void>((resolve) => {
      const request = httpRequest(`${server.url}/v1/files`, {
        method: 'POST',
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
      });
      request.on('error', () => resolve());
      request.on('close', () => resolve());
      request.write(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\n` +
          'Content-Type: application/octet-stream\r\n\r\n',
      );
      let sent = 0;
      const pump = () => {
        if (sent >= 8 * MB) {
          // Wait until the server is writing the upload, then go away.
          void eventually('the upload to reach the blob store', 10_000, () =>
            leftovers().tmp.length > 0 ? true : undefined,
          ).then(() => request.destroy());
          return;
        }
        sent += 256 * 1024;
        if (request.write(randomBytes(256 * 1024))) setImmediate(pump);
        else request.once('drain', pump);
      };
      pump();
    });
    await socketClosed;
    await eventually('the cut-off upload to be cleaned up', 10_000, () => {
      const left = leftovers();
      return left.blobs.length === 0 && left.tmp.length === 0 ? true : undefined;
    });
    assert.deepEqual((await client.files.list()).data, []);
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200);
  });
});

describe('an upload over the limit (ASSISTD_MAX_FILE_MB=1)', () => {
  let server: ServerProcess;
  let dataDir: string;

  before(async () => {
    dataDir = tempDir();
    server = await spawnServer({ ASSISTD_DATA_DIR: dataDir, ASSISTD_MAX_FILE_MB: '1' });
  });
  after(async () => {
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('the limit is 512 MB unless set', () => {
    assert.equal(loadConfig({}).files.maxBytes, 512 * MB);
  });

  test('a file over the limit is a 413 while it streams: no row, no blob, no temporary file', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0 });
    const scratch = tempDir('assistd-large-');
    const file = path.join(scratch, 'too-big.bin');
    // Sparse: the bytes are zeros, which is all the limit needs.
    const fd = openSync(file, 'w');
    ftruncateSync(fd, 1 * MB + 1);
    closeSync(fd);
    try {
      await assert.rejects(client.files.create({ file: createReadStream(file), purpose: 'assistants' }), (error) => {
        assert.ok(error instanceof OpenAI.APIError, String(error));
        assert.equal(error.status, 413);
        assert.equal(error.code, 'file_too_large');
        assert.equal(error.param, 'file');
        assert.match(error.message, /largest file accepted is 1000000 bytes/);
        return true;
      });
      assert.deepEqual((await client.files.list()).data, []);
      assert.deepEqual(
        {
          blobs: readdirSync(path.join(dataDir, 'files', 'blobs')),
          tmp: readdirSync(path.join(dataDir, 'files', 'tmp')),
        },
        { blobs: [], tmp: [] },
      );
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  test('the 413 arrives, the client finishes sending without a reset, and the connection serves the next request', async () => {
    const boundary = 'refusedboundary';
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    try {
      const outcome = await new Promise<{ status: number; body: string; error?: Error }>((resolve) => {
        const request = httpRequest(`${server.url}/v1/files`, {
          method: 'POST',
          agent,
          headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
        });
        request.on('socket', (socket) => sockets.add(socket));
        let response: { status: number; body: string } | undefined;
        let error: Error | undefined;
        const settle = () => resolve({ ...(response ?? { status: 0, body: '' }), error });
        let sentAll = false;
        request.on('error', (e) => {
          error = e;
          settle();
        });
        // A connection closed under the client ends its request without an error event, the rest unsent.
        request.on('close', () => {
          if (sentAll) return;
          error ??= new Error('the connection closed before the whole body was sent');
          settle();
        });
        request.on('response', (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            body += chunk;
          });
          res.on('end', () => {
            response = { status: res.statusCode ?? 0, body };
          });
        });
        request.write(
          `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n` +
            'Content-Type: application/octet-stream\r\n\r\n',
        );
        // Past the 1 MB limit, then on sending once the answer is in, as a client that writes its whole body does.
        request.write(Buffer.alloc(1.5 * MB));
        let sent = 0;
        const more = () => {
          if (error) return;
          if (sent >= 4 * MB) {
            request.end(`\r\n--${boundary}--\r\n`, () => {
              sentAll = true;
              setTimeout(settle, 200);
            });
            return;
          }
          sent += 256 * 1024;
          request.write(Buffer.alloc(256 * 1024));
          setTimeout(more, 20);
        };
        void eventually('the 413 to arrive', 10_000, () => response).then(more);
      });
      assert.equal(outcome.error, undefined, 'the client sent its whole body without a reset');
      assert.equal(outcome.status, 413);
      const { error } = JSON.parse(outcome.body);
      assert.equal(error.code, 'file_too_large');
      assert.match(error.message, /largest file accepted is 1000000 bytes/);

      // The connection was kept, its body read to the end: the next request goes on it.
      const next = await new Promise<number>((resolve, reject) => {
        const request = httpRequest(`${server.url}/v1/files`, { agent, headers: { authorization: 'Bearer test' } });
        request.on('socket', (socket) => sockets.add(socket));
        request.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        request.on('error', reject);
        request.end();
      });
      assert.equal(next, 200);
      assert.equal(sockets.size, 1, 'one connection served both requests');
      assert.deepEqual(readdirSync(path.join(dataDir, 'files', 'tmp')), []);
    } finally {
      agent.destroy();
    }
  });
});
