import { Worker } from 'node:worker_threads';
import type { FastifyInstance, HTTPMethods } from 'fastify';
import { FILE_SEARCH_RESULT_CONTENT } from '../include.ts';
import { PASSED_THROUGH, PASSED_THROUGH_FORMS, passedThroughRoutes } from '../passed-through-paths.ts';
import { type DocumentedOperation, ORGANIZATION_OPERATIONS, ORGANIZATION_SCHEMAS } from './organization-openapi.ts';

type Json = Record<string, unknown>;

/**
 * The project's copy of the official schema. From src/api/routes (tsx) and from dist/api/routes (the build) alike,
 * three levels up is the repository root, where spec/ lives: the build copies nothing.
 */
const SPEC_FILE = new URL('../../../spec/assistants-v2.openapi.yaml', import.meta.url);

const DESCRIPTION = `The operations this assistd server answers: the official OpenAI Assistants API v2 (its schemas are the \
official ones, from the OpenAI OpenAPI specification, MIT), the models list, and assistd's own extensions (tag \
\`assistd\`). Every path is served under \`/v1\` and, for Azure OpenAI clients, under \`/openai\` as well \
(\`POST /openai/threads/{thread_id}/runs?api-version=…\` is \`POST /v1/threads/{thread_id}/runs\`; \`api-version\` is \
ignored): the two servers below, one set of operations. When the server has an API key, every request sends it as \
\`Authorization: Bearer <key>\` or \`api-key: <key>\`. Errors are \`{"error": {"message", "type", "param", "code"}}\`.`;

/**
 * GET /v1/openapi.json: an OpenAPI document of the routes this app answers, for clients and code generators. It is
 * built on the first request, and only once: the official spec's operations that the app has a route for, the
 * operations added below, and only the components these reference.
 */
export function registerOpenApiRoute(app: FastifyInstance): void {
  let document: Promise<string> | undefined;
  app.get('/v1/openapi.json', async (_request, reply) => {
    // A failure (the spec missing from a deployment, a thread that could not start) is not kept: the next asks again.
    document ??= readSpec()
      .then((spec) => JSON.stringify(buildDocument(spec, app)))
      .catch((error: unknown) => {
        document = undefined;
        throw error;
      });
    return reply.type('application/json; charset=utf-8').send(await document);
  });
}

/**
 * Operations the spec's subset lacks: the official models endpoints, and assistd's extensions. The tests' response
 * validation (test/support/openapi.ts) knows them from here.
 */
export const ADDED_OPERATIONS: DocumentedOperation[] = [
  {
    method: 'get',
    path: '/threads',
    route: '/v1/threads',
    operation: {
      operationId: 'listThreads',
      tags: ['assistd'],
      summary: 'Returns a list of threads (assistd extension).',
      description:
        "The project's threads, newest first by default, paged as the official lists are. Not part of the official API, whose SDKs have no method for it: `client.getAPIList('/threads', …)` in openai-node, `client.get('/threads', …)` in others.",
      parameters: [
        queryParameter(
          'limit',
          'A limit on the number of objects to be returned. Limit can range between 1 and 100, and the default is 20.',
          { type: 'integer', default: 20 },
        ),
        queryParameter(
          'order',
          'Sort order by `order_by`: `asc` for ascending order and `desc` for descending order.',
          {
            type: 'string',
            default: 'desc',
            enum: ['asc', 'desc'],
          },
        ),
        queryParameter(
          'order_by',
          "What the threads are sorted by: `created_at`, or `last_active_at`, the thread's latest activity (its creation, the latest message added or run created on it). Ties keep the order of creation.",
          { type: 'string', default: 'created_at', enum: ['created_at', 'last_active_at'] },
        ),
        queryParameter('after', 'A cursor: the ID of the last thread of the previous page.', { type: 'string' }),
        queryParameter('before', 'A cursor: the ID of the first thread of the next page.', { type: 'string' }),
        {
          ...queryParameter(
            'metadata',
            'Only the threads whose metadata holds every pair given, one `metadata[key]=value` parameter per key (at most 16; keys up to 64 characters, values up to 512).',
            { type: 'object', additionalProperties: { type: 'string' } },
          ),
          style: 'deepObject',
          explode: true,
        },
      ],
      responses: {
        '200': {
          description: 'OK',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/ListThreadsResponse' } } },
        },
      },
    },
  },
  {
    method: 'get',
    path: '/threads/{thread_id}/runs/{run_id}/events',
    route: '/v1/threads/:thread_id/runs/:run_id/events',
    operation: {
      operationId: 'streamRunEvents',
      tags: ['assistd'],
      summary: 'Re-attaches to a run: a snapshot of the run, then its events (assistd extension).',
      description:
        "Streams `thread.run.<status>` with the run as it is (and, while the model is writing, the step and the message with their content so far), then the run's events from that moment, as `runs.create` with `stream: true` does; the stream ends with `done` once the run pauses (`requires_action`) or ends. Not part of the official API: for a client that lost its stream.",
      parameters: [
        pathParameter('thread_id', 'The ID of the thread the run belongs to.'),
        pathParameter('run_id', 'The ID of the run to follow.'),
        {
          name: 'include[]',
          in: 'query',
          description: 'As for run steps: the content of file_search results in the steps streamed.',
          schema: { type: 'array', items: { type: 'string', enum: [FILE_SEARCH_RESULT_CONTENT] } },
        },
      ],
      responses: {
        '200': {
          description: 'Server-sent events, each an assistant stream event; the last is `done`.',
          content: { 'text/event-stream': { schema: { $ref: '#/components/schemas/AssistantStreamEvent' } } },
        },
      },
    },
  },
  {
    method: 'get',
    path: '/models',
    route: '/v1/models',
    operation: {
      operationId: 'listModels',
      tags: ['Models'],
      summary: 'Lists the model names this server routes to a backend.',
      responses: {
        '200': {
          description: 'OK',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/ListModelsResponse' } } },
        },
      },
    },
  },
  {
    method: 'get',
    path: '/models/{model}',
    // Model ids may contain slashes, so the route takes the rest of the path.
    route: '/v1/models/*',
    operation: {
      operationId: 'retrieveModel',
      tags: ['Models'],
      summary: 'Retrieves a model this server routes to a backend.',
      parameters: [pathParameter('model', 'The ID of the model, e.g. `gpt-4o-mini` or `meta-llama/Llama-3.1-8B`.')],
      responses: {
        '200': {
          description: 'OK',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Model' } } },
        },
      },
    },
  },
  {
    method: 'get',
    path: '/openapi.json',
    route: '/v1/openapi.json',
    operation: {
      operationId: 'getOpenApiDocument',
      tags: ['assistd'],
      summary: 'This document (assistd extension).',
      responses: {
        '200': {
          description: 'An OpenAPI 3.1 document.',
          content: { 'application/json': { schema: { type: 'object' } } },
        },
      },
    },
  },
  ...PASSED_THROUGH.flatMap((path) =>
    passedThrough(
      path,
      'application/json',
      "The request goes, as it is, to the OpenAI-compatible endpoint that serves its `model` (the default backend when it names none), with that route's name for the model; the answer is that endpoint's.",
    ),
  ),
  ...PASSED_THROUGH_FORMS.flatMap((path) =>
    passedThrough(
      path,
      'multipart/form-data',
      "The form goes, byte for byte, to the default backend's endpoint (its model is named inside it); the answer is that endpoint's.",
    ),
  ),
];

