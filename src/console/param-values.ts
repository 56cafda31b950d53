// What a form control drawn from a JSON Schema holds, and the param value it stands for:
// numbers as typed, lists as lines, checkboxes as booleans. Pure (no DOM), so the console's
// unit tests run it under Node.
import type { ParamSchema } from 'openapi:training-params';

/** What a control holds: text (numbers as typed, lines of a list) or a checkbox's state. */
export type FieldValue = string | boolean;

export type ParamKind = 'number' | 'boolean' | 'enum' | 'text' | 'lines';

export function paramKind(schema: ParamSchema): ParamKind {
  if (schema.enum !== undefined) return 'enum';
  if (schema.type === 'integer' || schema.type === 'number') return 'number';
  if (schema.type === 'boolean') return 'boolean';
  if (schema.type === 'array') return 'lines';
  return 'text';
}

/** The control's value for a param value (the schema's default, a preset's). */
export function toFieldValue(schema: ParamSchema, value: unknown): FieldValue {
  if (paramKind(schema) === 'boolean') return value === true;
  if (value === undefined || value === null) return '';
  if (Array.isArray(value)) return value.map(String).join('\n');
  return String(value);
}

/** The param value of a control's value; undefined when blank (the param is left out). */
export function fromFieldValue(schema: ParamSchema, value: FieldValue): unknown {
  const kind = paramKind(schema);
  if (kind === 'boolean') return value === true;
  const text = String(value).trim();
  if (kind === 'lines') {
    const lines = String(value).split('\n').map((line) => line.trim()).filter((line) => line !== '');
    return lines.length === 0 && schema.default === undefined ? undefined : lines;
  }
  if (text === '') return undefined;
  if (kind === 'number') return Number(text); // NaN reaches the API, which names the field
  if (kind === 'enum') return schema.enum!.find((option) => String(option) === text) ?? text;
  return text;
}
