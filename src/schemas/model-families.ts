// The Stable Diffusion families a base model belongs to (the engine's inspectModel says
// which), their names in messages, and the schema annotation that marks a request field
// as one only some families have: the service refuses it elsewhere, the console hides it.
import { Type } from 'typebox';
import type { ModelFamily } from '../engine/index.js';

export type { ModelFamily };

export const MODEL_FAMILIES = ['sd1', 'sd2', 'sdxl'] as const satisfies readonly ModelFamily[];

export const ModelFamilySchema = Type.Enum([...MODEL_FAMILIES], {
  description: 'sd1: Stable Diffusion 1.x (one CLIP ViT-L text encoder); sd2: 2.x (one OpenCLIP-H); sdxl: SDXL (two text encoders and size conditioning)',
});

/** How messages and descriptions name each family. */
export const FAMILY_NAMES: Record<ModelFamily, string> = { sd1: 'SD 1.x', sd2: 'SD 2.x', sdxl: 'SDXL' };

/** The schema keyword listing the families a field applies to (an OpenAPI extension; Ajv is told it is an annotation). */
export const FAMILIES_KEYWORD = 'x-model-families';

/** Why an SDXL model takes no clip_skip (runs and generations alike). */
export const NO_CLIP_SKIP_ON_SDXL = 'SDXL models always condition on the penultimate layers of both text encoders';

/** Request schemas take clip_skip 1 to this (SD 1.x's 12 layers); a model's own limit is its clip_skip_max. */
export const MAX_CLIP_SKIP = 12;

/** Schema options marking a field as one of `families` only. */
export function onlyFor(...families: ModelFamily[]): { [FAMILIES_KEYWORD]: ModelFamily[] } {
  return { [FAMILIES_KEYWORD]: families };
}

/** The families a field's schema is marked for; undefined: every family. */
export function familiesOf(schema: unknown): readonly ModelFamily[] | undefined {
  return (schema as Record<string, ModelFamily[] | undefined>)[FAMILIES_KEYWORD];
}

/** "SD 1.x and SD 2.x", "SDXL": the families a field is for, in words. */
export function familyList(families: readonly ModelFamily[]): string {
  return families.map((family) => FAMILY_NAMES[family]).join(' and ');
}

/** The message of a field for `families` named with a model of another family, and why that family has none. */
export function notForFamily(families: readonly ModelFamily[], model: { id: string; family: ModelFamily }, why: string): string {
  return `is for ${familyList(families)} models only, and ${model.id} is ${FAMILY_NAMES[model.family]}: ${why}`;
}

/** The message of a clip skip beyond the model's text encoder, or undefined when the model takes it. */
export function clipSkipBeyond(model: { id: string; clip_skip_max: number | null }, clipSkip: number | undefined): string | undefined {
  if (clipSkip === undefined || model.clip_skip_max === null || clipSkip <= model.clip_skip_max) return undefined;
  return `must be at most ${model.clip_skip_max}: the text encoder of ${model.id} has ${model.clip_skip_max} layers (clip_skip_max)`;
}
