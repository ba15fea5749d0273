import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Ajv2019 } from 'ajv/dist/2019.js';
import OpenAI from 'openai';
import { ORGANIZATION_SCHEMAS } from '../../src/api/routes/organization-openapi.ts';
import { createTestDatabase, postgresUrlOrSkip, type TestDatabase } from '../support/postgres.ts';
import {
  ApiClient,
  runCli,
  type ServerProcess,
  spawnServer,
  startTestServer,
  type TestServer,
} from '../support/server.ts';

const ADMIN_KEY = 'sk-admin-test-key-0001';
const SINGLE_KEY = 'sk-single-project-key-0002';

type Json = Record<string, unknown>;

const ajv = new Ajv2019({ strict: false, allErrors: true });
ajv.addSchema({ $id: 'https://assistd.local/organization.json', components: { schemas: ORGANIZATION_SCHEMAS } });

/** The admin API's responses against the schemas /v1/openapi.json publishes for them. */
function assertSchema(name: string, value: unknown): void {
  const validate = ajv.getSchema(`https://assistd.local/organization.json#/components/schemas/${name}`)!;
  assert.ok(validate(value), `${name}: ${JSON.stringify(validate.errors)}\n${JSON.stringify(value)}`);
}

function client(url: string, key?: string): ApiClient {
  return new ApiClient(url, key === undefined ? {} : { authorization: `Bearer ${key}` });
}

/** Validated by the client too: /v1/openapi.json documents the admin API (test/support/openapi.ts reads it). */
async function call(api: ApiClient, method: string, url: string, body?: unknown) {
  return api.request<Json>(method, url, body);
}

async function createKey(admin: ApiClient, projectId: string, name = 'test'): Promise<{ id: string; value: string }> {
  const created = await call(admin, 'POST', `/v1/organization/projects/${projectId}/api_keys`, { name });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  assertSchema('ProjectApiKeyWithValue', created.body);
  return { id: created.body['id'] as string, value: created.body['value'] as string };
}

