/**
 * OpenAI's endpoints beside the Assistants API that assistd passes on to the model backends (routes/pass-through.ts),
 * named here once for every place that treats them apart: their routes, the multipart ones, the tokens limit, the
 * OpenAPI document, and the paths served without `/v1`.
 */

/** Those whose bodies are JSON, naming their model. */
export const PASSED_THROUGH = [
  'chat/completions',
  'completions',
  'embeddings',
  'moderations',
  'audio/speech',
  'images/generations',
] as const;

/** Those whose bodies are multipart forms (a recording to transcribe, an image to edit), their model inside. */
export const PASSED_THROUGH_FORMS = [
  'audio/transcriptions',
  'audio/translations',
  'images/edits',
  'images/variations',
] as const;

/**
 * The routes of one: its own path, and an Azure deployment's, as Azure OpenAI's clients send it (`/openai/…` is served
 * as `/v1/…`, app.ts), whose deployment is the model.
 */
export function passedThroughRoutes(path: string): [string, string] {
  return [`/v1/${path}`, `/v1/deployments/:deployment/${path}`];
}

/** Every route of them all. */
export const PASSED_THROUGH_ROUTES = [...PASSED_THROUGH, ...PASSED_THROUGH_FORMS].flatMap(passedThroughRoutes);

/** The first segments of their paths (`chat`, `audio`…). */
export const PASSED_THROUGH_SEGMENTS = [
  ...new Set([...PASSED_THROUGH, ...PASSED_THROUGH_FORMS].map((path) => path.split('/')[0]!)),
];
