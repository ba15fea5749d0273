#!/usr/bin/env node
// Bundles the playground (playground/) into dist/playground/: one script, one stylesheet and the page, with every
// library inside (no request leaves for another host). Run by `npm run build`, and by the browser tests.
import { cpSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('../', import.meta.url));
const out = `${root}dist/playground`;

export async function buildPlayground({ minify = true } = {}) {
  mkdirSync(out, { recursive: true });
  await build({
    entryPoints: { app: `${root}playground/src/main.ts`, styles: `${root}playground/src/styles.css` },
    bundle: true,
    format: 'esm',
    target: 'es2022',
    minify,
    sourcemap: false,
    outdir: out,
    logLevel: 'warning',
    legalComments: 'linked',
  });
  cpSync(`${root}playground/index.html`, `${out}/index.html`);
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildPlayground();
