import { type Kysely, type SelectQueryBuilder, sql } from 'kysely';
import { invalidRequest } from '../../domain/errors.ts';
import type { Page, PageRequest, Scope } from '../store.ts';
import { buriedCursor } from './list-tombstones.ts';
import type { Database, PaginatedTable } from './schema.ts';

/**
 * Keyset pagination over (created_at, seq). Ordering by `created_at` alone is not stable: many objects share one
 * second. `seq` is the insertion counter, so ties resolve in insertion order and a page boundary never skips or
 * repeats an object. Row-value comparisons `(created_at, seq) > (?, ?)` use the (…, created_at, seq) indexes in
 * both SQLite and PostgreSQL. Threads can also be listed by `last_active_at` (index threads_by_activity), the same
 * way: the cursor object's current value of the column, then its seq.
 */
export interface CursorKey {
  sort_key: number;
  seq: number | string; // bigint columns arrive as strings from pg; they are only passed back as parameters
  /**
   * The cursor names a deleted object (its place kept by list-tombstones.ts). SQLite gives the next row the seq of
   * the newest row just deleted, so a live row with this very key was created after it: it lies on the newer side.
   */
  buried?: true;
}

export type SortColumn = 'created_at' | 'last_active_at';

export interface Cursors {
  column: SortColumn;
  after?: CursorKey;
  before?: CursorKey;
}

export interface ListParent {
  column: 'thread_id' | 'run_id' | 'vector_store_id';
  value: string;
  /**
   * Throws the parent's 404 when it does not exist. Called only when a cursor names nothing in the list: a list
   * whose parent is missing answers 404, not 400 for its cursor (lists that check the parent first leave it out).
   */
  mustExist?: () => Promise<void>;
}

/** The column holding the ids that `after` / `before` name: `id`, but a vector-store file is named by its file. */
const ID_COLUMN: Partial<Record<PaginatedTable, string>> = { vector_store_files: 'file_id' };

export async function resolveCursors(
  db: Kysely<Database>,
  table: PaginatedTable,
  scope: Scope,
  page: PageRequest,
  parent?: ListParent,
  column: SortColumn = 'created_at',
): Promise<Cursors> {
  const cursors: Cursors = { column };
  for (const name of ['after', 'before'] as const) {
    const id = page[name];
    if (id === undefined) continue;
    const parentFilter = parent ? sql`and ${sql.ref(parent.column)} = ${parent.value}` : sql``;
    const idColumn = sql.ref(ID_COLUMN[table] ?? 'id');
    const { rows } = await sql<CursorKey>`
      select ${sql.ref(column)} as sort_key, seq from ${sql.table(table)}
      where project_id = ${scope.projectId} and ${idColumn} = ${id} ${parentFilter}`.execute(db);
    // A deleted object's place still counts: a loop that deletes what it lists asks for the page after it.
    const buried = rows[0] ? undefined : await buriedCursor(db, table, scope.projectId, parent?.value, id, column);
    const key = rows[0] ?? (buried && { ...buried, buried: true as const });
    if (!key) await parent?.mustExist?.();
    if (!key)
      throw invalidRequest(
        `Invalid '${name}': '${id}' is not the id of an object in this list.`,
        name,
        'invalid_value',
      );
    cursors[name] = key;
  }
  return cursors;
}

/**
 * Adds the cursor conditions, the order and the limit (+1, to learn `has_more`) to a list query. With only `before`
 * the scan runs backwards from the cursor and `finishPage` restores the requested order.
 */
export function applyPage<DB, TB extends keyof DB, O>(
  qb: SelectQueryBuilder<DB, TB, O>,
  page: PageRequest,
  cursors: Cursors,
): SelectQueryBuilder<DB, TB, O> {
  const backwards = page.before !== undefined && page.after === undefined;
  const ascending = (page.order === 'asc') !== backwards;
  // Towards newer objects ('>'), a buried cursor's own key is included: it can only be a newer object's.
  const op = (newer: boolean, cursor: CursorKey) => sql.raw(newer ? (cursor.buried ? '>=' : '>') : '<');
  const column = sql.ref(cursors.column);
  let q = qb;
  const { after, before } = cursors;
  if (after)
    q = q.where(sql<boolean>`(${column}, seq) ${op(page.order === 'asc', after)} (${after.sort_key}, ${after.seq})`);
  if (before)
    q = q.where(sql<boolean>`(${column}, seq) ${op(page.order !== 'asc', before)} (${before.sort_key}, ${before.seq})`);
  const direction = ascending ? sql`asc` : sql`desc`;
  return q
    .orderBy(sql`${column} ${direction}`)
    .orderBy(sql`seq ${direction}`)
    .limit(page.limit + 1);
}

export function finishPage<R, T>(rows: R[], page: PageRequest, toObject: (row: R) => T): Page<T> {
  const hasMore = rows.length > page.limit;
  const kept = hasMore ? rows.slice(0, page.limit) : rows;
  if (page.before !== undefined && page.after === undefined) kept.reverse();
  return { data: kept.map(toObject), hasMore };
}
