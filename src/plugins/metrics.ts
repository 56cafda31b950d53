// Prometheus metrics: the app's ServiceMetrics (registered before the workers, which report
// to it), a duration for every HTTP request by route template, and GET /metrics: on PORT,
// or alone on METRICS_PORT; behind METRICS_TOKEN when one is set. Not in the OpenAPI
// document: Prometheus reads it, API clients do not.
import fp from 'fastify-plugin';
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { ProblemError } from '../errors.js';
import { ServiceMetrics } from '../metrics/service-metrics.js';
import { trainingDevices } from './device.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: ServiceMetrics;
  }
}

export const METRICS_PATH = '/metrics';
/** Requests that matched no route share one label value, so unknown URLs cannot grow the series. */
const UNMATCHED_ROUTE = 'unmatched';

/** Compares digests, so neither the token's length nor its prefix leaks through timing. */
function tokenMatches(header: string | undefined, token: string): boolean {
  const sent = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '')?.[1] ?? '';
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(sent), digest(token));
}

export default fp(
  async (fastify) => {
    const { token, port } = fastify.config.metrics;
    const separatePort = port > 0 ? port : undefined;
    const metrics = new ServiceMetrics();
    fastify.decorate('metrics', metrics);

    // A callback hook, not an async one: no promise per request on the hot path.
    fastify.addHook('onResponse', (request, reply, done) => {
      metrics.httpRequest(request.method, request.routeOptions.url ?? UNMATCHED_ROUTE, reply.statusCode, reply.elapsedTime / 1000);
      done();
    });
    fastify.addHook('onReady', async () => {
      // The sources exist once every plugin has registered (generations owns the resident models).
      metrics.setSources({
        db: fastify.db,
        resident: fastify.generations.resident,
        devices: trainingDevices(fastify.config.training).devices,
        diskSpace: fastify.services.diskSpace,
        // Registered after this plugin (it reports here); its worker exists by now.
        ...(fastify.training.worker === undefined ? {} : { trainingPool: fastify.training.worker.devicePool }),
        logger: fastify.log,
      });
    });

    if (separatePort === undefined) {
      fastify.get(METRICS_PATH, { schema: { hide: true } }, async (request, reply) => {
        if (token !== undefined && !tokenMatches(request.headers.authorization, token)) {
          throw new ProblemError({
            status: 401,
            type: 'unauthorized',
            title: 'Unauthorized',
            detail: 'Send the metrics token as Authorization: Bearer <METRICS_TOKEN>',
            headers: { 'www-authenticate': 'Bearer realm="metrics"' },
          });
        }
        return reply.type(metrics.contentType).send(await metrics.scrape());
      });
      return;
    }

    // Its own listener: a scrape never queues behind API traffic, and a network policy can open it alone.
    const server = http.createServer((request, response) => {
      const path = (request.url ?? '').split('?')[0];
      if (request.method !== 'GET' || path !== METRICS_PATH) {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      if (token !== undefined && !tokenMatches(request.headers.authorization, token)) {
        response.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="metrics"' }).end('unauthorized\n');
        return;
      }
      metrics.scrape().then(
        (text) => response.writeHead(200, { 'content-type': metrics.contentType }).end(text),
        (error: unknown) => {
          fastify.log.error({ err: error }, 'metrics scrape failed');
          response.writeHead(500, { 'content-type': 'text/plain' }).end('scrape failed\n');
        },
      );
    });
    fastify.addHook('onReady', async () => {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(separatePort, fastify.config.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      fastify.log.info({ port: separatePort }, 'metrics listening');
    });
    fastify.addHook('onClose', async () => {
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    });
  },
  { name: 'metrics', dependencies: ['database', 'errors'] },
);
