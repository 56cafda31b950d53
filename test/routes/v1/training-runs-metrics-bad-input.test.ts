// Quality metrics a run cannot have are refused at creation, naming the param, and nothing is
// stored: an unknown or repeated metric or final_images out of bounds (400, the schema's);
// validation images that cannot give the metric (400: no prompts; fid, kid and is from fewer
// than 10 final images; lpips from fewer than 2 per prompt); a metric whose network the server
// does not have (422 metric-unavailable naming params.validation.metrics.N).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withTestApp, type TestApp } from '../../helper.js';
import { datasetToTrain } from '../../support/images-api.js';
import { metricsModelsDir } from '../../support/metrics-models.js';

async function stored(ctx: TestApp): Promise<number> {
  return (await ctx.db.query<{ n: number }>('SELECT count(*)::integer AS n FROM training_runs')).rows[0]!.n;
}

type Case = [name: string, validation: Record<string, unknown>, status: number, type: string, fields: string[], message: RegExp];

async function expectRefusals(ctx: TestApp, cases: Case[]): Promise<void> {
  await ctx.db.query('DELETE FROM training_runs');
  const datasetId = await datasetToTrain(ctx);
  for (const [name, validation, status, type, fields, message] of cases) {
    const response = await ctx.app.inject({
      method: 'POST', url: '/v1/training-runs', headers: ctx.auth,
      payload: { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { resolution: 64, max_steps: 2, validation } },
    });
    assert.equal(response.statusCode, status, `${name}: ${response.body}`);
    assert.match(String(response.headers['content-type']), /^application\/problem\+json/, name);
    const problem = response.json();
    assert.match(problem.type, new RegExp(`${type}$`), `${name}: ${problem.type}`);
    assert.deepEqual(problem.errors.map((e: { field: string }) => e.field), fields, name);
    assert.match(JSON.stringify(problem), message, name);
    assert.equal(await stored(ctx), 0, `${name}: nothing stored`);
  }
}

const PROMPTS = ['a photo of ohwx dog', 'a dog on a beach'];

test('metrics the validation images cannot give, and malformed ones, are 400s naming the param', async (t) => {
  // Every network here: only the images decide.
  const ctx = await withTestApp(t, { env: { METRICS_MODELS_DIR: metricsModelsDir(), GENERATION_SLOTS: '0' } });
  await expectRefusals(ctx, [
    ['an unknown metric', { prompts: PROMPTS, metrics: ['clip_t', 'dino'] }, 400, 'validation-error', ['params.validation.metrics.1'], /must be equal to one of the allowed values|clip_t/],
    ['a metric named twice', { prompts: PROMPTS, metrics: ['hps', 'hps'] }, 400, 'validation-error', ['params.validation.metrics'], /duplicate/],
    ['too many final images', { prompts: PROMPTS, metrics: ['fid'], final_images: 65 }, 400, 'validation-error', ['params.validation.final_images'], /64/],
    ['clip_t and hps without prompts', { metrics: ['clip_t', 'hps'] }, 400, 'validation-error', ['params.validation.metrics'], /clip_t and hps score images against their prompts/],
    ['clip_i without prompts', { metrics: ['clip_i'] }, 400, 'validation-error', ['params.validation.metrics'], /validation\.prompts, and it is empty/],
    ['fid from 2 x 4 final images', { prompts: PROMPTS, metrics: ['fid', 'kid'], final_images: 4 }, 400, 'validation-error',
      ['params.validation.final_images'], /fid, kid need at least 10 final images.*4 x 2 = 8.*final_images 5 or more/],
    ['is with no final set', { prompts: PROMPTS, metrics: ['is'] }, 400, 'validation-error', ['params.validation.final_images'], /is needs at least 10/],
    ['lpips from one final image per prompt', { prompts: PROMPTS, metrics: ['lpips'], final_images: 1 }, 400, 'validation-error',
      ['params.validation.final_images'], /lpips compares pairs.*final_images 2 or more, and this run has 1/],
    ['a final set without prompts', { final_images: 4 }, 400, 'validation-error', ['params.validation.final_images'], /give prompts/],
  ]);
});

test('without METRICS_MODELS_DIR every metric is a 422 naming its place in the list', async (t) => {
  const ctx = await withTestApp(t, { env: { GENERATION_SLOTS: '0' } });
  await expectRefusals(ctx, [
    ['no metrics folder', { prompts: PROMPTS, metrics: ['clip_t', 'lpips'], final_images: 2 }, 422, 'metric-unavailable',
      ['params.validation.metrics.0', 'params.validation.metrics.1'], /clip_t is not available: METRICS_MODELS_DIR is not set on this server/],
  ]);
});

test('a metric whose network is missing is a 422 naming it; the ones present are accepted', async (t) => {
  const ctx = await withTestApp(t, { env: { METRICS_MODELS_DIR: metricsModelsDir(['clip', 'lpips']), GENERATION_SLOTS: '0', TRAINING_SLOTS: '0' } });
  await expectRefusals(ctx, [
    ['hps and fid without their networks', { prompts: PROMPTS, metrics: ['clip_t', 'hps', 'lpips', 'fid'], final_images: 5 }, 422, 'metric-unavailable',
      ['params.validation.metrics.1', 'params.validation.metrics.3'], /hps is not available: [^"]*hps.*fid is not available: [^"]*inception/],
  ]);
  const datasetId = await datasetToTrain(ctx);
  const accepted = await ctx.app.inject({
    method: 'POST', url: '/v1/training-runs', headers: ctx.auth,
    payload: { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { resolution: 64, max_steps: 2, validation: { prompts: PROMPTS, metrics: ['clip_t', 'clip_i', 'lpips'], final_images: 2 } } },
  });
  assert.equal(accepted.statusCode, 202, accepted.body);
  const run = accepted.json();
  assert.deepEqual(run.params.validation, { every: 0, prompts: PROMPTS, steps: 25, guidance_scale: 5, seed: 0, metrics: ['clip_t', 'clip_i', 'lpips'], final_images: 2 });
  assert.equal(run.quality_metrics, null);
  // A run that asks none shows the defaults.
  const plain = await ctx.app.inject({ method: 'POST', url: '/v1/training-runs', headers: ctx.auth, payload: { dataset_id: datasetId, model: 'sdxl-tiny-demo' } });
  assert.deepEqual([plain.json().params.validation.metrics, plain.json().params.validation.final_images], [[], 0]);
});
