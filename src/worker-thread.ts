import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * A worker thread running the module `entry` (a path without extension, relative to `base`, the caller's
 * import.meta.url). Built, it is the .js file. From source (the tests, `assistd` through tsx), the thread must load
 * TypeScript too, and tsx's `--import` hooks do not reach worker threads: the thread registers tsx itself, then
 * imports the entry.
 */
export function startModuleThread(base: string, entry: string, options: WorkerOptions = {}): Worker {
  const fromSource = base.endsWith('.ts');
  const url = new URL(`${entry}${fromSource ? '.ts' : '.js'}`, base);
  if (!fromSource) return new Worker(url, options);
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(code, { ...options, eval: true });
}
