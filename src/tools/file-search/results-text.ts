import { citationMarker } from './citations.ts';

/**
 * What the model reads of a file_search call: its results, best first, each under its citation marker, within a
 * token budget. Results are dropped from the lowest-ranked up until the text fits; if even the best one does not
 * fit alone, its text is cut to fit, so the model always sees something of what was found.
 */

export interface ResultForModel {
  file_name: string;
  text: string;
}

export interface ResultsTextInput {
  /** The call's position among the run's file_search calls: the first number of its markers. */
  turn: number;
  queries: readonly string[];
  /** Best first. */
  results: readonly ResultForModel[];
  budgetTokens: number;
  countTokens: (text: string) => number;
}

export interface ResultsText {
  text: string;
  /** How many of the results, from the first, the text shows (the others were over the budget). */
  shown: number;
}

function header(turn: number, queries: readonly string[], count: number, example: string): string {
  return (
    `file_search call ${turn}: ${count} result${count === 1 ? '' : 's'} for ${JSON.stringify(queries)}, best first. ` +
    `Each result follows its marker. When you use a result, cite it by writing its marker exactly as given ` +
    `(e.g. ${example}) right after the sentence it supports.`
  );
}

function entry(turn: number, index: number, result: ResultForModel): string {
  return `\n\n${citationMarker(turn, index, result.file_name)}\n${result.text}`;
}

function omitted(count: number): string {
  return `\n\n(${count} lower-ranked result${count === 1 ? ' was' : 's were'} left out to fit the context window.)`;
}

export function resultsText({ turn, queries, results, budgetTokens, countTokens }: ResultsTextInput): ResultsText {
  if (results.length === 0)
    return { text: `file_search call ${turn}: nothing in the files matched ${JSON.stringify(queries)}.`, shown: 0 };
  const example = citationMarker(turn, 0, results[0]!.file_name);
  const build = (shown: number, cut?: string) => {
    let text = header(turn, queries, shown, example);
    for (let i = 0; i < shown; i++)
      text += entry(turn, i, i === 0 && cut !== undefined ? { ...results[0]!, text: cut } : results[i]!);
    if (shown < results.length) text += omitted(results.length - shown);
    return text;
  };

  // Sum the entries' counts to find how many fit, then check the whole text (tokens at the joins may differ).
  let shown = 0;
  let total = countTokens(build(0));
  while (shown < results.length) {
    const more = countTokens(entry(turn, shown, results[shown]!));
    if (total + more > budgetTokens) break;
    total += more;
    shown++;
  }
  while (shown > 0 && countTokens(build(shown)) > budgetTokens) shown--;
  if (shown > 0) return { text: build(shown), shown };

  // Not even the best result fits: the longest prefix of its text that does (binary search on characters).
  const full = results[0]!.text;
  let low = 0;
  let high = full.length;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (countTokens(build(1, `${full.slice(0, mid)}…`)) <= budgetTokens) low = mid;
    else high = mid - 1;
  }
  const unit = full.charCodeAt(low - 1);
  if (unit >= 0xd800 && unit <= 0xdbff) low--; // never half of a surrogate pair
  return { text: build(1, `${full.slice(0, low)}…`), shown: 1 };
}
