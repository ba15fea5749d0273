import { invalidRequest } from '../domain/errors.ts';
import type { StepInclude } from './serializers.ts';

/** The one value `include[]` takes (run create, steps list and retrieve): the text of file_search results. */
export const FILE_SEARCH_RESULT_CONTENT = 'step_details.tool_calls[*].file_search.results[*].content';

/** The keys of a query that carry `include` values: `include[]`, `include`, `include[0]`, … */
const INCLUDE_KEY = /^include(\[\d*\])?$/;

/**
 * `include[]` of a query, as the official SDK sends it (`include%5B%5D=…`, repeated for several values); `include=`
 * and the indexed form `include[0]=…` (the default of `qs`, which axios-based clients use) are taken too. An unknown
 * value is a 400, as upstream.
 */
export function parseInclude(query: Record<string, unknown>): StepInclude {
  const values = Object.entries(query)
    .filter(([key]) => INCLUDE_KEY.test(key))
    .flatMap(([, value]) => value);
  for (const value of values)
    if (value !== FILE_SEARCH_RESULT_CONTENT)
      throw invalidRequest(
        `Invalid value: '${String(value)}'. Supported values are: '${FILE_SEARCH_RESULT_CONTENT}'.`,
        'include[]',
        'invalid_value',
      );
  return { fileSearchContent: values.length > 0 };
}
