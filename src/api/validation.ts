import type { z } from 'zod';
import { ApiError } from '../domain/errors.ts';

/**
 * Request validation with the official API's error wording. Zod checks the shape; this module turns its first issue
 * into the error upstream would give, e.g.
 *   Unknown parameter: 'foo'.                                      (param foo, code unknown_parameter)
 *   Missing required parameter: 'model'.                           (code missing_required_parameter)
 *   Invalid type for 'temperature': expected a decimal, but got a string instead.   (code invalid_type)
 *   Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead.
 *   Invalid value: 'robot'. Supported values are: 'user' and 'assistant'.           (code invalid_value)
 * `param` is the path in the request body, like `tools[0].function.name`.
 */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  // An empty list is PHP's empty parameters: openai-php sends `$client->threads()->create([])` as `[]`.
  if (body === undefined || body === null || (Array.isArray(body) && body.length === 0)) body = {};
  if (typeof body !== 'object' || Array.isArray(body))
    throw new ApiError(400, `Invalid request body: expected a JSON object, but got ${describeValue(body)} instead.`, {
      code: 'invalid_type',
    });
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  throw issueToError(pickIssue(result.error.issues), body);
}

/** The message an integer parameter's type issue carries (schemas/common.ts `integer`): worded as an integer. */
export const INTEGER_EXPECTED = 'expected an integer';

type Issue = z.core.$ZodIssue;
type Path = readonly PropertyKey[];

/** Upstream reports one problem at a time; an unknown field is the most useful one to report first. */
function pickIssue(issues: readonly Issue[]): Issue {
  return issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
}

function issueToError(issue: Issue, root: unknown, base: Path = []): ApiError {
  const path = [...base, ...issue.path];
  const param = formatPath(path);
  const value = valueAt(root, path);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const key = formatPath([...path, issue.keys[0]!]);
      return new ApiError(400, `Unknown parameter: '${key}'.`, { param: key, code: 'unknown_parameter' });
    }
    case 'invalid_type': {
      if (value === undefined) return missing(param);
      const expected = issue.message === INTEGER_EXPECTED ? 'int' : issue.expected;
      return new ApiError(
        400,
        `Invalid type for '${param}': expected ${describeExpected(expected)}, but got ${describeValue(value)} instead.`,
        { param, code: 'invalid_type' },
      );
    }
    case 'invalid_union':
      return unionToError(issue, root, path);
    case 'invalid_value':
      if (value === undefined) return missing(param);
      return new ApiError(400, `Invalid value: ${quote(value)}. Supported values are: ${listValues(issue.values)}.`, {
        param,
        code: 'invalid_value',
      });
    case 'too_big':
    case 'too_small':
      return boundToError(issue, param, value);
    case 'invalid_format':
      return new ApiError(
        400,
        issue.format === 'regex' && 'pattern' in issue
          ? `Invalid '${param}': string does not match pattern. Expected a string that matches the pattern '${String(issue.pattern).replace(/^\/(.*)\/[a-z]*$/, '$1')}'.`
          : `Invalid '${param}': expected a valid ${issue.format}.`,
        { param, code: 'invalid_value' },
      );
    case 'custom': {
      const code = typeof issue.params?.['code'] === 'string' ? (issue.params['code'] as string) : 'invalid_value';
      const message = issue.params?.['prefixParam'] ? `Invalid '${param}': ${issue.message}` : issue.message;
      // An issue of the whole body (e.g. a choice between two fields) names no parameter.
      return new ApiError(400, message, { param: param === '' ? null : param, code });
    }
    default:
      return new ApiError(400, `Invalid '${param}': ${issue.message}.`, { param, code: 'invalid_value' });
  }
}

function missing(param: string): ApiError {
  return new ApiError(400, `Missing required parameter: '${param}'.`, { param, code: 'missing_required_parameter' });
}

/**
 * A union failed. If one branch got past the type check (its issues lie deeper than the union itself, or concern
 * the discriminator), that branch is what the client meant: report its issue. Otherwise the value had none of the
 * accepted types.
 */
