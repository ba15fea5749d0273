import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { eventually } from './eventually.ts';

/** Debian's package (scripts/install-test-packages.sh installs it). */
const PGBOUNCER = process.env.ASSISTD_TEST_PGBOUNCER ?? '/usr/sbin/pgbouncer';

export interface PgBouncer {
  /** `url` (a database on the server PgBouncer fronts) as reached through PgBouncer. */
  through(url: string): string;
  stop(): Promise<void>;
}

/**
 * A PgBouncer of its own in front of the PostgreSQL server of `serverUrl` (any database on it, the same user, no
 * password), pooling in `mode` on `serverConnections` per database, as operators put one in front of several assistd
 * processes. Run as `postgres` when
 * this process is root: PgBouncer refuses to run as root.
 */
export async function startPgBouncer(
  serverUrl: string,
  mode: 'transaction' | 'session',
  serverConnections = 20,
): Promise<PgBouncer> {
  const server = new URL(serverUrl);
  const dir = mkdtempSync(path.join(tmpdir(), 'assistd-pgbouncer-'));
  const port = await freePort();
  const user = decodeURIComponent(server.username || 'postgres');
  writeFileSync(path.join(dir, 'users.txt'), `"${user}" ""\n`);
  writeFileSync(
    path.join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${server.hostname} port=${server.port || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'users.txt')}`,
      `pool_mode = ${mode}`,
      `default_pool_size = ${serverConnections}`,
      'max_client_conn = 1000',
      'ignore_startup_parameters = extra_float_digits',
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
    ].join('\n'),
  );
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    for (const name of ['', 'users.txt', 'pgbouncer.ini']) chownSync(path.join(dir, name), uid, gid);
  }
  const child: ChildProcess = spawn(
    PGBOUNCER,
    [...(asRoot ? ['-u', 'postgres'] : []), path.join(dir, 'pgbouncer.ini')],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const spawnFailed = new Promise<never>((_, reject) =>
    child.once('error', (error) => reject(new Error(`cannot start ${PGBOUNCER}: ${error.message}`))),
  );
  const through = (url: string) => {
    const pooled = new URL(url);
    pooled.host = `127.0.0.1:${port}`;
    return pooled.toString();
  };
  const stop = async () => {
    if (child.exitCode === null) child.kill('SIGINT');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.race([
      spawnFailed,
      eventually('PgBouncer answering', 10_000, async () => {
        if (child.exitCode !== null) throw new Error(`PgBouncer exited: ${stderr}`);
        const client = new pg.Client({ connectionString: through(serverUrl) });
        client.on('error', () => {});
        try {
          await client.connect();
          await client.query('select 1');
          return true;
        } catch {
          return undefined;
        } finally {
          await client.end().catch(() => {});
        }
      }),
    ]);
  } catch (error) {
    await stop();
    throw error;
  }
  return { through, stop };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}
