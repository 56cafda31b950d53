// /v1/training-runs/{id}/artifacts: the files a run published, and their downloads with
// ETag (the SHA-256), If-None-Match and single Range requests, so a 100 MB LoRA download
// that broke off resumes where it stopped.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import path from 'node:path';
import { ProblemError } from '../../../errors.js';
import { problemResponses } from '../../../schemas/problem.js';
import { ArtifactParams, TrainingRunArtifactList } from '../../../schemas/training-run-artifacts.js';
import { TrainingRunParams } from '../../../schemas/training-runs.js';
import { ifNoneMatch, requestedRange } from '../../http-conditional.js';

const TAGS = ['training-runs'];
const BINARY = { schema: { type: 'string', format: 'binary' } };

const trainingRunArtifactRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { artifacts } = fastify.training;

  fastify.get(
    '/:id/artifacts',
    {
      schema: {
        operationId: 'listTrainingRunArtifacts',
        tags: TAGS,
        summary: "List a training run's files: LoRA or model files, checkpoints, validation images",
        params: TrainingRunParams,
        response: { 200: TrainingRunArtifactList, ...problemResponses(401, 404, 500) },
      },
    },
    async (request) => ({ data: await artifacts.list(request.tenant.id, request.params.id) }),
  );

  fastify.get(
    '/:id/artifacts/:name',
    {
      schema: {
        operationId: 'getTrainingRunArtifactContent',
        tags: TAGS,
        summary: 'Download a training run file',
        description:
          'The ETag is the quoted SHA-256; If-None-Match answers 304. One byte range (Range: bytes=start-end, start-, or -suffix, ' +
          'with If-Range) answers 206, so a broken download resumes; a range past the end answers 416 with Content-Range: bytes */size. ' +
          "A full run's model.tar (model_diffusers) is its diffusers folder with every component in it (the base model's " +
          'untouched ones included), entries under <run id>-model/, made as it is read: the same bytes on every request, so Range ' +
          'and the ETag hold for it too.',
        params: ArtifactParams,
        response: {
          200: { description: 'The file', content: { 'application/octet-stream': BINARY, 'image/png': BINARY, 'application/x-tar': BINARY } },
          206: { description: 'The requested range of the file', content: { 'application/octet-stream': BINARY, 'image/png': BINARY, 'application/x-tar': BINARY } },
          304: { description: 'Not modified (If-None-Match matched the ETag)', type: 'null' },
          ...problemResponses(401, 404, 416, 500),
        },
      },
    },
    async (request, reply) => {
      const row = await artifacts.get(request.tenant.id, request.params.id, request.params.name);
      const size = Number(row.byte_size);
      reply
        .header('etag', `"${row.sha256}"`)
        .header('accept-ranges', 'bytes')
        .header('cache-control', 'private, no-cache') // a resumed run may write a checkpoint again: revalidate
        .header('content-disposition', `attachment; filename="${row.run_id}-${path.posix.basename(row.name)}"`)
        .header('x-content-type-options', 'nosniff')
        .type(row.name.endsWith('.png') ? 'image/png' : row.name.endsWith('.tar') ? 'application/x-tar' : 'application/octet-stream');
      if (ifNoneMatch(request.headers['if-none-match'], row.sha256)) return reply.status(304).send(null);
      const ifRange = request.headers['if-range'];
      const range = requestedRange(request.headers.range, typeof ifRange === 'string' ? ifRange : undefined, row.sha256, size);
      if (range === 'unsatisfiable') {
        throw new ProblemError({
          status: 416,
          type: 'range-not-satisfiable',
          title: 'Range not satisfiable',
          detail: `The file has ${size} bytes`,
          headers: { 'content-range': `bytes */${size}` },
        });
      }
      const stream = await artifacts.content(row, range);
      if (range === undefined) return reply.header('content-length', size).send(stream as unknown as string);
      return reply
        .status(206)
        .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
        .header('content-length', range.end - range.start + 1)
        .send(stream as unknown as string);
    },
  );
};

export default trainingRunArtifactRoutes;
