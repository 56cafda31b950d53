// Everything under /v1 needs an API key: the hook runs before body parsing, so an
// unauthenticated upload is refused before it is read.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import captioningJobRoutes from './captioning-jobs/index.js';
import captionRoutes from './captions/index.js';
import datasetImportRoutes from './dataset-imports/index.js';
import datasetRoutes from './datasets/index.js';
import generationRoutes from './generations/index.js';
import imageRoutes from './images/index.js';
import loraRoutes from './loras/index.js';
import modelRoutes from './models/index.js';
import qualityMetricRoutes from './quality-metrics/index.js';
import trainingRunRoutes from './training-runs/index.js';
import webhookEndpointRoutes from './webhooks/endpoints.js';
import webhookMessageRoutes from './webhooks/messages.js';
import webhookSecretRoutes from './webhooks/secret.js';

const v1Routes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.addHook('onRequest', fastify.authenticate);
  await fastify.register(datasetRoutes, { prefix: '/datasets' });
  // Images live under their dataset: /v1/datasets/{id}/images... (paths are the images plugin's own).
  await fastify.register(imageRoutes);
  // Captions and captioning jobs: under /v1/datasets/{id}/..., /v1/images/{id}/caption and /v1/captioning-jobs.
  await fastify.register(captionRoutes);
  await fastify.register(captioningJobRoutes);
  // Dataset imports: /v1/datasets/{id}/imports and /v1/dataset-imports/{id}.
  await fastify.register(datasetImportRoutes);
  await fastify.register(modelRoutes, { prefix: '/models' });
  await fastify.register(qualityMetricRoutes, { prefix: '/quality-metrics' });
  await fastify.register(trainingRunRoutes, { prefix: '/training-runs' });
  await fastify.register(loraRoutes, { prefix: '/loras' });
  await fastify.register(generationRoutes, { prefix: '/generations' });
  await fastify.register(webhookEndpointRoutes, { prefix: '/webhook-endpoints' });
  await fastify.register(webhookMessageRoutes, { prefix: '/webhook-messages' });
  await fastify.register(webhookSecretRoutes, { prefix: '/webhook-secret' });
};

export default v1Routes;
