import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type IdKind, newId } from '../../src/domain/ids.ts';
import { eventually } from '../support/eventually.ts';
import { FakeUpstream } from '../support/fake-upstream.ts';
import { fileSearchCall, toolMessages } from '../support/file-search.ts';
import { findOperation } from '../support/openapi.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { listRoutes, type RouteEntry } from '../support/route-table.ts';
import { ApiClient, type ApiResponse, startTestServer, type TestServer } from '../support/server.ts';

/**
 * Projects are isolated (issue 15), on SQLite and PostgreSQL. Two projects, A and B, each with its own key and one
 * object of every kind; then, as A:
 * - every route of the route table that takes an id, called with B's ids, answers 404 exactly as it does for an
 *   unknown id (status, type, code, param, and the message but for the id), and changes nothing of B's or A's;
 *   nested routes are also called with A's parents and B's children (A's thread, B's message);
 * - every list shows A's objects and none of B's, and a cursor naming B's object reads as an unknown one;
 * - no tool resource, attachment or assistant of B can be named in a create or modify (the same 404 again).
 * The default project of ASSISTD_API_KEY is a third project, as isolated as the others.
 */

const ADMIN_KEY = 'isolation-admin-key-0123456789';
const DEFAULT_PROJECT_KEY = 'isolation-default-project-key-0123456789';

/** The id kind of each path parameter. A route with a parameter missing here fails the sweep: add it. */
const PARAM_KIND: Record<string, IdKind> = {
  assistant_id: 'assistant',
  thread_id: 'thread',
  message_id: 'message',
  run_id: 'run',
  step_id: 'step',
  file_id: 'file',
  vector_store_id: 'vectorStore',
  batch_id: 'fileBatch',
  /** Not a path parameter: the file a batch added, which its list shows. */
  batch_file_id: 'file',
};

/** One object of every kind, by path parameter name. */
type Ids = Record<string, string>;

/**
 * The body each POST route with a path id is called with: valid (so that validation cannot answer before the id
 * lookup) and naming the caller's own objects only (`own`), so that the path's ids are the only foreign ones. Several
 * bodies: each is called (a stream must not open either). A POST route missing here fails the sweep: add it.
 */
const POST_BODIES: Record<string, (own: Ids) => unknown[]> = {
  'POST /v1/assistants/:assistant_id': () => [{ metadata: { touched: 'yes' } }],
  'POST /v1/threads/:thread_id': () => [{ metadata: { touched: 'yes' } }],
  'POST /v1/threads/:thread_id/messages': () => [{ role: 'user', content: 'intruder' }],
  'POST /v1/threads/:thread_id/messages/:message_id': () => [{ metadata: { touched: 'yes' } }],
  'POST /v1/threads/:thread_id/runs': (own) => [
    { assistant_id: own['assistant_id'] },
    { assistant_id: own['assistant_id'], stream: true },
  ],
  'POST /v1/threads/:thread_id/runs/:run_id': () => [{ metadata: { touched: 'yes' } }],
  'POST /v1/threads/:thread_id/runs/:run_id/cancel': () => [undefined],
  'POST /v1/threads/:thread_id/runs/:run_id/submit_tool_outputs': () => [
    { tool_outputs: [{ tool_call_id: 'call_x', output: '1' }] },
    { tool_outputs: [{ tool_call_id: 'call_x', output: '1' }], stream: true },
  ],
  'POST /v1/vector_stores/:vector_store_id': () => [{ name: 'renamed' }],
  'POST /v1/vector_stores/:vector_store_id/search': () => [{ query: 'invoice' }],
  'POST /v1/vector_stores/:vector_store_id/files': (own) => [{ file_id: own['file_id'] }],
  'POST /v1/vector_stores/:vector_store_id/files/:file_id': () => [{ attributes: { touched: 'yes' } }],
  'POST /v1/vector_stores/:vector_store_id/file_batches': (own) => [{ file_ids: [own['file_id']] }],
  'POST /v1/vector_stores/:vector_store_id/file_batches/:batch_id/cancel': () => [undefined],
};

