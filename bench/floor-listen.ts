import type { FastifyInstance } from 'fastify';

/**
 * Starts a floor server's Fastify app on a free loopback port, prints `floor listening on <url>` (what startFloor in
 * support.ts waits for), and closes it on SIGINT or SIGTERM.
 */
export async function listenAsFloor(app: FastifyInstance): Promise<void> {
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
