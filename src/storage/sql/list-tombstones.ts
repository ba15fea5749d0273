import { type Kysely, sql } from 'kysely';
import type { CursorKey, SortColumn } from './pagination.ts';
import type { Database, PaginatedTable } from './schema.ts';

/**
 * Where a deleted object stood in its list, so that a cursor naming it still means something. Real programs clean
 * up with `for await (const a of client.beta.assistants.list()) await client.beta.assistants.delete(a.id)`: the
 * SDK asks for each next page `after` the last object of the page before, which the loop has just deleted. Its
 * place (created_at, last_active_at for threads, seq) is kept for a day, then swept by the next deletion.
 *
 * Only objects deleted one by one are kept: the messages of a deleted thread, or the files of a deleted vector
 * store, can no longer be listed at all.
 */
const KEPT_MS = 24 * 60 * 60 * 1000;

/**
 * How many expired records one deletion sweeps at most: a deletion's own transaction stays short however many are
 * due (half a million after a bulk clean-up a day ago took a second on SQLite), and each deletion sweeps more
 * records than it adds, so the table still shrinks back.
 */
const SWEEP_LIMIT = 1000;

/** Migration 014, the same on both databases. `parent_id` is the thread or vector store of the list, else ''. */
export async function createListTombstones(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table list_tombstones (
      project_id text not null,
      list text not null,
      parent_id text not null,
      id text not null,
      created_at bigint not null,
      last_active_at bigint,
      seq bigint not null,
      deleted_at bigint not null,
      primary key (project_id, list, parent_id, id)
    )`.execute(db);
  await sql`create index list_tombstones_by_age on list_tombstones (deleted_at)`.execute(db);
}

export interface BuriedRow {
  project_id: string;
  /** The thread of a message, the vector store of a vector-store file. */
  parent_id?: string;
  id: string;
  created_at: number;
  last_active_at?: number;
  seq: number | string;
}

/** Records where `rows`, deleted from `list` by the same transaction `trx`, stood; sweeps the records past their day. */
export async function bury(
  trx: Kysely<Database>,
  list: PaginatedTable,
  rows: readonly BuriedRow[],
  now = Date.now(),
): Promise<void> {
  if (rows.length === 0) return;
  const due = trx
    .selectFrom('list_tombstones')
    .select(['project_id', 'list', 'parent_id', 'id'])
    .where('deleted_at', '<', now - KEPT_MS)
    .orderBy('deleted_at')
    .limit(SWEEP_LIMIT + rows.length)
    .$asTuple('project_id', 'list', 'parent_id', 'id');
  await trx
    .deleteFrom('list_tombstones')
    .where((eb) => eb(eb.refTuple('project_id', 'list', 'parent_id', 'id'), 'in', due))
    .execute();
  await trx
    .insertInto('list_tombstones')
    .values(
      rows.map((row) => ({
        project_id: row.project_id,
        list,
        parent_id: row.parent_id ?? '',
        id: row.id,
        created_at: row.created_at,
        last_active_at: row.last_active_at ?? null,
        seq: row.seq,
        deleted_at: now,
      })),
    )
    .onConflict((oc) =>
      oc.columns(['project_id', 'list', 'parent_id', 'id']).doUpdateSet((eb) => ({
        created_at: eb.ref('excluded.created_at'),
        last_active_at: eb.ref('excluded.last_active_at'),
        seq: eb.ref('excluded.seq'),
        deleted_at: eb.ref('excluded.deleted_at'),
      })),
    )
    .execute();
}

/**
 * Deletes the object `id` of a top-level list and records where it stood; false when there was none. `alsoForget`
 * removes what named it, in the same transaction.
 */
export function deleteAndBury(
  db: Kysely<Database>,
  list: 'assistants' | 'vector_stores',
  projectId: string,
  id: string,
  alsoForget?: (trx: Kysely<Database>) => Promise<void>,
): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const rows = await trx
      .deleteFrom(list)
      .where('project_id', '=', projectId)
      .where('id', '=', id)
      .returning(['project_id', 'id', 'created_at', 'seq'])
      .execute();
    await bury(trx, list, rows);
    if (rows.length > 0) await alsoForget?.(trx);
    return rows.length > 0;
  });
}

/** Where the deleted object `id` stood in the list, if it was deleted within the day. */
export async function buriedCursor(
  db: Kysely<Database>,
  list: PaginatedTable,
  projectId: string,
  parentId: string | undefined,
  id: string,
  column: SortColumn,
): Promise<CursorKey | undefined> {
  const row = await db
    .selectFrom('list_tombstones')
    .select(['created_at', 'last_active_at', 'seq'])
    .where('project_id', '=', projectId)
    .where('list', '=', list)
    .where('parent_id', '=', parentId ?? '')
    .where('id', '=', id)
    .executeTakeFirst();
  if (!row) return undefined;
  const sortKey = column === 'last_active_at' ? (row.last_active_at ?? row.created_at) : row.created_at;
  return { sort_key: Number(sortKey), seq: row.seq };
}
