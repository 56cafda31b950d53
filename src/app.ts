// The service: a fastify instance with its plugins and routes, not yet listening.
// src/server.ts runs it; tests and the OpenAPI generator build it without a socket.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyServerOptions, type RawServerDefault, type FastifyBaseLogger, type RawRequestDefaultExpression, type RawReplyDefaultExpression } from 'fastify';
import { randomUUID } from 'node:crypto';
import type { Config } from './config.js';
import type { Database } from './db/database.js';
import { OneLineRequestLog } from './request-log.js';
import { buildValidator } from './validation.js';
import type { CaptionerRegistry } from './captioning/index.js';
import authPlugin from './plugins/auth.js';
import captioningPlugin from './plugins/captioning.js';
import databasePlugin from './plugins/database.js';
import datasetImportsPlugin from './plugins/dataset-imports.js';
import errorsPlugin from './plugins/errors.js';
import unreadBodiesPlugin from './plugins/unread-bodies.js';
import idempotencyPlugin from './plugins/idempotency.js';
import repositoriesPlugin from './plugins/repositories.js';
import schemasPlugin from './plugins/schemas.js';
import swaggerPlugin from './plugins/swagger.js';
import generationsPlugin from './plugins/generations.js';
import metricsPlugin from './plugins/metrics.js';
import readinessPlugin from './plugins/readiness.js';
import maintenancePlugin from './plugins/maintenance.js';
import trainingPlugin from './plugins/training.js';
import webhooksPlugin, { type WebhooksPluginOptions } from './plugins/webhooks.js';
import consoleRoutes, { type ConsoleRoutesOptions } from './routes/console.js';
import healthRoutes from './routes/health.js';
import v1Routes from './routes/v1/index.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
  }
}

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

export interface BuildOptions {
  /** pino options, or false for no log (tests). Defaults to JSON logs at config.logLevel. */
  logger?: FastifyServerOptions['logger'];
  /** Use this open database instead of opening one from the config; the caller closes it. */
  database?: Database;
  /** Caption providers to use instead of the ones the configuration describes (tests). */
  captioners?: CaptionerRegistry;
  /** The webhook dispatcher's clock, jitter and name resolution (tests). */
  webhooks?: WebhooksPluginOptions;
  /** Where the built web console is (tests). */
  console?: ConsoleRoutesOptions;
}

/** A caller-supplied x-request-id is kept when it is short and plain, so ids can follow a request across services. */
const REQUEST_ID = /^[\w.:-]{1,64}$/;
const PLUGIN_TIMEOUT_MS = 120_000;

export async function buildApp(config: Config, options: BuildOptions = {}): Promise<App> {
  const app = Fastify({
    logger: options.logger ?? { level: config.logLevel },
    bodyLimit: config.bodyLimitBytes,
    // The embedded database compiles its WebAssembly and migrations may rewrite tables:
    // both can outlast fastify's 10 s default on a small machine.
    pluginTimeout: PLUGIN_TIMEOUT_MS,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // plugins/errors.ts answers requests that arrive while closing, as problem+json.
    return503OnClosing: false,
    logController: new OneLineRequestLog(),
    schemaController: { compilersFactory: { buildValidator: buildValidator as never } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorate('config', config);
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  // JSON and multipart only: a text/plain body is a 415, not a string that fails validation.
  app.removeContentTypeParser('text/plain');

  // A worker answers probes and metrics only; the API is the api and all roles'.
  const servesApi = config.role !== 'worker';
  await app.register(errorsPlugin);
  await app.register(unreadBodiesPlugin);
  await app.register(schemasPlugin);
  if (servesApi) await app.register(swaggerPlugin);
  await app.register(databasePlugin, options.database ? { database: options.database } : {});
  // Before the workers: they report to it.
  await app.register(metricsPlugin);
  await app.register(repositoriesPlugin);
  await app.register(authPlugin);
  // Before the routes: it hooks the routes that opt in (config.idempotent) as they are added.
  await app.register(idempotencyPlugin);
  await app.register(webhooksPlugin, options.webhooks ?? {});
  await app.register(captioningPlugin, options.captioners ? { captioners: options.captioners } : {});
  await app.register(datasetImportsPlugin);
  // Generations first: training makes prior preservation's class images on its resident models.
  await app.register(generationsPlugin);
  await app.register(trainingPlugin);
  await app.register(maintenancePlugin);
  await app.register(readinessPlugin);
  await app.register(healthRoutes);
  if (servesApi) await app.register(v1Routes, { prefix: '/v1' });
  if (servesApi) await app.register(consoleRoutes, options.console ?? {});
  return app;
}