/** The path parameter naming the items of each list route, for cursors (`after=`). A list missing here fails. */
const LIST_ITEM_PARAM: Record<string, string> = {
  '/v1/assistants': 'assistant_id',
  '/v1/threads': 'thread_id',
  '/v1/files': 'file_id',
  '/v1/vector_stores': 'vector_store_id',
  '/v1/threads/:thread_id/messages': 'message_id',
  '/v1/threads/:thread_id/runs': 'run_id',
  '/v1/threads/:thread_id/runs/:run_id/steps': 'step_id',
  '/v1/vector_stores/:vector_store_id/files': 'file_id',
  '/v1/vector_stores/:vector_store_id/file_batches/:batch_id/files': 'batch_file_id',
};

/** The project's routes, HEAD aside: not the admin API, the models (no project's), nor the spec. */
function projectRoutes(routes: RouteEntry[]): RouteEntry[] {
  return routes.filter(
    (r) =>
      r.method !== 'HEAD' &&
      r.url.startsWith('/v1/') &&
      !r.url.startsWith('/v1/organization') &&
      !r.url.startsWith('/v1/models') &&
      r.url !== '/v1/openapi.json',
  );
}

/** Path parameters that name no object of a project: an Azure deployment is a model's name (pass-through.ts). */
const NOT_IDS = new Set(['deployment']);

/** The ids a route's path names. */
function paramsOf(url: string): string[] {
  return [...url.matchAll(/:(\w+)/g)].map((m) => m[1]!).filter((name) => !NOT_IDS.has(name));
}

function fill(url: string, ids: Ids): string {
  return url.replace(/:(\w+)/g, (_, name: string) => {
    const id = ids[name];
    assert.ok(id, `${url}: no id for :${name}`);
    return id;
  });
}

function unknownIds(): Ids {
  return Object.fromEntries(Object.entries(PARAM_KIND).map(([name, kind]) => [name, newId(kind)]));
}

type ErrorBody = { error: { message: string; type: string; param: string | null; code: string | null } };

/** The error with every id of `ids` replaced by its parameter's name: comparable between two calls. */
function normalized(response: ApiResponse, ids: Ids) {
  const { error } = response.body as ErrorBody;
  assert.ok(error, `an error body: ${JSON.stringify(response.body)}`);
  let message = error.message;
  for (const [name, id] of Object.entries(ids)) message = message.replaceAll(id, `<${name}>`);
  return { status: response.status, type: error.type, code: error.code, param: error.param, message };
}

/** A project's client: JSON calls (schema-checked) and raw fetches, with its key. */
class Caller {
  readonly api: ApiClient;
  constructor(
    readonly url: string,
    readonly key: string,
  ) {
    this.api = new ApiClient(url, { authorization: `Bearer ${key}` });
  }

  fetch(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(this.url + path, { ...init, headers: { authorization: `Bearer ${this.key}`, ...init.headers } });
  }

  async ok(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
    const response = await this.api.request(method, path, body);
    assert.equal(response.status, 200, `${method} ${path}: ${JSON.stringify(response.body)}`);
    return response.body;
  }

  async upload(name: string, text: string): Promise<string> {
    const form = new FormData();
    form.append('purpose', 'assistants');
    form.append('file', new Blob([Buffer.from(text)]), name);
    const response = await this.fetch('/v1/files', { method: 'POST', body: form });
    assert.equal(response.status, 200);
    return ((await response.json()) as { id: string }).id;
  }

  /** The ids of a list's items (one page of 100: the tests' projects hold fewer). */
  async listIds(path: string): Promise<string[]> {
    // An extension's list (GET /v1/threads) is not in the official spec, whose schemas check the others.
    const validate = findOperation('GET', path) !== undefined;
    const response = await this.api.request('GET', `${path}?limit=100`, undefined, { validate });
    assert.equal(response.status, 200, `GET ${path}: ${JSON.stringify(response.body)}`);
    const body = response.body;
    return (body['data'] as Array<{ id: string }>).map((item) => item.id);
  }
}

/**
 * One object of every kind in the caller's project: a file in a vector store, a second one added by a file batch, an
 * assistant with file_search over the store and code_interpreter with the file, and a thread with a message and a
 * completed run (the fake model answers) with its step. `topic` is the text of the project's documents.
 */
