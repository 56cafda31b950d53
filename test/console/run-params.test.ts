/// <reference path="../../src/console/openapi-schemas.d.ts" />
// src/console/run-params.ts: the params the new-run form sends (issue 26): only one of
// max_steps and max_epochs, and validation_split when it is not 0.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { toFieldValue } from '../../src/console/param-values.js';
import { fieldsForLength, nonNullSchema, paramsOf, type FieldSpec, type Values } from '../../src/console/run-params.js';

const FIELDS: FieldSpec[] = [
  { key: 'max_steps', path: ['max_steps'], schema: { type: 'integer', minimum: 1, 'x-method-defaults': { lora: 1000, full: 800 } } },
  { key: 'rank', path: ['rank'], schema: { type: 'integer', default: 16 } },
  { key: 'max_epochs', path: ['max_epochs'], schema: { type: 'integer', minimum: 1, maximum: 10000 } },
  { key: 'validation_split', path: ['validation_split'], schema: { type: 'number', minimum: 0, maximum: 0.5, default: 0 } },
  { key: 'validation.every', path: ['validation', 'every'], group: 'validation', schema: { type: 'integer', default: 0 } },
];

const defaults: Record<string, unknown> = { max_steps: 1000, rank: 16, validation_split: 0, 'validation.every': 0 };
const defaultOf = (field: FieldSpec) => defaults[field.key];

/** The form's values: every field at its default, then `changes`. */
function valuesWith(changes: Values): Values {
  const values: Values = {};
  for (const field of FIELDS) values[field.key] = toFieldValue(field.schema, defaultOf(field));
  return { ...values, ...changes };
}

test('steps: max_steps as a preset set it, never max_epochs', () => {
  const values = valuesWith({ max_steps: '20', max_epochs: '3', 'validation.every': '10' });
  assert.deepEqual(paramsOf(FIELDS, values, new Set(['max_steps']), 'lora', 'steps', defaultOf), { max_steps: 20, validation: { every: 10 } });
  // At its default and not a preset's: left to the API.
  assert.deepEqual(paramsOf(FIELDS, valuesWith({}), new Set(), 'lora', 'steps', defaultOf), {});
});

test('epochs: max_epochs only, even where a preset set max_steps (the API refuses both)', () => {
  const values = valuesWith({ max_steps: '20', max_epochs: '3' });
  assert.deepEqual(paramsOf(FIELDS, values, new Set(['max_steps']), 'lora', 'epochs', defaultOf), { max_epochs: 3 });
  assert.deepEqual(paramsOf(FIELDS, valuesWith({ max_epochs: ' ' }), new Set(), 'full', 'epochs', defaultOf), { method: 'full' }, 'blank: not sent');
  assert.deepEqual(fieldsForLength(FIELDS, 'epochs').map((field) => field.key), ['rank', 'max_epochs', 'validation_split', 'validation.every']);
  assert.deepEqual(fieldsForLength(FIELDS, 'steps').map((field) => field.key), ['max_steps', 'rank', 'validation_split', 'validation.every']);
});

test('validation_split: sent when not 0, so a service without it is not asked for it', () => {
  assert.deepEqual(paramsOf(FIELDS, valuesWith({ validation_split: '0.2' }), new Set(), 'lora', 'steps', defaultOf), { validation_split: 0.2 });
  assert.deepEqual(paramsOf(FIELDS, valuesWith({ validation_split: '0' }), new Set(), 'lora', 'steps', defaultOf), {});
});

test('a nullable number edits as a number', () => {
  assert.deepEqual(
    nonNullSchema({ anyOf: [{ type: 'integer', minimum: 1, maximum: 10000 }, { type: 'null' }], default: null, description: 'Epochs' }),
    { type: 'integer', minimum: 1, maximum: 10000, description: 'Epochs' },
  );
  const object = { anyOf: [{ type: 'object' as const, properties: { a: { type: 'integer' as const } } }, { type: 'null' as const }] };
  assert.equal(nonNullSchema(object), object, 'a nullable object stays (the form makes it a toggle)');
  const plain = { type: 'number' as const, default: 0 };
  assert.equal(nonNullSchema(plain), plain);
});
