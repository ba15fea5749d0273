import { writeFileSync } from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { FakeUpstream } from './fake-upstream.ts';
import { startTestServer, type TestServer } from './server.ts';
import { createValidatingFetch, type ValidatingFetch } from './validating-fetch.ts';

export interface ScriptedModelsServer {
  upstream: FakeUpstream;
  server: TestServer;
  /** The SDK, through a fetch that validates every response against the spec. */
  client: OpenAI;
  validating: ValidatingFetch;
}

/**
 * A server whose models are the GGUF files of `dir` (`files`: model name → file name, or the file and its context
 * size; 4,096 tokens unless given; one thread), and `gpt-4o-mini` on a fake upstream beside them.
 */
export async function startScriptedModels(
  dir: string,
  files: Record<string, string | { file: string; contextSize: number }>,
): Promise<ScriptedModelsServer> {
  const upstream = await FakeUpstream.start();
  const models: Record<string, unknown> = {};
  for (const [name, given] of Object.entries(files)) {
    const { file, contextSize } = typeof given === 'string' ? { file: given, contextSize: 4096 } : given;
    models[name] = { type: 'gguf', path: file, context_size: contextSize, threads: 1 };
  }
  models['gpt-4o-mini'] = { type: 'openai-compatible', base_url: upstream.baseUrl, api_key_env: 'TEST_UPSTREAM_KEY' };
  writeFileSync(path.join(dir, 'models.json'), JSON.stringify({ models }));
  const server = await startTestServer({
    ASSISTD_MODELS_FILE: path.join(dir, 'models.json'),
    TEST_UPSTREAM_KEY: 'sk-upstream',
  });
  const validating = createValidatingFetch();
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', fetch: validating.fetch, maxRetries: 0 });
  return { upstream, server, client, validating };
}

/** The text of a message's text parts, joined. */
export function messageText(message: OpenAI.Beta.Threads.Message): string {
  return message.content.map((part) => (part.type === 'text' ? part.text.value : '')).join('');
}

/** The function the scripted models call (`get_weather` with `{"city":"Paris"}`). */
export const WEATHER_TOOL = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'The current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};
