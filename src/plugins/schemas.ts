// Shared schemas with an $id: referenced by routes as { $ref: 'Problem' } and published
// as OpenAPI components.
import fp from 'fastify-plugin';
import { DatasetSchema } from '../schemas/datasets.js';
import { BaseModelSchema } from '../schemas/models.js';
import { FieldErrorSchema, ProblemSchema } from '../schemas/problem.js';

export const sharedSchemas = [FieldErrorSchema, ProblemSchema, DatasetSchema, BaseModelSchema];

export default fp(
  async (fastify) => {
    for (const schema of sharedSchemas) fastify.addSchema(schema);
  },
  { name: 'schemas' },
);
