#!/usr/bin/env node
// Runs every test file under test/ with Node's test runner (TypeScript through tsx). Node 20's `--test` does not
// expand globs itself, so the files are listed here. Extra arguments narrow the run: `npm test -- test/api`.
import { spawnSync } from 'node:child_process';
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

const roots = process.argv.slice(2);
const files = (roots.length > 0 ? roots : ['test']).flatMap((root) =>
  statSync(root).isDirectory() ? testFiles(root) : [root],
);
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
