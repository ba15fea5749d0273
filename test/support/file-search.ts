import assert from 'node:assert/strict';
import type OpenAI from 'openai';
import { toFile } from 'openai';
import { eventually } from './eventually.ts';
import type { ToolCallsReply } from './fake-upstream.ts';
import { SdkHarness } from './sdk-harness.ts';

/**
 * What the file_search tests share: a test server (file_search is registered by the composition root), the fake
 * model, an SDK client whose JSON responses are schema-checked, documents to search, and builders of the model's
 * replies.
 */

export { INCLUDE_CONTENT, toolMessages } from './sdk-harness.ts';

export const COFFEE = 'The office espresso machine is descaled every Friday by the facilities team.';
export const PARKING = 'Visitors park on level minus two of the garage; bring the blue ticket.';

/** The model's turn calling file_search with these queries. */
export function fileSearchCall(...queries: string[]): ToolCallsReply {
  return { toolCalls: [{ name: 'file_search', arguments: JSON.stringify({ queries }) }] };
}

export type Steps = OpenAI.Beta.Threads.Runs.RunStep[];
export type FileSearchCall = OpenAI.Beta.Threads.Runs.FileSearchToolCall;

/** The file_search calls of a step. */
export function fileSearchCalls(step: OpenAI.Beta.Threads.Runs.RunStep | undefined): FileSearchCall[] {
  assert.ok(step, 'there is a step');
  assert.equal(step.step_details.type, 'tool_calls');
  const calls = (step.step_details as OpenAI.Beta.Threads.Runs.ToolCallsStepDetails).tool_calls;
  for (const call of calls) assert.equal(call.type, 'file_search');
  return calls as FileSearchCall[];
}

/** The text part of a message. */
export function textPart(message: OpenAI.Beta.Threads.Message | undefined): OpenAI.Beta.Threads.Text {
  assert.ok(message, 'there is a message');
  const part = message.content[0];
  assert.equal(part?.type, 'text');
  return (part as OpenAI.Beta.Threads.TextContentBlock).text;
}

/** What a client slicing by code points (as upstream's Python does) reads between an annotation's indices. */
export function codePointSlice(text: string, start: number, end: number): string {
  return [...text].slice(start, end).join('');
}

export class FileSearchHarness extends SdkHarness {
  /** A vector store with these files (name → text), each ingested before it returns; the ids by name. */
  async vectorStore(files: Record<string, string>): Promise<{ id: string; files: Record<string, string> }> {
    const store = await this.client.vectorStores.create({ name: 'docs' });
    const ids: Record<string, string> = {};
    for (const [name, text] of Object.entries(files)) {
      const file = await this.client.vectorStores.files.uploadAndPoll(store.id, await toFile(Buffer.from(text), name), {
        pollIntervalMs: 20,
      });
      assert.equal(file.status, 'completed', `${name}: ${JSON.stringify(file.last_error)}`);
      ids[name] = file.id;
    }
    return { id: store.id, files: ids };
  }

  /** Waits until every file of the store is ingested. */
  async ingested(vectorStoreId: string): Promise<void> {
    await eventually(`the files of ${vectorStoreId} to be ingested`, 20_000, async () => {
      const store = await this.client.vectorStores.retrieve(vectorStoreId);
      return store.file_counts.in_progress === 0 ? store : undefined;
    });
  }

  async assistant(
    vectorStoreIds: string[] = [],
    fileSearch: OpenAI.Beta.FileSearchTool['file_search'] = undefined,
  ): Promise<OpenAI.Beta.Assistant> {
    return this.client.beta.assistants.create({
      model: 'gpt-test',
      instructions: 'Answer from the files.',
      tools: [fileSearch ? { type: 'file_search', file_search: fileSearch } : { type: 'file_search' }],
      tool_resources: { file_search: { vector_store_ids: vectorStoreIds } },
    });
  }

  async thread(content = 'When is the espresso machine descaled?'): Promise<OpenAI.Beta.Thread> {
    return this.client.beta.threads.create({ messages: [{ role: 'user', content }] });
  }
}
