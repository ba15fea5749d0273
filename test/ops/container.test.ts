import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { loadConfig, SETTINGS } from '../../src/config.ts';
import { listRoutes } from '../support/route-table.ts';
import { ROOT, runCli, startTestServer, type TestServer } from '../support/server.ts';

/**
 * No Docker daemon here, so the image is never built in the tests or CI. What can be checked without one is: the
 * Dockerfile copies what exists and is not ignored, runs the CLI's real commands, checks a route the server answers,
 * and sets settings config.ts accepts; compose.yaml's services run real commands with settings config.ts accepts.
 */

const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

interface Instruction {
  keyword: string;
  args: string;
  /** 0 for the first FROM's stage, and so on. */
  stage: number;
}

/** The Dockerfile's instructions, continuation lines joined, comments dropped. */
function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const line of text.split('\n')) {
    if (pending === '' && (line.trim() === '' || line.trim().startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const whole = (pending + line).trim();
    pending = '';
    const [, keyword, args] = whole.match(/^(\S+)\s+(.*)$/) ?? [];
    assert.ok(keyword !== undefined && args !== undefined, `a Dockerfile line: ${whole}`);
    if (keyword.toUpperCase() === 'FROM') stage += 1;
    instructions.push({ keyword: keyword.toUpperCase(), args: args.trim(), stage });
  }
  return instructions;
}

/** `ENV A=1 B=2` (the only form the Dockerfile uses). */
function envOf(instructions: Instruction[], stage: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { args } of instructions.filter((i) => i.keyword === 'ENV' && i.stage === stage))
    for (const pair of args.split(/\s+/)) {
      const [, name, value] = pair.match(/^([A-Z_]+)=(.*)$/) ?? [];
      assert.ok(name !== undefined && value !== undefined, `ENV ${pair} is NAME=value`);
      env[name] = value;
    }
  return env;
}

const execForm = (args: string) => JSON.parse(args) as string[];

/** The commands `assistd --help` lists (`assistd [serve]`, `assistd worker`, …), and its whole text for flags. */
async function cliCommands(): Promise<{ commands: Set<string>; help: string }> {
  const { code, stdout } = await runCli({}, ['--help']);
  assert.equal(code, 0);
  const commands = new Set([...stdout.matchAll(/^ {2}assistd \[?([a-z]+)\]?/gm)].map((m) => m[1]!));
  assert.ok(commands.has('serve') && commands.has('worker'), stdout);
  return { commands, help: stdout };
}

function assertValidCommand(argv: string[], cli: { commands: Set<string>; help: string }, what: string): void {
  const [command, ...flags] = argv;
  assert.ok(command !== undefined && cli.commands.has(command), `${what}: '${command}' is an assistd command`);
  for (const flag of flags)
    assert.match(cli.help, new RegExp(`assistd ${command} ${flag}\\b`), `${what}: ${command} ${flag} is in --help`);
}

/** The settings a container sees must each be one config.ts reads, and load as a whole. */
function assertAcceptedSettings(env: Record<string, string>, what: string) {
  const known = new Set(SETTINGS.map((s) => s.name));
  for (const name of Object.keys(env))
    if (name !== 'NODE_ENV') assert.ok(known.has(name), `${what}: ${name} is a setting of config.ts`);
  return loadConfig(env);
}

/** The packages scripts/install-test-packages.sh installs for the code_interpreter tests. */
function sandboxPackages(): string[] {
  const script = read('scripts/install-test-packages.sh');
  const packages = [...script.matchAll(/packages\+=\(([^)]*)\)/g)]
    .flatMap((m) => m[1]!.trim().split(/\s+/))
    // Chromium is for the playground's browser tests, PgBouncer for the pooler's: not for the image.
    .filter((pkg) => pkg !== 'chromium' && pkg !== 'pgbouncer');
  assert.ok(packages.includes('bubblewrap') && packages.includes('python3-numpy'), packages.join(' '));
  return packages;
}

