// Probes for orchestrators: /healthz (the process answers; it stays 200 while the database
// is away, since a restarted pod would lose its in-flight work for nothing) and /readyz (the
// database answers, every shipped migration is applied, and a worker has loaded its engine
// and PRELOAD_MODELS). No API key.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { pendingMigrations } from '../db/migrator.js';
import { isDatabaseUnavailable } from '../db/unavailable.js';
import { ProblemError, databaseUnavailable } from '../errors.js';
import { problemResponses } from '../schemas/problem.js';

const HealthStatus = Type.Object({ status: Type.Literal('ok') }, { additionalProperties: false });
const ReadyStatus = Type.Object(
  {
    status: Type.Literal('ready'),
    database: Type.Union([Type.Literal('postgres'), Type.Literal('pglite')]),
    migration: Type.Integer({ description: 'Highest applied migration version' }),
  },
  { additionalProperties: false },
);

const healthRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/healthz',
    {
      schema: {
        operationId: 'getHealth',
        tags: ['health'],
        summary: 'Liveness: the process is up',
        security: [],
        response: { 200: HealthStatus, ...problemResponses(500) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  fastify.get(
    '/readyz',
    {
      schema: {
        operationId: 'getReadiness',
        tags: ['health'],
        summary: 'Readiness: the database answers, its migrations are applied, and a worker has loaded what it needs',
        security: [],
        response: { 200: ReadyStatus, ...problemResponses(500, 503) },
      },
    },
    async (request) => {
      let pending: number[];
      try {
        pending = await pendingMigrations(fastify.db, fastify.migrations);
      } catch (error) {
        if (isDatabaseUnavailable(error)) throw databaseUnavailable();
        throw error;
      }
      if (pending.length > 0) {
        throw new ProblemError({
          status: 503,
          type: 'not-ready',
          title: 'Not ready',
          detail: `Migrations not applied yet: ${pending.join(', ')}`,
        });
      }
      const loading = fastify.notReadyReason();
      if (loading !== undefined) throw new ProblemError({ status: 503, type: 'not-ready', title: 'Not ready', detail: loading });
      const latest = fastify.migrations[fastify.migrations.length - 1]?.version ?? 0;
      return { status: 'ready' as const, database: fastify.db.kind, migration: latest };
    },
  );
};

export default healthRoutes;
