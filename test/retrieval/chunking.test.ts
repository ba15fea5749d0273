import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { clearMergeCache, countTokens, decode, encode } from 'gpt-tokenizer/encoding/o200k_base';
import { AUTO_CHUNKING, MAX_CHUNK_TOKENS, MIN_CHUNK_TOKENS } from '../../src/domain/vector-stores.ts';
import { type ChunkingStrategy, type ChunkSpan, chunkSpans, chunkText } from '../../src/retrieval/chunking.ts';

const PLAIN = { disallowedSpecial: new Set<string>() };
const AUTO: ChunkingStrategy = AUTO_CHUNKING.static;

/** Deterministic prose: sentences of varied words, a paragraph break every `sentencesPerParagraph` sentences. */
function prose(characters: number, sentencesPerParagraph = 6, separator = ' '): string {
  const words = [
    ...['retrieval', 'index', 'vector', 'store', 'chunk', 'token', 'window', 'overlap', 'document', 'query'],
    ...['the', 'a', 'of', 'and', 'with', 'into', 'over', 'under', 'every', 'some', 'café', 'naïve', 'résumé'],
  ];
  const ends = ['.', '!', '?', '.'];
  const parts: string[] = [];
  let length = 0;
  let seed = 7;
  for (let sentence = 0; length < characters; sentence++) {
    const count = 6 + (sentence % 11);
    const chosen: string[] = [];
    for (let i = 0; i < count; i++) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      chosen.push(words[seed % words.length]!);
    }
    const first = chosen[0]!;
    chosen[0] = first[0]!.toUpperCase() + first.slice(1);
    const end = (sentence + 1) % sentencesPerParagraph === 0 ? '\n\n' : separator;
    const text = chosen.join(' ') + ends[sentence % ends.length]! + end;
    parts.push(text);
    length += text.length;
  }
  return parts.join('');
}

/** Everything chunking promises, checked against gpt-tokenizer's own encoding of the whole text. */
function assertChunking(text: string, strategy: ChunkingStrategy): ChunkSpan[] {
  const max = strategy.max_chunk_size_tokens;
  const overlap = strategy.chunk_overlap_tokens;
  const spans = chunkSpans(text, strategy);
  const chunks = chunkText(text, strategy);
  assert.equal(chunks.length, spans.length);
  const tokens = encode(text, PLAIN);
  assert.ok(spans.length > 0);
  assert.equal(spans[0]!.tokenStart, 0);
  assert.equal(spans.at(-1)!.tokenEnd, tokens.length, 'the chunks cover the whole text');
  let reassembled = '';
  spans.forEach((span, i) => {
    const chunk = chunks[i]!;
    assert.equal(chunk.index, i, 'indices count from 0, in order');
    assert.equal(span.index, i);
    assert.equal(chunk.tokens, span.tokenEnd - span.tokenStart);
    assert.ok(chunk.tokens <= max, `chunk ${i} has ${chunk.tokens} tokens, more than ${max}`);
    assert.ok(chunk.tokens > 0);
    assert.equal(chunk.text, text.slice(span.start, span.end));
    assert.equal(chunk.text, decode(tokens.slice(span.tokenStart, span.tokenEnd)), `chunk ${i} is its token span`);
    assert.ok(!chunk.text.includes('\ufffd'), 'no chunk ends inside a character');
    if (i === 0) {
      assert.equal(chunk.overlap, 0);
      reassembled = chunk.text;
    } else {
      const previous = spans[i - 1]!;
      assert.equal(span.tokenStart, previous.tokenEnd - overlap, `chunks ${i - 1} and ${i} overlap by ${overlap}`);
      assert.equal(chunk.overlap, previous.end - span.start, `chunk ${i} says how many characters it repeats`);
      reassembled += chunk.text.slice(chunk.overlap);
    }
  });
  assert.equal(reassembled, text, 'the chunks, less their overlaps, are the text');
  return spans;
}

