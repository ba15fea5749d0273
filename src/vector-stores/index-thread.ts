import { parentPort } from 'node:worker_threads';
import { chunkText } from '../retrieval/chunking.ts';
import { extractText } from '../retrieval/extract.ts';
import type { IndexRequest, IndexResponse } from './indexer.ts';

/**
 * The indexing thread: extraction and chunking are CPU work (a PDF's parse, the tokenizer over millions of
 * characters) that would stall every request if it ran on the server's event loop.
 */
parentPort!.on('message', async (request: IndexRequest) => {
  let response: IndexResponse;
  try {
    const extracted = await extractText({
      bytes: Buffer.from(request.bytes),
      filename: request.filename,
      mimeType: request.mimeType,
    });
    if (!extracted.ok) response = { id: request.id, ok: false, code: extracted.code, message: extracted.message };
    else {
      const chunks = chunkText(extracted.text, request.chunking.static);
      response = { id: request.id, ok: true, chunks, usageBytes: Buffer.byteLength(extracted.text, 'utf8') };
    }
  } catch (error) {
    response = { id: request.id, ok: false, code: 'server_error', message: String((error as Error)?.message ?? error) };
  }
  parentPort!.postMessage(response);
});
