import type { StoredFile } from '../../domain/files.ts';
import type { FileService } from '../../files/file-service.ts';
import type { Store } from '../../storage/store.ts';
import { type CodeInterpreterBackend, ranCode } from './code-interpreter-tool.ts';

/** How many of the thread's earlier runs are looked at for code_interpreter calls. */
const EARLIER_RUNS = 20;

/**
 * code_interpreter over assistd's own objects: the run's files are named by its assistant's and thread's
 * tool_resources and by the thread's message attachments (read through the Store), their bytes come from the
 * FileService, which also stores the files a run makes.
 */
export function codeInterpreterBackend(deps: {
  store: Pick<Store, 'getAssistant' | 'getThread' | 'threadAttachments' | 'listRuns' | 'runSteps' | 'files'>;
  files: Pick<FileService, 'readAll' | 'save'>;
}): CodeInterpreterBackend {
  const { store, files } = deps;
  return {
    async runFiles(scope, run) {
      const [assistant, thread, attachments] = await Promise.all([
        store.getAssistant(scope, run.assistant_id),
        store.getThread(scope, run.thread_id),
        store.threadAttachments(scope, run.thread_id),
      ]);
      const ids = [
        ...(assistant?.tool_resources?.code_interpreter?.file_ids ?? []),
        ...(thread?.tool_resources?.code_interpreter?.file_ids ?? []),
        ...attachments.flatMap((a) => (a.tools.some((t) => t.type === 'code_interpreter') ? [a.file_id] : [])),
      ];
      const found: StoredFile[] = [];
      const missing: string[] = [];
      for (const id of new Set(ids)) {
        const file = await store.files.getFile(scope, id);
        if (file) found.push(file);
        else missing.push(id);
      }
      return { files: found, missing };
    },

    async readFile(scope, id) {
      return (await files.readAll(scope, id))?.bytes;
    },

    saveFile: (scope, file) => files.save(scope, { ...file, purpose: 'assistants_output' }),

    async lastCall(scope, run) {
      const { data } = await store.listRuns(scope, run.thread_id, { limit: EARLIER_RUNS, order: 'desc' });
      for (const earlier of data) {
        if (earlier.id === run.id || !earlier.tools.some((t) => t.type === 'code_interpreter')) continue;
        const steps = await store.runSteps(scope, earlier.id);
        for (const step of [...steps].reverse()) {
          if (step.status !== 'completed' || step.step_details.type !== 'tool_calls') continue;
          const call = step.step_details.tool_calls.findLast(ranCode);
          if (call) return call.id;
        }
      }
      return undefined;
    },
  };
}
