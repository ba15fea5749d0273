import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ApiClient, runCli, spawnServer, tempDir } from './support/server.ts';

describe('assistd CLI', () => {
  test('--help lists the commands and every setting', async () => {
    const { code, stdout } = await runCli({}, ['--help']);
    assert.equal(code, 0);
    for (const word of [
      'serve',
      'migrate',
      'HOST',
      'PORT',
      'ASSISTD_DATA_DIR',
      'ASSISTD_DATABASE_URL',
      'ASSISTD_API_KEY',
    ])
      assert.match(stdout, new RegExp(word));
  });

  test('invalid settings stop startup with one line naming the setting', async () => {
    const file = path.join(tempDir(), 'not-a-dir');
    writeFileSync(file, '');
    const cases: Array<[Record<string, string>, string]> = [
      [{ PORT: 'eighty' }, 'PORT'],
      [{ PORT: '70000' }, 'PORT'],
      [{ ASSISTD_DATA_DIR: path.join(file, 'data') }, 'ASSISTD_DATA_DIR'],
      [{ ASSISTD_DATABASE_URL: 'not a url' }, 'ASSISTD_DATABASE_URL'],
      [{ ASSISTD_DATABASE_URL: 'mysql://localhost/db' }, 'ASSISTD_DATABASE_URL'],
      [{ ASSISTD_LOG_LEVEL: 'loud' }, 'ASSISTD_LOG_LEVEL'],
      [{ ASSISTD_UPSTREAM_BASE_URL: 'ftp://models' }, 'ASSISTD_UPSTREAM_BASE_URL'],
      [{ ASSISTD_WORKER_CONCURRENCY: 'many' }, 'ASSISTD_WORKER_CONCURRENCY'],
      [{ ASSISTD_RUN_EXPIRES_AFTER_S: '0' }, 'ASSISTD_RUN_EXPIRES_AFTER_S'],
      // The admin key opens only the admin API: as the project key too, it would open neither as expected.
      [{ ASSISTD_API_KEY: 'same-key-0001', ASSISTD_ADMIN_KEY: 'same-key-0001' }, 'ASSISTD_ADMIN_KEY'],
    ];
    // Three processes at a time: each is a Node start-up, and a loaded 2-core machine is slow to run many at once.
    for (let i = 0; i < cases.length; i += 3)
      await Promise.all(
        cases.slice(i, i + 3).map(async ([env, setting]) => {
          const { code, stderr } = await runCli({ ASSISTD_DATA_DIR: tempDir(), ...env });
          assert.notEqual(code, 0, `${setting} should fail`);
          const lines = stderr.trim().split('\n');
          assert.equal(lines.length, 1, `one line, got: ${stderr}`);
          assert.match(lines[0]!, new RegExp(`^assistd: invalid setting ${setting}: `));
        }),
      );
  });

  test('a port already in use is a clear error', async () => {
    const dir = tempDir();
    const first = await spawnServer({ ASSISTD_DATA_DIR: dir });
    const port = new URL(first.url).port;
    const { code, stderr } = await runCli({ ASSISTD_DATA_DIR: tempDir(), PORT: port });
    await first.stop();
    assert.notEqual(code, 0);
    assert.match(stderr, /cannot listen \(HOST\/PORT\)/);
  });

  test('a HOST that is no address of this machine, or a name that does not resolve, is one line naming HOST', async () => {
    // 192.0.2.0/24 is TEST-NET-1, never a local address; .invalid names never resolve (RFC 6761).
    const results = await Promise.all(
      ['192.0.2.123', 'nonexistent.invalid'].map((host) => runCli({ ASSISTD_DATA_DIR: tempDir(), HOST: host })),
    );
    for (const { code, stderr } of results) {
      assert.equal(code, 1, stderr);
      const lines = stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line, got: ${stderr}`);
      assert.match(lines[0]!, /^assistd: cannot listen \(HOST\/PORT\): /);
    }
  });

  test('serve answers /healthz, logs that no key is needed, and keeps data across a restart', async () => {
    const dir = tempDir();
    const first = await spawnServer({ ASSISTD_DATA_DIR: dir });
    const api = new ApiClient(first.url);
    const health = await api.get('/healthz');
    assert.equal(health.status, 200);
    assert.deepEqual(health.body, {
      status: 'ok',
      code_interpreter: { available: false, reason: 'disabled by ASSISTD_CODE_INTERPRETER=off' },
    });
    assert.match(first.output(), /Neither ASSISTD_API_KEY nor ASSISTD_ADMIN_KEY is set/);
    assert.match(first.output(), /code_interpreter is unavailable here: disabled by ASSISTD_CODE_INTERPRETER=off/);
    const created = await api.post('/v1/assistants', { model: 'gpt-4o', name: 'Survivor' });
    assert.equal(await first.stop('SIGTERM'), 0, 'a clean shutdown exits 0');

    const second = await spawnServer({ ASSISTD_DATA_DIR: dir });
    const again = await new ApiClient(second.url).get(`/v1/assistants/${created.body.id}`);
    await second.stop();
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, created.body);
  });

  test('a second signal while shutting down, of either kind, ends the process at once', async () => {
    const server = await spawnServer({ ASSISTD_DATA_DIR: tempDir() });
    // A request whose body has not all arrived holds the shutdown for its grace period: an idle server's takes a few
    // milliseconds, and could be over before the second signal is handled. The server's 100 Continue says it has it.
    const held = connect(Number(new URL(server.url).port), '127.0.0.1');
    held.on('error', () => {}); // reset when the process ends
    held.write(
      'POST /v1/threads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n',
    );
    const [answer] = (await once(held, 'data')) as [Buffer];
    assert.match(answer.toString(), /^HTTP\/1\.1 100 Continue/);
    const exited = once(server.child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    // Back to back: the second arrives while the first's shutdown (workers, streams, the database) is under way.
    // Which the process sees first is the kernel's to order; the code is the second's.
    server.child.kill('SIGTERM');
    server.child.kill('SIGINT');
    const [code] = await exited;
    const second = /(SIGINT|SIGTERM) received again: exiting without waiting for the shutdown/.exec(server.output());
    assert.ok(second, server.output());
    assert.equal(code, second[1] === 'SIGINT' ? 130 : 143);
  });

  test('a write acknowledged before SIGKILL is still there after restart', async () => {
    const dir = tempDir();
    const first = await spawnServer({ ASSISTD_DATA_DIR: dir });
    const created = await new ApiClient(first.url).post('/v1/threads', {
      messages: [{ role: 'user', content: 'kept' }],
    });
    await first.stop('SIGKILL');
    const second = await spawnServer({ ASSISTD_DATA_DIR: dir });
    const list = await new ApiClient(second.url).get<{ data: unknown[] }>(`/v1/threads/${created.body.id}/messages`);
    await second.stop();
    assert.equal(list.body.data.length, 1);
  });

  test('migrate brings the schema up to date and exits', async () => {
    const { code, stdout } = await runCli({ ASSISTD_DATA_DIR: tempDir() }, ['migrate']);
    assert.equal(code, 0);
    assert.match(stdout, /up to date/);
  });
});
