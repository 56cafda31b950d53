// /v1/datasets: create, list, read, rename/retag, delete. Scoped to the caller's tenant.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  CreateDatasetBody,
  DatasetPage,
  DatasetParams,
  DatasetRef,
  ListDatasetsQuery,
  UpdateDatasetBody,
} from '../../../schemas/datasets.js';
import { problemResponses } from '../../../schemas/problem.js';

const TAGS = ['datasets'];

const datasetRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const datasets = fastify.services.datasets;

  // '' rather than '/': the collection is /v1/datasets, without a trailing slash.
  fastify.post(
    '',
    {
      config: { idempotent: true },
      schema: {
        operationId: 'createDataset',
        tags: TAGS,
        summary: 'Create a dataset',
        description: 'trigger_token defaults to "ohwx". Unknown fields are rejected.',
        body: CreateDatasetBody,
        response: { 201: DatasetRef, ...problemResponses(400, 401, 413, 415, 500) },
      },
    },
    async (request, reply) => {
      const dataset = await datasets.create(request.tenant.id, request.body);
      return reply.status(201).header('location', `${request.url.split('?')[0]}/${dataset.id}`).send(dataset);
    },
  );

  fastify.get(
    '',
    {
      schema: {
        operationId: 'listDatasets',
        tags: TAGS,
        summary: 'List datasets, newest first',
        querystring: ListDatasetsQuery,
        response: { 200: DatasetPage, ...problemResponses(400, 401, 500) },
      },
    },
    async (request) => datasets.list(request.tenant.id, request.query.limit, request.query.cursor),
  );

  fastify.get(
    '/:id',
    {
      schema: {
        operationId: 'getDataset',
        tags: TAGS,
        summary: 'Get a dataset',
        params: DatasetParams,
        response: { 200: DatasetRef, ...problemResponses(401, 404, 500) },
      },
    },
    async (request) => datasets.get(request.tenant.id, request.params.id),
  );

  fastify.patch(
    '/:id',
    {
      schema: {
        operationId: 'updateDataset',
        tags: TAGS,
        summary: 'Change a dataset\'s name, trigger token or class word',
        params: DatasetParams,
        body: UpdateDatasetBody,
        response: { 200: DatasetRef, ...problemResponses(400, 401, 404, 413, 415, 500) },
      },
    },
    async (request) => datasets.update(request.tenant.id, request.params.id, request.body),
  );

  fastify.delete(
    '/:id',
    {
      schema: {
        operationId: 'deleteDataset',
        tags: TAGS,
        summary: 'Delete a dataset and its images',
        description: 'Refused (409) while a training run on it is queued or running; finished runs keep their own copy of what they trained on.',
        params: DatasetParams,
        response: { 204: { description: 'Deleted', type: 'null' }, ...problemResponses(401, 404, 409, 500) },
      },
    },
    async (request, reply) => {
      await datasets.delete(request.tenant.id, request.params.id);
      return reply.status(204).send(null);
    },
  );
};

export default datasetRoutes;
