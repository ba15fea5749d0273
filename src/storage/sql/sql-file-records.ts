import { type Kysely, type Selectable, sql } from 'kysely';
import type { StoredFile } from '../../domain/files.ts';
import type { FileRecords, Page, PageRequest, Scope, UploadLease } from '../store.ts';
import type { SqlCapabilities } from './capabilities.ts';
import { bury } from './list-tombstones.ts';
import { liveFile } from './live-file.ts';
import { applyPage, finishPage, resolveCursors } from './pagination.ts';
import type { Database, FilesTable } from './schema.ts';
import { deleteChunksInParts, removeFilesFromStores, storesOfFile } from './sql-vector-store-records.ts';

/** The Files API's rows (see FileRecords in store.ts for the two-step write). */
export class SqlFileRecords implements FileRecords {
  private readonly db: Kysely<Database>;

  private readonly capabilities: Pick<SqlCapabilities, 'rowLocks' | 'statementsOnEventLoop'>;

  constructor(db: Kysely<Database>, capabilities: Pick<SqlCapabilities, 'rowLocks' | 'statementsOnEventLoop'>) {
    this.db = db;
    this.capabilities = capabilities;
  }

  async beginUpload(scope: Scope, id: string, createdAt: number, lease: UploadLease): Promise<void> {
    await this.db
      .insertInto('files')
      .values({
        id,
        project_id: scope.projectId,
        created_at: createdAt,
        bytes: 0,
        filename: '',
        purpose: '',
        mime_type: null,
        expires_at: null,
        state: 'uploading',
        upload_owner: lease.owner,
        upload_until: lease.until,
      })
      .execute();
  }

  async renewUpload(id: string, lease: UploadLease): Promise<boolean> {
    const result = await this.db
      .updateTable('files')
      .set({ upload_until: lease.until })
      .where('id', '=', id)
      .where('state', '=', 'uploading')
      .where('upload_owner', '=', lease.owner)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async finishUpload(scope: Scope, file: StoredFile, owner: string): Promise<boolean> {
    const result = await this.db
      .updateTable('files')
      .set({
        bytes: file.bytes,
        filename: file.filename,
        purpose: file.purpose,
        mime_type: file.mime_type,
        expires_at: file.expires_at,
        state: 'ready',
        upload_owner: null,
        upload_until: null,
      })
      .where('project_id', '=', scope.projectId)
      .where('id', '=', file.id)
      .where('state', '=', 'uploading')
      .where('upload_owner', '=', owner)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async abandonUpload(id: string, owner: string): Promise<void> {
    await this.db
      .deleteFrom('files')
      .where('id', '=', id)
      .where('state', '=', 'uploading')
      .where('upload_owner', '=', owner)
      .execute();
  }

  async getFile(scope: Scope, id: string): Promise<StoredFile | undefined> {
    const row = await this.db
      .selectFrom('files')
      .selectAll()
      .where('project_id', '=', scope.projectId)
      .where('id', '=', id)
      .where(liveFile())
      .executeTakeFirst();
    return row && rowToFile(row);
  }

  async listFiles(scope: Scope, page: PageRequest, purpose?: string): Promise<Page<StoredFile>> {
    const cursors = await resolveCursors(this.db, 'files', scope, page);
    let query = this.db.selectFrom('files').selectAll().where('project_id', '=', scope.projectId).where(liveFile());
    if (purpose !== undefined) query = query.where('purpose', '=', purpose);
    return finishPage(await applyPage(query, page, cursors).execute(), page, rowToFile);
  }

  async missingFiles(scope: Scope, ids: readonly string[]): Promise<string[]> {
    const wanted = [...new Set(ids)];
    if (wanted.length === 0) return [];
    const rows = await this.db
      .selectFrom('files')
      .select('id')
      .where('project_id', '=', scope.projectId)
      .where('id', 'in', wanted)
      .where(liveFile())
      .execute();
    const found = new Set(rows.map((row) => row.id));
    return wanted.filter((id) => !found.has(id));
  }

  async deleteFile(scope: Scope, id: string): Promise<boolean> {
    // Where statements hold the event loop, its chunks go a part at a time first (deleteChunksInParts).
    if (this.capabilities.statementsOnEventLoop && (await this.getFile(scope, id)))
      for (const vectorStoreId of await storesOfFile(this.db, scope, id))
        await deleteChunksInParts(this.db, this.capabilities.statementsOnEventLoop, scope, vectorStoreId, id);
    return this.db.transaction().execute(async (trx) => {
      const rows = await trx
        .deleteFrom('files')
        .where('project_id', '=', scope.projectId)
        .where('id', '=', id)
        .where(liveFile())
        .returning(['project_id', 'id', 'created_at', 'seq'])
        .execute();
      if (rows.length === 0) return false;
      await bury(trx, 'files', rows);
      await removeFilesFromStores(trx, [id], this.capabilities.rowLocks);
      return true;
    });
  }

  async deleteLapsedAndExpired(now: number, nowSeconds: number, limit: number): Promise<string[]> {
    // Two narrow scans on their partial indexes (files_uploading, files_expiring), then one delete by id that
    // checks each condition again, so an upload renewed meanwhile is kept.
    const lapsed = await this.db
      .selectFrom('files')
      .select('id')
      .where(sql<boolean>`state = 'uploading'`)
      .where('upload_until', '<', now)
      .limit(limit)
      .execute();
    const expired = await this.db
      .selectFrom('files')
      .select('id')
      .where('expires_at', 'is not', null)
      .where('expires_at', '<=', nowSeconds)
      .limit(limit)
      .execute();
    const ids = [...lapsed, ...expired].map((row) => row.id);
    if (ids.length === 0) return [];
    return this.db.transaction().execute(async (trx) => {
      const deleted = await trx
        .deleteFrom('files')
        .where('id', 'in', ids)
        .where((eb) =>
          eb.or([
            eb.and([eb('state', '=', 'uploading'), eb('upload_until', '<', now)]),
            eb.and([eb('state', '=', 'ready'), eb('expires_at', '<=', nowSeconds)]),
          ]),
        )
        .returning('id')
        .execute();
      const gone = deleted.map((row) => row.id);
      await removeFilesFromStores(trx, gone, this.capabilities.rowLocks);
      return gone;
    });
  }

  async rowStates(ids: readonly string[]): Promise<Map<string, 'uploading' | 'ready'>> {
    if (ids.length === 0) return new Map();
    const rows = await this.db
      .selectFrom('files')
      .select(['id', 'state'])
      .where('id', 'in', [...ids])
      .execute();
    return new Map(rows.map((row) => [row.id, row.state]));
  }
}

function rowToFile(row: Selectable<FilesTable>): StoredFile {
  return {
    id: row.id,
    created_at: row.created_at,
    bytes: row.bytes,
    filename: row.filename,
    purpose: row.purpose,
    expires_at: row.expires_at,
    mime_type: row.mime_type,
  };
}