async function buildWorld(caller: Caller, topic: string): Promise<Ids> {
  const fileId = await caller.upload('doc.txt', topic);
  const batchFileId = await caller.upload('batch.txt', `${topic} (batch)`);
  const vectorStoreId = (await caller.ok('POST', '/v1/vector_stores', { name: 'docs', file_ids: [fileId] }))[
    'id'
  ] as string;
  const batchId = (
    await caller.ok('POST', `/v1/vector_stores/${vectorStoreId}/file_batches`, { file_ids: [batchFileId] })
  )['id'] as string;
  await eventually('the batch to be ingested', 20_000, async () => {
    const batch = await caller.ok('GET', `/v1/vector_stores/${vectorStoreId}/file_batches/${batchId}`);
    return batch['status'] === 'completed' ? batch : undefined;
  });
  await eventually('the store to be ingested', 20_000, async () => {
    const store = await caller.ok('GET', `/v1/vector_stores/${vectorStoreId}`);
    const counts = store['file_counts'] as Record<string, number>;
    return counts['completed'] === 2 ? store : undefined;
  });
  const assistantId = (
    await caller.ok('POST', '/v1/assistants', {
      model: 'gpt-test',
      tools: [{ type: 'file_search' }, { type: 'code_interpreter' }],
      tool_resources: {
        file_search: { vector_store_ids: [vectorStoreId] },
        code_interpreter: { file_ids: [fileId] },
      },
    })
  )['id'] as string;
  const threadId = (await caller.ok('POST', '/v1/threads', { messages: [{ role: 'user', content: 'Hello?' }] }))[
    'id'
  ] as string;
  const [messageId] = await caller.listIds(`/v1/threads/${threadId}/messages`);
  const runId = (await caller.ok('POST', `/v1/threads/${threadId}/runs`, { assistant_id: assistantId }))[
    'id'
  ] as string;
  await eventually('the run to complete', 20_000, async () => {
    const run = await caller.ok('GET', `/v1/threads/${threadId}/runs/${runId}`);
    assert.ok(
      !['failed', 'expired', 'cancelled', 'incomplete'].includes(run['status'] as string),
      String(run['status']),
    );
    return run['status'] === 'completed' ? run : undefined;
  });
  const [stepId] = await caller.listIds(`/v1/threads/${threadId}/runs/${runId}/steps`);
  assert.ok(messageId && stepId);
  return {
    assistant_id: assistantId,
    thread_id: threadId,
    message_id: messageId,
    run_id: runId,
    step_id: stepId,
    file_id: fileId,
    vector_store_id: vectorStoreId,
    batch_id: batchId,
    batch_file_id: batchFileId,
  };
}

/** The server's answer to every GET route (filled with `ids`) and list, as the owner reads it: status and body. */
async function snapshot(caller: Caller, routes: RouteEntry[], ids: Ids): Promise<Record<string, string>> {
  const seen: Record<string, string> = {};
  for (const route of routes) {
    // The events route is a live stream (its frames are checked by the streaming tests): the run's GET covers it.
    if (route.method !== 'GET' || route.url.endsWith('/events')) continue;
    const path = fill(route.url, ids);
    const response = await caller.fetch(path);
    seen[path] = `${response.status} ${await response.text()}`;
    assert.equal(response.status, 200, `the owner's GET ${path}: ${seen[path]}`);
  }
  return seen;
}

interface Database {
  env: Record<string, string>;
  drop(): Promise<void>;
}

const postgresUrl = postgresUrlOrSkip();
isolationSuite('SQLite', async () => ({ env: {}, drop: async () => {} }));
if (postgresUrl)
  isolationSuite('PostgreSQL', async () => {
    const database = await createTestDatabase(postgresUrl);
    return { env: { ASSISTD_DATABASE_URL: database.url }, drop: () => database.drop() };
  });
