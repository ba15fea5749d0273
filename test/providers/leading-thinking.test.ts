import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LeadingThinking } from '../../src/providers/openai-compatible/leading-thinking.ts';

/** The answer the filter lets through for content streamed in these pieces, and what each piece let through. */
function filter(pieces: string[], opened = false): { answer: string; passed: string[] } {
  const thinking = new LeadingThinking(opened);
  const passed = pieces.map((piece) => thinking.take(piece));
  const answer = passed.join('') + thinking.flush();
  return { answer, passed };
}

describe('LeadingThinking: inline <think>…</think> at the start of an answer is dropped', () => {
  test('reasoning in one piece or split anywhere, tags included, goes; the answer stays', () => {
    const content = '<think>\nThe user says hi. I should greet.\n</think>\n\nHello! How can I help?';
    for (let a = 1; a < content.length; a++)
      for (const b of [a + 1, a + 5, content.length - 1]) {
        if (b <= a || b >= content.length) continue;
        const pieces = [content.slice(0, a), content.slice(a, b), content.slice(b)];
        assert.equal(filter(pieces).answer, 'Hello! How can I help?', JSON.stringify(pieces));
      }
    assert.equal(filter(['  \n<think>x</think>answer']).answer, 'answer', 'after leading whitespace too');
  });

  test('an answer without the tag passes at once and unchanged, even one that begins like it', () => {
    assert.deepEqual(filter(['Hello', ' there']).passed, ['Hello', ' there']);
    assert.equal(filter(['\n\nHi']).answer, '\n\nHi');
    assert.deepEqual(filter(['<', 'b>bold</b>']).passed, ['', '<b>bold</b>'], 'held only while it could be the tag');
    assert.equal(filter(['<thin']).answer, '<thin', 'a beginning that never became the tag is given back at the end');
    assert.equal(filter(['x <think>y</think>']).answer, 'x <think>y</think>', 'only at the start');
  });

  test('reasoning never closed (the answer cut short) leaves no text', () => {
    assert.equal(filter(['<think>still thinking', ' about it']).answer, '');
  });

  test('opened (the chat template put <think> in the prompt): the content is reasoning up to </think>', () => {
    const content = 'The user says hi. I should greet.\n</think>\n\nHello! How can I help?';
    for (let a = 1; a < content.length; a++) {
      const pieces = [content.slice(0, a), content.slice(a)];
      assert.equal(filter(pieces, true).answer, 'Hello! How can I help?', JSON.stringify(pieces));
    }
    assert.equal(filter(['<think>x</think>answer'], true).answer, 'answer', 'an opening tag written anyway goes too');
    assert.equal(filter(['still thinking'], true).answer, '', 'reasoning never closed leaves no text');
  });
});
