// Runs measured in epochs and validated on held-out images (issue 26): max_epochs becomes the
// steps those passes take over the images trained on, the held-out share is never trained on
// and the validation loss is over it, and progress says the epoch. Refusals name the param.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withTestApp, type TestApp } from '../../helper.js';
import { createDataset, upload } from '../../support/images-api.js';
import { png } from '../../support/images.js';
import { filesBody } from '../../support/multipart.js';

const QUICK = { resolution: 64, checkpoint_every: 0, save_peft: false };

async function datasetOf(ctx: TestApp, count: number): Promise<string> {
  const datasetId = await createDataset(ctx);
  const files = [];
  for (let i = 0; i < count; i++) files.push({ name: `${i}.png`, data: await png({ width: 256, height: 256, seed: 700 + i }) });
  const response = await upload(ctx, datasetId, filesBody(files));
  assert.equal(response.statusCode, 201, response.body);
  return datasetId;
}

function request(ctx: TestApp, method: 'GET' | 'POST', url: string, payload?: object) {
  return ctx.app.inject({ method, url, headers: { authorization: `Bearer ${ctx.apiKey}` }, ...(payload === undefined ? {} : { payload }) });
}

async function finished(ctx: TestApp, id: string): Promise<any> {
  for (let i = 0; i < 2400; i++) {
    const run = (await request(ctx, 'GET', `/v1/training-runs/${id}`)).json();
    if (['succeeded', 'failed', 'canceled'].includes(run.status)) return run;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`training run ${id} did not finish`);
}

test('max_epochs over a held-out split: the steps of 2 passes over the training images, the loss over the held-out ones', async (t) => {
  const ctx = await withTestApp(t);
  const datasetId = await datasetOf(ctx, 6);
  const created = await request(ctx, 'POST', '/v1/training-runs', {
    dataset_id: datasetId, model: 'sdxl-tiny-demo',
    params: { ...QUICK, max_epochs: 2, validation_split: 0.3, validation: { every: 3 } },
  });
  assert.equal(created.statusCode, 202, created.body);
  const run = await finished(ctx, created.json().id);
  assert.equal(run.status, 'succeeded', JSON.stringify(run.error));
  const heldOut = run.metrics.held_out_images;
  assert.ok(heldOut >= 1 && heldOut <= 3, `held out ${heldOut} of 6`);
  // All 64x64 images share one bucket: an epoch is one batch per training image.
  assert.equal(run.params.max_steps, 2 * (6 - heldOut));
  assert.equal(run.params.max_epochs, 2);
  assert.equal(run.metrics.epochs, 2);
  assert.equal(run.progress.epoch, 2);
  assert.equal(run.progress.epochs, 2);
  const validations = (await request(ctx, 'GET', `/v1/training-runs/${run.id}/events?type=validation&limit=100`)).json().data;
  assert.ok(validations.length >= 2, 'a validation at step 0 and at the end');
  for (const event of validations) assert.ok(Number.isFinite(event.data.validation_loss), JSON.stringify(event.data));
  const log = (await request(ctx, 'GET', `/v1/training-runs/${run.id}/events?type=log&limit=100`)).json().data
    .map((event: { data: { message: string } }) => event.data.message).join('\n');
  assert.match(log, new RegExp(`${6 - heldOut} images \\(${heldOut} more held out\\)`));
});

test('max_epochs beside max_steps, a split of one image, and epochs beyond the step limit are refused, naming the param', async (t) => {
  const ctx = await withTestApp(t);
  const two = await datasetOf(ctx, 2);
  const refusals: Array<[object, string, string]> = [
    [{ max_epochs: 3, max_steps: 10 }, two, 'params.max_epochs'],
    [{ max_epochs: 10_000, repeats: 100 }, two, 'params.max_epochs'],
    [{ validation_split: 0.2 }, await datasetOf(ctx, 1), 'params.validation_split'],
    [{ validation_split: 0.6 }, two, 'params.validation_split'],
  ];
  for (const [params, datasetId, field] of refusals) {
    const response = await request(ctx, 'POST', '/v1/training-runs', { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { ...QUICK, ...params } });
    assert.equal(response.statusCode, 400, `${JSON.stringify(params)}: ${response.body}`);
    assert.match(response.headers['content-type'] as string, /application\/problem\+json/);
    const named = response.json().errors.map((error: { field?: string; pointer?: string }) => `${error.field} ${error.pointer?.replaceAll('/', '.')}`);
    assert.ok(named.some((name: string) => name.includes(field)), `${JSON.stringify(params)} names ${field}: ${response.body}`);
  }
  assert.equal((await request(ctx, 'GET', '/v1/training-runs')).json().data.length, 0, 'nothing stored');
});

test('min_resolution: each image trains at the largest resolution it fills, smaller ones are skipped and named, and epochs count without them', async (t) => {
  const ctx = await withTestApp(t, { env: { IMAGE_MIN_SIDE: '32' } });
  const datasetId = await createDataset(ctx);
  const files = [];
  for (let i = 0; i < 3; i++) files.push({ name: `large-${i}.png`, data: await png({ width: 256, height: 256, seed: 800 + i }) });
  files.push({ name: 'medium.png', data: await png({ width: 96, height: 96, seed: 810 }) }); // the 64 tier
  files.push({ name: 'small.png', data: await png({ width: 40, height: 40, seed: 811 }) }); // below 64 x 64 pixels
  assert.equal((await upload(ctx, datasetId, filesBody(files))).statusCode, 201);
  const created = await request(ctx, 'POST', '/v1/training-runs', {
    dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { ...QUICK, resolution: 128, min_resolution: 64, max_epochs: 1 },
  });
  assert.equal(created.statusCode, 202, created.body);
  // One epoch: the three 256 px images in the 128 x 128 bucket and the 96 px one in the 64 x 64 bucket, batch 1.
  assert.equal(created.json().params.max_steps, 4);
  const run = await finished(ctx, created.json().id);
  assert.equal(run.status, 'succeeded', JSON.stringify(run.error));
  assert.equal(run.metrics.skipped_images, 1);
  assert.equal(run.metrics.cache_latents_encoded, 4);
  const log = (await request(ctx, 'GET', `/v1/training-runs/${run.id}/events?type=log&limit=100`)).json().data
    .map((event: { data: { message: string } }) => event.data.message).join('\n');
  assert.match(log, /skipping: 1 images below min_resolution \(64 px\) are not trained on: small\.png/);

  // Above resolution, or above every image: refused naming the param, nothing stored.
  const small = await createDataset(ctx);
  assert.equal((await upload(ctx, small, filesBody([{ name: 'a.png', data: await png({ width: 40, height: 48, seed: 812 }) }]))).statusCode, 201);
  for (const [params, dataset, message] of [
    [{ resolution: 128, min_resolution: 192 }, datasetId, /above resolution \(128\)/],
    [{ resolution: 128, min_resolution: 64 }, small, /every one of the 1 images trained on is smaller .* the smallest side is 40/],
  ] as const) {
    const response = await request(ctx, 'POST', '/v1/training-runs', { dataset_id: dataset, model: 'sdxl-tiny-demo', params: { ...QUICK, ...params } });
    assert.equal(response.statusCode, 400, response.body);
    const error = response.json().errors.find((e: { field?: string }) => e.field === 'params.min_resolution');
    assert.ok(error, response.body);
    assert.match(error.message ?? error.detail, message);
  }
  assert.equal((await request(ctx, 'GET', '/v1/training-runs')).json().data.length, 1, 'only the first run is stored');
});
