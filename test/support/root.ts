import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The checkout's root. npm test runs the tests compiled, from .test-build/ (scripts/run-tests.mjs): the files the
 * tests read by path (the spec, src/sandbox/driver.py, the build, the tool server's source) are still the
 * checkout's, one level up.
 */
const HERE = fileURLToPath(new URL('../../', import.meta.url));
export const ROOT = path.basename(HERE) === '.test-build' ? `${path.dirname(HERE)}${path.sep}` : HERE;
