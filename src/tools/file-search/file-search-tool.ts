import { setTimeout as delay } from 'node:timers/promises';
import { DEFAULT_RANKER, type FunctionDefinition } from '../../domain/objects.ts';
import type { FileSearchToolCallDetails, Run } from '../../domain/runs.ts';
import type { ChunkHit, VectorStoreView } from '../../domain/vector-stores.ts';
import { countTextTokens } from '../../runs/tokens.ts';
import type { Scope } from '../../storage/store.ts';
import {
  resultTokenBudget,
  type ServerTool,
  type ServerToolCall,
  type ToolContext,
  ToolError,
  ToolRunFailure,
} from '../tool.ts';
import { citationAnnotator } from './citations.ts';
import { resultsText } from './results-text.ts';

/**
 * The built-in `file_search` tool: the model calls a `file_search(queries)` function, the run searches the vector
 * stores of its assistant and thread (each `tool_resources.file_search.vector_store_ids`, at most one each), and the
 * model reads the results numbered with citation markers (citations.ts), within a token budget (results-text.ts).
 * The call's step details are upstream's: the ranking options used and the results, with their text, which the API
 * serves only when `include[]` asks for it. The markers the answer cites become `file_citation` annotations.
 */

/** The vector stores a run searches, by where they are named. */
export interface RunVectorStores {
  assistant: readonly string[];
  thread: readonly string[];
}

export interface FileSearchOptions {
  maxNumResults: number;
  scoreThreshold: number;
}

/** What the tool needs of the vector stores (vector-store-backend.ts over the Store and the VectorStoreService). */
export interface FileSearchBackend {
  /** The stores named by the run's assistant and thread; none for one that no longer exists. */
  resolveStores(scope: Scope, run: Run): Promise<RunVectorStores>;
  /** The stores were used now (part of a run): their expiry moves. */
  markUsed(scope: Scope, vectorStoreIds: readonly string[]): Promise<void>;
  /** A store as it is now, with its file counts; undefined when there is no store with this id. */
  getStore(scope: Scope, id: string): Promise<VectorStoreView | undefined>;
  /**
   * The best chunks for the queries across the stores, each chunk once with its best score, best first; at most
   * `maxNumResults`, none scoring below `scoreThreshold`.
   */
  search(
    scope: Scope,
    vectorStoreIds: readonly string[],
    queries: readonly string[],
    options: FileSearchOptions,
  ): Promise<ChunkHit[]>;
}

export interface FileSearchToolOptions {
  backend: FileSearchBackend;
  /**
   * How long a call waits for files of the thread's store that are still being ingested, before it searches what is
   * ready: upstream's 60 s. The assistant's store is searched as it is, as upstream does.
   */
  ingestionWaitMs?: number;
  /** How often the thread's store is read again while waiting. */
  ingestionPollMs?: number;
  /** The most tokens the results may take whatever the context window: upstream's file_search stays near 16k. */
  maxResultTokens?: number;
  /** Counts the tokens of the results' text (default: o200k_base, runs/tokens.ts). */
  countTokens?: (text: string) => number;
}

/** `max_num_results` when the tool definition has none: upstream's for gpt-4* models. */
export const DEFAULT_MAX_NUM_RESULTS = 20;
export const MAX_QUERIES = 5;
const DEFAULT_INGESTION_WAIT_MS = 60_000;
const DEFAULT_INGESTION_POLL_MS = 250;
const DEFAULT_MAX_RESULT_TOKENS = 16_000;

export const FILE_SEARCH_FUNCTION: FunctionDefinition = {
  name: 'file_search',
  description:
    'Searches the files available to you (uploaded by the user or attached to the assistant) and returns the most ' +
    'relevant passages, each with a citation marker. Use it whenever the answer may be in those files. Always ' +
    "include the user's question rewritten to be self-contained (resolve pronouns and references to earlier " +
    'messages) as one of the queries; add other phrasings or keywords as further queries if useful. Cite the ' +
    'passages you use with their markers.',
  parameters: {
    type: 'object',
    properties: {
      queries: {
        type: 'array',
        description: `1 to ${MAX_QUERIES} search queries; one of them is the user's question, rewritten to be self-contained.`,
        items: { type: 'string' },
        minItems: 1,
        maxItems: MAX_QUERIES,
      },
    },
    required: ['queries'],
    additionalProperties: false,
  },
};

const ARGUMENTS_ERROR = `file_search takes {"queries": [...]} with 1 to ${MAX_QUERIES} non-empty strings.`;

/**
 * The queries of a call. Lenient where a model is sloppy but the meaning is clear: a single `query` string, or a
 * string for `queries`; queries beyond the fifth are ignored. Anything else is the model's error to fix.
 */
export function parseQueries(text: string): string[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ToolError(ARGUMENTS_ERROR);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ToolError(ARGUMENTS_ERROR);
  const { queries, query } = value as Record<string, unknown>;
  const given = queries ?? query;
  const list = typeof given === 'string' ? [given] : given;
  if (!Array.isArray(list) || !list.every((q) => typeof q === 'string')) throw new ToolError(ARGUMENTS_ERROR);
  const cleaned = [...new Set((list as string[]).map((q) => q.trim()).filter((q) => q !== ''))];
  if (cleaned.length === 0) throw new ToolError(ARGUMENTS_ERROR);
  return cleaned.slice(0, MAX_QUERIES);
}

/** The run's file_search settings: `max_num_results` and the ranking options of its tool definition. */
export function searchSettings(run: Pick<Run, 'tools'>): FileSearchOptions {
  const tool = run.tools.find((t) => t.type === 'file_search');
  const options = tool?.type === 'file_search' ? tool.file_search : undefined;
  return {
    maxNumResults: options?.max_num_results ?? DEFAULT_MAX_NUM_RESULTS,
    scoreThreshold: options?.ranking_options?.score_threshold ?? 0,
  };
}

