// Base models by family on the console's forms: how a family reads, how a model reads in a
// picker, and whether a field of the API's schema applies to a model (the API marks a field
// of some families only with x-model-families; a field for another family is not shown).
import type { ParamSchema } from 'openapi:training-params';
import type { BaseModel } from './api.js';

export const FAMILY_NAMES: Record<BaseModel['family'], string> = { sd1: 'SD 1.x', sd2: 'SD 2.x', sdxl: 'SDXL' };

/** "sd15-tiny-demo (SD 1.x, demo)": a model in a select. */
export function modelLabel(model: BaseModel, demoNote = 'demo'): string {
  return `${model.id} (${FAMILY_NAMES[model.family]}${model.demo ? `, ${demoNote}` : ''})`;
}

/** Whether a field with this schema applies to models of `family`. */
export function appliesTo(schema: ParamSchema | undefined, family: BaseModel['family']): boolean {
  const families = schema?.['x-model-families'];
  return families === undefined || families.includes(family);
}
