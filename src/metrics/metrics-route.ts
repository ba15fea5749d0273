import type { FastifyInstance } from 'fastify';
import type { Metrics } from './metrics.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** The server's metrics, for what observes a request after its handler (SSE streams); absent in some tests. */
    metrics: Metrics | undefined;
  }
}

/**
 * `GET /metrics` in Prometheus text format, and the metrics as `app.metrics`. Its API key check is the /v1 one
 * (app.ts's onRequest hook): a scraper sends `Authorization: Bearer <ASSISTD_API_KEY>`.
 */
export function registerMetricsRoute(app: FastifyInstance, metrics: Metrics): void {
  app.decorate('metrics', metrics);
  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.text();
    return reply.type(metrics.contentType).send(text);
  });
}