/**
 * One of OpenAI's endpoints beside the Assistants API, passed on to a model backend (pass-through.ts): at its own
 * path, and under an Azure deployment's, whose deployment is the model.
 */
function passedThrough(path: string, type: string, description: string): DocumentedOperation[] {
  const operation = (azure: boolean) => ({
    operationId: `passThrough_${azure ? 'deployment_' : ''}${path.replace('/', '_')}`,
    tags: ['assistd'],
    summary: `OpenAI's POST /${path}${azure ? " as Azure OpenAI's clients send it" : ''}, passed on to a model backend (assistd).`,
    description: azure ? `${description} The deployment is the model.` : description,
    ...(azure ? { parameters: [{ name: 'deployment', in: 'path', required: true, schema: { type: 'string' } }] } : {}),
    requestBody: { required: true, content: { [type]: { schema: { type: 'object', additionalProperties: true } } } },
    responses: {
      '200': { description: "The backend's answer, as it gave it: JSON, an event stream, or audio or image bytes." },
    },
  });
  const [route, deploymentRoute] = passedThroughRoutes(path);
  return [
    { method: 'post', path: `/${path}`, route, operation: operation(false) },
    { method: 'post', path: `/deployments/{deployment}/${path}`, route: deploymentRoute, operation: operation(true) },
  ];
}

/**
 * The official `Model` and `ListModelsResponse`, which the spec's Assistants subset leaves out, and the thread list's
 * envelope, shaped as the official lists' (ListAssistantsResponse).
 */
export const ADDED_SCHEMAS: Json = {
  ListThreadsResponse: {
    type: 'object',
    properties: {
      object: { type: 'string', example: 'list' },
      data: { type: 'array', items: { $ref: '#/components/schemas/ThreadObject' } },
      first_id: { type: 'string', example: 'thread_abc123' },
      last_id: { type: 'string', example: 'thread_abc456' },
      has_more: { type: 'boolean', example: false },
    },
    required: ['object', 'data', 'first_id', 'last_id', 'has_more'],
  },
  Model: {
    title: 'Model',
    description: 'Describes an OpenAI model offering that can be used with the API.',
    type: 'object',
    properties: {
      id: { type: 'string', description: 'The model identifier, which can be referenced in the API endpoints.' },
      created: { type: 'integer', description: 'The Unix timestamp (in seconds) when the model was created.' },
      object: { type: 'string', description: 'The object type, which is always "model".', enum: ['model'] },
      owned_by: { type: 'string', description: 'The organization that owns the model.' },
    },
    required: ['id', 'object', 'created', 'owned_by'],
  },
  ListModelsResponse: {
    type: 'object',
    properties: {
      object: { type: 'string', enum: ['list'] },
      data: { type: 'array', items: { $ref: '#/components/schemas/Model' } },
    },
    required: ['object', 'data'],
  },
};

