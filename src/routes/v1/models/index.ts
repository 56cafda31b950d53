// /v1/models: the base models this server can train on and sample from: the server's, and
// the caller's own (trained by its full fine-tuning runs), which it may delete.
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
          'refuses (a component missing, an unknown prediction type, keys of no known family) is left out and logged. ' +
          'Then your own models (owner: tenant), newest first: each succeeded full fine-tuning run (params.method full) ' +
          'registers one, with its base_model, training_run_id and byte_size. No tenant sees another\'s.',
        response: { 200: BaseModelList, ...problemResponses(401, 500, 503) },
      },
    },
    async (request) => ({ data: (await models.list(request.tenant.id)).map((resolved) => resolved.model) }),
  );

  fastify.get(
    '/:id',
    {
      schema: {
        operationId: 'getModel',
        tags: TAGS,
        summary: 'Get a base model',
        description: '404 for an id that names no model (another tenant\'s included); 422 (model-invalid, naming `id`, with the ' +
          'engine\'s reason) for a MODELS_DIR entry the engine refuses.',
        params: BaseModelParams,
        response: { 200: BaseModelRef, ...problemResponses(401, 404, 422, 500, 503) },
      },
    },
    async (request) => (await models.get(request.tenant.id, request.params.id)).model,
  );

  fastify.delete(
    '/:id',
    {
      schema: {
        operationId: 'deleteModel',
        tags: TAGS,
        summary: 'Delete one of your models',
        description:
          'Removes a model of yours (owner: tenant): its single file, EMA file and diffusers folder, and their artifacts in the ' +
          'run that trained it, freeing their bytes of TENANT_MAX_MODEL_BYTES (the run, its checkpoints and validation images ' +
          'stay until you delete the run). 409 (model-in-use) while a queued or running training run or generation uses it; ' +
          '403 (model-read-only) for a built-in or MODELS_DIR model; 404 for an id that names no model of yours.',
        params: BaseModelParams,
        response: { 204: { description: 'Deleted', type: 'null' }, ...problemResponses(401, 403, 404, 409, 500, 503) },
      },
    },
    async (request, reply) => {
      await models.delete(request.tenant.id, request.params.id);
      request.log.info({ model: request.params.id }, 'model deleted');
      return reply.status(204).send(null);
    },
  );
};

export default modelRoutes;