describe('projects and API keys (SQLite, one process)', () => {
  let server: TestServer;
  let admin: ApiClient;

  before(async () => {
    server = await startTestServer({ ASSISTD_ADMIN_KEY: ADMIN_KEY, ASSISTD_API_KEY: SINGLE_KEY });
    admin = client(server.url, ADMIN_KEY);
  });
  after(() => server.close());

  test('the admin API creates, lists, retrieves, renames and archives projects', async () => {
    const created = await call(admin, 'POST', '/v1/organization/projects', { name: 'Team A' });
    assert.equal(created.status, 200);
    assertSchema('Project', created.body);
    assert.equal(created.body['status'], 'active');
    const id = created.body['id'] as string;
    assert.match(id, /^proj_/);

    const renamed = await call(admin, 'POST', `/v1/organization/projects/${id}`, { name: 'Team A2' });
    assert.equal(renamed.body['name'], 'Team A2');
    assert.deepEqual((await call(admin, 'GET', `/v1/organization/projects/${id}`)).body, renamed.body);

    const archived = await call(admin, 'POST', `/v1/organization/projects/${id}/archive`);
    assertSchema('Project', archived.body);
    assert.equal(archived.body['status'], 'archived');
    assert.equal(typeof archived.body['archived_at'], 'number');

    const active = await call(admin, 'GET', '/v1/organization/projects?limit=100');
    assertSchema('ProjectListResponse', active.body);
    const ids = (active.body['data'] as Json[]).map((p) => p['id']);
    assert.ok(ids.includes('proj_default') && !ids.includes(id));
    const all = await call(admin, 'GET', '/v1/organization/projects?limit=100&include_archived=true');
    assert.ok((all.body['data'] as Json[]).some((p) => p['id'] === id));

    const refused = await call(admin, 'POST', '/v1/organization/projects/proj_default/archive');
    assert.equal(refused.status, 400);
    assert.match((refused.body['error'] as Json)['message'] as string, /default project cannot be archived/);
    const noKeys = await call(admin, 'POST', `/v1/organization/projects/${id}/api_keys`, { name: 'late' });
    assert.equal(noKeys.status, 400);
    // "Archived projects cannot be used or updated" (OpenAI's Administration API).
    const unchanged = await call(admin, 'POST', `/v1/organization/projects/${id}`, { name: 'renamed after archive' });
    assert.equal(unchanged.status, 400);
    assert.equal((unchanged.body['error'] as Json)['param'], 'project_id');
    assert.equal((await call(admin, 'GET', `/v1/organization/projects/${id}`)).body['name'], 'Team A2');
    // Archiving again changes nothing, its archived_at included.
    assert.deepEqual((await call(admin, 'POST', `/v1/organization/projects/${id}/archive`)).body, archived.body);
  });

  test('project lists page with limit and after, each project once', async () => {
    for (let i = 0; i < 5; i++) await call(admin, 'POST', '/v1/organization/projects', { name: `page ${i}` });
    const seen: string[] = [];
    let after = '';
    for (;;) {
      const page = await call(admin, 'GET', `/v1/organization/projects?limit=2&include_archived=true${after}`);
      assertSchema('ProjectListResponse', page.body);
      const data = page.body['data'] as Json[];
      seen.push(...data.map((p) => p['id'] as string));
      if (!page.body['has_more']) break;
      after = `&after=${page.body['last_id']}`;
    }
    const whole = await call(admin, 'GET', '/v1/organization/projects?limit=100&include_archived=true');
    assert.deepEqual(
      seen,
      (whole.body['data'] as Json[]).map((p) => p['id']),
    );
    assert.equal(new Set(seen).size, seen.length);
  });

  test("a key's value is shown once: lists and retrieval show it redacted, and it works at once", async () => {
    const project = (await call(admin, 'POST', '/v1/organization/projects', { name: 'keys' })).body['id'] as string;
    const key = await createKey(admin, project, 'ci');
    assert.match(key.value, /^sk-proj-[0-9A-Za-z]{24}_[0-9A-Za-z_-]{43}$/);

    const listed = await call(admin, 'GET', `/v1/organization/projects/${project}/api_keys`);
    assertSchema('ProjectApiKeyListResponse', listed.body);
    const retrieved = await call(admin, 'GET', `/v1/organization/projects/${project}/api_keys/${key.id}`);
    assertSchema('ProjectApiKey', retrieved.body);
    for (const shown of [JSON.stringify(listed.body), JSON.stringify(retrieved.body)]) {
      assert.ok(!shown.includes(key.value.slice(-43)), 'the secret is shown again');
      assert.ok(!shown.includes('"value"'));
    }
    assert.equal(retrieved.body['redacted_value'], `${key.value.slice(0, 12)}…${key.value.slice(-4)}`);
    assert.equal(retrieved.body['last_used_at'], null);

    const api = client(server.url, key.value);
    const assistant = await api.post('/v1/assistants', { model: 'gpt-4o-mini' });
    assert.equal(assistant.status, 200);
    const used = await call(admin, 'GET', `/v1/organization/projects/${project}/api_keys/${key.id}`);
    assert.equal(typeof used.body['last_used_at'], 'number');

    // Of another project, the key is unknown; an unknown key id is a 404 too.
    const other = await call(admin, 'GET', `/v1/organization/projects/proj_default/api_keys/${key.id}`);
    assert.equal(other.status, 404);
    const deleted = await call(admin, 'DELETE', `/v1/organization/projects/${project}/api_keys/${key.id}`);
    assert.deepEqual(deleted.body, { object: 'organization.project.api_key.deleted', id: key.id, deleted: true });
    assertSchema('ProjectApiKeyDeleteResponse', deleted.body);
    assert.equal((await api.get('/v1/assistants')).status, 401);
    assert.equal((await call(admin, 'DELETE', `/v1/organization/projects/${project}/api_keys/${key.id}`)).status, 404);
  });

  test('who may call what: admin key, project key, ASSISTD_API_KEY, no key, a wrong key', async () => {
    const project = (await call(admin, 'POST', '/v1/organization/projects', { name: 'who' })).body['id'] as string;
    const key = await createKey(admin, project);
    const cases: Array<[string | undefined, string, string, number]> = [
      [undefined, 'GET', '/v1/assistants', 401],
      ['sk-not-a-key', 'GET', '/v1/assistants', 401],
      [`${key.value.slice(0, -1)}x`, 'GET', '/v1/assistants', 401],
      ['sk-proj-short', 'GET', '/v1/assistants', 401],
      [key.value, 'GET', '/v1/assistants', 200],
      [SINGLE_KEY, 'GET', '/v1/assistants', 200],
      [ADMIN_KEY, 'GET', '/v1/assistants', 403],
      [key.value, 'GET', '/v1/organization/projects', 403],
      [SINGLE_KEY, 'GET', '/v1/organization/projects', 403],
      [undefined, 'GET', '/v1/organization/projects', 401],
      [ADMIN_KEY, 'GET', '/v1/organization/projects', 200],
      [ADMIN_KEY, 'GET', '/metrics', 200],
      [SINGLE_KEY, 'GET', '/metrics', 200],
      [key.value, 'GET', '/metrics', 403],
      [undefined, 'GET', '/metrics', 401],
      [undefined, 'GET', '/healthz', 200],
      // The router decodes the path: a percent-encoded letter reaches the same route and needs the same key.
      [undefined, 'GET', '/%761/organization/projects', 401],
      [undefined, 'POST', `/%761/organization/projects/${project}/api_keys`, 401],
      [key.value, 'GET', '/v1/%6Frganization/projects', 403],
      [SINGLE_KEY, 'GET', `/v1/organization/%70rojects/${project}/api_keys`, 403],
      [ADMIN_KEY, 'GET', '/v1/%6Frganization/projects', 200],
      [undefined, 'GET', '/%6detrics', 401],
      [key.value, 'GET', '/%6Detrics', 403],
      [undefined, 'GET', '/%761/assistants', 401],
      [undefined, 'GET', '/%761/models', 401],
      [undefined, 'GET', '/%761/openapi.json', 401],
      [ADMIN_KEY, 'GET', '/v1/%61ssistants', 403],
      [key.value, 'GET', '/%761/assistants', 200],
      [undefined, 'GET', '/v1/no-such-route', 401],
    ];
    for (const [presented, method, url, status] of cases) {
      const headers: Record<string, string> = presented === undefined ? {} : { authorization: `Bearer ${presented}` };
      const response = await fetch(server.url + url, { method, headers });
      assert.equal(response.status, status, `${presented ?? 'no key'} ${method} ${url}`);
      if (status >= 400) {
        const body = (await response.json()) as { error: Json };
        assert.equal(typeof body.error['message'], 'string');
        if (presented !== undefined && presented.length > 30)
          assert.ok(!JSON.stringify(body).includes(presented.slice(12, -4)), 'the error quotes the key');
      } else await response.arrayBuffer();
    }
    // Azure clients send the key as `api-key`.
    const azure = await fetch(`${server.url}/openai/assistants?api-version=2024-05-01-preview`, {
      headers: { 'api-key': key.value },
    });
    assert.equal(azure.status, 200);
  });

  test("an archived project's keys stop at once; its objects stay", async () => {
    const project = (await call(admin, 'POST', '/v1/organization/projects', { name: 'arch' })).body['id'] as string;
    const key = await createKey(admin, project);
    const api = client(server.url, key.value);
    assert.equal((await api.post('/v1/assistants', { model: 'gpt-4o-mini' })).status, 200);
    await call(admin, 'POST', `/v1/organization/projects/${project}/archive`);
    assert.equal((await api.get('/v1/assistants')).status, 401);
  });

  test('bad admin requests get OpenAI-shaped errors', async () => {
    const cases: Array<[string, string, unknown, number, string | null]> = [
      ['POST', '/v1/organization/projects', {}, 400, 'name'],
      ['POST', '/v1/organization/projects', { name: '' }, 400, 'name'],
      ['POST', '/v1/organization/projects', { name: 'x', extra: 1 }, 400, null],
      ['GET', '/v1/organization/projects/nope', undefined, 400, 'project_id'],
      ['GET', '/v1/organization/projects/proj_unknown', undefined, 404, null],
      ['GET', '/v1/organization/projects?limit=0', undefined, 400, 'limit'],
      ['GET', '/v1/organization/projects?include_archived=maybe', undefined, 400, 'include_archived'],
      ['POST', '/v1/organization/projects/proj_unknown/api_keys', {}, 404, null],
      ['GET', '/v1/organization/projects/proj_default/api_keys/nope', undefined, 400, 'key_id'],
    ];
    for (const [method, url, body, status, param] of cases) {
      const response = await call(admin, method, url, body);
      assert.equal(response.status, status, `${method} ${url} ${JSON.stringify(response.body)}`);
      const error = response.body['error'] as Json;
      assert.equal(typeof error['message'], 'string');
      if (param !== null) assert.equal(error['param'], param, `${method} ${url}`);
    }
  });

  test('the CLI makes a first key without HTTP; the running server takes it at once', async () => {
    const env = { ASSISTD_DATA_DIR: server.dataDir };
    const project = await runCli(env, ['projects', 'create', 'From the CLI']);
    assert.equal(project.code, 0, project.stderr);
    const projectId = (JSON.parse(project.stdout) as Json)['id'] as string;
    const key = await runCli(env, ['keys', 'create', projectId, '--name', 'first']);
    assert.equal(key.code, 0, key.stderr);
    assert.match(key.stderr, /cannot be shown again/);
    const { id, value } = JSON.parse(key.stdout) as { id: string; value: string };
    assert.equal((await client(server.url, value).get('/v1/assistants')).status, 200);

    const listed = await runCli(env, ['keys', 'list', projectId]);
    assert.equal(listed.code, 0);
    assert.ok(listed.stdout.includes(id) && !listed.stdout.includes(value.slice(-43)));
    assert.equal((await runCli(env, ['keys', 'delete', projectId, id])).code, 0);
    assert.equal((await client(server.url, value).get('/v1/assistants')).status, 401);
    const unknown = await runCli(env, ['keys', 'delete', projectId, id]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /No API key found/);

    // Names are checked as the admin API checks them.
    const [empty, long, longKey] = await Promise.all([
      runCli(env, ['projects', 'create', '  ']),
      runCli(env, ['projects', 'create', 'n'.repeat(257)]),
      runCli(env, ['keys', 'create', projectId, '--name', 'k'.repeat(257)]),
    ]);
    for (const refused of [empty, long, longKey]) {
      assert.equal(refused.code, 1, refused.stdout);
      assert.match(refused.stderr, /^assistd (projects|keys): Invalid 'name': /);
    }

    // A mistyped command line is a usage error (2), said in a line, with nothing done: an unknown option, an option
    // without its value, arguments more than the action takes (an unquoted name made a project of its first word).
    const before = JSON.parse((await runCli(env, ['projects', 'list'])).stdout) as Json[];
    for (const args of [
      ['projects', 'list', '--al'],
      ['keys', 'create', projectId, '--name'],
      ['projects', 'create', 'Team', 'B'],
      ['projects', 'archive', 'proj_a', 'proj_b'],
      ['keys', 'list', projectId, 'extra'],
    ]) {
      const misused = await runCli(env, args);
      assert.equal(misused.code, 2, `${args.join(' ')}: ${misused.stderr}`);
      assert.doesNotMatch(misused.stderr, /\n\s+at /, `${args.join(' ')}: no stack trace`);
      assert.match(misused.stderr, /^assistd/);
    }
    assert.deepEqual(JSON.parse((await runCli(env, ['projects', 'list'])).stdout), before, 'nothing was made');
  });

  test('no key can be read back from the database', async () => {
    const project = (await call(admin, 'POST', '/v1/organization/projects', { name: 'db' })).body['id'] as string;
    const keys = [await createKey(admin, project), await createKey(admin, project)];
    for (const key of keys) assert.equal((await client(server.url, key.value).get('/v1/assistants')).status, 200);
    // The SQLite database with its write-ahead log: every byte the keys could have been written to.
    const bytes = readdirSync(server.dataDir)
      .filter((name) => name.startsWith('assistd.sqlite'))
      .map((name) => readFileSync(path.join(server.dataDir, name)).toString('latin1'))
      .join('');
    assert.ok(bytes.includes(keys[0]!.id), 'the scan reads the database');
    for (const key of keys) {
      const secret = key.value.slice(-43);
      assert.ok(!bytes.includes(secret), 'a key secret is stored');
      assert.ok(!bytes.includes(Buffer.from(secret).toString('base64')));
    }
    assert.match(bytes, /scrypt\$16384\$8\$1\$/);
  });
});

