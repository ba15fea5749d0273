// Preloaded with `--import` (through NODE_OPTIONS) into a server process under test: records every module URL
// containing ASSISTD_TEST_IMPORT_MATCH that the process resolves or loads, one per line, in ASSISTD_TEST_IMPORT_LOG.
import { register } from 'node:module';

register(new URL('./import-recorder-hooks.mjs', import.meta.url), {
  data: { file: process.env.ASSISTD_TEST_IMPORT_LOG, match: process.env.ASSISTD_TEST_IMPORT_MATCH },
});
