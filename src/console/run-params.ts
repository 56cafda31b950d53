// The new-run form's controls and the request params they make: a control is sent when it
// differs from its default or a preset set it, and of a run's two lengths (steps or epochs)
// only the one chosen is sent.
// Pure (no DOM), so test/console/run-params.test.ts runs it under Node.
import type { ParamSchema } from 'openapi:training-params';
import { fromFieldValue, type FieldValue } from './param-values.js';
import type { TrainingMethod } from './training-presets.js';

/** One control of the form: a param, or a field of an object param ("validation.every"). */
export interface FieldSpec {
  key: string;
  path: [string] | [string, string];
  schema: ParamSchema;
  /** The checkbox that turns a nullable object param on (prior_preservation). */
  toggle?: boolean;
  /** The toggle this field needs on. */
  under?: string;
  /** The object param this field belongs to (its fieldset among the advanced settings). */
  group?: string;
}

export type Values = Record<string, FieldValue>;

/** How long a run trains: a number of optimizer steps, or of passes over the dataset's training images. */
export type RunLength = 'steps' | 'epochs';

/** The param each length is given by; the API refuses both at once (a 400 naming params.max_epochs). */
export const LENGTH_PARAMS: Readonly<Record<RunLength, string>> = { steps: 'max_steps', epochs: 'max_epochs' };

/**
 * A nullable scalar param ({ anyOf: [{ type: 'integer', ... }, { type: 'null' }] }) as its
 * non-null member, keeping the outer description and defaults: the control edits the value,
 * and blank leaves it out. Other schemas as they are.
 */
export function nonNullSchema(schema: ParamSchema): ParamSchema {
  const members = schema.anyOf?.filter((member) => member.type !== 'null') ?? [];
  if (schema.type !== undefined || members.length !== 1 || members[0]!.properties !== undefined) return schema;
  const { anyOf: _anyOf, default: fallback, ...outer } = schema;
  return { ...members[0], ...outer, ...(fallback === null || fallback === undefined ? {} : { default: fallback }) };
}

/** The fields a run of this length shows and sends: the other length's param is neither. */
export function fieldsForLength<Field extends { key: string }>(fields: readonly Field[], length: RunLength): Field[] {
  const other = LENGTH_PARAMS[length === 'steps' ? 'epochs' : 'steps'];
  return fields.filter((field) => field.key !== other);
}

/**
 * The request's params: the method (when not the default), and a control when it differs
 * from its default (`defaultOf`) or a preset set it; a blank one is left out (the API's
 * default, or the model's own). A toggle off whose param is on by default sends null. Of
 * max_steps and max_epochs, only `length`'s.
 */
export function paramsOf(
  fields: readonly FieldSpec[],
  values: Values,
  presetKeys: ReadonlySet<string>,
  method: TrainingMethod,
  length: RunLength,
  defaultOf: (field: FieldSpec) => unknown,
): Record<string, unknown> {
  const params: Record<string, unknown> = method === 'lora' ? {} : { method };
  for (const field of fieldsForLength(fields, length)) {
    const [name, sub] = field.path;
    if (field.toggle) {
      if (values[field.key] === true) params[name] = {};
      else if (defaultOf(field) === true) params[name] = null;
      continue;
    }
    if (field.under !== undefined && values[field.under] !== true) continue;
    const value = fromFieldValue(field.schema, values[field.key] ?? '');
    if (value === undefined) continue;
    if (!presetKeys.has(field.key) && JSON.stringify(value) === JSON.stringify(defaultOf(field))) continue;
    if (sub === undefined) params[name] = value;
    else params[name] = { ...(params[name] as object | undefined), [sub]: value };
  }
  return params;
}