/** A call's ranking options as its details show them: the ranker OpenAI named, and the run's threshold. */
function rankingOptions(
  settings: FileSearchOptions,
): NonNullable<FileSearchToolCallDetails['file_search']['ranking_options']> {
  return { ranker: DEFAULT_RANKER, score_threshold: settings.scoreThreshold };
}

/**
 * The failure of a run whose vector store has expired: `where` names what holds it (the assistant or the thread)
 * when that is known.
 */
export function expiredStore(id: string, where?: string): ToolRunFailure {
  const holder = where ?? 'assistant or thread';
  return new ToolRunFailure(
    'invalid_prompt',
    `Vector store ${id}${where ? ` (the ${where}'s)` : ''} has expired. Create a new vector store with its files and attach it to the ${holder} in tool_resources.file_search.vector_store_ids.`,
  );
}

export function fileSearchTool(options: FileSearchToolOptions): ServerTool {
  const { backend } = options;
  const waitMs = options.ingestionWaitMs ?? DEFAULT_INGESTION_WAIT_MS;
  const pollMs = options.ingestionPollMs ?? DEFAULT_INGESTION_POLL_MS;
  const maxResultTokens = options.maxResultTokens ?? DEFAULT_MAX_RESULT_TOKENS;
  const countTokens = options.countTokens ?? countTextTokens;

  /**
   * A store the run names, unless it no longer exists: a deleted store is not searched (upstream dropped it from the
   * assistant or thread that named it, as deleting one does here). One that expired fails the run, as upstream's
   * ("runs will fail if the vector store has expired"), with `invalid_prompt` and a message that says which store
   * and where it is named.
   */
  function usable(store: VectorStoreView | undefined, id: string, where: string): VectorStoreView | undefined {
    if (store?.expired) throw expiredStore(id, where);
    return store;
  }

  /** The assistant's stores that can be searched (usable). */
  async function assistantStores(scope: Scope, ids: readonly string[]): Promise<string[]> {
    const kept: string[] = [];
    for (const id of ids) if (usable(await backend.getStore(scope, id), id, 'assistant')) kept.push(id);
    return kept;
  }

  /**
   * The thread's stores that can be searched (usable), once none still has files being ingested, waiting for
   * them, bounded, so that they are searched too.
   */
  async function threadStores(scope: Scope, ids: readonly string[], signal: AbortSignal): Promise<string[]> {
    const deadline = Date.now() + waitMs;
    const kept: string[] = [];
    for (const id of ids) {
      let store = usable(await backend.getStore(scope, id), id, 'thread');
      while (store && store.file_counts.in_progress > 0 && Date.now() < deadline) {
        // An abort ends the wait with the signal's own reason (the run's stop reason), not Node's AbortError.
        await delay(Math.min(pollMs, Math.max(0, deadline - Date.now())), undefined, { signal }).catch(() => {
          throw signal.reason;
        });
        store = usable(await backend.getStore(scope, id), id, 'thread');
      }
      if (store) kept.push(id);
    }
    return kept;
  }

  async function execute(call: ServerToolCall, context: ToolContext) {
    const { scope, run, signal } = context;
    const queries = parseQueries(call.arguments);
    const settings = searchSettings(run);
    const stores = await backend.resolveStores(scope, run);
    const named = await assistantStores(scope, stores.assistant);
    const ids = [...new Set([...named, ...(await threadStores(scope, stores.thread, signal))])];
    const hits = ids.length === 0 ? [] : await backend.search(scope, ids, queries, settings);
    // The backend's promises are checked, not trusted: a fake or a new index must not break the call's contract.
    const ranked = hits
      .filter((hit) => hit.score >= settings.scoreThreshold)
      .sort((a, b) => b.score - a.score)
      .slice(0, settings.maxNumResults);

    const turn = context.calls.length;
    const rendered =
      ids.length === 0
        ? {
            text: `file_search call ${turn}: there are no files to search (neither the assistant nor the thread has a vector store).`,
            shown: 0,
          }
        : resultsText({
            turn,
            queries,
            results: ranked.map((hit) => ({ file_name: hit.filename, text: hit.text })),
            budgetTokens: resultTokenBudget(context.contextTokensLeft, maxResultTokens),
            countTokens,
          });
    const details: FileSearchToolCallDetails = {
      id: call.id,
      type: 'file_search',
      file_search: {
        ranking_options: rankingOptions(settings),
        // What the model read: its markers' indices are positions in this list. The text is stored, and served
        // only when asked for (include[]).
        results: ranked.slice(0, rendered.shown).map((hit) => ({
          file_id: hit.file_id,
          file_name: hit.filename,
          score: hit.score,
          content: [{ type: 'text' as const, text: hit.text }],
        })),
      },
    };
    return { details, output: rendered.text };
  }

  return {
    type: 'file_search',
    function: FILE_SEARCH_FUNCTION,
    // The spec says a call's details are `{}` for now, but upstream streamed (and kotlin's client requires) the
    // ranking options and an empty result list; the results come with the completed step.
    describe: (call, run) => ({
      id: call.id,
      type: 'file_search',
      file_search: {
        ranking_options: rankingOptions(searchSettings(run)),
        results: [],
      },
    }),
    // Upstream's stores expire counting from "the last time the vector store was part of a run", searched or not.
    async executionStarted({ scope, run }) {
      const stores = await backend.resolveStores(scope, run);
      await backend.markUsed(scope, [...stores.assistant, ...stores.thread]);
    },
    execute,
    annotator: (calls) => (calls.length > 0 ? citationAnnotator(calls) : undefined),
  };
}
