import { type Compilable, CompiledQuery, type QueryResult } from 'kysely';
import type { QueryRunner } from './capabilities.ts';

const MARK = '\u0000assistd-arg:';

/** Stands for the `i`-th argument while a query's shape is compiled. */
export type Arg = (i: number) => string;
const arg: Arg = (i) => `${MARK}${i}`;

interface Shape {
  sql: string;
  /** Per compiled parameter: the index of the argument it takes, or the constant it always is. */
  slots: Array<number | { value: unknown }>;
}

/**
 * The run path's queries, compiled once per shape. Kysely builds a query's tree of frozen nodes and compiles it to
 * SQL on every call, which costs more than running the small indexed queries of a run on SQLite (bench/README.md):
 * here a shape is built once with placeholder arguments (`arg(i)`) and compiled, and each call only fills its
 * arguments into the parameter list. The SQL text is the same each time, so SQLite's statement cache hits too.
 *
 * A shape must not depend on the arguments (build a different key for a different shape), and a placeholder must
 * reach the SQL as a bound parameter, never inlined (Kysely binds every value it is given).
 */
export class CompiledQueries {
  private readonly shapes = new Map<string, Shape>();

  execute<R>(
    db: QueryRunner,
    key: string,
    build: (arg: Arg) => Compilable<R>,
    args: readonly unknown[],
  ): Promise<QueryResult<R>> {
    let shape = this.shapes.get(key);
    if (!shape) {
      const compiled = build(arg).compile();
      shape = {
        sql: compiled.sql,
        slots: compiled.parameters.map((p) =>
          typeof p === 'string' && p.startsWith(MARK) ? Number(p.slice(MARK.length)) : { value: p },
        ),
      };
      this.shapes.set(key, shape);
    }
    const parameters = shape.slots.map((slot) => (typeof slot === 'number' ? args[slot] : slot.value));
    return db.executeQuery<R>(CompiledQuery.raw(shape.sql, parameters));
  }

  /** The rows of a query run with `execute`. */
  async rows<R>(
    db: QueryRunner,
    key: string,
    build: (arg: Arg) => Compilable<R>,
    args: readonly unknown[],
  ): Promise<R[]> {
    return (await this.execute(db, key, build, args)).rows;
  }
}

/** Placeholders for every field of a row, in the order of its keys, and the row's values in the same order. */
export function rowArgs<T extends object>(row: T, first = 0): { marked: T; values: unknown[]; key: string } {
  const keys = Object.keys(row) as Array<keyof T & string>;
  const marked = Object.fromEntries(keys.map((k, i) => [k, arg(first + i)])) as T;
  return { marked, values: keys.map((k) => row[k]), key: keys.join(',') };
}
