// OpenAPI 3.1 generated from the route schemas (@fastify/swagger), served at /docs.
// Schemas added with an $id (Problem, Dataset, ...) become components/schemas entries.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import fp from 'fastify-plugin';
import fs from 'node:fs';
import path from 'node:path';
import { documentedRouteSchema } from '../openapi/request-defaults.js';
import { projectRoot } from '../paths.js';

const { version } = JSON.parse(fs.readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string };

export const BEARER_SCHEME = 'bearerAuth';

export default fp(
  async (fastify) => {
    await fastify.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'sdxl-lora-service',
          version,
          description:
            'Trains Stable Diffusion LoRA adapters (SDXL, SD 1.x and SD 2.x) from a few photos and serves images from them. ' +
            'Every /v1 call needs `Authorization: Bearer <API key>`; every error is RFC 9457 application/problem+json.',
          license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
        },
        servers: [
          {
            url: '{scheme}://{host}',
            description: 'Where this service is reached: scheme, host name and port; `npm start` listens on http://127.0.0.1:3000',
            // (No description on the variables: the OpenAPI 3.1 schema that validators use misspells that field.)
            variables: {
              scheme: { enum: ['http', 'https'], default: 'http' },
              host: { default: '127.0.0.1:3000' },
            },
          },
        ],
        tags: [
          { name: 'health', description: 'Liveness and readiness probes (no API key)' },
          { name: 'datasets', description: 'Sets of training photos of one subject' },
          { name: 'images', description: 'The photos of a dataset' },
          { name: 'captions', description: "Each image's current caption, its history, edits and export" },
          { name: 'captioning-jobs', description: 'Background jobs that caption a dataset with a vision model or the template' },
          { name: 'models', description: 'Base models to train on and sample from' },
          { name: 'quality-metrics', description: 'Image-quality metrics (CLIP-T, CLIP-I, HPS, LPIPS, FID, KID, Inception Score) and which this server can compute' },
          { name: 'training-runs', description: 'LoRA training runs: queued, trained by a worker, resumed after a crash' },
        ],
        components: {
          securitySchemes: {
            [BEARER_SCHEME]: {
              type: 'http',
              scheme: 'bearer',
              description: 'An API key from `npm run create-api-key -- --tenant NAME` (or printed on the first embedded start)',
            },
          },
        },
        security: [{ [BEARER_SCHEME]: [] }],
      },
      // Fields with defaults are optional to callers (see request-defaults.ts).
      transform: ({ schema, url }) => ({ schema: documentedRouteSchema(schema), url }),
      refResolver: {
        // Name components after their $id so refs read #/components/schemas/Problem.
        buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
      },
    });
    await fastify.register(swaggerUi, { routePrefix: '/docs' });
  },
  { name: 'swagger', dependencies: ['schemas'] },
);
