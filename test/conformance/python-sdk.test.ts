import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { RecordedRequest, Reply } from '../support/fake-upstream.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { SdkHarness } from '../support/sdk-harness.ts';
import { ROOT } from '../support/server.ts';

/**
 * The official openai Python SDK against the server: python/conformance.py, once for each SDK wheel vendored in
 * python/wheels (the last 2.x and the newest release, with their dependencies: the registry CI reaches has no
 * Python packages). It runs on Debian's Python, the one the code_interpreter sandbox needs (scripts/
 * install-test-packages.sh installs it), and goes through a proxy that checks every JSON response against the
 * official schema, as the node SDK's tests do. On SQLite, and on PostgreSQL when ASSISTD_TEST_DATABASE_URL is set
 * (skipped loudly otherwise), as the node SDK's conformance suite.
 */

const PYTHON = process.env['ASSISTD_SANDBOX_PYTHON'] ?? '/usr/bin/python3';
const HERE = path.join(ROOT, 'test', 'conformance', 'python');
const WHEELS = path.join(HERE, 'wheels');
const run = promisify(execFile);
const KEY = 'sk-assistd-python-conformance';

/** The scripted model of conformance.py (its docstring says what it answers). */
function model(request: RecordedRequest): Reply {
  const messages = request.body.messages;
  const last = messages.at(-1);
  const offered = new Set((request.body.tools ?? []).map((tool) => tool.function.name));
  if (last?.role === 'tool') {
    const calls = messages.at(-2)?.['tool_calls'] as Array<{ function: { name: string } }> | undefined;
    if (calls?.[0]?.function.name === 'file_search') return { text: ['Fridays', '【0:0†coffee.txt】', '.'] };
    return { text: ['Tool said: ', String(last['content'])] };
  }
  const content = last?.['content'];
  const said = Array.isArray(content)
    ? content.flatMap((part: { type: string; text?: string }) => (part.type === 'text' ? [part.text] : [])).join(' ')
    : String(content ?? '');
  if (said.includes('weather') && offered.has('get_weather'))
    return { toolCalls: [{ name: 'get_weather', arguments: '{"city": "Paris"}' }] };
  if (said.includes('espresso') && offered.has('file_search'))
    return { toolCalls: [{ name: 'file_search', arguments: JSON.stringify({ queries: ['espresso descaled'] }) }] };
  if (said.includes('compute') && offered.has('python'))
    return { toolCalls: [{ name: 'python', arguments: JSON.stringify({ code: 'print(6 * 7)' }) }] };
  if (said.includes('at length')) {
    // A word a token, cut at the request's limit as a model is.
    const words = Array.from({ length: 200 }, (_, i) => `word ${i} `);
    const limit = Number(request.body['max_completion_tokens'] ?? request.body['max_tokens'] ?? words.length);
    if (limit >= words.length) return { text: words };
    return {
      text: words.slice(0, limit),
      finishReason: 'length',
      usage: { prompt_tokens: 20, completion_tokens: limit },
    };
  }
  if (said.includes('slowly'))
    return { text: ['Echo: ', ...Array.from({ length: 40 }, (_, i) => `word ${i} `)], chunkDelayMs: 60 };
  return { text: ['Echo', ': ', ...said.split(/(?= )/)] };
}

/** The wheels unpacked: one directory of the dependencies, and one per openai version. */
async function unpackWheels(into: string): Promise<{ deps: string; sdks: Map<string, string> }> {
  const deps = path.join(into, 'deps');
  const sdks = new Map<string, string>();
  for (const wheel of readdirSync(WHEELS).filter((name) => name.endsWith('.whl'))) {
    const version = /^openai-([^-]+)-/.exec(wheel)?.[1];
    const target = version === undefined ? deps : path.join(into, `openai-${version}`);
    if (version !== undefined) sdks.set(version, target);
    await run(PYTHON, ['-m', 'zipfile', '-e', path.join(WHEELS, wheel), target]);
  }
  return { deps, sdks };
}

/** Hop-by-hop and framing headers: the proxy's own connections set them. */
const NOT_FORWARDED = new Set(['host', 'connection', 'keep-alive', 'content-length', 'transfer-encoding', 'expect']);

