// Dataset imports: /v1/datasets/{id}/imports (upload an archive, list) and
// /v1/dataset-imports/{id} (read, follow as Server-Sent Events, cancel), scoped to the
// caller's tenant. The archive is the request body, streamed to disk as it arrives.
import multipart from '@fastify/multipart';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { fieldError, notFound, ProblemError } from '../../../errors.js';
import {
  ARCHIVE_MEDIA_TYPES,
  CreateDatasetImportQuery,
  DatasetImportPage,
  DatasetImportParams,
  DatasetImportRef,
  ListDatasetImportsQuery,
} from '../../../schemas/dataset-imports.js';
import { DatasetImagesParams } from '../../../schemas/images.js';
import { problemResponses } from '../../../schemas/problem.js';
import type { ReceivedArchive } from '../../../services/dataset-imports.js';
import { eventStreams, wantsEventStream } from '../../event-stream.js';

const TAGS = ['dataset-imports'];
/** The multipart part that carries the archive. */
const ARCHIVE_FIELD = 'file';

const archiveSchema = { type: ['string', 'null'], format: 'binary', description: 'The archive: zip, tar or tar.gz' };
/** Documents the body; it validates nothing (the body is streamed, not parsed, so fastify sees null). */
const ImportBody = {
  content: {
    'multipart/form-data': {
      schema: {
        type: ['object', 'null'],
        properties: { [ARCHIVE_FIELD]: { type: 'string', contentMediaType: 'application/octet-stream', description: 'The archive: zip, tar or tar.gz' } },
      },
    },
    ...Object.fromEntries(ARCHIVE_MEDIA_TYPES.map((type) => [type, { schema: archiveSchema }])),
  },
};

const datasetImportRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const imports = fastify.datasetImports.service;
  const maxBytes = fastify.config.images.maxRequestBytes;

  // Only this plugin reads archives: the raw types pass the body through untouched, and
  // multipart is parsed part by part (one file part, streamed).
  fastify.addContentTypeParser([...ARCHIVE_MEDIA_TYPES], (_request, _payload, done) => done(null, null));
  await fastify.register(multipart, { throwFileSizeLimit: false, limits: { fileSize: maxBytes, files: 1, fields: 0, parts: 1 } });

  /** The archive of the request: its one multipart file part, or the raw body. */
  async function archiveOf(request: FastifyRequest, filename: string | undefined): Promise<ReceivedArchive> {
    if (!request.isMultipart()) {
      const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (!(ARCHIVE_MEDIA_TYPES as readonly string[]).includes(type)) {
        throw new ProblemError({
          status: 415,
          type: 'unsupported-archive',
          title: 'Not a zip, tar or tar.gz archive',
          detail: `Content-Type ${type === '' ? '(none)' : type} is not accepted here; send the archive as ${ARCHIVE_MEDIA_TYPES.join(', ')} or as multipart/form-data with one file part named "${ARCHIVE_FIELD}".`,
          errors: [fieldError('headers', 'content-type', 'must be an archive media type or multipart/form-data')],
        });
      }
      return { source: request.raw, filename: filename ?? null };
    }
    let part;
    try {
      part = await request.file();
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'FST_FIELDS_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FILES_LIMIT') throw wrongPart('the request carries text fields or more than one part');
      throw error;
    }
    if (part === undefined) throw wrongPart('the request carries no file part');
    if (part.fieldname !== ARCHIVE_FIELD) throw wrongPart(`the request has a part named "${part.fieldname}"`);
    return { source: part.file, filename: part.filename === '' ? filename ?? null : part.filename, truncated: () => part.file.truncated };
  }

  fastify.post(
    '/datasets/:id/imports',
    {
      config: { idempotent: true },
      schema: {
        operationId: 'createDatasetImport',
        tags: TAGS,
        summary: 'Import an archive of images (zip, tar or tar.gz) into a dataset in the background',
        description:
          `The body is the archive: a raw body (Content-Type ${ARCHIVE_MEDIA_TYPES.join(', ')}; name it with ?filename=) ` +
          `or multipart/form-data with one file part named "${ARCHIVE_FIELD}". It is streamed to disk and hashed as it arrives ` +
          '(up to UPLOAD_MAX_REQUEST_BYTES), then answered 202 with the queued import (Location: /v1/dataset-imports/{id}); ' +
          'follow it with GET or its events. Its format is sniffed from the bytes. Every entry gets the checks of a ' +
          'synchronous upload; refused entries are listed by name and do not stop the others; images the dataset already ' +
          'holds are counted as duplicates. Captions: name.txt or name.caption beside name.jpg, or metadata.jsonl lines ' +
          '{"file_name", "text"} (the sidecar wins when both exist). An Idempotency-Key replays the first answer to a retry ' +
          'with the same key to the same dataset (the body is not compared: it is not held). ' +
          'Refusals: 404 dataset, 413 over UPLOAD_MAX_REQUEST_BYTES, 415 not a zip, tar or tar.gz, 400 empty body, 507 the ' +
          "server's storage is full or below DATA_DIR_MIN_FREE_BYTES; nothing is kept.",
        params: DatasetImagesParams,
        querystring: CreateDatasetImportQuery,
        body: ImportBody,
        response: { 202: DatasetImportRef, ...problemResponses(400, 401, 404, 413, 415, 500, 503, 507) },
      },
    },
    async (request, reply) => {
      const tenantId = request.tenant.id;
      const datasetId = request.params.id;
      const length = request.headers['content-length'];
      imports.checkDeclaredLength(length === undefined ? undefined : Number(length));
      await fastify.services.diskSpace.assertRoomFor('an import');
      if (!(await imports.datasetExists(tenantId, datasetId))) throw notFound('dataset', datasetId);
      const created = await imports.create(tenantId, datasetId, await archiveOf(request, request.query.filename));
      request.log.info({ import: created.id, dataset: datasetId, format: created.format, bytes: created.bytes }, 'dataset import queued');
      return reply.status(202).header('location', `/v1/dataset-imports/${created.id}`).send(created);
    },
  );

  fastify.get(
    '/datasets/:id/imports',
    {
      schema: {
        operationId: 'listDatasetImports',
        tags: TAGS,
        summary: 'List a dataset\'s imports, newest first',
        params: DatasetImagesParams,
        querystring: ListDatasetImportsQuery,
        response: { 200: DatasetImportPage, ...problemResponses(400, 401, 404, 500) },
      },
    },
    async (request) => imports.list(request.tenant.id, request.params.id, request.query.limit, request.query.cursor),
  );

  fastify.get(
    '/dataset-imports/:id',
    {
      schema: {
        operationId: 'getDatasetImport',
        tags: TAGS,
        summary: 'Get a dataset import: status, progress, refused entries',
        params: DatasetImportParams,
        response: { 200: DatasetImportRef, ...problemResponses(401, 404, 500) },
      },
    },
    async (request) => imports.get(request.tenant.id, request.params.id),
  );

  const openStream = eventStreams(fastify, fastify.config.training.sseHeartbeatMs);

  async function stream(request: FastifyRequest, reply: FastifyReply, id: string) {
    const tenantId = request.tenant.id;
    await imports.get(tenantId, id); // 404 before the stream starts
    return openStream(request, reply, 'dataset import', async (write, signal) => {
      for await (const current of imports.follow(tenantId, id, signal)) {
        write({ type: current.status === 'queued' || current.status === 'running' ? 'progress' : current.status, data: current });
      }
    });
  }

  fastify.get(
    '/dataset-imports/:id/events',
    {
      schema: {
        operationId: 'getDatasetImportEvents',
        tags: TAGS,
        summary: 'Follow a dataset import: Server-Sent Events, or the import as JSON',
        description:
          'With Accept: text/event-stream: a `progress` event (data: the DatasetImport) each time its progress changes ' +
          'while it is queued or running (about once a second), then one `succeeded`, `failed` or `canceled` event with ' +
          'the final DatasetImport, and the stream ends; a heartbeat comment every SSE_HEARTBEAT_MS. Without that Accept ' +
          'header: the DatasetImport as JSON.',
        params: DatasetImportParams,
        response: {
          200: {
            description: 'The import (JSON), or the event stream',
            content: {
              'application/json': { schema: DatasetImportRef },
              'text/event-stream': { schema: { type: 'string', description: 'Server-Sent Events; each data line is a DatasetImport' } },
            },
          },
          ...problemResponses(401, 404, 500),
        },
      },
    },
    async (request, reply) => {
      if (wantsEventStream(request)) return stream(request, reply, request.params.id);
      return imports.get(request.tenant.id, request.params.id);
    },
  );

  fastify.post(
    '/dataset-imports/:id/cancel',
    {
      schema: {
        operationId: 'cancelDatasetImport',
        tags: TAGS,
        summary: 'Cancel a queued or running dataset import',
        description: 'A queued import is canceled at once; a running one stops within moments. Images already stored stay. 409 when it has already finished.',
        params: DatasetImportParams,
        response: { 202: DatasetImportRef, ...problemResponses(401, 404, 409, 500) },
      },
    },
    async (request, reply) => reply.status(202).send(await imports.cancel(request.tenant.id, request.params.id)),
  );
};

function wrongPart(what: string): ProblemError {
  return new ProblemError({
    status: 400,
    type: 'unknown-field',
    title: 'Unexpected multipart content',
    detail: `${what[0]!.toUpperCase()}${what.slice(1)}; send the archive as one file part named "${ARCHIVE_FIELD}".`,
    errors: [fieldError('body', ARCHIVE_FIELD, 'must be the one file part of the request')],
  });
}

export default datasetImportRoutes;
