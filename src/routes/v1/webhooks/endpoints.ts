// /v1/webhook-endpoints: a tenant's standing subscriptions (create, list, read, change,
// delete), each with its own signing secret (read, rotate) and a ping to test it.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { PaginationQuery } from '../../../schemas/common.js';
import { problemResponses } from '../../../schemas/problem.js';
import {
  CreateWebhookEndpointBody,
  UpdateWebhookEndpointBody,
  WebhookEndpointPage,
  WebhookEndpointParams,
  WebhookEndpointRef,
  WebhookEndpointSchema,
  WebhookMessageRef,
  WebhookSecretRef,
} from '../../../schemas/webhooks.js';
import { toWebhookMessage } from '../../../services/webhook-messages.js';

const TAGS = ['webhooks'];

const CreatedEndpoint = Type.Object(
  { ...WebhookEndpointSchema.properties, secret: Type.String({ description: 'The endpoint\'s signing secret (also at GET .../secret)' }) },
  { additionalProperties: false },
);

const webhookEndpointRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { endpoints, secrets } = fastify.webhooks;

  fastify.post(
    '',
    {
      config: { idempotent: true },
      schema: {
        operationId: 'createWebhookEndpoint',
        tags: TAGS,
        summary: 'Subscribe a URL to this tenant\'s events',
        description: 'Every event of the types named (default: every terminal event) is POSTed to the URL, signed with the ' +
          'endpoint\'s own secret (returned here) as Standard Webhooks specifies. 400 a URL refused on its face (not https, a private address).',
        body: CreateWebhookEndpointBody,
        response: { 201: CreatedEndpoint, ...problemResponses(400, 401, 500) },
      },
    },
    async (request, reply) => {
      const { endpoint, secret } = await endpoints.create(request.tenant.id, request.body);
      return reply.status(201).header('location', `/v1/webhook-endpoints/${endpoint.id}`).send({ ...endpoint, secret });
    },
  );

  fastify.get(
    '',
    {
      schema: {
        operationId: 'listWebhookEndpoints',
        tags: TAGS,
        summary: 'List webhook endpoints, newest first',
        querystring: PaginationQuery,
        response: { 200: WebhookEndpointPage, ...problemResponses(400, 401, 500) },
      },
    },
    async (request) => endpoints.list(request.tenant.id, request.query.limit, request.query.cursor),
  );

  fastify.get(
    '/:id',
    {
      schema: {
        operationId: 'getWebhookEndpoint',
        tags: TAGS,
        summary: 'Get a webhook endpoint',
        params: WebhookEndpointParams,
        response: { 200: WebhookEndpointRef, ...problemResponses(401, 404, 500) },
      },
    },
    async (request) => endpoints.get(request.tenant.id, request.params.id),
  );

  fastify.patch(
    '/:id',
    {
      schema: {
        operationId: 'updateWebhookEndpoint',
        tags: TAGS,
        summary: 'Change a webhook endpoint\'s URL, events, description, or enable or disable it',
        params: WebhookEndpointParams,
        body: UpdateWebhookEndpointBody,
        response: { 200: WebhookEndpointRef, ...problemResponses(400, 401, 404, 500) },
      },
    },
    async (request) => endpoints.update(request.tenant.id, request.params.id, request.body),
  );

  fastify.delete(
    '/:id',
    {
      schema: {
        operationId: 'deleteWebhookEndpoint',
        tags: TAGS,
        summary: 'Delete a webhook endpoint, its secret and its messages',
        params: WebhookEndpointParams,
        response: { 204: { description: 'Deleted', type: 'null' }, ...problemResponses(401, 404, 500) },
      },
    },
    async (request, reply) => {
      await endpoints.remove(request.tenant.id, request.params.id);
      return reply.status(204).send(null);
    },
  );

  fastify.post(
    '/:id/test',
    {
      schema: {
        operationId: 'testWebhookEndpoint',
        tags: TAGS,
        summary: 'Send a ping to a webhook endpoint',
        description: 'Queues a `ping` message to the endpoint (202 with the message; follow it at GET /v1/webhook-messages/{id}).',
        params: WebhookEndpointParams,
        response: { 202: WebhookMessageRef, ...problemResponses(401, 404, 500) },
      },
    },
    async (request, reply) => {
      const message = await endpoints.ping(request.tenant.id, request.params.id);
      return reply.status(202).header('location', `/v1/webhook-messages/${message.id}`).send(toWebhookMessage(message));
    },
  );

  fastify.get(
    '/:id/secret',
    {
      schema: {
        operationId: 'getWebhookEndpointSecret',
        tags: TAGS,
        summary: 'Get a webhook endpoint\'s signing secret',
        params: WebhookEndpointParams,
        response: { 200: WebhookSecretRef, ...problemResponses(401, 404, 500) },
      },
    },
    async (request) => {
      const endpoint = await endpoints.find(request.tenant.id, request.params.id);
      return secrets.get(request.tenant.id, endpoint.id);
    },
  );

  fastify.post(
    '/:id/rotate-secret',
    {
      schema: {
        operationId: 'rotateWebhookEndpointSecret',
        tags: TAGS,
        summary: 'Rotate a webhook endpoint\'s signing secret',
        description: 'A new secret signs from now on; for 24 hours the previous one signs too (two signatures in webhook-signature), so a receiver can switch without missing a message.',
        params: WebhookEndpointParams,
        response: { 200: WebhookSecretRef, ...problemResponses(401, 404, 500) },
      },
    },
    async (request) => {
      const endpoint = await endpoints.find(request.tenant.id, request.params.id);
      return secrets.rotate(request.tenant.id, endpoint.id);
    },
  );
};

export default webhookEndpointRoutes;