function unionToError(issue: z.core.$ZodIssueInvalidUnion, root: unknown, path: Path): ApiError {
  const param = formatPath(path);
  const { note, discriminator } = issue as { note?: string; discriminator?: string };
  if (note === 'No matching discriminator' && discriminator !== undefined) {
    // Zod already puts the discriminator at the end of the issue's path.
    const discPath = path.at(-1) === discriminator ? path : [...path, discriminator];
    const value = valueAt(root, discPath);
    if (value === undefined)
      return new ApiError(400, `Missing required parameter: '${formatPath(discPath)}'.`, {
        param: formatPath(discPath),
        code: 'missing_required_parameter',
      });
    const options = (issue as { options?: unknown[] }).options ?? [];
    return new ApiError(400, `Invalid value: ${quote(value)}. Supported values are: ${listValues(options)}.`, {
      param: formatPath(discPath),
      code: 'invalid_value',
    });
  }
  const branches = issue.errors.filter((branch) => branch.length > 0);
  // A branch whose problems lie inside the value (an object of the right kind, missing a field) before one that
  // refused the value itself (a string not among an enum's values).
  const meant =
    branches.find((branch) => branch.some((i) => i.path.length > 0)) ??
    branches.find((branch) => branch.some((i) => i.code !== 'invalid_type'));
  if (meant) return issueToError(pickIssue(meant), root, path);
  const expected = branches.flatMap((branch) =>
    branch.map((i) => (i.code === 'invalid_type' ? describeExpected(i.expected) : '')).filter(Boolean),
  );
  const unique = [...new Set(expected)];
  const value = valueAt(root, path);
  if (value === undefined)
    return new ApiError(400, `Missing required parameter: '${param}'.`, { param, code: 'missing_required_parameter' });
  return new ApiError(
    400,
    `Invalid type for '${param}': expected one of ${joinWords(unique, 'or')}, but got ${describeValue(value)} instead.`,
    { param, code: 'invalid_type' },
  );
}

function boundToError(
  issue: z.core.$ZodIssueTooBig | z.core.$ZodIssueTooSmall,
  param: string,
  value: unknown,
): ApiError {
  const big = issue.code === 'too_big';
  const limit = Number(big ? (issue as z.core.$ZodIssueTooBig).maximum : (issue as z.core.$ZodIssueTooSmall).minimum);
  switch (issue.origin) {
    case 'string':
    case 'array': {
      const noun = issue.origin;
      const a = noun === 'array' ? 'an' : 'a';
      const length = typeof value === 'string' ? characters(value) : Array.isArray(value) ? value.length : 0;
      if (!big && length === 0)
        return new ApiError(
          400,
          `Invalid '${param}': empty ${noun}. Expected ${a} ${noun} with minimum length ${limit}, but got an empty ${noun} instead.`,
          { param, code: `empty_${noun}` },
        );
      return new ApiError(
        400,
        `Invalid '${param}': ${noun} too ${big ? 'long' : 'short'}. Expected ${a} ${noun} with ${big ? 'maximum' : 'minimum'} length ${limit}, but got ${a} ${noun} with length ${length} instead.`,
        { param, code: `${noun}_${big ? 'above_max' : 'below_min'}_length` },
      );
    }
    default:
      // Integer parameters use zod's bounds; decimal ones (temperature, top_p…) use schemas/common.ts `decimal`.
      return new ApiError(
        400,
        `Invalid '${param}': integer ${big ? 'above maximum' : 'below minimum'} value. Expected a value ${big ? '<=' : '>='} ${limit}, but got ${String(value)} instead.`,
        { param, code: `integer_${big ? 'above_max' : 'below_min'}_value` },
      );
  }
}

export function formatPath(path: Path): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out;
}

function valueAt(root: unknown, path: Path): unknown {
  let current: unknown = root;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

const EXPECTED_WORDS: Record<string, string> = {
  string: 'a string',
  number: 'a decimal',
  int: 'an integer',
  boolean: 'a boolean',
  object: 'an object',
  record: 'an object',
  array: 'an array',
  null: 'null',
};

function describeExpected(expected: string): string {
  return EXPECTED_WORDS[expected] ?? expected;
}

export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return 'a number too large';
    return Number.isInteger(value) ? 'an integer' : 'a decimal';
  }
  if (typeof value === 'string') return 'a string';
  if (typeof value === 'boolean') return 'a boolean';
  return 'an object';
}

function quote(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : (JSON.stringify(value) ?? 'undefined');
}

function listValues(values: readonly unknown[]): string {
  return joinWords(values.map(quote), 'and');
}

function joinWords(words: readonly string[], conjunction: 'and' | 'or'): string {
  if (words.length <= 1) return words[0] ?? '';
  if (words.length === 2) return `${words[0]} ${conjunction} ${words[1]}`;
  return `${words.slice(0, -1).join(', ')}, ${conjunction} ${words.at(-1)}`;
}

/**
 * A string's length in characters as upstream (Python) and zod's `max` count them: code points, not UTF-16 units —
 * a surrogate pair is one, a lone surrogate (JSON's `\udc00`) one too.
 */
export function characters(text: string): number {
  let pairs = 0;
  for (let i = 0; i < text.length - 1; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0xd800 || unit > 0xdbff) continue;
    const next = text.charCodeAt(i + 1);
    if (next >= 0xdc00 && next <= 0xdfff) {
      pairs++;
      i++;
    }
  }
  return text.length - pairs;
}
