import type { FastifyInstance } from 'fastify';

/**
 * Starts a floor server's Fastify app on a free loopback port, prints `floor listening on <url>` (what startFloor in
 * support.ts waits for), and closes it on SIGINT or SIGTERM. The app must be built with `forceCloseConnections:
 * true`: the benchmark's clients keep their connections alive, and may be in the middle of a request when the floor
 * is stopped (a signal to the benchmark stops it at once), and `app.close()` would wait on them for as long as they
 * stay open.
 */
export async function listenAsFloor(app: FastifyInstance): Promise<void> {
  if (app.initialConfig.forceCloseConnections !== true)
    throw new Error('a floor server needs forceCloseConnections: true, or stopping it waits on open connections');
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  process.stdout.write(`floor listening on ${url}\n`);
  const stop = () => {
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
