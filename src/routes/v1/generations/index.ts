// /v1/generations: create (queued, 202; or waited for with Prefer: wait=N), list, read,
// cancel, and the images, scoped to the caller's tenant.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ProblemError } from '../../../errors.js';
import {
  CreateGenerationBody,
  GenerationImageParams,
  GenerationPage,
  GenerationParamsPath,
  GenerationRef,
  ListGenerationsQuery,
} from '../../../schemas/generations.js';
import { problemResponses } from '../../../schemas/problem.js';
import { IMAGE_FORMATS, type ImageMediaType } from '../../../services/generations.js';
import { ifNoneMatch } from '../../http-conditional.js';
import { negotiateImageType, preferredWaitSeconds } from './negotiation.js';

const TAGS = ['generations'];
/** Generated images never change: a client may keep them as long as it likes. */
const CONTENT_CACHE_CONTROL = 'private, max-age=31536000, immutable';

const generationRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { service } = fastify.generations;

  fastify.post(
    '',
    {
      config: { idempotent: true },
      schema: {
        operationId: 'createGeneration',
        tags: TAGS,
        summary: 'Generate images from a base model and LoRAs',
        description:
          'Answers at once with the queued generation (202, Location: /v1/generations/{id}). With `Prefer: wait=N` (RFC 7240, ' +
          'N up to 60 seconds; a bare `wait` means 60) the answer waits until the generation has finished, as Replicate\'s sync mode: ' +
          '201 with the finished generation, or 202 as it is when N runs out; both say `Preference-Applied: wait=N`. ' +
          'With `evaluation` the worker scores the images with quality metrics once made (GET /v1/quality-metrics; the ' +
          'generation shows evaluation.values, and in evaluation.unavailable each metric it could not compute). ' +
          'Refusals: 400 an invalid field (named; clip_i, fid or kid without evaluation.reference_dataset_id), 404 a LoRA, ' +
          'training run or reference dataset you do not have, 422 unknown or unusable model, ' +
          'a LoRA of another base model (lora-model-mismatch) or model family (lora-family-mismatch), or a field the model ' +
          'cannot take (clip_skip on SDXL or above its clip_skip_max, size_conditioning on SD 1.x/2.x), 429 the tenant has ' +
          'TENANT_MAX_QUEUED_GENERATIONS generations queued or running.',
        body: CreateGenerationBody,
        headers: {
          type: 'object',
          properties: { prefer: { type: 'string', description: 'wait=N: answer when the generation has finished, or after N seconds (at most 60)' } },
        },
        response: { 201: GenerationRef, 202: GenerationRef, ...problemResponses(400, 401, 404, 413, 415, 422, 429, 500, 503) },
      },
    },
    async (request, reply) => {
      const tenantId = request.tenant.id;
      const wait = preferredWaitSeconds(request.headers.prefer);
      let row = await service.create(tenantId, request.body);
      request.log.info({ generation: row.id, model: row.model_id }, 'generation queued');
      reply.header('location', `/v1/generations/${row.id}`);
      if (wait !== undefined) {
        // The client hanging up stops the wait (the generation goes on). The response's
        // 'close' before it is sent means the connection went away (the request's fires once its body is read).
        const left = new AbortController();
        reply.raw.once('close', () => left.abort());
        row = await service.waitFinished(tenantId, row.id, wait * 1000, left.signal);
        reply.header('preference-applied', `wait=${wait}`).header('vary', 'Prefer');
      }
      const finished = row.status === 'succeeded' || row.status === 'failed' || row.status === 'canceled';
      return reply.status(finished ? 201 : 202).send(await service.view(row));
    },
  );

  fastify.get(
    '',
    {
      schema: {
        operationId: 'listGenerations',
        tags: TAGS,
        summary: 'List generations, newest first',
        querystring: ListGenerationsQuery,
        response: { 200: GenerationPage, ...problemResponses(400, 401, 500) },
      },
    },
    async (request) => {
      const { limit, cursor, status, lora_id } = request.query;
      return service.list(request.tenant.id, { ...(status === undefined ? {} : { status }), ...(lora_id === undefined ? {} : { lora_id }) }, limit, cursor);
    },
  );

  fastify.get(
    '/:id',
    {
      schema: {
        operationId: 'getGeneration',
        tags: TAGS,
        summary: 'Get a generation: status, progress, params and images',
        params: GenerationParamsPath,
        response: { 200: GenerationRef, ...problemResponses(401, 404, 500) },
      },
    },
    async (request) => service.view(await service.get(request.tenant.id, request.params.id)),
  );

  fastify.post(
    '/:id/cancel',
    {
      schema: {
        operationId: 'cancelGeneration',
        tags: TAGS,
        summary: 'Cancel a queued or running generation',
        description: 'A queued generation is canceled at once; a running one stops at its next step. 409 once finished.',
        params: GenerationParamsPath,
        response: { 202: GenerationRef, ...problemResponses(401, 404, 409, 500) },
      },
    },
    async (request, reply) => reply.status(202).send(await service.view(await service.cancel(request.tenant.id, request.params.id))),
  );

  fastify.get(
    '/:id/images/:index',
    {
      schema: {
        operationId: 'getGenerationImage',
        tags: TAGS,
        summary: 'Download a generated image',
        description:
          'PNG by default, with a `parameters` text chunk in AUTOMATIC1111\'s format (prompt, Negative prompt, Steps, Sampler, ' +
          'CFG scale, Seed, Size, Model, Clip skip, Lora hashes), so PNG Info tools can reproduce it; `Accept: image/webp` (lossless) or ' +
          '`image/jpeg` converts it (without the chunk). 406 when Accept allows none of the three.',
        params: GenerationImageParams,
        response: {
          200: {
            description: 'The image',
            content: Object.fromEntries(Object.keys(IMAGE_FORMATS).map((type) => [type, { schema: { type: 'string', contentMediaType: type } }])),
          },
          304: { description: 'Not modified (If-None-Match matched the ETag)', type: 'null' },
          ...problemResponses(401, 404, 406, 500),
        },
      },
    },
    async (request, reply) => {
      const mediaType: ImageMediaType | undefined = negotiateImageType(request.headers.accept);
      if (mediaType === undefined) {
        throw new ProblemError({
          status: 406,
          type: 'not-acceptable',
          title: 'Not Acceptable',
          detail: `Images are served as ${Object.keys(IMAGE_FORMATS).join(', ')}; the Accept header allows none of them`,
        });
      }
      const { image, bytes } = await service.image(request.tenant.id, request.params.id, request.params.index, mediaType);
      // One ETag per representation of the image.
      const tag = mediaType === 'image/png' ? image.sha256 : `${image.sha256}.${IMAGE_FORMATS[mediaType]}`;
      reply.header('etag', `"${tag}"`).header('cache-control', CONTENT_CACHE_CONTROL).header('vary', 'Accept');
      if (ifNoneMatch(request.headers['if-none-match'], tag)) return reply.status(304).send(null);
      return reply
        .type(mediaType)
        .header('content-disposition', `inline; filename="${request.params.id}-${request.params.index}.${IMAGE_FORMATS[mediaType] === 'jpeg' ? 'jpg' : IMAGE_FORMATS[mediaType]}"`)
        .header('x-content-type-options', 'nosniff')
        .send(bytes as unknown as string);
    },
  );
};

export default generationRoutes;
