#!/usr/bin/env node
// Builds (and with --checks, as `npm test` does, type-checks and lints at the same time), then runs every test file
// under test/ with Node's test runner (TypeScript through tsx). Node 20's `--test` does not expand globs itself, so
// the files are listed here. Extra arguments narrow the run: `npm test -- test/api`.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
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
 * Runs `npm run -s <script>` for each of `scripts` at once (tsc uses one thread), each one's output printed whole
 * when it ends; resolves once all ended, with false if one failed.
 */
async function runAtOnce(scripts) {
  const ends = scripts.map(
    (script) =>
      new Promise((resolve) => {
        const child = spawn('npm', ['run', '-s', script], { stdio: ['ignore', 'pipe', 'pipe'] });
        let output = '';
        child.stdout.on('data', (chunk) => (output += chunk));
        child.stderr.on('data', (chunk) => (output += chunk));
        child.on('error', (error) => {
          process.stdout.write(`npm run ${script}: failed (${error.message})\n`);
          resolve(false);
        });
        child.on('close', (code) => {
          process.stdout.write(`npm run ${script}: ${code === 0 ? 'ok' : `failed (${code})`}\n${output}`);
          resolve(code === 0);
        });
      }),
  );
  return (await Promise.all(ends)).every(Boolean);
}

// `--checks` (npm test) type-checks and lints beside the build, before any test runs. The tests that start the CLI
// as a process (servers, workers, crashes and restarts) start the build, as `npm start` does: half the CPU time of
// the source through tsx, for each of some hundred processes (test/support/server.ts).
const args = process.argv.slice(2);
const checks = args[0] === '--checks';
if (!(await runAtOnce(checks ? ['typecheck', 'lint', 'build'] : ['build']))) process.exit(1);

const roots = checks ? args.slice(1) : args;
const files = (roots.length > 0 ? roots : ['test']).flatMap((root) =>
  statSync(root).isDirectory() ? testFiles(root) : [root],
);
// A test that waits for something that never happens fails after five minutes instead of holding the run: the tests
// assert what happened, not how long it took, so a regression can show as a wait. Two files at a time: on 2 cores,
// that kept the CPU 93% busy (519 s); three made it 96.5% busy and the suite slower (548 s), since the suite is
// CPU-bound, and tests that race a deadline against work on a loaded machine failed more often.
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=300000', '--test-reporter=spec', ...files],
  { stdio: 'inherit', env: { ...process.env, ASSISTD_TEST_BUILT: '1' } },
);
process.exit(result.status ?? 1);
