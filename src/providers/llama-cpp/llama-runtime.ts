/**
 * The one place that loads node-llama-cpp: dynamically, on the first GGUF route, so that a server without one never
 * loads the package (nor its native binary). One llama.cpp runtime per process, shared by every GGUF model.
 */
import type { Llama } from 'node-llama-cpp';
import type { Logger } from 'pino';

export type NodeLlamaCpp = typeof import('node-llama-cpp');

export interface LlamaRuntime {
  lib: NodeLlamaCpp;
  llama: Llama;
  /** llama.cpp's most recent warnings and errors: its exceptions say little ("Failed to load model"), its log says why. */
  recentProblems(): string[];
}

const PROBLEMS_KEPT = 8;
let runtime: Promise<LlamaRuntime> | undefined;

export function llamaRuntime(logger: Logger): Promise<LlamaRuntime> {
  runtime ??= start(logger);
  return runtime;
}

async function start(logger: Logger): Promise<LlamaRuntime> {
  const lib = await import('node-llama-cpp');
  const problems: string[] = [];
  const log = logger.child({ component: 'llama.cpp' });
  const llama = await lib.getLlama({
    // CPU only: the install ships only the CPU build for linux-x64 (package.json `overrides`), and `build: 'never'`
    // turns a missing prebuilt binary into an error instead of a multi-minute source build at the first request.
    gpu: false,
    build: 'never',
    progressLogs: false,
    logLevel: lib.LlamaLogLevel.warn,
    logger: (level, message) => {
      const text = message.trim();
      if (text === '') return;
      if (level === lib.LlamaLogLevel.error || level === lib.LlamaLogLevel.fatal || level === lib.LlamaLogLevel.warn) {
        problems.push(text);
        if (problems.length > PROBLEMS_KEPT) problems.shift();
      }
      if (level === lib.LlamaLogLevel.error || level === lib.LlamaLogLevel.fatal) log.error(text);
      else log.debug(text);
    },
  });
  return { lib, llama, recentProblems: () => [...problems] };
}