describe('chunkText', () => {
  it('makes no chunk of empty or whitespace-only text', () => {
    assert.deepEqual(chunkText('', AUTO), []);
    assert.deepEqual(chunkText(' \n\t \r\n \u00a0 ', AUTO), []);
  });

  it('keeps a short text as one chunk, its tokens counted with o200k_base', () => {
    const text = 'A short note about the vector store.';
    assert.deepEqual(chunkText(text, AUTO), [{ index: 0, text, tokens: countTokens(text), overlap: 0 }]);
  });

  it('cuts long prose into chunks of at most 800 tokens overlapping by exactly 400 (auto)', () => {
    const text = prose(60_000);
    const spans = assertChunking(text, AUTO);
    const tokenCount = encode(text, PLAIN).length;
    // A chunk ends early by at most 15% of 800 tokens, so each advances by 400 to 400 - 120 tokens.
    assert.ok(spans.length >= Math.ceil((tokenCount - 800) / 400) + 1);
    assert.ok(spans.length <= Math.ceil((tokenCount - 800) / 280) + 1);
    // Re-encoded alone, an overlap has its 400 tokens.
    for (let i = 1; i < spans.length; i++) {
      assert.equal(countTokens(text.slice(spans[i]!.start, spans[i - 1]!.end), PLAIN), 400);
    }
  });

  for (const strategy of [
    { max_chunk_size_tokens: MIN_CHUNK_TOKENS, chunk_overlap_tokens: 0 },
    { max_chunk_size_tokens: MIN_CHUNK_TOKENS, chunk_overlap_tokens: MIN_CHUNK_TOKENS / 2 },
    { max_chunk_size_tokens: 333, chunk_overlap_tokens: 111 },
    { max_chunk_size_tokens: MAX_CHUNK_TOKENS, chunk_overlap_tokens: 0 },
    { max_chunk_size_tokens: MAX_CHUNK_TOKENS, chunk_overlap_tokens: MAX_CHUNK_TOKENS / 2 },
  ]) {
    const { max_chunk_size_tokens: max, chunk_overlap_tokens: overlap } = strategy;
    it(`honours the static bounds: ${max} tokens, ${overlap} of overlap`, () => {
      assertChunking(prose(120_000), strategy);
    });
  }

  it('refuses strategies outside the rules (an overlap above half a chunk, an empty chunk)', () => {
    assert.throws(() => chunkText('text', { max_chunk_size_tokens: 800, chunk_overlap_tokens: 401 }), RangeError);
    assert.throws(() => chunkText('text', { max_chunk_size_tokens: 0, chunk_overlap_tokens: 0 }), RangeError);
    assert.throws(() => chunkText('text', { max_chunk_size_tokens: 800, chunk_overlap_tokens: -1 }), RangeError);
  });

  it('ends chunks at paragraph breaks when one is near the end of the window', () => {
    // A paragraph every 3 sentences: about every 40 tokens, so always one in the last 15% (120 tokens) of 800.
    const text = prose(40_000, 3);
    const chunks = chunkText(text, AUTO);
    for (const chunk of chunks.slice(0, -1))
      assert.ok(chunk.text.endsWith('\n\n'), JSON.stringify(chunk.text.slice(-30)));
    assert.ok(
      chunks.slice(0, -1).some((chunk) => chunk.tokens < 800),
      'some chunks ended early to do so',
    );
  });

  it('else at the end of a sentence', () => {
    const text = prose(40_000, Number.POSITIVE_INFINITY);
    assert.ok(!text.includes('\n'));
    for (const chunk of chunkText(text, AUTO).slice(0, -1)) assert.match(chunk.text, /[.!?]$/);
  });

  it('else at the end of a line', () => {
    const text = prose(40_000, Number.POSITIVE_INFINITY, '\n').replace(/[.!?]/g, '');
    for (const chunk of chunkText(text, AUTO).slice(0, -1)) assert.match(chunk.text, /\n$/);
  });

  it('else between words', () => {
    const text = prose(40_000, Number.POSITIVE_INFINITY).replace(/[.!?]/g, '');
    const spans = chunkSpans(text, AUTO);
    for (const span of spans.slice(0, -1)) {
      assert.ok(
        text[span.end] === ' ' || text[span.end - 1] === ' ',
        JSON.stringify(text.slice(span.end - 10, span.end + 10)),
      );
    }
  });

  it('and at the window itself when there is nowhere better', () => {
    const text = 'x'.repeat(100_000);
    const chunks = chunkText(text, AUTO);
    for (const chunk of chunks.slice(0, -1)) assert.equal(chunk.tokens, 800);
  });

  it('never cuts inside a character o200k splits across tokens (CJK, emoji, Arabic)', () => {
    const text = '中文字符测试。日本語のテキスト！😀 emoji ✨ mixed العربية text. 👩‍👩‍👧‍👦 family\n'.repeat(400);
    assertChunking(text, { max_chunk_size_tokens: 100, chunk_overlap_tokens: 50 });
    assertChunking(text, AUTO);
  });

  it('takes special-token strings as plain text', () => {
    const text = `${prose(5_000)} <|endoftext|> <|im_start|> ${prose(5_000)}`;
    assertChunking(text, { max_chunk_size_tokens: 200, chunk_overlap_tokens: 20 });
  });

  it('chunks a megabyte without whitespace, in bounded time (BPE is quadratic in one word)', {
    timeout: 60_000,
  }, () => {
    for (const text of [
      'a'.repeat(1_000_000),
      'Q'.repeat(1_000_000),
      `${' '.repeat(999_999)}x`,
      `${'x'.repeat(999_998)}🚀`,
    ]) {
      const chunks = chunkText(text, AUTO);
      assert.ok(chunks.length > 1);
      let reassembled = chunks[0]!.text;
      for (const chunk of chunks) assert.ok(chunk.tokens <= 800);
      const spans = chunkSpans(text, AUTO);
      for (let i = 1; i < spans.length; i++) reassembled += chunks[i]!.text.slice(spans[i - 1]!.end - spans[i]!.start);
      assert.equal(reassembled, text);
    }
    // CJK without punctuation: every character a letter, so the whole text is one pre-tokenised word.
    let cjk = '';
    for (let i = 0; i < 200_000; i++) cjk += String.fromCharCode(0x4e00 + ((i * 7919) % 20_000));
    assert.ok(chunkText(cjk, AUTO).every((chunk) => chunk.tokens <= 800));
  });

  it('chunks a long line of random base64, whose pre-tokens are nearly all unique', () => {
    // 1,200,000 characters: past the 100,000 pre-tokens missing from the vocabulary that gpt-tokenizer caches.
    const blocks: Buffer[] = [];
    for (let i = 0; i < 28_200; i++) blocks.push(createHash('sha256').update(`block ${i}`).digest());
    const text = Buffer.concat(blocks).toString('base64').slice(0, 1_200_000);
    const spans = chunkSpans(text, AUTO);
    assert.equal(spans[0]!.start, 0);
    assert.equal(spans.at(-1)!.end, text.length, 'the chunks cover the whole text');
    let reassembled = text.slice(spans[0]!.start, spans[0]!.end);
    for (let i = 0; i < spans.length; i++) {
      const span = spans[i]!;
      assert.ok(span.tokenEnd - span.tokenStart <= 800, `chunk ${i} has ${span.tokenEnd - span.tokenStart} tokens`);
      if (i === spans.length - 1) break;
      // No better place to cut in a line of base64: every chunk but the last is a full window.
      assert.equal(span.tokenEnd - span.tokenStart, 800, `chunk ${i}`);
      const next = spans[i + 1]!;
      assert.equal(next.tokenStart, span.tokenEnd - 400, `chunks ${i} and ${i + 1} overlap by 400 tokens`);
      reassembled += text.slice(span.end, next.end);
    }
    assert.equal(reassembled, text, 'the chunks, less their overlaps, are the text');
    // The last chunk's end counts every token of the text, encoded in 256-character pieces (with gpt-tokenizer's
    // merge cache emptied as chunking empties it: full, it is slow to evict from).
    let tokens = 0;
    for (let start = 0; start < text.length; start += 256) {
      clearMergeCache();
      tokens += countTokens(text.slice(start, start + 256), PLAIN);
    }
    assert.equal(spans.at(-1)!.tokenEnd, tokens);
  });

  it('chunks about 2,000,000 tokens in near-linear time', { timeout: 120_000 }, () => {
    const text = prose(10_500_000);
    const started = performance.now();
    const spans = chunkSpans(text, AUTO);
    const seconds = (performance.now() - started) / 1000;
    const tokens = spans.at(-1)!.tokenEnd;
    assert.ok(tokens > 1_900_000, `${tokens} tokens`);
    assert.equal(spans.at(-1)!.end, text.length);
    for (let i = 1; i < spans.length; i++) assert.equal(spans[i]!.tokenStart, spans[i - 1]!.tokenEnd - 400);
    console.log(`# ${tokens} tokens in ${spans.length} chunks: ${seconds.toFixed(2)} s`);
  });
});
