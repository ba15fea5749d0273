import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

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
  let files: Promise<Map<string, BundleFile>> | undefined;
  const bundle = () => {
    files ??= loadBundle().catch((error: unknown) => {
      files = undefined;
      throw error;
    });
    return files;
  };

  app.get('/', async (_request, reply) => reply.redirect('/playground/'));

  const serve = async (name: string, request: FastifyRequest, reply: FastifyReply) => {
    const loaded = await bundle().catch(() => undefined);
    const file = loaded?.get(name);
    // A link in a message (the model's, a user's) leads anywhere: the site it opens is not told where it came from.
    // (nosniff, as on every answer: app.ts.)
    reply.header('content-security-policy', CONTENT_SECURITY_POLICY).header('referrer-policy', 'no-referrer');
    if (file === undefined)
      return reply
        .code(404)
        .type('text/plain; charset=utf-8')
        .send(loaded ? `No playground file ${name}.` : 'The playground is not built: run `npm run build`.');
    // The files keep their names from build to build: a browser asks every time whether its copy is still this one
    // (a 304 without a body when it is), so a page never runs an older server's script.
    reply.header('cache-control', 'no-cache').header('etag', file.etag);
    if (matches(request.headers['if-none-match'], file.etag)) return reply.code(304).send();
    return reply.type(TYPES[name.slice(name.lastIndexOf('.'))] ?? 'application/octet-stream').send(file.body);
  };

  // The app ignores trailing slashes, so this route also answers `/playground/`: redirecting that would loop.
  app.get('/playground', async (request, reply) =>
    request.url.split('?')[0]!.endsWith('/') ? serve('index.html', request, reply) : reply.redirect('/playground/'),
  );

  app.get('/playground/*', async (request, reply) =>
    serve((request.params as { '*': string })['*'] || 'index.html', request, reply),
  );
}

/**
 * Whether an If-None-Match header names this ETag: one of its list, weak or not (a proxy compressing the file makes
 * it weak), or `*`.
 */
function matches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((tag) => {
    const trimmed = tag.trim();
    return trimmed === '*' || trimmed.replace(/^W\//, '') === etag;
  });
}

interface BundleFile {
  body: Buffer;
  /** A strong validator: the content's hash. */
  etag: string;
}

/** Every file of the bundle by name (a flat directory: no path of a request reaches anything else). */
async function loadBundle(): Promise<Map<string, BundleFile>> {
  const names = await readdir(BUNDLE_DIR);
  const entries = await Promise.all(
    names.map(async (name) => {
      const body = await readFile(new URL(name, BUNDLE_DIR));
      const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
      return [name, { body, etag }] as const;
    }),
  );
  return new Map(entries);
}
