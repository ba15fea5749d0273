import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { BlobStore } from './blobs/blob-store.ts';
import { syncDir } from './blobs/directory-blob-store.ts';
import { noDatabaseIn, SQLITE_FILE_NAME } from './sqlite/open-sqlite-store.ts';

/**
 * `assistd backup DIR` of a SQLite deployment, while it runs. The backup is a new data directory: the database
 * (`assistd.sqlite`) and, when file bytes live in a directory, the bytes of every file in that database, where that
 * deployment keeps them. Restoring is pointing ASSISTD_DATA_DIR at it (or moving it into place).
 *
 * The database is copied with SQLite's online backup in one step, so the copy is one read transaction: a snapshot
 * that holds every write committed before it began. The file bytes are then read for the files that snapshot
 * holds. A file deleted meanwhile loses its row before its bytes (blob-store.ts), so bytes that are gone belong to
 * a row that is gone from a newer snapshot: the database is copied again, and only the bytes not yet copied are
 * read. Bytes are written once and never changed under an id, so what was copied stays right.
 */
export interface SqliteBackupSource {
  /** The deployment's data directory, holding its SQLite database. */
  dataDir: string;
  /**
   * When file bytes live in a directory: the store reading the deployment's, and one writing into the backup's
   * data directory at the same place. Absent when the bytes are rows in the database, and so in its copy.
   */
  blobs?: { source: BlobStore; target: (backupDataDir: string) => BlobStore };
}

export interface BackupSummary {
  databaseBytes: number;
  files: number;
  /** How many times the database was copied: more than once when files were deleted during the backup. */
  snapshots: number;
}

/** A backup that cannot be made, with the reason said plainly for the operator. */
export class BackupError extends Error {
  override readonly name = 'BackupError';
}

/** Copies of the database before giving up on a deployment that deletes files faster than a backup copies them. */
const MAX_SNAPSHOTS = 10;

/**
 * `stopped`: aborted when the process is told to stop (SIGINT, SIGTERM) — the partial backup is removed at once,
 * before the process exits, rather than left beside the destination.
 */
export async function backupSqlite(
  source: SqliteBackupSource,
  destination: string,
  stopped?: AbortSignal,
): Promise<BackupSummary> {
  const target = path.resolve(destination);
  if (existsSync(target)) throw new BackupError(`${target} already exists: name a new directory for the backup.`);
  const noDatabase = noDatabaseIn(source.dataDir);
  if (noDatabase !== undefined) throw new BackupError(noDatabase);
  const databaseFile = path.join(source.dataDir, SQLITE_FILE_NAME);

  // Written beside the destination and renamed into place at the end: a directory at that name is a whole backup.
  await mkdir(path.dirname(target), { recursive: true });
  const staging = await mkdtemp(path.join(path.dirname(target), `.${path.basename(target)}.partial-`));
  const removeStaging = () => rmSync(staging, { recursive: true, force: true });
  stopped?.addEventListener('abort', removeStaging, { once: true });
  const database = new BetterSqlite3(databaseFile, { fileMustExist: true });
  try {
    database.pragma('busy_timeout = 5000');
    const summary = await copyDeployment(database, source, staging);
    await syncDir(staging);
    stopped?.throwIfAborted(); // whatever a copy still under way wrote after the abort is not a backup
    await rename(staging, target);
    await syncDir(path.dirname(target));
    return summary;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    // Stopped, the copy under way fails on the directory removed under it: the stop is the reason.
    throw stopped?.aborted ? stopped.reason : error;
  } finally {
    stopped?.removeEventListener('abort', removeStaging);
    database.close();
  }
}

