// /v1/datasets/{id}/images (upload, list) and /v1/images/{id} (read, content, delete),
// scoped to the caller's tenant: another tenant's dataset or image is a 404.
import multipart from '@fastify/multipart';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger } from 'fastify';
import path from 'node:path';
import { idPattern } from '../../../db/ids.js';
import { fieldError, notFound, ProblemError } from '../../../errors.js';
import {
  DatasetImagesParams,
  IMAGE_ID_PREFIX,
  ImageContentQuery,
  ImageParams,
  ImagePage,
  ImageSchema,
  ListImagesQuery,
  UploadBody,
  UploadResult,
  UPLOAD_FIELD,
} from '../../../schemas/images.js';
import { ifNoneMatchTag } from '../../http-conditional.js';
import { problemResponses } from '../../../schemas/problem.js';
import { ImageUploadError } from '../../../services/image-upload-error.js';
import { SYNC_UPLOAD_MAX_REQUEST_BYTES, uploadLimits } from '../../../services/image-limits.js';
import { DatasetNotFoundError, ImagesService, toImage, type BlobCollection } from '../../../services/images.js';
import { decodeCursor, toPage } from '../../../services/pagination.js';
import { THUMBNAIL_MEDIA_TYPE, THUMBNAIL_QUALITY, THUMBNAIL_SIZE, ThumbnailCache } from '../../../services/thumbnails.js';
import { FsBlobStore } from '../../../storage/fs-blob-store.js';
import { readUploadParts } from './read-upload-parts.js';

const TAGS = ['images'];
const IMAGE_ID = new RegExp(idPattern(IMAGE_ID_PREFIX));
/** Where blobs live inside DATA_DIR. */
export const BLOBS_SUBDIR = 'blobs';
/** Where cached thumbnails live inside DATA_DIR. */
export const THUMBNAILS_SUBDIR = 'thumbnails';
/** Content is addressed by hash, so a client may keep it as long as it likes. */
const CONTENT_CACHE_CONTROL = 'private, max-age=31536000, immutable';
/** Text fields are refused by name, so a few are parsed to report them; more is abuse. */
const MAX_TEXT_FIELDS = 10;

function toProblem(error: ImageUploadError): ProblemError {
  const field = error.field ?? UPLOAD_FIELD;
  return new ProblemError({
    status: error.status,
    type: error.kind,
    title: error.title,
    detail: error.message,
    // Every refusal message names the file (or archive entry) it is about.
    errors: [fieldError('body', field, error.message)],
  });
}

const imageRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const config = fastify.config;
  const limits = uploadLimits(config);
  const blobs = new FsBlobStore(path.join(config.dataDir, BLOBS_SUBDIR));
  const thumbnails = new ThumbnailCache(path.join(config.dataDir, THUMBNAILS_SUBDIR), { log: fastify.log });
  const images = new ImagesService(fastify.db, blobs, limits, { thumbnails, log: fastify.log });

  // Only this plugin parses multipart; other routes keep answering 415 to it.
  await fastify.register(multipart, {
    throwFileSizeLimit: false,
    limits: {
      fileSize: config.uploadMaxFileBytes,
      files: config.uploadMaxFiles,
      fields: MAX_TEXT_FIELDS,
      parts: config.uploadMaxFiles + MAX_TEXT_FIELDS,
    },
  });

  const logCollection = (collection: BlobCollection, log: FastifyBaseLogger): void => {
    if (collection.unlinked > 0) log.info({ unlinked: collection.unlinked }, 'blobs released');
    for (const failure of collection.failures) log.warn({ err: failure.error, sha256: failure.sha256 }, 'blob release failed; it stays queued');
  };
  // A dataset's rows cascade in SQL; its blobs are given back once nothing references them.
  fastify.services.datasets.onDeleted(async () => {
    logCollection(await images.collectReleasedBlobs(), fastify.log);
  });
  // So are those a deleted training run's snapshot held (its images may have left the dataset).
  fastify.training.runs.onDeleted(async () => {
    logCollection(await images.collectReleasedBlobs(), fastify.log);
  });
  // And a deleted LoRA's file (generated images go with their generation's tenant).
  fastify.generations.loras.onDeleted(async () => {
    logCollection(await images.collectReleasedBlobs(), fastify.log);
  });
  // Finishes releases queued before a crash or restart, in the background: start-up must
  // not need the database (readiness reports it), so a failure here is only logged.
  let startupCollection: Promise<void> | undefined;
  fastify.addHook('onReady', async () => {
    startupCollection = images.collectReleasedBlobs().then(
      (collection) => logCollection(collection, fastify.log),
      (error: unknown) => fastify.log.warn({ err: error }, 'could not release queued blobs at start-up'),
    );
  });
  // Child plugins close before the database plugin: let the collection finish first.
  fastify.addHook('onClose', async () => {
    await startupCollection;
  });

  fastify.post(
    '/datasets/:id/images',
    {
      schema: {
        operationId: 'uploadImages',
        tags: TAGS,
        summary: 'Upload images to a dataset (files or zip archives)',
        description:
          'multipart/form-data with one or more file parts named `files` (or `file`): JPEG, PNG or WebP images, or ' +
          '.zip archives of them. A `name.txt` next to `name.jpg` (in the request or in the same zip) becomes that ' +
          'image\'s caption. Formats are detected from the bytes; every image is fully decoded. The request is ' +
          'all-or-nothing: when one file is refused, nothing is stored and the problem names the file. Bytes the ' +
          'dataset already holds come back as the existing image with `duplicate: true`. 201 when at least one ' +
          'image was created, 200 when every file was a duplicate.',
        params: DatasetImagesParams,
        body: UploadBody,
        response: {
          200: UploadResult,
          201: UploadResult,
          ...problemResponses(400, 401, 404, 409, 413, 415, 422, 500, 503, 507),
        },
      },
    },
    async (request, reply) => {
      const tenantId = request.tenant.id;
      const datasetId = request.params.id;
      await fastify.services.diskSpace.assertRoomFor('an upload');
      if (!request.isMultipart()) {
        throw new ProblemError({
          status: 415,
          type: 'not-multipart',
          title: 'Expected multipart/form-data',
          detail: `Content-Type ${request.headers['content-type'] ?? '(none)'} is not accepted here; send multipart/form-data with file parts named "${UPLOAD_FIELD}".`,
          errors: [fieldError('headers', 'content-type', 'must be multipart/form-data')],
        });
      }
      if (!(await images.datasetExists(tenantId, datasetId))) throw notFound('dataset', datasetId);
      try {
        const files = await readUploadParts(request, {
          maxFileBytes: config.uploadMaxFileBytes,
          maxFiles: config.uploadMaxFiles,
          maxRequestBytes: Math.min(config.images.maxRequestBytes, SYNC_UPLOAD_MAX_REQUEST_BYTES),
        });
        const stored = await images.upload(tenantId, datasetId, files);
        const created = stored.some((image) => !image.duplicate);
        request.log.info({ dataset: datasetId, images: stored.length, created: stored.filter((s) => !s.duplicate).length }, 'images uploaded');
        return reply.status(created ? 201 : 200).send({ data: stored.map((s) => ({ ...toImage(s.row), duplicate: s.duplicate })) });
      } catch (error) {
        if (error instanceof ImageUploadError) throw toProblem(error);
        if (error instanceof DatasetNotFoundError) throw notFound('dataset', datasetId);
        throw error;
      }
    },
  );

  fastify.get(
    '/datasets/:id/images',
    {
      schema: {
        operationId: 'listImages',
        tags: TAGS,
        summary: 'List a dataset\'s images, newest first',
        params: DatasetImagesParams,
        querystring: ListImagesQuery,
        response: { 200: ImagePage, ...problemResponses(400, 401, 404, 500) },
      },
    },
    async (request) => {
      const tenantId = request.tenant.id;
      const datasetId = request.params.id;
      const before = request.query.cursor === undefined ? undefined : decodeCursor(request.query.cursor, IMAGE_ID);
      if (!(await images.datasetExists(tenantId, datasetId))) throw notFound('dataset', datasetId);
      // One extra row tells whether another page follows.
      const rows = await images.list(tenantId, datasetId, request.query.limit + 1, before);
      return toPage(rows, request.query.limit, toImage);
    },
  );

  fastify.get(
    '/images/:id',
    {
      schema: {
        operationId: 'getImage',
        tags: TAGS,
        summary: 'Get an image\'s metadata',
        params: ImageParams,
        response: { 200: ImageSchema, ...problemResponses(401, 404, 500) },
      },
    },
    async (request) => {
      const row = await images.get(request.tenant.id, request.params.id);
      if (row === null) throw notFound('image', request.params.id);
      return toImage(row);
    },
  );

  fastify.get(
    '/images/:id/content',
    {
      schema: {
        operationId: 'getImageContent',
        tags: TAGS,
        summary: 'Download the stored image bytes, or a thumbnail of them',
        description:
          'variant=original (the default): the bytes exactly as uploaded, with their media type; the ETag is the ' +
          'quoted SHA-256. variant=thumbnail: an image/webp of the image as displayed (EXIF orientation applied, so ' +
          `its shape is what width and height describe) scaled to fit inside ${THUMBNAIL_SIZE}x${THUMBNAIL_SIZE}, never ` +
          `enlarged, at quality ${THUMBNAIL_QUALITY}; the ETag is "<sha256>-thumbnail-${THUMBNAIL_SIZE}". A thumbnail is made ` +
          'on its first request and kept. Both are immutable (Cache-Control: private, max-age=31536000, immutable); ' +
          'If-None-Match answers 304.',
        params: ImageParams,
        querystring: ImageContentQuery,
        response: {
          200: {
            description: 'The image bytes (image/webp for variant=thumbnail)',
            content: {
              'image/jpeg': { schema: { type: 'string', contentMediaType: 'image/jpeg' } },
              'image/png': { schema: { type: 'string', contentMediaType: 'image/png' } },
              'image/webp': { schema: { type: 'string', contentMediaType: 'image/webp' } },
            },
          },
          304: { description: 'Not modified (If-None-Match matched the ETag)', type: 'null' },
          ...problemResponses(400, 401, 404, 500),
        },
      },
    },
    async (request, reply) => {
      const row = await images.get(request.tenant.id, request.params.id);
      if (row === null) throw notFound('image', request.params.id);
      const thumbnail = request.query.variant === 'thumbnail';
      const etag = thumbnail ? `"${row.sha256}-thumbnail-${THUMBNAIL_SIZE}"` : `"${row.sha256}"`;
      reply.header('etag', etag).header('cache-control', CONTENT_CACHE_CONTROL);
      if (ifNoneMatchTag(request.headers['if-none-match'], etag)) return reply.status(304).send(null);
      if (thumbnail) {
        const bytes = await images.thumbnail(row);
        if (bytes === null) throw new Error(`blob ${row.sha256} of image ${row.id} is missing`);
        return reply
          .type(THUMBNAIL_MEDIA_TYPE)
          .header('content-length', bytes.length)
          .header('x-content-type-options', 'nosniff')
          .send(bytes as unknown as string);
      }
      const stream = await images.content(row);
      if (stream === null) throw new Error(`blob ${row.sha256} of image ${row.id} is missing`);
      return reply
        .type(toImage(row).media_type)
        .header('content-length', Number(row.byte_size))
        .header('x-content-type-options', 'nosniff')
        // The schema types the body as the string OpenAPI documents; fastify streams it as is.
        .send(stream as unknown as string);
    },
  );

  fastify.delete(
    '/images/:id',
    {
      schema: {
        operationId: 'deleteImage',
        tags: TAGS,
        summary: 'Delete an image',
        description: 'Removes the image from its dataset; its bytes are deleted once no other image references them.',
        params: ImageParams,
        response: { 204: { description: 'Deleted', type: 'null' }, ...problemResponses(401, 404, 500) },
      },
    },
    async (request, reply) => {
      const { row, collection } = await images.delete(request.tenant.id, request.params.id);
      if (row === null) throw notFound('image', request.params.id);
      logCollection(collection, request.log);
      return reply.status(204).send(null);
    },
  );
};

export default imageRoutes;
