import type { Assistant, Message, Thread } from '../domain/objects.ts';

// Domain → wire objects. Every field the official schema lists is present (null, never omitted), in upstream's
// order, and nothing internal (project ids, sequence numbers) leaks.

export function serializeAssistant(a: Assistant) {
  return {
    id: a.id,
    object: 'assistant' as const,
    created_at: a.created_at,
    name: a.name,
    description: a.description,
    model: a.model,
    instructions: a.instructions,
    tools: a.tools,
    tool_resources: a.tool_resources,
    metadata: a.metadata,
    temperature: a.temperature,
    top_p: a.top_p,
    response_format: a.response_format,
    reasoning_effort: a.reasoning_effort,
  };
}

export function serializeThread(t: Thread) {
  return {
    id: t.id,
    object: 'thread' as const,
    created_at: t.created_at,
    tool_resources: t.tool_resources,
    metadata: t.metadata,
  };
}

export function serializeMessage(m: Message) {
  return {
    id: m.id,
    object: 'thread.message' as const,
    created_at: m.created_at,
    assistant_id: m.assistant_id,
    thread_id: m.thread_id,
    run_id: m.run_id,
    status: m.status,
    incomplete_details: m.incomplete_details,
    completed_at: m.completed_at,
    incomplete_at: m.incomplete_at,
    role: m.role,
    content: m.content,
    attachments: m.attachments,
    metadata: m.metadata,
  };
}

export function serializeDeleted(id: string, object: string) {
  return { id, object, deleted: true };
}
