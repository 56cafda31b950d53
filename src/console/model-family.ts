// Base models by family on the console's forms: how a family reads, how a model reads in a
// picker, and whether a field of the API's schema applies to a model (the API marks a field
// of some families only with x-model-families; a field for another family is not shown).
import type { ParamSchema } from 'openapi:training-params';
import type { BaseModel } from './api.js';

export const FAMILY_NAMES: Record<BaseModel['family'], string> = { sd1: 'SD 1.x', sd2: 'SD 2.x', sdxl: 'SDXL' };

/** "sd15-tiny-demo (SD 1.x, demo)", "rex (SDXL, yours: mdl_01JD...)": a model in a select. */
export function modelLabel(model: BaseModel, demoNote = 'demo'): string {
  if (model.owner === 'tenant') return `${model.name ?? model.id} (${FAMILY_NAMES[model.family]}, yours${model.name === null ? '' : `: ${model.id}`})`;
  return `${model.id} (${FAMILY_NAMES[model.family]}${model.demo ? `, ${demoNote}` : ''})`;
}

/** Whether a field with this schema applies to models of `family` (and, when given, to runs of `method`). */
export function appliesTo(schema: ParamSchema | undefined, family: BaseModel['family'], method?: 'lora' | 'full'): boolean {
  const families = schema?.['x-model-families'];
  const methods = schema?.['x-training-methods'];
  return (families === undefined || families.includes(family)) && (method === undefined || methods === undefined || methods.includes(method));
}

/** A param's default on a run of `method`: the schema's, else the method's own. */
export function defaultFor(schema: ParamSchema | undefined, method: 'lora' | 'full'): unknown {
  return schema?.default !== undefined ? schema.default : schema?.['x-method-defaults']?.[method];
}
