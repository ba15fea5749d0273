import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { compileErrors, validate } from '@readme/openapi-parser';
import Fastify from 'fastify';
import { registerOpenApiRoute } from '../../src/api/routes/openapi.ts';
import { listRoutes } from '../support/route-table.ts';
import { startTestServer, type TestServer } from '../support/server.ts';

type Json = Record<string, unknown>;

const KEY = 'secret-key';
const METHODS = ['get', 'post', 'delete', 'put', 'patch'];

/** A route template without its parameters' names: `/v1/models/*`, `/v1/models/:id` and `/v1/models/{model}` alike. */
function shape(template: string): string {
  return template.replace(/\{[^}]+\}|:[^/]+|\*/g, '{}');
}

/** Whether @readme/openapi-parser finds `document` valid; it dereferences in place, so it is given a copy. */
async function validation(document: unknown): Promise<string | undefined> {
  const result = await validate(structuredClone(document) as Parameters<typeof validate>[0]);
  return result.valid ? undefined : compileErrors(result);
}

/**
 * Routes that are not operations of the API the document describes: its servers are /v1 (and /openai, the same
 * routes), so /healthz, /metrics and the playground's page (/, /playground) — the deployment's, outside /v1 — are
 * not in it; and Fastify answers HEAD for every GET route by itself, which no client calls as an operation.
 */
function isApiOperation(route: { method: string; url: string }): boolean {
  return route.method !== 'HEAD' && route.url.startsWith('/v1/');
}

describe('GET /v1/openapi.json', () => {
  let server: TestServer;
  let document: Json;
  before(async () => {
    server = await startTestServer({ ASSISTD_API_KEY: KEY });
    const response = await fetch(`${server.url}/v1/openapi.json`, { headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
    document = (await response.json()) as Json;
  });
  after(async () => server?.close());

  test('is a valid OpenAPI 3.x document', async () => {
    assert.match(String(document['openapi']), /^3\.\d+\.\d+$/);
    assert.equal(await validation(document), undefined);
  });

  test('the validator used above rejects a document with a dangling $ref', async () => {
    const broken = structuredClone(document) as { paths: Record<string, Record<string, Json>> };
    const operation = broken.paths['/assistants']!['get']!;
    operation['responses'] = {
      '200': { description: 'OK', content: { 'application/json': { schema: { $ref: '#/components/schemas/Nope' } } } },
    };
    assert.match((await validation(broken)) ?? 'valid', /Missing \$ref pointer "#\/components\/schemas\/Nope"/);
  });

  test('lists exactly the operations the server answers', () => {
    const routes = listRoutes(server.server.app);
    const answered = routes
      .filter(isApiOperation)
      .map((r) => `${r.method} ${shape(r.url.slice('/v1'.length))}`)
      .sort();
    const documented = Object.entries(document['paths'] as Record<string, Json>)
      .flatMap(([path, item]) =>
        Object.keys(item)
          .filter((key) => METHODS.includes(key))
          .map((method) => `${method.toUpperCase()} ${shape(path)}`),
      )
      .sort();
    assert.deepEqual(documented, answered);
    // The walk saw the whole API, extensions included, and what it left out is only what isApiOperation names.
    for (const expected of ['GET /threads/{}/runs/{}/events', 'POST /files', 'GET /models/{}', 'GET /openapi.json'])
      assert.ok(answered.includes(expected), expected);
    assert.deepEqual(
      [...new Set(routes.filter((r) => !isApiOperation(r)).map((r) => (r.method === 'HEAD' ? 'HEAD' : r.url)))].sort(),
      [
        '/',
        '/healthz',
        '/playground',
        '/playground/*',
        'HEAD',
        ...(routes.some((r) => r.url === '/metrics') ? ['/metrics'] : []),
      ].sort(),
    );
  });

  test('says how /openai and API keys work', () => {
    const servers = (document['servers'] as Array<{ url: string }>).map((s) => s.url);
    assert.deepEqual(servers, ['/v1', '/openai']);
    assert.match(String((document['info'] as Json)['description']), /\/openai/);
    const components = document['components'] as Record<string, Json>;
    assert.deepEqual(Object.keys(components['securitySchemes']!).sort(), ['AdminApiKey', 'ApiKeyAuth', 'AzureApiKey']);
  });

  test('is protected by the API key like every /v1 route, and served under /openai too', async () => {
    const missing = await fetch(`${server.url}/v1/openapi.json`);
    assert.equal(missing.status, 401);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'invalid_api_key');
    const azure = await fetch(`${server.url}/openai/openapi.json?api-version=2024-05-01-preview`, {
      headers: { 'api-key': KEY },
    });
    assert.equal(azure.status, 200);
    assert.deepEqual(await azure.json(), document);
  });
});

test('an app with fewer routes gets a document of those, with only the components they reference', async () => {
  const app = Fastify();
  app.get('/v1/assistants', async () => ({}));
  app.get('/v1/models/*', async () => ({}));
  registerOpenApiRoute(app);
  const response = await app.inject({ method: 'GET', url: '/v1/openapi.json' });
  await app.close();
  const document = response.json() as { paths: Record<string, Json>; components: Record<string, Json> };
  assert.deepEqual(
    Object.entries(document.paths).flatMap(([path, item]) => Object.keys(item).map((m) => `${m} ${path}`)),
    ['get /assistants', 'get /models/{model}', 'get /openapi.json'],
  );
  const schemas = Object.keys(document.components['schemas']!);
  for (const name of ['ListAssistantsResponse', 'AssistantObject', 'Model', 'ErrorResponse'])
    assert.ok(schemas.includes(name), name);
  for (const name of ['CreateRunRequest', 'AssistantStreamEvent', 'VectorStoreObject', 'ListModelsResponse'])
    assert.ok(!schemas.includes(name), name);
  assert.equal(await validation(document), undefined);
});
