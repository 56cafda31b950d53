// Generations scored with the quality metrics (evaluation): the worker scores the images right
// after making them, against the prompt and a dataset's images. The base model and the same
// request with a LoRA at scale 0 score the same; metrics whose networks are missing are
// reported unavailable and the generation still succeeds; metrics that need reference images
// without a dataset are a 400.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { kohyaLora, tinyModelDir } from '../../engine/fixtures.js';
import { withTestApp, type TestApp } from '../../helper.js';
import { generate, pixels } from '../../support/generations-api.js';
import { datasetToTrain } from '../../support/images-api.js';
import { metricsModelsDir } from '../../support/metrics-models.js';

const TINY = 'tiny-sdxl';
const ALL = ['clip_t', 'clip_i', 'hps', 'lpips', 'fid', 'kid', 'is'];
const QUICK = { model: TINY, prompt: 'a photo of an astronaut riding a horse', width: 64, height: 64, steps: 3, seed: 5, num_images: 4 };

// MODELS_DIR: the fixture model, whose LoRA fixture fits it.
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-evaluation-'));
const modelsDir = path.join(scratch, 'models');
fs.cpSync(tinyModelDir, path.join(modelsDir, TINY), { recursive: true });
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

async function uploadLora(ctx: TestApp): Promise<{ id: string }> {
  const form = new FormData();
  form.append('model', TINY);
  form.append('name', 'astro');
  form.append('file', new Blob([new Uint8Array(fs.readFileSync(kohyaLora))]), 'astro.safetensors');
  const request = new Request('http://x', { method: 'POST', body: form });
  const response = await ctx.app.inject({
    method: 'POST', url: '/v1/loras', headers: { ...ctx.auth, 'content-type': request.headers.get('content-type')! }, payload: Buffer.from(await request.arrayBuffer()),
  });
  assert.equal(response.statusCode, 201, response.body);
  return response.json();
}

describe('generations with evaluation', () => {
  test('the base model and a LoRA at scale 0 score the same, every metric computed', async (t) => {
    const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir, METRICS_MODELS_DIR: metricsModelsDir() } });
    const datasetId = await datasetToTrain(ctx);
    const lora = await uploadLora(ctx);
    const evaluation = { metrics: ALL, reference_dataset_id: datasetId };
    const base = await generate(ctx, { ...QUICK, evaluation });
    const zero = await generate(ctx, { ...QUICK, evaluation, loras: [{ lora_id: lora.id, scale: 0 }] });
    assert.deepEqual(base.params.evaluation, evaluation);
    assert.deepEqual(base.evaluation.unavailable, {});
    for (const metric of ALL) assert.ok(Number.isFinite(base.evaluation.values[metric]), `${metric}: ${JSON.stringify(base.evaluation)}`);
    assert.equal(base.evaluation.values.images, 4);
    assert.equal(base.evaluation.values.reference_images, 2);
    assert.deepEqual(await pixels(ctx, zero.id), await pixels(ctx, base.id), 'scale 0 is the base model');
    assert.deepEqual(zero.evaluation, base.evaluation);
    // Scored when asked only.
    assert.equal((await generate(ctx, { ...QUICK, num_images: 1 })).evaluation, null);
  });

  test('metrics whose networks are missing are reported unavailable; the generation succeeds', async (t) => {
    const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir, METRICS_MODELS_DIR: metricsModelsDir(['clip']) } });
    const datasetId = await datasetToTrain(ctx);
    const generation = await generate(ctx, { ...QUICK, evaluation: { metrics: ['clip_t', 'clip_i', 'fid', 'hps'], reference_dataset_id: datasetId } });
    assert.equal(generation.status, 'succeeded');
    assert.deepEqual(Object.keys(generation.evaluation.values).filter((key) => ALL.includes(key)).sort(), ['clip_i', 'clip_t']);
    assert.deepEqual(Object.keys(generation.evaluation.unavailable).sort(), ['fid', 'hps']);
    assert.match(generation.evaluation.unavailable.fid, /inception/);
  });

  test('without METRICS_MODELS_DIR every asked metric is unavailable, saying why', async (t) => {
    const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir } });
    const generation = await generate(ctx, { ...QUICK, num_images: 1, evaluation: { metrics: ['clip_t', 'is'] } });
    assert.deepEqual(generation.evaluation, {
      values: {},
      unavailable: { clip_t: 'METRICS_MODELS_DIR is not set on this server', is: 'METRICS_MODELS_DIR is not set on this server' },
    });
  });

  test('refusals: reference metrics without a dataset (400 naming it), an unknown dataset (404), an unknown metric (400)', async (t) => {
    const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir, GENERATION_SLOTS: '0' } });
    const post = (evaluation: unknown) => ctx.app.inject({ method: 'POST', url: '/v1/generations', headers: ctx.auth, payload: { ...QUICK, evaluation } });
    const noReference = await post({ metrics: ['clip_t', 'fid', 'kid'] });
    assert.equal(noReference.statusCode, 400, noReference.body);
    assert.deepEqual(noReference.json().errors.map((e: { field: string }) => e.field), ['evaluation.reference_dataset_id']);
    assert.match(noReference.json().errors[0].message, /fid, kid compare the images with real ones/);
    const unknown = await post({ metrics: ['fid'], reference_dataset_id: 'ds_01JD3Q5V8Z6ZK2W7M4N1T0X9PA' });
    assert.equal(unknown.statusCode, 404, unknown.body);
    const badMetric = await post({ metrics: ['dino'] });
    assert.equal(badMetric.statusCode, 400, badMetric.body);
    assert.deepEqual(badMetric.json().errors.map((e: { field: string }) => e.field), ['evaluation.metrics.0']);
    const none = await post({ metrics: [] });
    assert.equal(none.statusCode, 400, none.body);
    assert.equal((await ctx.db.query('SELECT 1 FROM generations WHERE tenant_id = $1', [ctx.tenantId])).rows.length, 0, 'nothing stored');
  });
});
