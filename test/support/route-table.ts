import type { FastifyInstance } from 'fastify';

export interface RouteEntry {
  method: string;
  /** The route's template, e.g. `/v1/threads/:thread_id/runs`. */
  url: string;
}

/**
 * Every route of a ready app, read from `printRoutes({ commonPrefix: false })`: Fastify lists its routes nowhere
 * else once they are registered, and an onRoute hook would have to be added inside buildApp. The text is a tree
 * (`├── /v1/threads (POST)`, `│   └── /:thread_id (GET, HEAD, …)`): each line's depth is its indentation and its
 * path is its parent's path followed by its segment. Every route read is checked with `app.hasRoute`, so a change
 * of the format fails here rather than yielding a wrong table.
 */
export function listRoutes(app: FastifyInstance): RouteEntry[] {
  const routes: RouteEntry[] = [];
  const parents: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    if (line.trim() === '') continue;
    const match = line.match(/^((?:│ {3}| {4})*)(?:├── |└── )(\S+)(?: \(([^)]+)\))?$/);
    if (!match) throw new Error(`cannot read the route line ${JSON.stringify(line)}`);
    const depth = match[1]!.length / 4;
    const segment = match[2]!;
    const parent = parents[depth - 1] ?? '';
    // Children of the root route `/` are printed with their own slash (`/` then `healthz`), others without.
    const url = segment.startsWith('/') || parent.endsWith('/') ? parent + segment : `${parent}/${segment}`;
    parents[depth] = url;
    parents.length = depth + 1;
    for (const method of match[3]?.split(', ') ?? []) {
      if (!app.hasRoute({ method: method as 'GET', url }))
        throw new Error(`read ${method} ${url} from printRoutes, but the app has no such route`);
      routes.push({ method, url });
    }
  }
  return routes;
}
