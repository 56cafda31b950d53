// /v1/training-runs: create (queued, 202), list, read, cancel and delete training runs,
// scoped to the caller's tenant; their events and logs (events.ts) and files (artifacts.ts).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { problemResponses } from '../../../schemas/problem.js';
import {
  CreateTrainingRunBody,
  ListTrainingRunsQuery,
  TrainingRunPage,
  TrainingRunParams,
  TrainingRunRef,
} from '../../../schemas/training-runs.js';
import { toTrainingRun } from '../../../services/training-runs.js';
import trainingRunArtifactRoutes from './artifacts.js';
import trainingRunEventRoutes from './events.js';

const TAGS = ['training-runs'];

const trainingRunRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { runs } = fastify.training;

  fastify.post(
    '',
    {
      config: { idempotent: true },
      schema: {
        operationId: 'createTrainingRun',
        tags: TAGS,
        summary: 'Train a LoRA (or fine-tune the whole model) on a dataset',
        description:
          "Answers at once with the queued run (202, Location: /v1/training-runs/{id}); poll it for status and progress. " +
          "The run trains on the dataset's images and current captions as they are now (an image without a caption uses " +
          '"a photo of <trigger> <class>"). Every param left out takes its default; the run shows them all. ' +
          'Params follow the model\'s family: clip_skip is for SD 1.x/2.x models, text_encoder_2_lr for SDXL; the one a ' +
          'family does not have is null in the run. params.method full fine-tunes every weight (DreamBooth) instead of a LoRA: ' +
          'its defaults differ (learning_rate 5e-6, prior preservation on), rank, alpha and save_peft are refused, and the ' +
          'succeeded run registers a model of yours (GET /v1/models); ema_decay, ema_start_step, ema_on_cpu, ' +
          'validation_weights and full_bf16 are for full runs only. params.devices trains on several devices of one worker ' +
          '(batch_size a multiple of it; zero_stage shards the optimizer over them); the run stays queued until a worker has ' +
          'that many free, and queue_reason says what it waits for. ' +
          'Refusals: 404 unknown dataset, 400 an unknown or invalid param (named; devices not dividing batch_size, zero_stage ' +
          'on one device), 409 empty dataset, 422 unknown or unusable ' +
          'model, or a param the model cannot take (named: a resolution above its default_resolution, a param of another ' +
          'family, clip_skip above its clip_skip_max; unsupported-by-method: a param of the other method), or more devices ' +
          'than the largest running training worker has (devices-unavailable, naming params.devices), or a quality metric ' +
          'whose network this server does not have (metric-unavailable, naming params.validation.metrics.N; 400 when the ' +
          'validation images cannot give one: no prompts, fewer than 10 final images for fid, kid or is), 429 the tenant has ' +
          'TENANT_MAX_QUEUED_RUNS runs queued or running (training-queue-full), or a full run would pass TENANT_MAX_MODEL_BYTES ' +
          "(model-storage-full), 507 the server's storage is below DATA_DIR_MIN_FREE_BYTES (insufficient-storage).",
        body: CreateTrainingRunBody,
        response: { 202: TrainingRunRef, ...problemResponses(400, 401, 404, 409, 413, 415, 422, 429, 500, 503, 507) },
      },
    },
    async (request, reply) => {
      await fastify.services.diskSpace.assertRoomFor('a new training run');
      const run = await runs.create(request.tenant.id, request.body);
      request.log.info({ run: run.id, dataset: run.dataset_id, model: run.model_id }, 'training run queued');
      return reply.status(202).header('location', `/v1/training-runs/${run.id}`).send(toTrainingRun(run));
    },
  );

  fastify.get(
    '',
    {
      schema: {
        operationId: 'listTrainingRuns',
        tags: TAGS,
        summary: 'List training runs, newest first',
        querystring: ListTrainingRunsQuery,
        response: { 200: TrainingRunPage, ...problemResponses(400, 401, 500) },
      },
    },
    async (request) => {
      const { limit, cursor, dataset_id, status } = request.query;
      return runs.list(request.tenant.id, { ...(dataset_id === undefined ? {} : { dataset_id }), ...(status === undefined ? {} : { status }) }, limit, cursor);
    },
  );

  fastify.get(
    '/:id',
    {
      schema: {
        operationId: 'getTrainingRun',
        tags: TAGS,
        summary: 'Get a training run: status, progress, params and metrics',
        params: TrainingRunParams,
        response: { 200: TrainingRunRef, ...problemResponses(401, 404, 500) },
      },
    },
    async (request) => toTrainingRun(await runs.get(request.tenant.id, request.params.id)),
  );

  fastify.post(
    '/:id/cancel',
    {
      schema: {
        operationId: 'cancelTrainingRun',
        tags: TAGS,
        summary: 'Cancel a queued or running training run',
        description: 'A queued run is canceled at once; a running one stops at its next step with a checkpoint written. 409 once finished.',
        params: TrainingRunParams,
        response: { 202: TrainingRunRef, ...problemResponses(401, 404, 409, 500) },
      },
    },
    async (request, reply) => reply.status(202).send(toTrainingRun(await runs.cancel(request.tenant.id, request.params.id))),
  );

  fastify.delete(
    '/:id',
    {
      schema: {
        operationId: 'deleteTrainingRun',
        tags: TAGS,
        summary: 'Delete a finished training run and its files',
        description: 'Removes the run, its events and every file it wrote (LoRA files, checkpoints, validation images). 409 while it is ' +
          'queued or running (training-run-not-finished): cancel it first; 409 while the model a full run registered exists ' +
          '(training-run-has-model): its files are the run\'s, delete the model first.',
        params: TrainingRunParams,
        response: { 204: { description: 'Deleted', type: 'null' }, ...problemResponses(401, 404, 409, 500) },
      },
    },
    async (request, reply) => {
      await runs.delete(request.tenant.id, request.params.id);
      request.log.info({ run: request.params.id }, 'training run deleted');
      return reply.status(204).send(null);
    },
  );

  await fastify.register(trainingRunEventRoutes);
  await fastify.register(trainingRunArtifactRoutes);
};

export default trainingRunRoutes;