function forwardable(headers: Iterable<[string, string | string[] | undefined]>): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const [name, value] of headers)
    if (value !== undefined && !NOT_FORWARDED.has(name.toLowerCase()))
      kept[name] = Array.isArray(value) ? value.join(', ') : value;
  return kept;
}

/** An HTTP proxy to `target` through the harness's validating fetch: every JSON answer is checked on its way. */
async function validatingProxy(h: SdkHarness, target: string): Promise<Server> {
  const forward = async (req: IncomingMessage, res: ServerResponse) => {
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    const response = await h.recorder.fetch(`${target}${req.url}`, {
      method: req.method,
      headers: forwardable(Object.entries(req.headers)),
      ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream, duplex: 'half' } : {}),
    } as RequestInit);
    res.writeHead(response.status, forwardable(response.headers.entries()));
    if (response.body) Readable.fromWeb(response.body as never).pipe(res);
    else res.end();
  };
  const server = createServer((req, res) => {
    forward(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

const VERSIONS = ['2.54.0', '3.22.1'];
const unpacked = mkdtempSync(path.join(tmpdir(), 'assistd-python-sdk-'));
let wheels: Awaited<ReturnType<typeof unpackWheels>>;
before(async () => {
  wheels = await unpackWheels(unpacked);
});
after(() => rmSync(unpacked, { recursive: true, force: true }));

test('the wheels hold the SDK versions the checks run on', () => {
  assert.deepEqual([...wheels.sdks.keys()].sort(), VERSIONS);
});

/** The checks, once per SDK version, against a server on the storage `provision` gives. */
function pythonSuite(
  name: string,
  provision: () => Promise<{ env: Record<string, string>; cleanup(): Promise<void> }>,
) {
  describe(`the official Python SDK on ${name}`, () => {
    let h: SdkHarness;
    let proxy: Server;
    let cleanup: (() => Promise<void>) | undefined;

    before(async () => {
      const backend = await provision();
      cleanup = backend.cleanup;
      h = new SdkHarness({ ASSISTD_CODE_INTERPRETER: 'on', ASSISTD_API_KEY: KEY, ...backend.env });
      await h.start();
      h.upstream.setDefault(model);
      proxy = await validatingProxy(h, h.server.url);
    });
    after(async () => {
      proxy?.close();
      await h?.close();
      await cleanup?.();
    });

    for (const version of VERSIONS)
      test(`openai ${version}: every check of conformance.py passes`, async (t) => {
        const { port } = proxy.address() as AddressInfo;
        const sdk = wheels.sdks.get(version);
        assert.ok(sdk, `the wheel of openai ${version} is in ${WHEELS}`);
        const result = await run(PYTHON, [path.join(HERE, 'conformance.py')], {
          env: {
            PATH: process.env['PATH'] ?? '',
            PYTHONPATH: [sdk, wheels.deps].join(path.delimiter),
            PYTHONDONTWRITEBYTECODE: '1',
            ASSISTD_ROOT_URL: `http://127.0.0.1:${port}`,
            ASSISTD_API_KEY: KEY,
          },
          timeout: 120_000,
        }).catch((error: { stdout?: string; stderr?: string; message: string }) => {
          assert.fail(`conformance.py failed:\n${error.stdout ?? ''}\n${error.stderr ?? error.message}`);
        });
        assert.match(result.stdout, new RegExp(`^openai ${version.replaceAll('.', '\\.')} on Python 3`));
        assert.match(result.stdout, /^(\d+) of \1 checks passed$/m, result.stdout);
        for (const line of result.stdout.trim().split('\n')) t.diagnostic(line);
        h.recorder.assertNoViolations();
      });
  });
}

// SQLite in the harness's own data directory (SdkHarness removes it).
pythonSuite('SQLite', async () => ({ env: {}, cleanup: async () => {} }));

const postgresUrl = postgresUrlOrSkip();
if (postgresUrl === undefined) test('the official Python SDK on PostgreSQL', { skip: POSTGRES_SKIP_REASON }, () => {});
else
  pythonSuite('PostgreSQL', async () => {
    const database = await createTestDatabase(postgresUrl);
    return { env: { ASSISTD_DATABASE_URL: database.url }, cleanup: () => database.drop() };
  });
