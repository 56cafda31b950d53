// /v1/webhook-secret: the tenant's signing secret, which signs its per-request webhooks
// (the `webhook` field of training runs and captioning jobs).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { problemResponses } from '../../../schemas/problem.js';
import { WebhookSecretRef } from '../../../schemas/webhooks.js';

const TAGS = ['webhooks'];

const webhookSecretRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { secrets } = fastify.webhooks;

  fastify.get(
    '',
    {
      schema: {
        operationId: 'getWebhookSecret',
        tags: TAGS,
        summary: 'Get the secret that signs per-request webhooks',
        response: { 200: WebhookSecretRef, ...problemResponses(401, 500) },
      },
    },
    async (request) => secrets.get(request.tenant.id, request.tenant.id),
  );

  fastify.post(
    '/rotate',
    {
      schema: {
        operationId: 'rotateWebhookSecret',
        tags: TAGS,
        summary: 'Rotate the secret that signs per-request webhooks',
        description: 'A new secret signs from now on; for 24 hours the previous one signs too (two signatures in webhook-signature).',
        response: { 200: WebhookSecretRef, ...problemResponses(401, 500) },
      },
    },
    async (request) => secrets.rotate(request.tenant.id, request.tenant.id),
  );
};

export default webhookSecretRoutes;
