import { parentPort, workerData } from 'node:worker_threads';
import BetterSqlite3 from 'better-sqlite3';
import * as sqliteVec from 'sqlite-vec';
import type { ReaderRequest, ReaderResponse, ReaderThreadData } from './reader-pool.ts';
import { withStatementCache } from './statement-cache.ts';

/**
 * A reader thread of the SQLite store (reader-pool.ts): its own read-only connection to the database file, with the
 * extensions the store's connection loaded, running one statement at a time as the store hands them over. WAL lets
 * it read while the store's connection writes; each statement is its own read transaction, so it sees everything
 * committed before it began.
 */
const { file, sqliteVec: loadVec } = workerData as ReaderThreadData;
const database = new BetterSqlite3(file, { readonly: true, fileMustExist: true });
database.pragma('busy_timeout = 5000');
if (loadVec) sqliteVec.load(database);
const statements = withStatementCache(database);

parentPort!.on('message', ({ sql, parameters }: ReaderRequest) => {
  let response: ReaderResponse;
  try {
    const statement = statements.prepare(sql);
    // The connection is read-only: a write would fail anyway, and would not be the caller's to do here.
    if (!statement.reader) throw new Error('a reader thread runs statements that return rows only');
    // Blobs arrive as Uint8Arrays (structured clone drops Buffer's prototype); better-sqlite3 binds Buffers.
    const bound = parameters.map((p) => (p instanceof Uint8Array ? Buffer.from(p.buffer, p.byteOffset, p.length) : p));
    response = { rows: statement.all(bound) as unknown[] };
  } catch (error) {
    const { message, code } = error as { message?: unknown; code?: unknown };
    response = { error: { message: String(message ?? error), code: typeof code === 'string' ? code : undefined } };
  }
  parentPort!.postMessage(response);
});
