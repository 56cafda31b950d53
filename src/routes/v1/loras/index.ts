// /v1/loras: upload (multipart, checked by the engine against its base model), list, read,
// download and delete LoRAs, scoped to the caller's tenant. Succeeded training runs
// register theirs.
import multipart from '@fastify/multipart';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import { fieldError, invalidInput, ProblemError } from '../../../errors.js';
import { ListLorasQuery, LORA_FILE_FIELD, LORA_TEXT_FIELDS, LoraPage, LoraParams, LoraRef, UploadLoraBody } from '../../../schemas/loras.js';
import { problemResponses } from '../../../schemas/problem.js';
import { toLora } from '../../../services/loras.js';
import { ifNoneMatch } from '../../http-conditional.js';

const TAGS = ['loras'];
const CONTENT_CACHE_CONTROL = 'private, max-age=31536000, immutable';
/** Where uploads are written while they are checked (inside DATA_DIR: same volume as the blobs). */
const UPLOAD_TMP_SUBDIR = path.join('tmp', 'lora-uploads');
const MAX_TEXT_BYTES = 1024;

interface ReadUpload {
  file?: { path: string; filename: string };
  fields: Partial<Record<(typeof LORA_TEXT_FIELDS)[number], string>>;
}

const loraRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { loras } = fastify.generations;
  const tmpDir = path.join(fastify.config.dataDir, UPLOAD_TMP_SUBDIR);
  const maxBytes = fastify.config.generation.loraMaxBytes;

  await fastify.register(multipart, {
    throwFileSizeLimit: false,
    limits: { fileSize: maxBytes, files: 1, fields: LORA_TEXT_FIELDS.length, fieldSize: MAX_TEXT_BYTES, parts: LORA_TEXT_FIELDS.length + 1 },
  });

  /** Streams the file part to a temp file (size-limited) and keeps the text fields. */
  async function readUpload(request: FastifyRequest): Promise<ReadUpload> {
    const upload: ReadUpload = { fields: {} };
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        if (part.fieldname !== LORA_FILE_FIELD || upload.file !== undefined) {
          part.file.resume();
          throw invalidInput(`Send one LoRA file, as the file part "${LORA_FILE_FIELD}"`, [fieldError('body', part.fieldname, `unexpected file part (the file goes in "${LORA_FILE_FIELD}")`)]);
        }
        await fs.mkdir(tmpDir, { recursive: true });
        const file = path.join(tmpDir, `${randomBytes(8).toString('hex')}.safetensors`);
        upload.file = { path: file, filename: part.filename || 'lora.safetensors' };
        await pipeline(part.file, createWriteStream(file));
        if (part.file.truncated) {
          throw new ProblemError({
            status: 413,
            type: 'lora-too-large',
            title: 'LoRA file too large',
            detail: `${upload.file.filename} is larger than ${maxBytes} bytes (LORA_MAX_BYTES)`,
            errors: [fieldError('body', LORA_FILE_FIELD, `is larger than ${maxBytes} bytes`)],
          });
        }
      } else {
        const name = part.fieldname as (typeof LORA_TEXT_FIELDS)[number];
        if (!LORA_TEXT_FIELDS.includes(name)) {
          throw invalidInput(`Unknown field "${part.fieldname}"; an upload has ${[LORA_FILE_FIELD, ...LORA_TEXT_FIELDS].join(', ')}`, [
            fieldError('body', part.fieldname, 'is not a field of a LoRA upload'),
          ]);
        }
        upload.fields[name] = String(part.value);
      }
    }
    return upload;
  }

  fastify.post(
    '',
    {
      schema: {
        operationId: 'uploadLora',
        tags: TAGS,
        summary: 'Upload a LoRA made elsewhere',
        description:
          'multipart/form-data: `file` (a .safetensors LoRA: kohya with SGM or diffusers names, peft or diffusers), `model` (the ' +
          'base model it is for), optional `name` and `trigger_phrase`. The engine matches every key against the base model: ' +
          'a file whose keys name no module of it, or whose shapes do not fit (a LoRA of another model family among them: an ' +
          'SD 1.x LoRA for an SDXL model, or the reverse), is refused (422) with the keys named.',
        consumes: ['multipart/form-data'],
        body: UploadLoraBody,
        response: { 201: LoraRef, ...problemResponses(400, 401, 413, 415, 422, 500, 503, 507) },
      },
      // The parts are read as they stream (readUpload), not validated as a parsed body.
      validatorCompiler: () => () => true,
    },
    async (request, reply) => {
      await fastify.services.diskSpace.assertRoomFor('an upload');
      if (!request.isMultipart()) {
        throw new ProblemError({ status: 415, type: 'unsupported-media-type', title: 'Unsupported Media Type', detail: 'Upload a LoRA as multipart/form-data' });
      }
      let upload: ReadUpload | undefined;
      try {
        upload = await readUpload(request);
        if (upload.file === undefined) throw invalidInput(`The LoRA file is missing`, [fieldError('body', LORA_FILE_FIELD, 'is required')]);
        const model = upload.fields.model?.trim();
        if (model === undefined || model === '') throw invalidInput('Name the base model the LoRA is for', [fieldError('body', 'model', 'is required')]);
        const name = upload.fields.name?.trim();
        if (name !== undefined && (name === '' || name.length > 100)) throw invalidInput('The name must be 1 to 100 characters', [fieldError('body', 'name', 'must be 1 to 100 characters')]);
        const trigger = upload.fields.trigger_phrase?.trim();
        const row = await loras.upload(request.tenant.id, {
          file: upload.file.path,
          filename: upload.file.filename,
          model,
          ...(name === undefined ? {} : { name }),
          ...(trigger === undefined || trigger === '' ? {} : { triggerPhrase: trigger }),
        });
        request.log.info({ lora: row.id, model, bytes: Number(row.byte_size) }, 'LoRA uploaded');
        return reply.status(201).header('location', `/v1/loras/${row.id}`).send(toLora(row));
      } finally {
        if (upload?.file !== undefined) await fs.rm(upload.file.path, { force: true });
      }
    },
  );

  fastify.get(
    '',
    {
      schema: {
        operationId: 'listLoras',
        tags: TAGS,
        summary: 'List LoRAs, newest first',
        querystring: ListLorasQuery,
        response: { 200: LoraPage, ...problemResponses(400, 401, 500) },
      },
    },
    async (request) => {
      const { limit, cursor, model, source } = request.query;
      return loras.list(request.tenant.id, { ...(model === undefined ? {} : { model }), ...(source === undefined ? {} : { source }) }, limit, cursor);
    },
  );

  fastify.get(
    '/:id',
    {
      schema: {
        operationId: 'getLora',
        tags: TAGS,
        summary: 'Get a LoRA',
        params: LoraParams,
        response: { 200: LoraRef, ...problemResponses(401, 404, 500) },
      },
    },
    async (request) => toLora(await loras.get(request.tenant.id, request.params.id)),
  );

  fastify.get(
    '/:id/content',
    {
      schema: {
        operationId: 'getLoraContent',
        tags: TAGS,
        summary: 'Download the LoRA file',
        description: 'The .safetensors file. The ETag is the quoted SHA-256; If-None-Match answers 304.',
        params: LoraParams,
        response: {
          200: { description: 'The LoRA file', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
          304: { description: 'Not modified (If-None-Match matched the ETag)', type: 'null' },
          ...problemResponses(401, 404, 500),
        },
      },
    },
    async (request, reply) => {
      const row = await loras.get(request.tenant.id, request.params.id);
      reply.header('etag', `"${row.sha256}"`).header('cache-control', CONTENT_CACHE_CONTROL);
      if (ifNoneMatch(request.headers['if-none-match'], row.sha256)) return reply.status(304).send(null);
      const { stream } = await loras.content(request.tenant.id, row.id);
      const filename = `${row.name.replace(/[^\w.-]+/g, '_')}.safetensors`;
      return reply
        .type('application/octet-stream')
        .header('content-length', Number(row.byte_size))
        .header('content-disposition', `attachment; filename="${filename}"`)
        .send(stream as unknown as string);
    },
  );

  fastify.delete(
    '/:id',
    {
      schema: {
        operationId: 'deleteLora',
        tags: TAGS,
        summary: 'Delete a LoRA',
        description: '409 while a queued or running generation uses it. Generations that used it keep their images.',
        params: LoraParams,
        response: { 204: { description: 'Deleted', type: 'null' }, ...problemResponses(401, 404, 409, 500) },
      },
    },
    async (request, reply) => {
      await loras.delete(request.tenant.id, request.params.id);
      request.log.info({ lora: request.params.id }, 'LoRA deleted');
      return reply.status(204).send(null);
    },
  );
};

export default loraRoutes;