describe('an open server (no key set)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({});
  });
  after(() => server.close());

  test("a program moved here by its base URL alone keeps OpenAI's key: that is no key; assistd's keys are checked", async () => {
    // OpenAI's project keys start as assistd's do; this one has their length (164 characters) and alphabet.
    const openAiKey = `sk-proj-${'Ab3_-Xy9'.repeat(19)}T3Bl`;
    const sdk = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: openAiKey, maxRetries: 0 });
    const assistant = await sdk.beta.assistants.create({ model: 'gpt-4o-mini', name: 'moved' });
    assert.deepEqual(
      (await client(server.url).get<{ data: Json[] }>('/v1/assistants')).body.data.map((a) => a['id']),
      [assistant.id],
      'in the default project, as without a key',
    );

    // No admin key: the admin API says it is off, not that a key sent is the wrong one (none was sent).
    const off = await client(server.url).get<{ error: Json }>('/v1/organization/projects');
    assert.equal(off.status, 403);
    assert.match(off.body.error['message'] as string, /ASSISTD_ADMIN_KEY is not set/);

    const env = { ASSISTD_DATA_DIR: server.dataDir };
    const project = await runCli(env, ['projects', 'create', 'Open']);
    const projectId = (JSON.parse(project.stdout) as Json)['id'] as string;
    const made = await runCli(env, ['keys', 'create', projectId]);
    const { id, value } = JSON.parse(made.stdout) as { id: string; value: string };
    const own = client(server.url, value);
    assert.deepEqual((await own.get<{ data: Json[] }>('/v1/assistants')).body.data, [], 'its own project');
    assert.equal((await client(server.url, `${value.slice(0, -1)}x`).get('/v1/assistants')).status, 401);
    assert.equal((await client(server.url, value.slice(0, -5)).get('/v1/assistants')).status, 401, 'cut short');
    assert.equal((await runCli(env, ['keys', 'delete', projectId, id])).code, 0);
    assert.equal((await own.get('/v1/assistants')).status, 401, 'a deleted key is refused, not taken for no key');
  });
});