function pathParameter(name: string, description: string): Json {
  return { name, in: 'path', required: true, schema: { type: 'string' }, description };
}

function queryParameter(name: string, description: string, schema: Json): Json {
  return { name, in: 'query', required: false, schema, description };
}

function buildDocument(spec: Json, app: FastifyInstance): Json {
  const answered = (method: string, route: string) =>
    app.hasRoute({ method: method.toUpperCase() as HTTPMethods, url: route });
  const paths: Record<string, Json> = {};
  const keep = (path: string, method: string, operation: Json) => {
    // Every route answers errors in the one OpenAI shape; the spec declares them on a few operations only.
    const responses = operation['responses'] as Json;
    responses['default'] ??= { $ref: '#/components/responses/Error' };
    paths[path] = { ...paths[path], [method]: operation };
  };
  for (const [path, item] of Object.entries(spec['paths'] as Record<string, Record<string, Json>>))
    for (const [method, operation] of Object.entries(item))
      if (answered(method, `/v1${path.replace(/\{([^}]+)\}/g, ':$1')}`)) keep(path, method, operation);
  for (const { method, path, route, operation } of [...ADDED_OPERATIONS, ...ORGANIZATION_OPERATIONS])
    if (answered(method, route)) keep(path, method, structuredClone(operation));

  const info = spec['info'] as Json;
  const components = spec['components'] as Record<string, Json>;
  const available: Record<string, Json> = {
    ...components,
    schemas: { ...components['schemas'], ...ADDED_SCHEMAS, ...ORGANIZATION_SCHEMAS },
    responses: {
      ...components['responses'],
      Error: {
        description: 'An error, in the OpenAI shape.',
        content: { 'application/json': { schema: { $ref: '#/components/schemas/ErrorResponse' } } },
      },
    },
    securitySchemes: {
      ...components['securitySchemes'],
      AzureApiKey: { type: 'apiKey', in: 'header', name: 'api-key' },
      AdminApiKey: { type: 'http', scheme: 'bearer', description: 'ASSISTD_ADMIN_KEY' },
    },
  };
  return {
    openapi: spec['openapi'],
    info: { title: 'assistd', version: info['version'], description: DESCRIPTION, license: info['license'] },
    servers: [
      { url: '/v1', description: 'OpenAI clients' },
      { url: '/openai', description: 'Azure OpenAI clients: the same operations (api-version is ignored)' },
    ],
    security: [{ ApiKeyAuth: [] }, { AzureApiKey: [] }],
    tags: [
      ...(spec['tags'] as Json[]),
      { name: 'Models' },
      { name: 'Projects', description: 'The admin API: projects and their API keys (the admin key only).' },
      { name: 'assistd', description: 'Extensions of assistd: not part of the official API.' },
    ],
    paths,
    components: referencedComponents(paths, available),
  };
}

/**
 * The components that `paths` reference, directly or through other components: the spec's full set would describe
 * operations this server does not answer. Security schemes are named by `security`, never by `$ref`: all are kept.
 */
function referencedComponents(paths: Json, available: Record<string, Json>): Json {
  const kept: Record<string, Json> = { securitySchemes: available['securitySchemes'] ?? {} };
  const pending: unknown[] = [paths];
  while (pending.length > 0) {
    const node = pending.pop();
    if (Array.isArray(node)) pending.push(...node);
    else if (node !== null && typeof node === 'object')
      for (const [key, value] of Object.entries(node)) {
        if (key === '$ref' && typeof value === 'string') {
          const [, kind, name] = value.match(/^#\/components\/([^/]+)\/([^/]+)$/) ?? [];
          if (kind === undefined || name === undefined) throw new Error(`unexpected $ref ${value} in the spec`);
          if (kept[kind]?.[name] !== undefined) continue;
          const target = available[kind]?.[name];
          if (target === undefined) throw new Error(`the spec references ${value}, which it does not define`);
          kept[kind] = { ...kept[kind], [name]: target };
          pending.push(target);
        } else pending.push(value);
      }
  }
  return kept;
}

/**
 * The spec, parsed on a worker thread: the yaml package takes about half a second over its 350 kB, which on the
 * event loop would hold up every request in flight. The thread loads `yaml` alone, so it starts without this
 * process's `--import` hooks (tsx, when run from source), which would take longer than the parse.
 */
function readSpec(): Promise<Json> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { readFileSync } = require('node:fs');
    import(workerData.yaml).then(({ parse }) =>
      parentPort.postMessage(JSON.stringify(parse(readFileSync(new URL(workerData.spec), 'utf8')))));`;
  return new Promise((resolve, reject) => {
    const worker = new Worker(code, {
      eval: true,
      execArgv: [],
      workerData: { yaml: import.meta.resolve('yaml'), spec: SPEC_FILE.href },
    });
    worker.once('message', (text: string) => resolve(JSON.parse(text) as Json));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the thread reading ${SPEC_FILE.pathname} exited with ${code}`)));
  });
}
