// Captions: /v1/datasets/{id}/captions (list, bulk edit, export) and /v1/images/{id}/caption
// (read, edit, history), scoped to the caller's tenant: another tenant's dataset or image is a 404.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Readable } from 'node:stream';
import {
  BulkCaptionsBody,
  BulkCaptionsResult,
  CaptionHistoryPage,
  CaptionHistoryQuery,
  ExportCaptionsQuery,
  ExportResponse,
  ImageCaptionPage,
  ImageCaptionRef,
  ListCaptionsQuery,
  SetCaptionBody,
} from '../../../schemas/captions.js';
import { DatasetImagesParams, ImageParams } from '../../../schemas/images.js';
import { problemResponses } from '../../../schemas/problem.js';

const TAGS = ['captions'];

const captionRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { captions } = fastify.captioning;

  fastify.get(
    '/datasets/:id/captions',
    {
      schema: {
        operationId: 'listCaptions',
        tags: TAGS,
        summary: 'List a dataset\'s images with their current captions, newest image first',
        description: 'Each image with its current caption (null when it has none): text, source, model, prompt version, tokens and estimated cost.',
        params: DatasetImagesParams,
        querystring: ListCaptionsQuery,
        response: { 200: ImageCaptionPage, ...problemResponses(400, 401, 404, 500) },
      },
    },
    async (request) => captions.list(request.tenant.id, request.params.id, request.query.limit, request.query.cursor),
  );

  fastify.patch(
    '/datasets/:id/captions',
    {
      schema: {
        operationId: 'updateCaptions',
        tags: TAGS,
        summary: 'Set manual captions on several images of a dataset',
        description:
          'All or nothing: when one entry is refused (an image that is not this dataset\'s, an image listed twice, a blank ' +
          'caption or one over CAPTION_MAX_CHARS), nothing is stored and the problem names each bad entry. Manual captions are ' +
          'kept by captioning jobs unless a job says overwrite: true; earlier captions stay in each image\'s history.',
        params: DatasetImagesParams,
        body: BulkCaptionsBody,
        response: { 200: BulkCaptionsResult, ...problemResponses(400, 401, 404, 413, 415, 500) },
      },
    },
    async (request) => ({ data: await captions.setManualBulk(request.tenant.id, request.params.id, request.body) }),
  );

  fastify.get(
    '/datasets/:id/captions/export',
    {
      schema: {
        operationId: 'exportCaptions',
        tags: TAGS,
        summary: 'Download the captions as a zip of kohya-style name.txt sidecars',
        description:
          'One name.txt per captioned image, named after the image\'s uploaded file (rex/img01.jpg -> img01.txt; a repeated ' +
          'name gets _2, _3, ...), holding the current caption on one line. With include_images=true each image is stored ' +
          'next to its sidecar, ready for a kohya-style trainer.',
        params: DatasetImagesParams,
        querystring: ExportCaptionsQuery,
        response: { 200: ExportResponse, ...problemResponses(400, 401, 404, 422, 500) },
      },
    },
    async (request, reply) => {
      const datasetId = request.params.id;
      const zip = await fastify.captioning.export.export(request.tenant.id, datasetId, request.query.include_images);
      return reply
        .type('application/zip')
        .header('content-disposition', `attachment; filename="${datasetId}-captions.zip"`)
        .header('cache-control', 'no-store')
        // The schema types the body as the string OpenAPI documents; fastify streams it as is.
        .send(Readable.from(zip) as unknown as string);
    },
  );

  fastify.get(
    '/images/:id/caption',
    {
      schema: {
        operationId: 'getCaption',
        tags: TAGS,
        summary: 'Get an image\'s current caption',
        params: ImageParams,
        response: { 200: ImageCaptionRef, ...problemResponses(401, 404, 500) },
      },
    },
    async (request) => captions.get(request.tenant.id, request.params.id),
  );

  fastify.put(
    '/images/:id/caption',
    {
      schema: {
        operationId: 'setCaption',
        tags: TAGS,
        summary: 'Write an image\'s caption by hand',
        description:
          'Stores a manual caption (trimmed; at most CAPTION_MAX_CHARS characters). The previous caption stays in the ' +
          'history. Captioning jobs keep manual captions unless they say overwrite: true.',
        params: ImageParams,
        body: SetCaptionBody,
        response: { 200: ImageCaptionRef, ...problemResponses(400, 401, 404, 413, 415, 500) },
      },
    },
    async (request) => captions.setManual(request.tenant.id, request.params.id, request.body.caption),
  );

  fastify.get(
    '/images/:id/caption/history',
    {
      schema: {
        operationId: 'listCaptionHistory',
        tags: TAGS,
        summary: 'List every caption an image has had, newest first',
        params: ImageParams,
        querystring: CaptionHistoryQuery,
        response: { 200: CaptionHistoryPage, ...problemResponses(400, 401, 404, 500) },
      },
    },
    async (request) => captions.history(request.tenant.id, request.params.id, request.query.limit, request.query.cursor),
  );
};

export default captionRoutes;
