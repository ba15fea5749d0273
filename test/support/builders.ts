import assert from 'node:assert/strict';
import type { StoredFile } from '../../src/domain/files.ts';
import { newId } from '../../src/domain/ids.ts';
import { newClientMessage } from '../../src/domain/messages.ts';
import type { Assistant, Message, Thread } from '../../src/domain/objects.ts';
import type { Run } from '../../src/domain/runs.ts';
import { AUTO_CHUNKING, type VectorStore, type VectorStoreFile } from '../../src/domain/vector-stores.ts';
import type { Scope, Store, StoredStep } from '../../src/storage/store.ts';
import { codeOf, codeReader } from '../../src/tools/code-interpreter/code-arguments.ts';
import type { ServerTool } from '../../src/tools/tool.ts';

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

/** A file's row, as the Files API stores it (a one-byte file named `data.csv`, unless overridden). */
export function aStoredFile(overrides: Partial<StoredFile> = {}): StoredFile {
  return {
    id: newId('file'),
    filename: 'data.csv',
    created_at: 1_700_000_000,
    bytes: 1,
    purpose: 'assistants',
    expires_at: null,
    mime_type: null,
    ...overrides,
  };
}

export function aThread(overrides: Partial<Thread> = {}): Thread {
  return { id: newId('thread'), created_at: 1_700_000_000, tool_resources: {}, metadata: {}, ...overrides };
}

export function aMessage(threadId: string, text = 'hello', overrides: Partial<Message> = {}): Message {
  return { ...newClientMessage(threadId, { role: 'user', content: text }, 1_700_000_000), ...overrides };
}

/** A queued run with every setting given (as the run service would fill them in). */
export function aRun(threadId: string, overrides: Partial<Run> = {}): Run {
  return {
    id: newId('run'),
    created_at: 1_700_000_000,
    thread_id: threadId,
    assistant_id: 'asst_builder',
    status: 'queued',
    required_action: null,
    last_error: null,
    // Far off: a run past its expires_at is not claimed (it is the sweep's to expire).
    expires_at: 4_000_000_000,
    started_at: null,
    cancelled_at: null,
    failed_at: null,
    completed_at: null,
    incomplete_details: null,
    model: 'gpt-4o-mini',
    instructions: 'Be brief.',
    tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } }],
    metadata: { purpose: 'test' },
    usage: null,
    temperature: 0.7,
    top_p: 0.9,
    max_prompt_tokens: null,
    max_completion_tokens: 512,
    truncation_strategy: { type: 'last_messages', last_messages: 10 },
    tool_choice: 'auto',
    parallel_tool_calls: false,
    response_format: { type: 'json_object' },
    reasoning_effort: 'low',
    ...overrides,
  };
}

/** An in-progress tool-calls step of `run`. */
export function aStep(run: Run, overrides: Partial<StoredStep> = {}): StoredStep {
  return {
    id: newId('step'),
    created_at: run.created_at,
    assistant_id: run.assistant_id,
    thread_id: run.thread_id,
    run_id: run.id,
    type: 'tool_calls',
    status: 'in_progress',
    step_details: {
      type: 'tool_calls',
      tool_calls: [
        { id: newId('call'), type: 'function', function: { name: 'lookup', arguments: '{}', output: null } },
      ],
    },
    last_error: null,
    expired_at: null,
    expires_at: run.expires_at,
    cancelled_at: null,
    failed_at: null,
    completed_at: null,
    metadata: {},
    usage: null,
    turn_usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
    model_calls: null,
    model_reasoning: null,
    ...overrides,
  };
}

/**
 * code_interpreter as a model turn sees it (named `python`, its code shown as it is written), for feeding a
 * ModelTurn without a sandbox: executing it throws.
 */
export function aCodeInterpreterForTurns(): ServerTool {
  return {
    type: 'code_interpreter',
    function: { name: 'python' },
    inputReader: codeReader,
    describe: (call) => ({
      id: call.id,
      type: 'code_interpreter',
      code_interpreter: { input: codeOf(call.arguments), outputs: [] },
    }),
    execute: async () => {
      throw new Error('not executed here');
    },
  } as ServerTool;
}

/** A vector store with no expiry, created at 1_700_000_000. */
export function aVectorStore(overrides: Partial<VectorStore> = {}): VectorStore {
  return {
    id: newId('vectorStore'),
    created_at: 1_700_000_000,
    name: 'docs',
    description: null,
    metadata: {},
    expires_after: null,
    expires_at: null,
    last_active_at: 1_700_000_000,
    expired: false,
    ...overrides,
  };
}

/** A file of a vector store, waiting to be ingested (`auto` chunking). */
export function aVectorStoreFile(
  vectorStoreId: string,
  fileId: string,
  overrides: Partial<VectorStoreFile> = {},
): VectorStoreFile {
  return {
    id: fileId,
    vector_store_id: vectorStoreId,
    created_at: 1_700_000_000,
    status: 'in_progress',
    last_error: null,
    usage_bytes: 0,
    chunking_strategy: AUTO_CHUNKING,
    attributes: null,
    batch_id: null,
    ...overrides,
  };
}

/**
 * A thread of 300 messages without attachments and one with a file for code_interpreter, stored through `store`,
 * which reads back that one attachment: the thread the index tests of each database plan the read over.
 */
export async function storedThreadWithOneAttachment(
  store: Pick<Store, 'createThread' | 'threadAttachments'>,
  scope: Scope,
): Promise<Thread> {
  const thread = aThread();
  const attachment = { file_id: 'file-a', tools: [{ type: 'code_interpreter' as const }] };
  await store.createThread(scope, thread, [
    ...Array.from({ length: 300 }, (_, i) => aMessage(thread.id, `message ${i}`)),
    aMessage(thread.id, 'with a file', { attachments: [attachment] }),
  ]);
  assert.deepEqual(await store.threadAttachments(scope, thread.id), [attachment]);
  return thread;
}
