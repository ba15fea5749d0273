import { clearMergeCache, DEFAULT_MERGE_CACHE_SIZE, encodeGenerator } from 'gpt-tokenizer/encoding/o200k_base';

/**
 * o200k_base encoding for the chunker (chunking.ts) and the prompt's token counts (runs/tokens.ts), a pre-token at a
 * time. User text and documents may contain strings like `<|endoftext|>`: they are text, never special tokens (the
 * library's default is to throw on them).
 *
 * gpt-tokenizer caches the tokens of pre-tokens missing from the vocabulary, up to DEFAULT_MERGE_CACHE_SIZE (100,000)
 * of them per thread, and once full evicts the oldest with `Map.keys().next()`, which in V8 steps over every entry
 * deleted since the table was last rebuilt: tens of microseconds an eviction. Text whose pre-tokens are nearly all
 * unique (base64, hex, generated identifiers) fills it within a megabyte, then encodes several times slower
 * (measured on Node 20: a base64 line of 2,000,000 characters chunked in 6 s, of 8,000,000 in 33 s; 1.8 s and 6.7 s
 * with the cache emptied in time; counted, 2,000,000 characters took 9.1 s). So it is emptied before it can fill:
 * a pre-token adds at most one entry, and only one of several tokens (in well-formed text a single token is a
 * vocabulary entry, never cached). The cache is worth keeping otherwise: prose encodes twice as fast with it.
 */

const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

/** Pre-tokens of several tokens encoded since the cache was emptied (in this thread): the most it can hold. */
let merged = 0;

/** The tokens of `text`, one array per pre-token. */
export function* o200kPreTokens(text: string): Generator<number[]> {
  for (const tokens of encodeGenerator(text, PLAIN_TEXT)) {
    if (tokens.length > 1 && ++merged >= DEFAULT_MERGE_CACHE_SIZE) {
      clearMergeCache();
      merged = 0;
    }
    yield tokens;
  }
}

/** How many tokens `text` has. */
export function countO200k(text: string): number {
  let count = 0;
  for (const tokens of o200kPreTokens(text)) count += tokens.length;
  return count;
}