describe('the container image and compose.yaml, checked without Docker', () => {
  const instructions = parseDockerfile(read('Dockerfile'));
  const runtime = Math.max(...instructions.map((i) => i.stage));
  const imageEnv = envOf(instructions, runtime);
  let cli: { commands: Set<string>; help: string };
  let server: TestServer;
  before(async () => {
    [cli, server] = await Promise.all([cliCommands(), startTestServer()]);
  });
  after(async () => server?.close());

  test('every COPY from the build context exists and is not excluded by .dockerignore', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    const copies = instructions.filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from='));
    assert.ok(copies.length >= 4);
    for (const { args } of copies) {
      const sources = args.split(/\s+/).slice(0, -1);
      for (const source of sources) {
        assert.ok(existsSync(path.join(ROOT, source)), `COPY ${source}: it exists`);
        for (const pattern of ignored)
          assert.ok(
            !excludes(pattern, source),
            `COPY ${source}: not excluded, even in part, by .dockerignore's ${pattern}`,
          );
      }
    }
    // What the runtime reads from the repository, beside the build's output: the spec served as /v1/openapi.json.
    assert.ok(copies.some((c) => c.stage === runtime && c.args === 'spec ./spec'));
  });

  test('the runtime stage copies from the build stage what that stage makes', () => {
    const build = instructions.filter((i) => i.stage === 0);
    assert.match(instructions[0]!.args, /\bAS build$/);
    const workdir = build.find((i) => i.keyword === 'WORKDIR')!.args;
    const outDir = (JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { outDir: string } }).compilerOptions
      .outDir;
    const runs = build.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    assert.ok(runs.includes('npm ci'), 'node_modules are installed');
    assert.ok(
      runs.some((r) => r.startsWith('npm run build && npm prune --omit=dev')),
      'built, then dev deps pruned',
    );
    const made = new Set([path.posix.join(workdir, 'node_modules'), path.posix.join(workdir, outDir)]);
    for (const { args } of build.filter((i) => i.keyword === 'COPY'))
      for (const source of args.split(/\s+/).slice(0, -1)) made.add(path.posix.join(workdir, source));
    const fromBuild = instructions.filter((i) => i.keyword === 'COPY' && i.args.startsWith('--from=build '));
    assert.ok(fromBuild.length >= 3);
    for (const { args } of fromBuild) {
      const source = args.split(/\s+/)[1]!;
      assert.ok(made.has(source), `COPY --from=build ${source}: made by the build stage (${[...made].join(', ')})`);
    }
  });

  test('ENTRYPOINT and CMD run the CLI that package.json builds, with one of its commands', () => {
    const entrypoint = execForm(instructions.find((i) => i.keyword === 'ENTRYPOINT' && i.stage === runtime)!.args);
    const bin = (JSON.parse(read('package.json')) as { bin: { assistd: string } }).bin.assistd;
    assert.deepEqual(entrypoint, ['node', bin]);
    assert.equal(bin, 'dist/cli.js');
    assert.ok(existsSync(path.join(ROOT, 'src/cli.ts')), 'dist/cli.js is the build of src/cli.ts');
    const cmd = execForm(instructions.find((i) => i.keyword === 'CMD' && i.stage === runtime)!.args);
    assertValidCommand(cmd, cli, 'CMD');
  });

  test('HEALTHCHECK asks a route the server answers, and its command tells a live server from none', async () => {
    const healthcheck = instructions.find((i) => i.keyword === 'HEALTHCHECK')!.args;
    const [, options, json] = healthcheck.match(/^(.*?)CMD (\[.*\])$/) ?? [];
    assert.ok(options !== undefined && json !== undefined, healthcheck);
    const argv = execForm(json);
    const routePath = argv.join(' ').match(/\/healthz\b/)?.[0];
    assert.equal(routePath, '/healthz');
    assert.ok(listRoutes(server.server.app).some((r) => r.method === 'GET' && r.url === routePath));

    const port = new URL(server.url).port;
    const run = (env: Record<string, string>) =>
      promisify(execFile)(argv[0] === 'node' ? process.execPath : argv[0]!, argv.slice(1), { env }).then(
        () => 0,
        (error: { code: number }) => error.code,
      );
    assert.equal(await run({ PORT: port }), 0, 'healthy: the server answers');
    await server.close();
    assert.equal(await run({ PORT: port }), 1, 'unhealthy: nothing listens');
  });

  test('the image: a non-root user, data on a volume, listening on every interface, the sandbox installed', () => {
    const config = assertAcceptedSettings(imageEnv, 'Dockerfile ENV');
    assert.equal(config.host, '0.0.0.0');
    const only = (keyword: string) => instructions.filter((i) => i.keyword === keyword && i.stage === runtime);
    assert.deepEqual(
      only('VOLUME').map((i) => i.args),
      [config.dataDir],
    );
    assert.deepEqual(
      only('EXPOSE').map((i) => i.args),
      [String(config.port)],
    );
    const user = only('USER').at(-1)?.args;
    assert.ok(user !== undefined && user !== 'root' && user !== '0', `USER ${user}`);
    const installs = only('RUN')
      .map((i) => i.args)
      .join(' ');
    for (const pkg of sandboxPackages()) assert.match(installs, new RegExp(`apt-get install .*\\b${pkg}\\b`), pkg);
    assert.equal(config.sandbox.python, '/usr/bin/python3', "Debian's python3, where apt installs numpy & co");
  });

  test('compose.yaml: PostgreSQL, two API processes and two workers, with real commands and accepted settings', () => {
    const compose = YAML.parse(read('compose.yaml'), { merge: true }) as {
      services: Record<string, Service>;
    };
    // The values compose would ask for (`${NAME:?…}`); the others take their defaults.
    const given: Record<string, string> = {
      ASSISTD_API_KEY: 'sk-test',
      ASSISTD_UPSTREAM_BASE_URL: 'http://host.docker.internal:11434/v1',
    };
    const services = Object.entries(compose.services);
    const postgres = compose.services['postgres'];
    assert.ok(postgres, 'a PostgreSQL service');
    assert.match(postgres.image ?? '', /^postgres:/);
    const postgresEnv = interpolate(postgres.environment ?? {}, given);

    const assistd = services.filter(([, s]) => s.build !== undefined);
    const commands = assistd.map(([, s]) => s.command?.join(' ')).sort();
    assert.deepEqual(commands, ['serve --no-workers', 'serve --no-workers', 'worker', 'worker']);
    for (const [name, service] of assistd) {
      assert.equal(service.build, '.');
      assertValidCommand(service.command!, cli, name);
      const env = interpolate(service.environment ?? {}, given);
      const config = assertAcceptedSettings({ ...imageEnv, ...env }, name);
      assert.equal(config.storage.kind, 'postgres', `${name} uses the PostgreSQL service`);
      const url = new URL(config.storage.kind === 'postgres' ? config.storage.url : '');
      assert.equal(url.hostname, 'postgres');
      assert.equal(url.username, postgresEnv['POSTGRES_USER']);
      assert.equal(url.password, postgresEnv['POSTGRES_PASSWORD']);
      assert.equal(url.pathname, `/${postgresEnv['POSTGRES_DB']}`);
      assert.equal(config.files.storage, 'database', 'the processes share no disk');
      assert.ok(service.depends_on?.['postgres']);
      const worker = service.command![0] === 'worker';
      // A worker has no HTTP to check; an API process keeps the image's HEALTHCHECK.
      assert.equal(service.healthcheck?.disable === true, worker, `${name}'s health check`);
      // API processes execute the runs they stream, code included: every process needs the sandbox's options.
      for (const option of ['seccomp=unconfined', 'apparmor=unconfined', 'systempaths=unconfined'])
        assert.ok(service.security_opt?.includes(option), `${name}: ${option}, for the sandbox`);
    }
  });
});

/**
 * Whether a .dockerignore pattern excludes `source` or anything inside it. The file uses names and `*.ext` only,
 * which is all this understands: another kind of pattern fails the test rather than pass unchecked.
 */
function excludes(pattern: string, source: string): boolean {
  if (pattern.startsWith('*.')) return source.endsWith(pattern.slice(1));
  assert.match(pattern, /^[\w.-]+(\/[\w.-]+)*$/, `a .dockerignore pattern this test understands: ${pattern}`);
  return source === pattern || source.startsWith(`${pattern}/`) || pattern.startsWith(`${source}/`);
}

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, unknown>;
  healthcheck?: { disable?: boolean };
  security_opt?: string[];
}

/** Compose's `${NAME:-default}` and `${NAME:?error}`, as compose resolves them with `given` as the shell's variables. */
function interpolate(env: Record<string, string>, given: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env))
    out[name] = String(value).replace(/\$\{([A-Z_]+)(?::([-?])([^}]*))?\}/g, (_, variable: string, kind, rest) => {
      const set = given[variable];
      if (set !== undefined && set !== '') return set;
      if (kind === '-') return rest as string;
      throw new Error(`compose would stop: ${variable} is not set (${rest ?? 'no default'})`);
    });
  return out;
}
