// /v1/models: the base models this server can train on and sample from.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { BaseModelList, BaseModelParams, BaseModelRef } from '../../../schemas/models.js';
import { problemResponses } from '../../../schemas/problem.js';

const TAGS = ['models'];

const modelRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const models = fastify.services.models;

  fastify.get(
    '',
    {
      schema: {
        operationId: 'listModels',
        tags: TAGS,
        summary: 'List base models',
        description:
          'The built-in demo model sdxl-tiny-demo (written on first use), then every diffusers folder and SGM ' +
          'single-file checkpoint under MODELS_DIR.',
        response: { 200: BaseModelList, ...problemResponses(401, 500, 503) },
      },
    },
    async () => ({ data: (await models.list()).map((resolved) => resolved.model) }),
  );

  fastify.get(
    '/:id',
    {
      schema: {
        operationId: 'getModel',
        tags: TAGS,
        summary: 'Get a base model',
        params: BaseModelParams,
        response: { 200: BaseModelRef, ...problemResponses(401, 404, 500, 503) },
      },
    },
    async (request) => (await models.get(request.params.id)).model,
  );
};

export default modelRoutes;
