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
          'The built-in demo models sdxl-tiny-demo and sd15-tiny-demo (written on first use), then every diffusers folder ' +
          'and single-file checkpoint (SGM for SDXL, LDM for SD 1.x) under MODELS_DIR that the engine can read: its family ' +
          '(sd1, sd2, sdxl), prediction type, default resolution, components and their parameter counts. An entry the engine ' +
          'refuses (a component missing, an unknown prediction type, keys of no known family) is left out and logged.',
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
        description: '404 for an id that names no model; 422 (model-invalid, naming `id`, with the engine\'s reason) for a ' +
          'MODELS_DIR entry the engine refuses.',
        params: BaseModelParams,
        response: { 200: BaseModelRef, ...problemResponses(401, 404, 422, 500, 503) },
      },
    },
    async (request) => (await models.get(request.params.id)).model,
  );
};

export default modelRoutes;