else describe('project isolation on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});

function isolationSuite(name: string, makeDatabase: () => Promise<Database>): void {
  describe(`project isolation on ${name}`, () => {
    let database: Database;
    let upstream: FakeUpstream;
    let server: TestServer;
    let routes: RouteEntry[];
    let a: Caller;
    let b: Caller;
    let defaultProject: Caller;
    let aIds: Ids;
    let bIds: Ids;

    before(async () => {
      database = await makeDatabase();
      upstream = await FakeUpstream.start();
      server = await startTestServer({
        ...database.env,
        ASSISTD_ADMIN_KEY: ADMIN_KEY,
        ASSISTD_API_KEY: DEFAULT_PROJECT_KEY,
        ASSISTD_UPSTREAM_BASE_URL: upstream.baseUrl,
        ASSISTD_UPSTREAM_MAX_RETRIES: '0',
      });
      routes = projectRoutes(listRoutes(server.server.app));
      const admin = new ApiClient(server.url, { authorization: `Bearer ${ADMIN_KEY}` });
      // The admin API is not in the official spec: its answers are checked by the admin API's own tests.
      const created = async (path: string, body: unknown) => {
        const response = await admin.request('POST', path, body, { validate: false });
        assert.equal(response.status, 200, JSON.stringify(response.body));
        return response.body;
      };
      const keyOf = async (projectName: string) => {
        const project = await created('/v1/organization/projects', { name: projectName });
        return (await created(`/v1/organization/projects/${project['id']}/api_keys`, {}))['value'] as string;
      };
      a = new Caller(server.url, await keyOf('A'));
      b = new Caller(server.url, await keyOf('B'));
      defaultProject = new Caller(server.url, DEFAULT_PROJECT_KEY);
      aIds = await buildWorld(a, 'Pizza recipes for dinner.');
      bIds = await buildWorld(b, 'Invoice payment and billing secrets of project B.');
    });
    after(async () => {
      await server?.close();
      await upstream?.close();
      await database?.drop();
    });

    test('every route with an id answers another project’s ids as unknown ones (404) and changes nothing', async () => {
      const swept = routes.filter((r) => paramsOf(r.url).length > 0);
      for (const route of swept)
        for (const param of paramsOf(route.url))
          assert.ok(PARAM_KIND[param], `${route.method} ${route.url}: add :${param} to PARAM_KIND`);
      for (const route of swept.filter((r) => r.method === 'POST'))
        assert.ok(POST_BODIES[`POST ${route.url}`], `POST ${route.url}: add a body to POST_BODIES`);
      assert.ok(swept.length >= 30, `${swept.length} routes with ids`);

      const beforeB = await snapshot(b, routes, bIds);
      const beforeA = await snapshot(a, routes, aIds);
      // The events route streams for its owner (a completed run: its snapshot, then the end): its 404 means something.
      for (const route of swept.filter((r) => r.url.endsWith('/events'))) {
        const response = await b.fetch(fill(route.url, bIds));
        assert.equal(response.status, 200);
        assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
        assert.match(await response.text(), /event: thread\.run\.completed/);
      }
      let calls = 0;
      for (const route of swept) {
        const params = paramsOf(route.url);
        const bodies = route.method === 'POST' ? POST_BODIES[`POST ${route.url}`]!(aIds) : [undefined];
        // B's ids from parameter `from` on; A's own before it (A's thread, B's message).
        for (let from = 0; from < params.length; from++) {
          const ownPart = Object.fromEntries(params.slice(0, from).map((p) => [p, aIds[p]!]));
          const foreign = { ...bIds, ...ownPart };
          const unknown = { ...unknownIds(), ...ownPart };
          for (const body of bodies) {
            const what = `${route.method} ${fill(route.url, foreign)} ${JSON.stringify(body) ?? ''}`;
            calls++;
            const answer = await a.api.request(route.method, fill(route.url, foreign), body);
            const reference = await a.api.request(route.method, fill(route.url, unknown), body);
            assert.equal(reference.status, 404, `${what} with unknown ids: ${JSON.stringify(reference.body)}`);
            assert.deepEqual(normalized(answer, foreign), normalized(reference, unknown), what);
            if (route.method === 'GET') {
              const head = await a.api.request('HEAD', fill(route.url, foreign), undefined, { validate: false });
              assert.equal(head.status, 404, `HEAD ${what}`);
            }
          }
        }
      }
      assert.deepEqual(await snapshot(b, routes, bIds), beforeB, "B's objects are unchanged");
      assert.deepEqual(await snapshot(a, routes, aIds), beforeA, "A's objects are unchanged");
      assert.ok(calls > swept.length, `${calls} calls`);
    });

    test('lists show the caller’s objects only; a cursor naming another project’s object reads as unknown', async () => {
      const lists = routes.filter((r) => r.method === 'GET' && LIST_ITEM_PARAM[r.url] !== undefined);
      const unlisted = routes.filter(
        (r) => r.method === 'GET' && (paramsOf(r.url).length === 0 || /\/(files|messages|runs|steps)$/.test(r.url)),
      );
      for (const route of unlisted)
        assert.ok(LIST_ITEM_PARAM[route.url], `GET ${route.url}: add it to LIST_ITEM_PARAM`);
      const everyB = new Set(Object.values(bIds));
      for (const route of lists) {
        const item = LIST_ITEM_PARAM[route.url]!;
        const path = fill(route.url, aIds);
        const seen = await a.listIds(path);
        assert.ok(seen.includes(aIds[item]!), `GET ${path} as A shows A's ${item}: ${seen}`);
        assert.deepEqual(
          seen.filter((id) => everyB.has(id)),
          [],
          `GET ${path} as A shows none of B's objects`,
        );
        const cursor = { [item]: newId(PARAM_KIND[item]!) };
        const validate = findOperation('GET', path) !== undefined;
        const viaB = await a.api.request('GET', `${path}?after=${bIds[item]}`, undefined, { validate });
        const viaUnknown = await a.api.request('GET', `${path}?after=${cursor[item]}`, undefined, { validate });
        assert.deepEqual(
          viaB.status === 200 ? viaB.body : normalized(viaB, { [item]: bIds[item]! }),
          viaUnknown.status === 200 ? viaUnknown.body : normalized(viaUnknown, cursor),
          `GET ${path}?after=<B's ${item}>`,
        );
      }
      assert.ok(lists.some((r) => r.url === '/v1/assistants') && lists.some((r) => r.url === '/v1/files'));
    });

    test('no tool resource, attachment or assistant of another project can be named', async () => {
      const cases: Array<[string, string, (x: Ids) => unknown]> = [
        [
          'POST',
          '/v1/assistants',
          (x) => ({
            model: 'gpt-test',
            tools: [{ type: 'file_search' }],
            tool_resources: { file_search: { vector_store_ids: [x['vector_store_id']] } },
          }),
        ],
        [
          'POST',
          '/v1/assistants',
          (x) => ({
            model: 'gpt-test',
            tools: [{ type: 'code_interpreter' }],
            tool_resources: { code_interpreter: { file_ids: [x['file_id']] } },
          }),
        ],
        [
          'POST',
          '/v1/assistants',
          (x) => ({
            model: 'gpt-test',
            tools: [{ type: 'file_search' }],
            tool_resources: { file_search: { vector_stores: [{ file_ids: [x['file_id']] }] } },
          }),
        ],
        [
          'POST',
          `/v1/assistants/${aIds['assistant_id']}`,
          (x) => ({ tool_resources: { file_search: { vector_store_ids: [x['vector_store_id']] } } }),
        ],
        [
          'POST',
          `/v1/assistants/${aIds['assistant_id']}`,
          (x) => ({ tool_resources: { code_interpreter: { file_ids: [x['file_id']] } } }),
        ],
        [
          'POST',
          '/v1/threads',
          (x) => ({ tool_resources: { file_search: { vector_store_ids: [x['vector_store_id']] } } }),
        ],
        ['POST', '/v1/threads', (x) => ({ tool_resources: { code_interpreter: { file_ids: [x['file_id']] } } })],
        ['POST', '/v1/threads', (x) => ({ messages: [attachment(x['file_id']!)] })],
        [
          'POST',
          `/v1/threads/${aIds['thread_id']}`,
          (x) => ({ tool_resources: { file_search: { vector_store_ids: [x['vector_store_id']] } } }),
        ],
        [
          'POST',
          `/v1/threads/${aIds['thread_id']}`,
          (x) => ({ tool_resources: { code_interpreter: { file_ids: [x['file_id']] } } }),
        ],
        ['POST', `/v1/threads/${aIds['thread_id']}/messages`, (x) => attachment(x['file_id']!)],
        [
          'POST',
          `/v1/threads/${aIds['thread_id']}/messages`,
          (x) => ({ role: 'user', content: [{ type: 'image_file', image_file: { file_id: x['file_id'] } }] }),
        ],
        ['POST', `/v1/threads/${aIds['thread_id']}/runs`, (x) => ({ assistant_id: x['assistant_id'] })],
        ['POST', `/v1/threads/${aIds['thread_id']}/runs`, (x) => ({ assistant_id: x['assistant_id'], stream: true })],
        [
          'POST',
          `/v1/threads/${aIds['thread_id']}/runs`,
          (x) => ({ assistant_id: aIds['assistant_id'], additional_messages: [attachment(x['file_id']!)] }),
        ],
        ['POST', '/v1/threads/runs', (x) => ({ assistant_id: x['assistant_id'] })],
        [
          'POST',
          '/v1/threads/runs',
          (x) => ({
            assistant_id: aIds['assistant_id'],
            tool_resources: { file_search: { vector_store_ids: [x['vector_store_id']] } },
          }),
        ],
        [
          'POST',
          '/v1/threads/runs',
          (x) => ({
            assistant_id: aIds['assistant_id'],
            tool_resources: { code_interpreter: { file_ids: [x['file_id']] } },
          }),
        ],
        [
          'POST',
          '/v1/threads/runs',
          (x) => ({
            assistant_id: aIds['assistant_id'],
            thread: { tool_resources: { file_search: { vector_store_ids: [x['vector_store_id']] } } },
          }),
        ],
        [
          'POST',
          '/v1/threads/runs',
          (x) => ({ assistant_id: aIds['assistant_id'], thread: { messages: [attachment(x['file_id']!)] } }),
        ],
        ['POST', '/v1/vector_stores', (x) => ({ file_ids: [x['file_id']] })],
        ['POST', `/v1/vector_stores/${aIds['vector_store_id']}/files`, (x) => ({ file_id: x['file_id'] })],
        ['POST', `/v1/vector_stores/${aIds['vector_store_id']}/file_batches`, (x) => ({ file_ids: [x['file_id']] })],
      ];
      const beforeA = await snapshot(a, routes, aIds);
      const beforeB = await snapshot(b, routes, bIds);
      for (const [method, path, body] of cases) {
        const unknown = unknownIds();
        const what = `${method} ${path} ${JSON.stringify(body(bIds))}`;
        const answer = await a.api.request(method, path, body(bIds));
        const reference = await a.api.request(method, path, body(unknown));
        assert.equal(reference.status, 404, `${what} with unknown ids: ${JSON.stringify(reference.body)}`);
        assert.deepEqual(normalized(answer, bIds), normalized(reference, unknown), what);
      }
      assert.deepEqual(await snapshot(a, routes, aIds), beforeA, 'A has nothing new');
      assert.deepEqual(await snapshot(b, routes, bIds), beforeB, "B's objects are unchanged");
    });

    test('a run reads its own project’s files only', async () => {
      const seen = upstream.requests.length;
      upstream.enqueue(fileSearchCall('invoice payment billing pizza recipes'), { text: 'Done.' });
      const run = await a.ok('POST', `/v1/threads/${aIds['thread_id']}/runs`, { assistant_id: aIds['assistant_id'] });
      await eventually('the run to complete', 20_000, async () => {
        const now = await a.ok('GET', `/v1/threads/${aIds['thread_id']}/runs/${run['id']}`);
        assert.ok(now['status'] !== 'failed', JSON.stringify(now['last_error']));
        return now['status'] === 'completed' ? now : undefined;
      });
      const [results] = toolMessages(upstream.requests[seen + 1]);
      assert.match(results!, /Pizza recipes/, 'A finds its own document');
      assert.doesNotMatch(results!, /Invoice|project B/, "A finds nothing of B's");
    });

    test('the default project of ASSISTD_API_KEY sees no project’s objects, and no project sees its', async () => {
      const own = (await defaultProject.ok('POST', '/v1/assistants', { model: 'gpt-test' }))['id'] as string;
      assert.deepEqual(await defaultProject.listIds('/v1/assistants'), [own]);
      assert.deepEqual(await defaultProject.listIds('/v1/files'), []);
      assert.deepEqual(await defaultProject.listIds('/v1/vector_stores'), []);
      for (const caller of [a, b]) assert.ok(!(await caller.listIds('/v1/assistants')).includes(own));

      const unknown = unknownIds();
      for (const route of [
        '/v1/assistants/:assistant_id',
        '/v1/threads/:thread_id',
        '/v1/files/:file_id',
        '/v1/vector_stores/:vector_store_id',
      ]) {
        const answer = await defaultProject.api.get(fill(route, aIds));
        const reference = await defaultProject.api.get(fill(route, unknown));
        assert.equal(answer.status, 404, `GET ${fill(route, aIds)} as the default project`);
        assert.deepEqual(normalized(answer, aIds), normalized(reference, unknown), `GET ${route} with A's id`);
      }
      const intruded = await a.api.get(`/v1/assistants/${own}`);
      assert.equal(intruded.status, 404);
    });
  });
}

/** A user message attaching a file for file_search. */
function attachment(fileId: string) {
  return {
    role: 'user',
    content: 'See the file.',
    attachments: [{ file_id: fileId, tools: [{ type: 'file_search' }] }],
  };
}
