// A run on the demo model with every quality metric: each validation scores its images with
// clip_t, clip_i and hps, the end-of-run set (final_images per prompt) with all seven, against
// the dataset's images. The numbers are in the validation events, in the run (quality_metrics,
// metrics.final_*), on /metrics while the run trains, and a second run with the same seed gives
// the same numbers. Tiny on purpose: 64 px, 4 steps, 2 sampling steps.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withTestApp, type TestApp } from '../../helper.js';
import { datasetToTrain } from '../../support/images-api.js';
import { metricsModelsDir } from '../../support/metrics-models.js';

const ALL = ['clip_t', 'clip_i', 'hps', 'lpips', 'fid', 'kid', 'is'];
const PER_IMAGE = ['clip_t', 'clip_i', 'hps'];
const FINISHED = ['succeeded', 'failed', 'canceled'];
const PROMPTS = ['a photo of ohwx dog', 'a photo of ohwx dog on a beach'];
const FINAL_IMAGES = 5; // x 2 prompts = 10, the service's floor for fid, kid and is
const PARAMS = {
  resolution: 64, max_steps: 4, checkpoint_every: 0, seed: 7,
  validation: { every: 2, prompts: PROMPTS, steps: 2, seed: 3, metrics: ALL, final_images: FINAL_IMAGES },
};

type Event = { id: string; type: string; data: Record<string, any> };

async function get(ctx: TestApp, url: string): Promise<any> {
  const response = await ctx.app.inject({ method: 'GET', url, headers: ctx.auth });
  assert.equal(response.statusCode, 200, response.body);
  return response.json();
}