describe('API keys across processes (PostgreSQL, two servers)', () => {
  const adminUrl = postgresUrlOrSkip();
  let database: TestDatabase;
  let first: ServerProcess;
  let second: ServerProcess;

  before(async () => {
    if (!adminUrl) return;
    database = await createTestDatabase(adminUrl);
    const env = { ASSISTD_DATABASE_URL: database.url, ASSISTD_ADMIN_KEY: ADMIN_KEY, ASSISTD_LOG_REQUESTS: 'on' };
    first = await spawnServer(env);
    second = await spawnServer(env);
  });
  after(async () => {
    if (!adminUrl) return;
    await first?.stop();
    await second?.stop();
    await database?.drop();
  });

  test('a key made on one process works at once on the other; a deleted one stops at once on both', {
    skip: !adminUrl,
  }, async () => {
    const admin = client(first.url, ADMIN_KEY);
    const project = (await call(admin, 'POST', '/v1/organization/projects', { name: 'multi' })).body['id'] as string;
    const key = await createKey(admin, project);
    const onFirst = client(first.url, key.value);
    const onSecond = client(second.url, key.value);
    const created = await onSecond.post('/v1/assistants', { model: 'gpt-4o-mini' });
    assert.equal(created.status, 200);
    assert.equal((await onFirst.get(`/v1/assistants/${created.body['id']}`)).status, 200);

    const deleted = await call(admin, 'DELETE', `/v1/organization/projects/${project}/api_keys/${key.id}`);
    assert.equal(deleted.status, 200);
    assert.equal((await onSecond.get('/v1/assistants')).status, 401);
    assert.equal((await onFirst.get('/v1/assistants')).status, 401);

    // Archiving on the second process stops a key the first had verified and remembered.
    const other = await createKey(admin, project);
    assert.equal((await client(first.url, other.value).get('/v1/assistants')).status, 200);
    await call(client(second.url, ADMIN_KEY), 'POST', `/v1/organization/projects/${project}/archive`);
    assert.equal((await client(first.url, other.value).get('/v1/assistants')).status, 401);

    // Neither process logged a key; the request lines name the project key by its id.
    const logs = first.output() + second.output();
    for (const secret of [key.value, other.value, key.value.slice(-43), other.value.slice(-43), ADMIN_KEY])
      assert.ok(!logs.includes(secret), `a log line holds ${secret}`);
    assert.ok(logs.includes(`"key":"${key.id}"`), 'the request lines name the key by its id');
  });
});
