import O200K_RANKS from 'gpt-tokenizer/bpeRanks/o200k_base';
import type { Chunk } from '../domain/vector-stores.ts';
import { o200kPreTokens } from './o200k.ts';
import { isSpace, textPieces } from './text-pieces.ts';

/**
 * The second stage of file_search ingestion: text to chunks of o200k_base tokens, as upstream's `static` strategy
 * (`auto` is 800 tokens with 400 of overlap): each chunk at most `max_chunk_size_tokens`, each starting exactly
 * `chunk_overlap_tokens` before the end of the previous one.
 */
export interface ChunkingStrategy {
  max_chunk_size_tokens: number;
  chunk_overlap_tokens: number;
}

/** Where a chunk lies: characters [start, end) of the text, tokens [tokenStart, tokenEnd) of its encoding. */
export interface ChunkSpan {
  index: number;
  start: number;
  end: number;
  tokenStart: number;
  tokenEnd: number;
}

/**
 * A chunk may end early, at a better place to cut, within this last share of its window: a paragraph break, else a
 * sentence's end, else a line's end, else whitespace. Chunks then end on whole sentences and words, at a cost of at
 * most 15% of the window, and a chunk always ends past the next one's start, so the overlap stays exact.
 */
export const PREFERRED_END_WINDOW = 0.15;

/** The chunks of `text`; none for empty or whitespace-only text. */
export function chunkText(text: string, strategy: ChunkingStrategy): Chunk[] {
  return chunkSpans(text, strategy).map((span, i, spans) => ({
    index: span.index,
    text: text.slice(span.start, span.end),
    tokens: span.tokenEnd - span.tokenStart,
    overlap: i === 0 ? 0 : spans[i - 1]!.end - span.start,
  }));
}

/**
 * The chunks' places in the text. A chunk's text is its token span decoded, which is the slice of the text between
 * its ends: chunks only start and end between whole characters (o200k can split a character's UTF-8 bytes across
 * two tokens; such a place is skipped, the next whole character taken), so consecutive chunks, less their overlap,
 * put the text back together.
 */
export function chunkSpans(text: string, strategy: ChunkingStrategy): ChunkSpan[] {
  const max = strategy.max_chunk_size_tokens;
  const overlap = strategy.chunk_overlap_tokens;
  if (!Number.isInteger(max) || max < 1) throw new RangeError(`max_chunk_size_tokens must be ≥ 1, not ${max}`);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap * 2 > max) {
    throw new RangeError(`chunk_overlap_tokens must be between 0 and half of max_chunk_size_tokens, not ${overlap}`);
  }
  if (text.trim().length === 0) return [];

  const offsets = tokenOffsets(text);
  const tokenCount = offsets.length - 1;
  const spans: ChunkSpan[] = [];
  let start = 0;
  for (;;) {
    const end = start + max >= tokenCount ? tokenCount : chooseEnd(text, offsets, start, max);
    spans.push({ index: spans.length, start: offsets[start]!, end: offsets[end]!, tokenStart: start, tokenEnd: end });
    if (end >= tokenCount) break;
    let next = Math.max(end - overlap, start + 1);
    while (offsets[next]! < 0) next++;
    start = next;
  }
  return spans;
}

/**
 * Where the chunk starting at token `start` ends: the best place to cut in the last PREFERRED_END_WINDOW of its
 * window (the latest of the best kind), else the window's end.
 */
function chooseEnd(text: string, offsets: readonly number[], start: number, max: number): number {
  const last = start + max;
  const first = start + Math.max(1, Math.ceil(max * (1 - PREFERRED_END_WINDOW)));
  let best = -1;
  let bestScore = 0;
  for (let position = last; position >= first; position--) {
    const offset = offsets[position]!;
    if (offset < 0) continue;
    const score = cutScore(text, offset);
    if (score > bestScore) {
      best = position;
      bestScore = score;
      if (score === PARAGRAPH_END) break;
    }
  }
  if (best !== -1) return best;
  for (let position = last; position > start; position--) if (offsets[position]! >= 0) return position;
  // No whole character within the window: only possible when the window is smaller than one character's tokens.
  let position = last + 1;
  while (offsets[position]! < 0) position++;
  return position;
}

const PARAGRAPH_END = 4;
const SENTENCE_END = 3;
const LINE_END = 2;
const WORD_END = 1;

/** How good a place to end a chunk the text offset `offset` is (0: inside a word). */
function cutScore(text: string, offset: number): number {
  const before = text.charCodeAt(offset - 1);
  const after = offset < text.length ? text.charCodeAt(offset) : 10;
  if (before === 10) return text.charCodeAt(offset - 2) === 10 ? PARAGRAPH_END : LINE_END;
  if (isSentencePunctuation(before) && (isSpace(after) || isWideSentencePunctuation(before))) return SENTENCE_END;
  if (isSpace(before) && isSentencePunctuation(text.charCodeAt(offset - 2))) return SENTENCE_END;
  if (isSpace(before) || isSpace(after)) return WORD_END;
  return 0;
}

function isSentencePunctuation(code: number): boolean {
  return code === 0x2e || code === 0x21 || code === 0x3f || isWideSentencePunctuation(code); // . ! ?
}

/** 。！？ : CJK sentences end without a following space. */
function isWideSentencePunctuation(code: number): boolean {
  return code === 0x3002 || code === 0xff01 || code === 0xff1f;
}

/**
 * The text's o200k_base encoding as the character offset of every token boundary: `offsets[i]` is where token `i`
 * starts (`offsets[tokenCount]` is the text's length), or -1 where the boundary falls inside a character whose
 * UTF-8 bytes two tokens share. Offsets come from the vocabulary's own table of token bytes (the ranks
 * gpt-tokenizer encodes with), so no token is decoded: gpt-tokenizer's decoder keeps a partial character's bytes in
 * state shared across calls.
 */
function tokenOffsets(text: string): number[] {
  const offsets: number[] = [0];
  let offset = 0;
  let pendingBytes = 0; // continuation bytes the current character still needs
  let pendingUnits = 0; // UTF-16 units it will take in the text
  for (const [segmentStart, segmentEnd] of textPieces(text)) {
    for (const tokens of o200kPreTokens(text.slice(segmentStart, segmentEnd))) {
      for (const token of tokens) {
        const piece = O200K_RANKS[token];
        if (typeof piece === 'string') {
          offset += piece.length;
        } else if (piece !== undefined) {
          for (const byte of piece) {
            if (pendingBytes > 0 && (byte & 0xc0) === 0x80) {
              if (--pendingBytes === 0) offset += pendingUnits;
            } else if (byte < 0x80) {
              offset += 1;
            } else {
              pendingBytes = byte >= 0xf0 ? 3 : byte >= 0xe0 ? 2 : 1;
              pendingUnits = byte >= 0xf0 ? 2 : 1;
            }
          }
        } else {
          throw new Error(`token ${token} is not in the o200k_base vocabulary`);
        }
        offsets.push(pendingBytes === 0 ? offset : -1);
      }
    }
    if (offset !== segmentEnd) throw new Error(`token offsets diverged from the text at ${segmentStart}`);
  }
  return offsets;
}
