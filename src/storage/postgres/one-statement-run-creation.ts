import { CompiledQuery } from 'kysely';
import type { RunCreationRows } from '../sql/capabilities.ts';
import { populatedInsert } from './one-statement-commit.ts';

/**
 * A run's creation on an existing thread as one statement (PostgreSQL): lock the thread row (`for no key update`,
 * as SqlStore's transaction does), look for an active run, and insert the additional messages and the run, and move
 * the thread's `last_active_at` (as touchThread does), only if the thread exists and has none. One round trip
 * instead of a transaction's five or more.
 *
 * A creation that waited for the thread's lock sees the thread row as it is now but the runs as they were when it
 * began; a run inserted meanwhile is caught by the unique index `runs_one_active_per_thread`, whose violation
 * SqlStore turns into upstream's error, as it does for the transaction.
 */
export function oneStatementRunCreation({ projectId, threadId, messages, run }: RunCreationRows): CompiledQuery {
  const parameters: unknown[] = [];
  const bind = (value: unknown) => {
    parameters.push(value);
    return `$${parameters.length}`;
  };
  const thread = bind(threadId);
  const project = bind(projectId);
  const ctes = [
    `t as (select 1 from "threads" where "project_id" = ${project} and "id" = ${thread} for no key update)`,
    `a as (select "id" from "runs" where "thread_id" = ${thread} ` +
      `and "status" in ('queued', 'in_progress', 'requires_action', 'cancelling') limit 1)`,
  ];
  const allowed = 'exists (select 1 from t) and not exists (select 1 from a)';
  if (messages.length > 0) ctes.push(`m as (${populatedInsert('messages', messages, bind, allowed)})`);
  ctes.push(`r as (${populatedInsert('runs', [run], bind, allowed)} returning 1)`);
  const at = bind(run['created_at']);
  ctes.push(
    `u as (update "threads" set "last_active_at" = ${at} where "project_id" = ${project} and "id" = ${thread} ` +
      `and "last_active_at" < ${at} and ${allowed})`,
  );
  return CompiledQuery.raw(
    `with ${ctes.join(', ')} select exists (select 1 from t) as "thread", (select "id" from a) as "active", ` +
      `(select count(*)::int from r) as "inserted"`,
    parameters,
  );
}