async function copyDeployment(
  database: BetterSqlite3.Database,
  source: SqliteBackupSource,
  staging: string,
): Promise<BackupSummary> {
  const snapshotFile = path.join(staging, SQLITE_FILE_NAME);
  const blobs = source.blobs && { source: source.blobs.source, target: source.blobs.target(staging) };
  const copied = new Set<string>();
  let missingBefore = new Set<string>();
  for (let snapshots = 1; snapshots <= MAX_SNAPSHOTS; snapshots++) {
    await rm(snapshotFile, { force: true });
    // better-sqlite3 first opens the backup (0 pages), then copies the number of pages this returns: all of them,
    // in one step. In smaller steps, every write of the server in between would restart the copy.
    await database.backup(snapshotFile, { progress: () => 0x7fffffff });
    const files = readyFiles(snapshotFile, blobs === undefined);
    if (blobs === undefined) {
      if (files.withoutBytes.length > 0) throw new BackupError(bytesNotFound(files.withoutBytes, 'the database'));
      return { databaseBytes: (await stat(snapshotFile)).size, files: files.ids.length, snapshots };
    }

    const missing = new Set<string>();
    for (const id of files.ids) {
      if (copied.has(id)) continue;
      const bytes = await blobs.source.read(id);
      if (bytes === undefined) {
        // Missing from two snapshots in a row: not a deletion under way (its row would be gone by now).
        if (missingBefore.has(id)) throw new BackupError(bytesNotFound([id], blobs.source.description));
        missing.add(id);
        continue;
      }
      await blobs.target.write(id, bytes);
      copied.add(id);
    }
    if (missing.size === 0) {
      // Bytes copied for an earlier snapshot whose files this one no longer has.
      const kept = new Set(files.ids);
      for (const id of copied) if (!kept.has(id)) await blobs.target.delete(id);
      return { databaseBytes: (await stat(snapshotFile)).size, files: kept.size, snapshots };
    }
    missingBefore = missing;
  }
  throw new BackupError(
    `files were deleted during each of ${MAX_SNAPSHOTS} copies of the database; try again when fewer are deleted.`,
  );
}

/**
 * A file is ready once its bytes are stored, and its row goes before its bytes (blob-store.ts): a ready file whose
 * bytes are not there says that the bytes are kept elsewhere, by a deployment whose settings these are not.
 */
function bytesNotFound(ids: readonly string[], where: string, newest = false): string {
  const files = ids.length === 1 ? ids[0] : `${newest ? 'the newest ' : ''}${ids.length} files (e.g. ${ids[0]})`;
  return `the bytes of ${files} are not in ${where}: are ASSISTD_DATA_DIR and ASSISTD_FILE_STORAGE the server's?`;
}

/** How many of the newest files startup looks for (fileBytesMissing). */
const STARTUP_SAMPLE = 10;

/**
 * At startup, a backup's check of every file made of the newest few: whether this SQLite database's files have
 * their bytes in `blobs`. A data directory restored without its files/ folder, or an ASSISTD_FILE_STORAGE not the
 * server's, would otherwise start and answer every download 500. One query and, where the bytes are, one lookup;
 * a file whose bytes were lost behind the server's back does not stop it, a storage without any of them does.
 * Gives the reason, or undefined.
 */
export async function fileBytesMissing(dataDir: string, blobs: BlobStore): Promise<string | undefined> {
  const database = new BetterSqlite3(path.join(dataDir, SQLITE_FILE_NAME), { readonly: true, fileMustExist: true });
  let newest: string[];
  try {
    newest = readyFileIds(database, STARTUP_SAMPLE);
  } finally {
    database.close();
  }
  for (const id of newest) {
    const bytes = await blobs.read(id);
    if (bytes === undefined) continue;
    bytes.destroy();
    return undefined;
  }
  return newest.length === 0 ? undefined : bytesNotFound(newest, blobs.description, true);
}

/** The ready files (uploads in progress are not files yet), oldest first; with `newest`, only that many, newest first. */
function readyFileIds(database: BetterSqlite3.Database, newest?: number): string[] {
  const query =
    newest === undefined
      ? `select id from files where state = 'ready' order by seq`
      : `select id from files where state = 'ready' order by seq desc limit ${newest}`;
  return database
    .prepare<[], { id: string }>(query)
    .all()
    .map((row) => row.id);
}

/** The files of a snapshot; with bytes in the database, those that lack them. */
function readyFiles(snapshotFile: string, bytesInDatabase: boolean): { ids: string[]; withoutBytes: string[] } {
  const snapshot = new BetterSqlite3(snapshotFile, { fileMustExist: true });
  try {
    const ids = readyFileIds(snapshot);
    // Every file stored in the database has a chunk 0, even an empty one (sql-blob-store.ts).
    const withoutBytes = bytesInDatabase
      ? snapshot
          .prepare<[], { id: string }>(
            `select id from files where state = 'ready'
               and not exists (select 1 from file_chunks where file_id = files.id and idx = 0)`,
          )
          .all()
          .map((row) => row.id)
      : [];
    return { ids, withoutBytes };
  } finally {
    snapshot.close();
  }
}
