/**
 * What the keyword index sees of a text, decided once here for both databases: SQLite's FTS5 table and
 * PostgreSQL's `tsvector` are both fed `keywordText(chunk)`, and a query is reduced to `queryTerms(text)`, so the
 * two indexes hold the same words and no user text ever reaches either query syntax.
 *
 * - Words are runs of letters, digits and combining marks, after NFKC (full-width forms, ligatures) and lowercasing.
 *   Everything else — quotes, operators, brackets, backslashes, emoji — only separates words.
 * - Diacritics on Latin letters are folded (`café` → `cafe`), as FTS5's unicode61 tokenizer would; here rather than
 *   in the tokenizer because PostgreSQL's parsers do not fold them, and the two databases must agree.
 * - Chinese, Japanese and Korean are written without spaces between words, which neither unicode61 nor
 *   PostgreSQL's parser split. A run of those characters is indexed as its overlapping character bigrams (`中文搜索`
 *   → `中文 文搜 搜索`), the usual keyword-search treatment of CJK (Lucene's CJKBigramFilter), and also as single
 *   characters, so that a one-character query (`猫`) finds the words it is part of. A query's run of two or more
 *   characters is looked up by its bigrams only; a lone character by itself.
 * - Words longer than MAX_WORD_LENGTH characters (hashes, base64, minified code) are left out on both sides:
 *   PostgreSQL ignores words over 2047 bytes anyway, and nobody searches for them.
 * - English words (ASCII letters only) are stemmed here with Snowball's English stemmer (Porter2: `skies` and `sky`
 *   → `sky`, `lying` → `lie`), and neither database stems: FTS5's `porter` tokenizer (the original Porter
 *   algorithm) and PostgreSQL's `english` config (Snowball) stemmed differently, so that `skies` found `sky` on one
 *   database only, and on SQLite `news` found `new` and `generous` found `general`. A word with a digit or a
 *   non-ASCII letter is kept whole: the stemmer is for English letters (it writes its own marker for a `y` as `3`,
 *   so a word with a 3 in it would come out changed), and words longer than MAX_STEMMED_LENGTH letters are kept
 *   whole too (a stem costs about a millisecond at 256 letters, and such words are not English ones). Stems are
 *   memoised: a text's words repeat, and stemming each anew made indexing twelve times slower.
 * - English stop words (PostgreSQL's english.stop) are neither indexed nor searched: `the` or `of` never makes every
 *   chunk a hit, and the databases' ranking counts the same words.
 */

import stem from 'wink-porter2-stemmer';

/** The Han, Hiragana, Katakana and Hangul scripts, with the prolonged-sound mark (ー, script Common). */
const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}\u30fc]/u;
const CJK_RUNS = /([\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}\u30fc]+)/u;
const WORD = /[\p{L}\p{N}\p{M}]+/gu;
/** A combining mark of the basic block right after a Latin letter, once decomposed (NFD). */
const LATIN_DIACRITIC = /([a-z])[\u0300-\u036f]+/g;

/** Longer words are neither indexed nor searched (a SHA-256 in hex, 64 characters, still is). */
export const MAX_WORD_LENGTH = 256;

/** More distinct terms than this in one query are dropped (the first ones are kept): a bound on the query's cost. */
export const MAX_QUERY_TERMS = 64;

/** PostgreSQL's tsearch_data/english.stop. */
const STOP_WORDS = new Set(
  (
    'i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself ' +
    'it its itself they them their theirs themselves what which who whom this that these those am is are was were ' +
    'be been being have has had having do does did doing a an the and but if or because as until while of at by ' +
    'for with about against between into through during before after above below to from up down in out on off ' +
    'over under again further then once here there when where why how all any both each few more most other some ' +
    'such no nor not only own same so than too very s t can will just don should now'
  ).split(' '),
);

/** The words of `text`, normalised, in order. */
function words(text: string): string[] {
  const normalised = text.normalize('NFKC').toLowerCase().normalize('NFD').replace(LATIN_DIACRITIC, '$1');
  return (normalised.normalize('NFC').match(WORD) ?? []).filter((word) => word.length <= MAX_WORD_LENGTH);
}

const ENGLISH = /^[a-z]+$/;
/** Longer words are not stemmed. */
const MAX_STEMMED_LENGTH = 40;
/** The stems of the words seen last, at most MAX_STEMS (then it starts again). */
const stems = new Map<string, string>();
const MAX_STEMS = 100_000;

/** The term `part` (a word's part without CJK) is indexed and searched as, or undefined for a stop word. */
function term(part: string): string | undefined {
  if (STOP_WORDS.has(part)) return undefined;
  if (part.length > MAX_STEMMED_LENGTH || !ENGLISH.test(part)) return part;
  let stemmed = stems.get(part);
  if (stemmed === undefined) {
    stemmed = stem(part);
    if (stems.size >= MAX_STEMS) stems.clear();
    stems.set(part, stemmed);
  }
  return stemmed;
}

/** A word split into its CJK runs and the rest, e.g. `iphone手机壳` → `iphone`, `手机壳`. */
function segments(word: string): string[] {
  if (!CJK.test(word)) return [word];
  return word.split(CJK_RUNS).filter((part) => part !== '');
}

function bigrams(run: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < run.length; i++) out.push(run[i]! + run[i + 1]!);
  return out;
}

/** The text to index for `text`: its terms separated by spaces (stemmed, CJK runs as characters and bigrams). */
export function keywordText(text: string): string {
  const out: string[] = [];
  for (const word of words(text))
    for (const part of segments(word)) {
      if (!CJK.test(part)) {
        const indexed = term(part);
        if (indexed !== undefined) out.push(indexed);
        continue;
      }
      const chars = [...part];
      out.push(...chars, ...bigrams(chars));
    }
  return out.join(' ');
}

/**
 * The distinct terms of a query, stemmed as keywordText stems, in order of first appearance, without stop words, at most
 * MAX_QUERY_TERMS: each is letters, digits and marks only, so it can be quoted into FTS5's or PostgreSQL's query
 * syntax as a plain word. Empty when nothing searchable is left (a search then finds nothing).
 */
export function queryTerms(text: string): string[] {
  const terms = new Set<string>();
  for (const word of words(text))
    for (const part of segments(word)) {
      if (!CJK.test(part)) {
        const searched = term(part);
        if (searched !== undefined) terms.add(searched);
        continue;
      }
      const chars = [...part];
      for (const term of chars.length === 1 ? chars : bigrams(chars)) terms.add(term);
    }
  return [...terms].slice(0, MAX_QUERY_TERMS);
}
