import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { addReasoning, type ModelReasoning } from '../../src/providers/provider.ts';
import { SdkHarness } from '../support/sdk-harness.ts';

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

describe('a model turn retried while the model was still reasoning', () => {
  const h = new SdkHarness({ ASSISTD_UPSTREAM_MAX_RETRIES: '1' });
  before(() => h.start());
  after(() => h.close());

  const frame = (delta: object, finish: string | null = null) =>
    `data: ${JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
  const detail = (text: string, more: object = {}) => ({ type: 'reasoning.text', text, index: 0, ...more });

  test("sends back the retry's reasoning only, not the failed attempt's joined to it", async () => {
    const assistant = await h.client.beta.assistants.create({
      model: 'gpt-test',
      tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } }],
    });
    const thread = await h.client.beta.threads.create({ messages: [{ role: 'user', content: 'Look it up.' }] });
    const seen = h.upstream.requests.length;
    h.upstream.enqueue(
      // Cut short while the model reasons: nothing of the turn is shown yet, so it is retried.
      {
        contentType: 'text/event-stream',
        raw: [
          frame({ role: 'assistant', reasoning_content: 'FIRST-ATTEMPT. ', reasoning_details: [detail('first ')] }),
        ],
      },
      {
        contentType: 'text/event-stream',
        raw: [
          frame({ role: 'assistant', reasoning_content: 'Second.', reasoning_details: [detail('second')] }),
          frame({ reasoning_details: [detail('', { signature: 'SIG-2' })] }),
          frame({
            tool_calls: [{ index: 0, id: 'up_1', type: 'function', function: { name: 'lookup', arguments: '{}' } }],
          }),
          frame({}, 'tool_calls'),
          'data: [DONE]\n\n',
        ],
      },
      { text: 'Found.' },
    );
    const paused = await h.client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: assistant.id });
    assert.equal(paused.status, 'requires_action', `run ended ${paused.status}: ${JSON.stringify(paused.last_error)}`);
    const callId = paused.required_action!.submit_tool_outputs.tool_calls[0]!.id;
    const run = await h.client.beta.threads.runs.submitToolOutputsAndPoll(paused.id, {
      thread_id: thread.id,
      tool_outputs: [{ tool_call_id: callId, output: 'x' }],
    });
    assert.equal(run.status, 'completed', `run ended ${run.status}: ${JSON.stringify(run.last_error)}`);
    const requests = h.upstream.requests.slice(seen);
    assert.equal(requests.length, 3, 'the first attempt, its retry, the turn after the call');
    const sent = requests[2]!.body.messages.find((m) => m.role === 'assistant')!;
    assert.equal(sent['reasoning_content'], 'Second.');
    assert.deepEqual(sent['reasoning_details'], [detail('second', { signature: 'SIG-2' })]);
  });
});
