#!/usr/bin/env node
// Builds (and with --checks, as `npm test` does, type-checks and lints at the same time), then runs every test file
// under test/ with Node's test runner, compiled first (TEST_BUILD below). Node 20's `--test` does not expand globs
// itself, so the files are listed here. Extra arguments narrow the run: `npm test -- test/api`.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import path from 'node:path';

function testFiles(dir) {
  return readdirSync(dir)
    .flatMap((name) => {
      const file = path.join(dir, name);
      if (statSync(file).isDirectory()) return testFiles(file);
      return name.endsWith('.test.ts') ? [file] : [];
    })
    .sort();
}

/**
 * Runs each of `commands` (`npm run -s <script>` for a script's name, else [label, command, ...args]) at once (tsc
 * uses one thread), each one's output printed whole when it ends; resolves once all ended, with false if one failed.
 */
async function runAtOnce(commands) {
  const ends = commands.map(
    (entry) =>
      new Promise((resolve) => {
        const [label, command, ...args] =
          typeof entry === 'string' ? [`npm run ${entry}`, 'npm', 'run', '-s', entry] : entry;
        const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
        let output = '';
        child.stdout.on('data', (chunk) => (output += chunk));
        child.stderr.on('data', (chunk) => (output += chunk));
        child.on('error', (error) => {
          process.stdout.write(`${label}: failed (${error.message})\n`);
          resolve(false);
        });
        child.on('close', (code) => {
          process.stdout.write(`${label}: ${code === 0 ? 'ok' : `failed (${code})`}\n${output}`);
          resolve(code === 0);
        });
      }),
  );
  return (await Promise.all(ends)).every(Boolean);
}

/**
 * The tests run compiled, from TEST_BUILD (src/ and test/ emitted by tsc without checking the types: typecheck
 * does), not through tsx: tsx's loader hooks cost every test process about a second of CPU to load the server's
 * ~600 modules, and every worker thread the server starts (indexing, SQLite readers) registers tsx again; together
 * about a quarter of the suite's CPU. What the compiled code finds by path beside it is linked in: the spec, the
 * build (the playground's bundle), scripts/ (build-playground.mjs) and the sandbox's driver.py. The tests read
 * the checkout's files through ROOT (test/support/root.ts), which is the checkout from there too.
 */
const TEST_BUILD = '.test-build';
const BUILD_TESTS = [
  'tsc -p tsconfig.test-build.json',
  process.execPath,
  'node_modules/typescript/bin/tsc',
  '-p',
  'tsconfig.test-build.json',
  '--noCheck',
];

function linkTestBuild() {
  for (const name of ['spec', 'dist', 'scripts']) symlinkSync(path.join('..', name), path.join(TEST_BUILD, name));
  copyFileSync('src/sandbox/driver.py', path.join(TEST_BUILD, 'src/sandbox/driver.py'));
}

// `--checks` (npm test) type-checks and lints beside the build, before any test runs. The tests that start the CLI
// as a process (servers, workers, crashes and restarts) start the build, as `npm start` does: half the CPU time of
// the source through tsx, for each of some hundred processes (test/support/server.ts).
const args = process.argv.slice(2);
const checks = args[0] === '--checks';
rmSync(TEST_BUILD, { recursive: true, force: true }); // no output of a file since deleted
if (!(await runAtOnce(checks ? ['typecheck', 'lint', 'build', BUILD_TESTS] : ['build', BUILD_TESTS]))) process.exit(1);
linkTestBuild();

const roots = checks ? args.slice(1) : args;
const files = (roots.length > 0 ? roots : ['test']).flatMap((root) =>
  statSync(root).isDirectory() ? testFiles(root) : [root],
);
// A test that waits for something that never happens fails after five minutes instead of holding the run: the tests
// assert what happened, not how long it took, so a regression can show as a wait. Two files at a time: on 2 cores,
// that kept the CPU 93% busy; three made it 96.5% busy and the suite slower (519 s against 548 s when measured), since it is
// CPU-bound, and tests that race a deadline against work on a loaded machine failed more often.
const compiled = files.map((file) => path.join(TEST_BUILD, file.replace(/\.ts$/, '.js')));
const result = spawnSync(
  process.execPath,
  // Source maps: a failure's stack names the lines of the .ts files.
  [
    '--enable-source-maps',
    '--test',
    '--test-concurrency=2',
    '--test-timeout=300000',
    '--test-reporter=spec',
    ...compiled,
  ],
  { stdio: 'inherit', env: { ...process.env, ASSISTD_TEST_BUILT: '1' } },
);
process.exit(result.status ?? 1);