/** The series of sdxl_training_validation_metric for one metric and run, whatever the label order. */
function gauge(text: string, metric: string, runId: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith('sdxl_training_validation_metric{') &&
    l.includes(`metric="${metric}"`) && l.includes(`run_id="${runId}"`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** Trains one run to its end; the first validation event with scores is checked against /metrics while the run still trains. */
async function trainScored(ctx: TestApp, datasetId: string): Promise<{ run: any; validations: Event[]; gaugeWhileRunning: number | undefined; scoredAt: any }> {
  const created = await ctx.app.inject({ method: 'POST', url: '/v1/training-runs', headers: ctx.auth, payload: { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: PARAMS } });
  assert.equal(created.statusCode, 202, created.body);
  const id = created.json().id as string;
  let gaugeWhileRunning: number | undefined;
  let scoredAt: any;
  for (let i = 0; i < 6000; i++) {
    if (scoredAt === undefined) {
      const events = (await get(ctx, `/v1/training-runs/${id}/events?type=validation&limit=100`)).data as Event[];
      const scored = events.find((event) => Object.keys(event.data.metrics ?? {}).length > 0);
      if (scored !== undefined) {
        // The gauge is set when the engine reports, before the event is written: it is there now, while the run trains on.
        const text = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
        gaugeWhileRunning = gauge(text, 'clip_t', id);
        scoredAt = { event: scored, status: (await get(ctx, `/v1/training-runs/${id}`)).status };
      }
    }
    const run = await get(ctx, `/v1/training-runs/${id}`);
    if (FINISHED.includes(run.status)) {
      const validations = (await get(ctx, `/v1/training-runs/${id}/events?type=validation&limit=100`)).data as Event[];
      return { run, validations, gaugeWhileRunning, scoredAt };
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail(`run ${id} did not finish`);
}

test('every metric on the demo model: in events, in the run, on /metrics; the same seed gives the same numbers', async (t) => {
  const ctx = await withTestApp(t, { env: { METRICS_MODELS_DIR: metricsModelsDir(), GENERATION_SLOTS: '0' } });
  const datasetId = await datasetToTrain(ctx);
  const first = await trainScored(ctx, datasetId);
  const { run, validations } = first;
  assert.equal(run.status, 'succeeded', JSON.stringify(run.error));

  // Each validation (before training, every 2 steps): its images scored with the per-image metrics, nothing unavailable.
  const during = validations.filter((event) => !event.data.final);
  assert.deepEqual(during.map((event) => event.data.step), [0, 2, 4], JSON.stringify(validations.map((e) => e.data)));
  for (const event of during) {
    assert.equal(event.data.images.length, PROMPTS.length);
    for (const metric of PER_IMAGE) assert.ok(Number.isFinite(event.data.metrics[metric]), `step ${event.data.step} ${metric}: ${JSON.stringify(event.data)}`);
    assert.ok(event.data.metrics.clip_t >= 0 && event.data.metrics.clip_t <= 100);
    assert.deepEqual(event.data.unavailable, {});
    assert.equal(event.data.final, false);
  }

  // The final set: every metric, from 10 images against the dataset's 2.
  const finals = validations.filter((event) => event.data.final);
  assert.equal(finals.length, 1, JSON.stringify(validations.map((e) => e.data)));
  const final = finals[0]!.data;
  assert.equal(final.step, 4);
  for (const metric of ALL) assert.ok(Number.isFinite(final.metrics[metric]), `${metric}: ${JSON.stringify(final.metrics)}`);
  assert.deepEqual(final.unavailable, {});
  assert.equal(final.metrics.images, FINAL_IMAGES * PROMPTS.length);
  assert.equal(final.metrics.reference_images, 2);
  assert.equal(final.metrics.kid_subset_size, 2, 'min(1000, generated, references)');
  assert.equal(final.metrics.is_splits, 5, 'min(10, floor(10 / 2))');
  assert.ok(final.metrics.fid >= 0 && final.metrics.lpips >= 0 && final.metrics.is >= 1 - 1e-9, JSON.stringify(final.metrics));
  const finalFiles = final.images.map((image: { name: string }) => image.name);
  assert.equal(finalFiles.filter((name: string) => /^samples\/final-\d+-\d+\.png$/.test(name)).length, FINAL_IMAGES * PROMPTS.length, finalFiles.join());

  // The run keeps the final set, and its metrics say each final value.
  assert.deepEqual(run.quality_metrics, { step: 4, final: true, values: final.metrics, unavailable: {} });
  for (const metric of ALL) assert.equal(run.metrics[`final_${metric}`], final.metrics[metric], `metrics.final_${metric}`);

  // /metrics showed the run's clip_t while it trained, and drops the series once it has stopped.
  assert.ok(first.scoredAt !== undefined);
  assert.equal(first.gaugeWhileRunning, first.scoredAt.event.data.metrics.clip_t, `the gauge while ${first.scoredAt.status}`);
  const after = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.equal(gauge(after, 'clip_t', run.id), undefined, 'no series for a run that has stopped');

  // The same seeds: the same numbers, at every validation and at the end.
  const second = await trainScored(ctx, datasetId);
  assert.equal(second.run.status, 'succeeded', JSON.stringify(second.run.error));
  assert.deepEqual(second.validations.map((event) => [event.data.step, event.data.final, event.data.metrics]), validations.map((event) => [event.data.step, event.data.final, event.data.metrics]));
  assert.deepEqual(second.run.quality_metrics, run.quality_metrics);
});

test('a metric the worker cannot compute is reported unavailable, and the run still succeeds', async (t) => {
  // Accepted at creation (the API replica had the networks), then gone on the worker: reported, never a failed run.
  const modelsDir = metricsModelsDir();
  const ctx = await withTestApp(t, { env: { METRICS_MODELS_DIR: modelsDir, GENERATION_SLOTS: '0', TRAINING_SLOTS: '0' } });
  const datasetId = await datasetToTrain(ctx);
  const created = await ctx.app.inject({
    method: 'POST', url: '/v1/training-runs', headers: ctx.auth,
    payload: { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { ...PARAMS, validation: { ...PARAMS.validation, every: 0, metrics: ['clip_t', 'hps'], final_images: 0 } } },
  });
  assert.equal(created.statusCode, 202, created.body);
  const id = created.json().id as string;
  const worker = await withTestApp(t, { env: { METRICS_MODELS_DIR: metricsModelsDir(['clip']), GENERATION_SLOTS: '0' } });
  let run: any;
  for (let i = 0; i < 6000 && !FINISHED.includes((run = await get(ctx, `/v1/training-runs/${id}`)).status); i++) await new Promise((resolve) => setTimeout(resolve, 20));
  await worker.app.close();
  assert.equal(run.status, 'succeeded', JSON.stringify(run.error));
  assert.ok(Number.isFinite(run.quality_metrics.values.clip_t), JSON.stringify(run.quality_metrics));
  assert.deepEqual(Object.keys(run.quality_metrics.unavailable), ['hps']);
  assert.match(run.quality_metrics.unavailable.hps, /hps/);
  const validation = (await get(ctx, `/v1/training-runs/${id}/events?type=validation`)).data.at(-1);
  assert.deepEqual(validation.data.unavailable, run.quality_metrics.unavailable);
  const logs = await ctx.app.inject({ method: 'GET', url: `/v1/training-runs/${id}/logs`, headers: ctx.auth });
  assert.match(logs.body, /hps unavailable: /);
});
