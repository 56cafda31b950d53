// Captioning jobs: /v1/datasets/{id}/captioning-jobs (create, list) and
// /v1/captioning-jobs/{id} (read, cancel), scoped to the caller's tenant.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  CaptioningJobPage,
  CaptioningJobParams,
  CaptioningJobRef,
  CreateCaptioningJobBody,
  ListCaptioningJobsQuery,
} from '../../../schemas/captioning-jobs.js';
import { DatasetImagesParams } from '../../../schemas/images.js';
import { problemResponses } from '../../../schemas/problem.js';

const TAGS = ['captioning-jobs'];

const captioningJobRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { jobs } = fastify.captioning;

  fastify.post(
    '/datasets/:id/captioning-jobs',
    {
      config: { idempotent: true },
      schema: {
        operationId: 'createCaptioningJob',
        tags: TAGS,
        summary: 'Caption a dataset\'s images in the background',
        description:
          'Answers at once with the queued job (202, Location: /v1/captioning-jobs/{id}); poll it for status and progress. ' +
          'provider defaults to CAPTION_DEFAULT_PROVIDER. Images whose caption a person wrote (source manual or upload) are ' +
          'skipped unless overwrite is true. Answers already given for the same image bytes, provider, model, prompt version, ' +
          'trigger token, class word and style hint are reused without a request. One job at a time per dataset (409 otherwise). ' +
          'Refusals: 404 unknown dataset, 400 an image_ids entry that is not an image of the dataset (named), 409 empty dataset, ' +
          '422 provider not configured on this server.',
        params: DatasetImagesParams,
        body: CreateCaptioningJobBody,
        response: { 202: CaptioningJobRef, ...problemResponses(400, 401, 404, 409, 413, 415, 422, 500) },
      },
    },
    async (request, reply) => {
      const job = await jobs.create(request.tenant.id, request.params.id, request.body);
      request.log.info({ job: job.id, dataset: job.dataset_id, provider: job.provider, images: job.progress.total }, 'captioning job queued');
      return reply.status(202).header('location', `/v1/captioning-jobs/${job.id}`).send(job);
    },
  );

  fastify.get(
    '/datasets/:id/captioning-jobs',
    {
      schema: {
        operationId: 'listCaptioningJobs',
        tags: TAGS,
        summary: 'List a dataset\'s captioning jobs, newest first',
        params: DatasetImagesParams,
        querystring: ListCaptioningJobsQuery,
        response: { 200: CaptioningJobPage, ...problemResponses(400, 401, 404, 500) },
      },
    },
    async (request) => jobs.list(request.tenant.id, request.params.id, request.query.limit, request.query.cursor),
  );

  fastify.get(
    '/captioning-jobs/:id',
    {
      schema: {
        operationId: 'getCaptioningJob',
        tags: TAGS,
        summary: 'Get a captioning job: status, progress, usage and per-image errors',
        params: CaptioningJobParams,
        response: { 200: CaptioningJobRef, ...problemResponses(401, 404, 500) },
      },
    },
    async (request) => jobs.get(request.tenant.id, request.params.id),
  );

  fastify.post(
    '/captioning-jobs/:id/cancel',
    {
      schema: {
        operationId: 'cancelCaptioningJob',
        tags: TAGS,
        summary: 'Cancel a queued or running captioning job',
        description:
          'A queued job is canceled at once; a running one stops within moments (cancel_requested is true until then). ' +
          'Captions written so far are kept. 409 when the job has already finished.',
        params: CaptioningJobParams,
        response: { 202: CaptioningJobRef, ...problemResponses(401, 404, 409, 500) },
      },
    },
    async (request, reply) => reply.status(202).send(await jobs.cancel(request.tenant.id, request.params.id)),
  );
};

export default captioningJobRoutes;
