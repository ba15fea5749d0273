import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { loadConfig } from '../../src/config.ts';
import { createLogger, startServer } from '../../src/main.ts';
import { eventually } from '../support/eventually.ts';
import { createTestDatabase, POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { cliEntryArgs, ROOT, runCli, tempDir } from '../support/server.ts';

/**
 * A data directory the server cannot use stops startup with one line naming the setting, before any request: a
 * database that is missing (for the admin commands), not writable, or corrupt, and file bytes that are not where
 * the database says. Each would otherwise start, answer /healthz ok, and fail requests one by one.
 */

const oneLine = (stderr: string, setting: string) => {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line, got: ${stderr}`);
  assert.match(lines[0]!, new RegExp(`^assistd: invalid setting ${setting}: `));
  return lines[0]!;
};

/** The server in this process on the settings `env` (code_interpreter off), logging nothing. */
function startOn(env: Record<string, string>) {
  const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', ASSISTD_CODE_INTERPRETER: 'off', ...env });
  return startServer(config, createLogger({ logLevel: 'silent' }));
}

/** Uploads a file named `name` holding `text` to the server at `url`; its id. */
async function upload(url: string, name: string, text: string): Promise<string> {
  const form = new FormData();
  form.set('purpose', 'assistants');
  form.set('file', new Blob([text]), name);
  const response = await fetch(`${url}/v1/files`, { method: 'POST', body: form });
  assert.equal(response.status, 200);
  return ((await response.json()) as { id: string }).id;
}

/**
 * A data directory whose database (SQLite's, or the one `env` names) holds one file (`hello.txt`), its bytes in
 * `storage`; the server stopped.
 */
async function dataDirWithAFile(
  storage: 'directory' | 'database' = 'directory',
  env: Record<string, string> = {},
): Promise<string> {
  const dataDir = tempDir();
  const server = await startOn({ ASSISTD_DATA_DIR: dataDir, ASSISTD_FILE_STORAGE: storage, ...env });
  try {
    await upload(server.url, 'hello.txt', 'hello');
  } finally {
    await server.close();
  }
  return dataDir;
}

describe('admin commands on a data directory with no database', () => {
  test('refuse, naming the database they looked for, and create nothing', async () => {
    const dataDir = path.join(tempDir(), 'not-the-servers');
    const [keys, projects] = await Promise.all([
      runCli({ ASSISTD_DATA_DIR: dataDir }, ['keys', 'create', 'proj_x']),
      runCli({ ASSISTD_DATA_DIR: dataDir }, ['projects', 'list']),
    ]);
    for (const result of [keys, projects]) {
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.equal(result.stdout, '');
      const line = oneLine(result.stderr, 'ASSISTD_DATA_DIR');
      assert.match(
        line,
        /there is no database at .*not-the-servers\/assistd\.sqlite: is ASSISTD_DATA_DIR the server's\?/,
      );
    }
    assert.equal(existsSync(dataDir), false, 'nothing was created');
  });
});

describe('a database that is not a usable SQLite database', () => {
  let good: string;
  before(async () => {
    good = tempDir();
    const migrated = await runCli({ ASSISTD_DATA_DIR: good }, ['migrate']);
    assert.equal(migrated.code, 0, migrated.stderr);
  });

  for (const [what, spoil] of [
    ['not SQLite at all', (file: string) => writeFileSync(file, 'this is not a database, just text\n'.repeat(200))],
    ['truncated', (file: string) => writeFileSync(file, readFileSync(file).subarray(0, 20_000))],
    [
      'with its pages overwritten',
      (file: string) => {
        const bytes = readFileSync(file);
        bytes.fill(0xa5, 4096, bytes.length); // the header kept, every page after the first garbage
        writeFileSync(file, bytes);
      },
    ],
  ] as const)
    test(`${what}: startup stops with one line saying to restore it`, async () => {
      const dataDir = tempDir();
      cpSync(good, dataDir, { recursive: true });
      const file = path.join(dataDir, 'assistd.sqlite');
      spoil(file);
      for (const args of [['serve'], ['keys', 'list', 'proj_x']]) {
        const { code, stderr } = await runCli({ ASSISTD_DATA_DIR: dataDir }, args);
        assert.equal(code, 1, stderr);
        const line = oneLine(stderr, 'ASSISTD_DATA_DIR');
        assert.ok(line.includes(`${file} is not a usable SQLite database (`), line);
        assert.match(line, /restore it from a backup/);
      }
    });
});

/** Root is not stopped by file modes: as root, the server runs as nobody, for whom the modes below hold. */
const AS_ROOT = process.getuid?.() === 0;
const NOBODY = 65534;

/** The CLI as runCli starts it (the build, under npm test), as nobody when the tests run as root; its code, stderr. */
function runCliAsNobody(env: Record<string, string>, args: string[] = ['serve']) {
  return new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [...cliEntryArgs(), ...args], {
      cwd: ROOT,
      env: { ...process.env, HOST: '127.0.0.1', PORT: '0', ASSISTD_CODE_INTERPRETER: 'off', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
      ...(AS_ROOT && { uid: NOBODY, gid: NOBODY }),
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`assistd ${args.join(' ')} did not stop within 20 s (it started):\n${stderr}`));
    }, 20_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** Whom the runner's files belong to: nobody when it runs as root (see above), so that only the modes decide. */
function giveToRunner(file: string): void {
  if (AS_ROOT) chownSync(file, NOBODY, NOBODY);
}

describe('a data directory the server cannot write', () => {
  test('a database file it may only read stops startup, naming the file', async () => {
    const dataDir = await dataDirWithAFile();
    const file = path.join(dataDir, 'assistd.sqlite');
    chmodSync(dataDir, 0o777); // the directory writable: only the database file is not
    chmodSync(file, 0o444);
    const { code, stderr } = await runCliAsNobody({ ASSISTD_DATA_DIR: dataDir });
    assert.equal(code, 1, stderr);
    const line = oneLine(stderr, 'ASSISTD_DATA_DIR');
    assert.ok(line.includes(file), line);
  });

  test('its -wal and -shm files left by another user stop startup too', async () => {
    const dataDir = await dataDirWithAFile();
    const file = path.join(dataDir, 'assistd.sqlite');
    chmodSync(dataDir, 0o777);
    giveToRunner(file);
    chmodSync(file, 0o644);
    // Left by a process of another user (e.g. `assistd keys` run as root next to the server): not writable here.
    for (const suffix of ['-wal', '-shm']) {
      writeFileSync(`${file}${suffix}`, '');
      chmodSync(`${file}${suffix}`, 0o444);
    }
    const { code, stderr } = await runCliAsNobody({ ASSISTD_DATA_DIR: dataDir });
    assert.equal(code, 1, stderr);
    assert.ok(oneLine(stderr, 'ASSISTD_DATA_DIR').includes(file), stderr);
  });

  test('a files/ folder it may only read stops startup, naming the folder', async () => {
    const dataDir = await dataDirWithAFile();
    const file = path.join(dataDir, 'assistd.sqlite');
    chmodSync(dataDir, 0o777);
    giveToRunner(file);
    const files = path.join(dataDir, 'files');
    for (const dir of [files, path.join(files, 'blobs'), path.join(files, 'tmp')]) chmodSync(dir, 0o555);
    const { code, stderr } = await runCliAsNobody({ ASSISTD_DATA_DIR: dataDir });
    for (const dir of [files, path.join(files, 'blobs'), path.join(files, 'tmp')]) chmodSync(dir, 0o755);
    assert.equal(code, 1, stderr);
    assert.ok(oneLine(stderr, 'ASSISTD_DATA_DIR').includes(files), stderr);
  });
});

describe('file bytes that are not where the database says', () => {
  test('a data directory restored without its files/ folder stops startup', async () => {
    const dataDir = await dataDirWithAFile();
    rmSync(path.join(dataDir, 'files'), { recursive: true });
    const { code, stderr } = await runCli({ ASSISTD_DATA_DIR: dataDir });
    assert.equal(code, 1, stderr);
    const line = oneLine(stderr, 'ASSISTD_DATA_DIR');
    assert.ok(line.includes(`directory:${path.join(dataDir, 'files')}`), line);
    assert.match(line, /are ASSISTD_DATA_DIR and ASSISTD_FILE_STORAGE the server's\?$/);
  });

  test('ASSISTD_FILE_STORAGE not the one the files were stored with stops startup, either way', async () => {
    const [inDirectory, inDatabase] = await Promise.all([dataDirWithAFile('directory'), dataDirWithAFile('database')]);
    const [asDatabase, asDirectory] = await Promise.all([
      runCli({ ASSISTD_DATA_DIR: inDirectory, ASSISTD_FILE_STORAGE: 'database' }),
      runCli({ ASSISTD_DATA_DIR: inDatabase, ASSISTD_FILE_STORAGE: 'directory' }),
    ]);
    assert.equal(asDatabase.code, 1, asDatabase.stderr);
    assert.match(oneLine(asDatabase.stderr, 'ASSISTD_FILE_STORAGE'), /ASSISTD_FILE_STORAGE the server's\?$/);
    assert.equal(asDirectory.code, 1, asDirectory.stderr);
    assert.match(oneLine(asDirectory.stderr, 'ASSISTD_DATA_DIR'), /ASSISTD_FILE_STORAGE the server's\?$/);
  });

  // The orphan sweep deletes bytes whose file has no row: on a database that is not theirs, it would delete them all.
  test('a data directory whose database is gone stops startup, every time, and its files keep their bytes', async () => {
    const dataDir = await dataDirWithAFile();
    for (const suffix of ['', '-wal', '-shm']) rmSync(path.join(dataDir, `assistd.sqlite${suffix}`), { force: true });
    const blobs = path.join(dataDir, 'files', 'blobs');
    const before = readdirSync(blobs);
    assert.equal(before.length, 1);
    // Twice: a supervisor restarting the server finds the database the first start made.
    for (let start = 0; start < 2; start++) {
      const { code, stderr } = await runCli({ ASSISTD_DATA_DIR: dataDir });
      assert.equal(code, 1, stderr);
      assert.match(
        oneLine(stderr, 'ASSISTD_DATA_DIR'),
        /files is not this database's: its bytes are those of another database \(.*\) .* Restore their database, or move .*files away to start afresh\.$/,
      );
      assert.deepEqual(readdirSync(blobs), before, 'no byte deleted');
    }
    // Not marked (an older version's directory): the database knows none of its bytes.
    rmSync(path.join(dataDir, 'files', 'database'));
    const { code, stderr } = await runCli({ ASSISTD_DATA_DIR: dataDir });
    assert.equal(code, 1, stderr);
    assert.match(
      oneLine(stderr, 'ASSISTD_DATA_DIR'),
      /it holds the bytes of 1 files, and the database knows none of them/,
    );
    assert.deepEqual(readdirSync(blobs), before, 'no byte deleted');
  });

  test('a data directory whose only bytes are a crash’s leftovers (their file deleted) starts, and sweeps them', async () => {
    const dataDir = await dataDirWithAFile();
    const db = new BetterSqlite3(path.join(dataDir, 'assistd.sqlite'));
    db.exec('delete from files'); // as a crash between a file's row deleted and its bytes
    db.close();
    const server = await startOn({ ASSISTD_DATA_DIR: dataDir });
    try {
      await eventually('the leftover swept', 10_000, () =>
        readdirSync(path.join(dataDir, 'files', 'blobs')).length === 0 ? true : undefined,
      );
    } finally {
      await server.close();
    }
  });

  test('PostgreSQL: a file directory with another database’s files stops startup, naming ASSISTD_DATABASE_URL', async (t) => {
    const serverUrl = postgresUrlOrSkip();
    if (serverUrl === undefined) return t.skip(POSTGRES_SKIP_REASON);
    const [theirs, another] = await Promise.all([createTestDatabase(serverUrl), createTestDatabase(serverUrl)]);
    try {
      const dataDir = await dataDirWithAFile('directory', { ASSISTD_DATABASE_URL: theirs.url });
      const env = { ASSISTD_DATA_DIR: dataDir, ASSISTD_FILE_STORAGE: 'directory', ASSISTD_CODE_INTERPRETER: 'off' };
      const { code, stderr } = await runCli({ ...env, ASSISTD_DATABASE_URL: another.url });
      assert.equal(code, 1, stderr);
      assert.match(
        oneLine(stderr, 'ASSISTD_DATABASE_URL'),
        /files is not this database's: its bytes are those of another/,
      );
      assert.equal(readdirSync(path.join(dataDir, 'files', 'blobs')).length, 1, 'no byte deleted');
    } finally {
      await Promise.all([theirs.drop(), another.drop()]);
    }
  });

  test('one file lost behind the server’s back does not stop it', async () => {
    const dataDir = await dataDirWithAFile();
    const server = await startOn({ ASSISTD_DATA_DIR: dataDir });
    try {
      const second = await upload(server.url, 'second.txt', 'second');
      rmSync(path.join(dataDir, 'files', 'blobs', second));
    } finally {
      await server.close();
    }
    // The newest file's bytes are gone, the one before it still has its own: that storage is the server's.
    const restarted = await startOn({ ASSISTD_DATA_DIR: dataDir });
    await restarted.close();
  });
});

describe('npm start', () => {
  test('SIGTERM to npm stops the server it started', async () => {
    // Without the build step (prestart): the build there is whatever the last `npm run build` made.
    const child = spawn('npm', ['start', '--ignore-scripts', '--silent'], {
      cwd: ROOT,
      env: {
        ...process.env,
        HOST: '127.0.0.1',
        PORT: '0',
        ASSISTD_DATA_DIR: tempDir(),
        ASSISTD_CODE_INTERPRETER: 'off',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // a group of its own, ended whole below whatever happens
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = once(child, 'exit');
    try {
      const url = await eventually(
        'the server to listen',
        20_000,
        () => /assistd listening on (\S+)\/v1/.exec(output)?.[1],
      );
      child.kill('SIGTERM');
      await exited;
      await eventually('the server to stop answering', 10_000, () =>
        fetch(`${url}/healthz`).then(
          () => undefined,
          () => true,
        ),
      );
    } finally {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {} // nothing of it left: as it should be
    }
  });
});
