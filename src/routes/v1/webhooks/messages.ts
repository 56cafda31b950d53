// /v1/webhook-messages: what was sent to whom, every attempt, and redelivery.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { problemResponses } from '../../../schemas/problem.js';
import {
  ListWebhookMessagesQuery,
  WebhookMessageParams,
  WebhookMessagePage,
  WebhookMessageRef,
  WebhookMessageWithAttempts,
} from '../../../schemas/webhooks.js';

const TAGS = ['webhooks'];

const webhookMessageRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { messages } = fastify.webhooks;

  fastify.get(
    '',
    {
      schema: {
        operationId: 'listWebhookMessages',
        tags: TAGS,
        summary: 'List webhook messages, newest first',
        querystring: ListWebhookMessagesQuery,
        response: { 200: WebhookMessagePage, ...problemResponses(400, 401, 500) },
      },
    },
    async (request) => {
      const { limit, cursor, resource_id, endpoint_id, status } = request.query;
      const filter = {
        ...(resource_id === undefined ? {} : { resource_id }),
        ...(endpoint_id === undefined ? {} : { endpoint_id }),
        ...(status === undefined ? {} : { status }),
      };
      return messages.list(request.tenant.id, filter, limit, cursor);
    },
  );

  fastify.get(
    '/:id',
    {
      schema: {
        operationId: 'getWebhookMessage',
        tags: TAGS,
        summary: 'Get a webhook message with every attempt',
        params: WebhookMessageParams,
        response: { 200: WebhookMessageWithAttempts, ...problemResponses(401, 404, 500) },
      },
    },
    async (request) => messages.get(request.tenant.id, request.params.id),
  );

  fastify.post(
    '/:id/redeliver',
    {
      schema: {
        operationId: 'redeliverWebhookMessage',
        tags: TAGS,
        summary: 'Send a delivered or failed message again',
        description: 'Attempts it now, with the same webhook-id and body and a fresh retry schedule. 409 while it is still pending or sending.',
        params: WebhookMessageParams,
        response: { 202: WebhookMessageRef, ...problemResponses(401, 404, 409, 500) },
      },
    },
    async (request, reply) => reply.status(202).send(await messages.redeliver(request.tenant.id, request.params.id)),
  );
};

export default webhookMessageRoutes;
