// The limits of a generation request, read from the API's own schema at build time
// (GENERATION_LIMITS in src/schemas/generations.ts reaches the console through the OpenAPI
// document): the browser checks them first, the API names any field it refuses.
import request from 'openapi:generation-request';
import type { ParamSchema } from 'openapi:training-params';

/** A field of the request body's schema (its limits, its x-model-families). */
export function generationField(name: string): ParamSchema {
  const schema = request.properties[name];
  if (schema === undefined) throw new Error(`POST /v1/generations has no field ${name}`);
  return schema;
}

function bound(value: number | undefined, what: string): number {
  if (value === undefined) throw new Error(`POST /v1/generations does not bound ${what}`);
  return value;
}

const width = generationField('width');
const loras = generationField('loras');
const scale = loras.items?.properties?.scale;

export const GENERATION_LIMITS = {
  minSide: bound(width.minimum, 'width.minimum'),
  maxSide: bound(width.maximum, 'width.maximum'),
  sideMultiple: bound(width.multipleOf, 'width.multipleOf'),
  maxSteps: bound(generationField('steps').maximum, 'steps.maximum'),
  maxGuidance: bound(generationField('guidance_scale').maximum, 'guidance_scale.maximum'),
  maxImages: bound(generationField('num_images').maximum, 'num_images.maximum'),
  maxSeed: bound(generationField('seed').maximum, 'seed.maximum'),
  maxLoras: bound(loras.maxItems, 'loras.maxItems'),
  maxLoraScale: bound(scale?.maximum, 'loras.items.scale.maximum'),
} as const;
