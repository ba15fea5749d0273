import { readdir, readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * The playground's files, as `npm run build` bundles them (scripts/build-playground.mjs). From src/api/routes (tsx)
 * and from dist/api/routes (the build) alike, three levels up is the repository root.
 */
const BUNDLE_DIR = new URL('../../../dist/playground/', import.meta.url);

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * What the page may load: only this server (its scripts, styles and the API), images also from blob: URLs (the
 * files it downloads with the key); nothing from another host, no inline script, and no framing.
 */
const CONTENT_SECURITY_POLICY =
  "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; script-src 'self'; style-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/**
 * GET /playground: a web page to build assistants, chat with them and look at threads, runs and files, talking only
 * to this server's public API with the key its user enters (kept in the browser's session storage). `/` leads there.
 * The files are read once, on first request; without a build they are a 404 saying how to make them.
 */
export function registerPlaygroundRoutes(app: FastifyInstance): void {
  let files: Promise<Map<string, Buffer>> | undefined;
  const bundle = () => {
    files ??= loadBundle().catch((error: unknown) => {
      files = undefined;
      throw error;
    });
    return files;
  };

  app.get('/', async (_request, reply) => reply.redirect('/playground/'));

  const serve = async (name: string, reply: FastifyReply) => {
    const loaded = await bundle().catch(() => undefined);
    const body = loaded?.get(name);
    // A link in a message (the model's, a user's) leads anywhere: the site it opens is not told where it came from.
    reply
      .header('content-security-policy', CONTENT_SECURITY_POLICY)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer');
    if (body === undefined)
      return reply
        .code(404)
        .type('text/plain; charset=utf-8')
        .send(loaded ? `No playground file ${name}.` : 'The playground is not built: run `npm run build`.');
    return reply
      .type(TYPES[name.slice(name.lastIndexOf('.'))] ?? 'application/octet-stream')
      .header('cache-control', name === 'index.html' ? 'no-cache' : 'public, max-age=300')
      .send(body);
  };

  // The app ignores trailing slashes, so this route also answers `/playground/`: redirecting that would loop.
  app.get('/playground', async (request, reply) =>
    request.url.split('?')[0]!.endsWith('/') ? serve('index.html', reply) : reply.redirect('/playground/'),
  );

  app.get('/playground/*', async (request, reply) =>
    serve((request.params as { '*': string })['*'] || 'index.html', reply),
  );
}

/** Every file of the bundle by name (a flat directory: no path of a request reaches anything else). */
async function loadBundle(): Promise<Map<string, Buffer>> {
  const names = await readdir(BUNDLE_DIR);
  const entries = await Promise.all(
    names.map(async (name) => [name, await readFile(new URL(name, BUNDLE_DIR))] as const),
  );
  return new Map(entries);
}
