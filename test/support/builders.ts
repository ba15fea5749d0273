import { newId } from '../../src/domain/ids.ts';
import { newClientMessage } from '../../src/domain/messages.ts';
import type { Assistant, Message, Thread } from '../../src/domain/objects.ts';

export function anAssistant(overrides: Partial<Assistant> = {}): Assistant {
  return {
    id: newId('assistant'),
    created_at: 1_700_000_000,
    name: 'Helper',
    description: 'helps',
    model: 'gpt-4o-mini',
    instructions: 'Be brief.',
    tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } }],
    tool_resources: { code_interpreter: { file_ids: [] } },
    metadata: { team: 'a' },
    temperature: 0.5,
    top_p: 0.9,
    response_format: { type: 'json_object' },
    reasoning_effort: 'low',
    ...overrides,
  };
}

export function aThread(overrides: Partial<Thread> = {}): Thread {
  return { id: newId('thread'), created_at: 1_700_000_000, tool_resources: {}, metadata: {}, ...overrides };
}

export function aMessage(threadId: string, text = 'hello', overrides: Partial<Message> = {}): Message {
  return { ...newClientMessage(threadId, { role: 'user', content: text }, 1_700_000_000), ...overrides };
}
