import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { addReasoning, type ModelReasoning } from '../../src/providers/provider.ts';

/** `pieces` added in order, each `[field, piece]`. */
function streamed(...pieces: Array<[string, string | unknown[]]>): ModelReasoning {
  return pieces.reduce<ModelReasoning>((so, [field, piece]) => addReasoning(so, field, piece), {});
}

describe('addReasoning', () => {
  test('text pieces are joined, field by field', () => {
    assert.deepEqual(streamed(['reasoning_content', 'I should '], ['reasoning', 'x'], ['reasoning_content', 'add.']), {
      reasoning_content: 'I should add.',
      reasoning: 'x',
    });
  });

  test("OpenRouter's reasoning_details: pieces of the same index are joined, other indexes appended", () => {
    const text = (index: number, piece: string, more: object = {}) => ({
      type: 'reasoning.text',
      format: 'anthropic-claude-v1',
      index,
      text: piece,
      ...more,
    });
    assert.deepEqual(
      streamed(
        ['reasoning_details', [text(0, 'Let me ')]],
        ['reasoning_details', [text(0, 'think.')]],
        ['reasoning_details', [text(0, '', { signature: 'sig-0' })]],
        ['reasoning_details', [{ type: 'reasoning.encrypted', data: 'enc', index: 1, format: 'anthropic-claude-v1' }]],
      ),
      {
        reasoning_details: [
          text(0, 'Let me think.', { signature: 'sig-0' }),
          { type: 'reasoning.encrypted', data: 'enc', index: 1, format: 'anthropic-claude-v1' },
        ],
      },
    );
  });

  test("LiteLLM's thinking_blocks, one piece per block: joined until signed; redacted blocks stay whole", () => {
    const piece = (thinking: string, signature = '') => ({ type: 'thinking', thinking, signature });
    assert.deepEqual(
      streamed(
        ['thinking_blocks', [piece('Step 1. ')]],
        ['thinking_blocks', [piece('Step 2.')]],
        ['thinking_blocks', [piece('', 'EqQBCg')]],
        ['thinking_blocks', [piece('Then ')]],
        ['thinking_blocks', [piece('more.', 'ErUBCk')]],
        ['thinking_blocks', [{ type: 'redacted_thinking', data: 'a' }]],
        ['thinking_blocks', [{ type: 'redacted_thinking', data: 'b' }]],
      ),
      {
        thinking_blocks: [
          piece('Step 1. Step 2.', 'EqQBCg'),
          piece('Then more.', 'ErUBCk'),
          { type: 'redacted_thinking', data: 'a' },
          { type: 'redacted_thinking', data: 'b' },
        ],
      },
    );
  });
});
