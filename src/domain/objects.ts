/**
 * The Assistants API objects as assistd stores and serves them. Like openai-node's types, they are plain snake_case
 * shapes of the wire format; the `object` field and the field order are added by api/serializers.ts.
 */
export type Metadata = Record<string, string>;

export interface FunctionDefinition {
  name: string;
  description?: string;
  parameters?: Record<string, unknown>;
  strict?: boolean | null;
}

export interface FileSearchRankingOptions {
  ranker?: 'auto' | 'default_2024_08_21';
  score_threshold: number;
}

/** The ranker OpenAI named for a file_search that asked for `auto`, or for none. */
export const DEFAULT_RANKER = 'default_2024_08_21';

/** The parameters of a function defined without any, as OpenAI filled them in: an object without properties. */
export const NO_PARAMETERS: Readonly<Record<string, unknown>> = { type: 'object', properties: {} };

export type AssistantTool =
  | { type: 'code_interpreter' }
  | { type: 'file_search'; file_search?: { max_num_results?: number; ranking_options?: FileSearchRankingOptions } }
  | { type: 'function'; function: FunctionDefinition };

export type ResponseFormat =
  | 'auto'
  | { type: 'text' }
  | { type: 'json_object' }
  | {
      type: 'json_schema';
      json_schema: { name: string; description?: string; schema?: Record<string, unknown>; strict?: boolean | null };
    };

export type ReasoningEffort = 'none' | 'minimal' | 'low' | 'medium' | 'high' | 'xhigh' | 'max';

export interface ToolResources {
  code_interpreter?: { file_ids: string[] };
  file_search?: { vector_store_ids: string[] };
}

export interface Assistant {
  id: string;
  created_at: number;
  name: string | null;
  description: string | null;
  model: string;
  instructions: string | null;
  tools: AssistantTool[];
  tool_resources: ToolResources | null;
  metadata: Metadata;
  temperature: number | null;
  top_p: number | null;
  response_format: ResponseFormat | null;
  reasoning_effort: ReasoningEffort | null;
}

export interface Thread {
  id: string;
  created_at: number;
  tool_resources: ToolResources | null;
  metadata: Metadata;
}

export type ImageDetail = 'auto' | 'low' | 'high';

export interface TextAnnotation {
  type: 'file_citation' | 'file_path';
  text: string;
  start_index: number;
  end_index: number;
  file_citation?: { file_id: string };
  file_path?: { file_id: string };
}

export type MessageContent =
  | { type: 'text'; text: { value: string; annotations: TextAnnotation[] } }
  | { type: 'image_file'; image_file: { file_id: string; detail: ImageDetail } }
  | { type: 'image_url'; image_url: { url: string; detail: ImageDetail } }
  | { type: 'refusal'; refusal: string };

export interface MessageAttachment {
  file_id: string;
  tools: Array<{ type: 'code_interpreter' } | { type: 'file_search' }>;
}

export type MessageRole = 'user' | 'assistant';
export type MessageStatus = 'in_progress' | 'incomplete' | 'completed';
export type MessageIncompleteReason = 'content_filter' | 'max_tokens' | 'run_cancelled' | 'run_expired' | 'run_failed';

export interface Message {
  id: string;
  created_at: number;
  thread_id: string;
  status: MessageStatus;
  incomplete_details: { reason: MessageIncompleteReason } | null;
  completed_at: number | null;
  incomplete_at: number | null;
  role: MessageRole;
  content: MessageContent[];
  assistant_id: string | null;
  run_id: string | null;
  attachments: MessageAttachment[];
  metadata: Metadata;
}
