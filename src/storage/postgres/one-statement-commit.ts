import { CompiledQuery } from 'kysely';
import type { CommitRows } from '../sql/capabilities.ts';

/**
 * A run's commit as one statement (PostgreSQL): the fenced update of the run, and the upserts of its steps and
 * messages in data-modifying CTEs that write only if the update matched (`where exists (select 1 from r)`); an
 * ending of a run that messages wait behind matches nothing, for a transaction to make (SqlStore.writeCommit). One
 * round trip instead of five (begin, update, one upsert per row, commit), atomic as any single statement.
 * `json_populate_recordset` types each row's values by the table's own row type, so a table's rows travel as one
 * JSON parameter and no column needs a cast.
 */
export function oneStatementCommit({ set, fence, waitingOf, steps, messages }: CommitRows): CompiledQuery {
  const parameters: unknown[] = [];
  const bind = (value: unknown) => {
    parameters.push(value);
    return `$${parameters.length}`;
  };
  const assignments = Object.entries(set).map(([column, value]) => `${quote(column)} = ${bind(value)}`);
  let where = `"project_id" = ${bind(fence.projectId)} and "id" = ${bind(fence.runId)} and "status" = ${bind(fence.status)}`;
  if (fence.lockedBy === null) where += ' and "locked_by" is null';
  else if (fence.lockedBy !== undefined) where += ` and "locked_by" = ${bind(fence.lockedBy)}`;
  if (fence.requiredAction === null) where += ' and "required_action" is null';
  else if (fence.requiredAction !== undefined) where += ` and "required_action" = ${bind(fence.requiredAction)}`;
  // An ending of a run that messages wait behind (queued-messages.ts) is left to a transaction, which releases them.
  // Told by the run's own row, not by the messages: this statement reads other rows as they were when it began,
  // while a row it updates is re-read, and re-checked, once a transaction that changed it meanwhile commits. Marking
  // the run (markWaitedBehind) is such a change, made before the messages are queued behind it.
  if (waitingOf !== undefined) where += ' and "queued_messages" = 0';
  const ctes = [`r as (update "runs" set ${assignments.join(', ')} where ${where} returning "metadata")`];
  const upsert = (table: string, rows: ReadonlyArray<Record<string, unknown>>) => {
    if (rows.length === 0) return;
    const changed = Object.keys(rows[0]!)
      .filter((c) => c !== 'id' && c !== 'project_id')
      .map((c) => `${quote(c)} = excluded.${quote(c)}`);
    ctes.push(
      `${table}_written as (${populatedInsert(table, rows, bind, 'exists (select 1 from r)')} ` +
        `on conflict ("id") do update set ${changed.join(', ')})`,
    );
  };
  upsert('run_steps', steps);
  upsert('messages', messages);
  // Read as of the statement's start: a run made to wait while this one ended may be missed, and is then claimed at
  // a worker's next poll instead (the claim, not this report, decides who runs). By thread alone, as waitingRunOf.
  const waiting =
    waitingOf === undefined
      ? 'false'
      : `exists (select 1 from "runs" where "thread_id" = ${bind(waitingOf)} and "waiting" = 1 ` +
        `and "id" <> ${bind(fence.runId)} and "status" in ('queued', 'in_progress', 'requires_action', 'cancelling'))`;
  return CompiledQuery.raw(
    `with ${ctes.join(', ')} select (select "metadata" from r) as "metadata", ${waiting} as "waiting"`,
    parameters,
  );
}

/**
 * `insert into table (columns) select columns from json_populate_recordset(…) where condition`, the rows (all with
 * the same columns, those of the first) as one JSON array, inserted in their order: a table's `seq` (its identity
 * column), which orders rows of the same `created_at` in lists, follows the array. One data-modifying CTE per row
 * would not: PostgreSQL runs a statement's CTEs in no promised order (it ran them last to first), and a run's
 * additional messages were listed, and sent to the model, reversed.
 */
export function populatedInsert(
  table: string,
  rows: ReadonlyArray<Record<string, unknown>>,
  bind: (value: unknown) => string,
  condition: string,
): string {
  const columns = Object.keys(rows[0]!).map(quote).join(', ');
  return (
    `insert into ${quote(table)} (${columns}) select ${columns} ` +
    `from json_populate_recordset(null::${quote(table)}, ${bind(JSON.stringify(rows))}::json) with ordinality ` +
    `where ${condition} order by ordinality`
  );
}

function quote(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`;
}
