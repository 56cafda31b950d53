// Training runs and generations on the SD 1.5 demo model beside the SDXL one: params resolve
// by family (clip_skip, text_encoder_2_lr, the precision a run names none of), an SD 1.5 run
// trains and registers a kohya SD1 LoRA, and a generation with it and a clip skip writes
// AUTOMATIC1111's Clip skip into its PNG.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProblemError } from '../../../src/errors.js';
import { CUDA_PRECISION } from '../../../src/schemas/training-params.js';
import { PARAMETERS_KEYWORD, readPngText } from '../../../src/services/png-parameters.js';
import { TrainingRunsService } from '../../../src/services/training-runs.js';
import { FsRunFileStore } from '../../../src/storage/fs-run-file-store.js';
import { AddressPolicy } from '../../../src/webhooks/address-policy.js';
import { withTestApp, type TestApp } from '../../helper.js';
import { generate, pixels } from '../../support/generations-api.js';
import { datasetToTrain } from '../../support/images-api.js';

const SDXL = 'sdxl-tiny-demo';
const SD15 = 'sd15-tiny-demo';
const FINISHED = ['succeeded', 'failed', 'canceled'];

function createRun(ctx: TestApp, payload: unknown) {
  return ctx.app.inject({ method: 'POST', url: '/v1/training-runs', headers: ctx.auth, payload: payload as object });
}

test('params resolve by family: clip_skip 1 and no second text-encoder rate on SD 1.x, the reverse on SDXL; the precision follows the family', async (t) => {
  const ctx = await withTestApp(t, { env: { TRAINING_SLOTS: '0' } });
  const datasetId = await datasetToTrain(ctx);

  const sd15 = await createRun(ctx, { dataset_id: datasetId, model: SD15, params: { text_encoder_lr: 2e-5 } });
  assert.equal(sd15.statusCode, 202, sd15.body);
  assert.deepEqual(
    [sd15.json().params.clip_skip, sd15.json().params.text_encoder_2_lr, sd15.json().params.mixed_precision, sd15.json().params.resolution],
    [1, null, 'no', 128],
    "clip_skip 1, no second text encoder, the CPU server's float32, the model's resolution",
  );
  const skip2 = await createRun(ctx, { dataset_id: datasetId, model: SD15, params: { clip_skip: 2 } });
  assert.equal(skip2.json().params.clip_skip, 2);
  const sdxl = await createRun(ctx, { dataset_id: datasetId, model: SDXL, params: { text_encoder_lr: 2e-5 } });
  assert.equal(sdxl.statusCode, 202, sdxl.body);
  assert.deepEqual([sdxl.json().params.clip_skip, sdxl.json().params.text_encoder_2_lr], [null, 2e-5], 'the second encoder at text_encoder_lr');
  const own = await createRun(ctx, { dataset_id: datasetId, model: SDXL, params: { text_encoder_2_lr: 1e-5 } });
  assert.equal(own.json().params.text_encoder_2_lr, 1e-5);
  const read = await ctx.app.inject({ method: 'GET', url: `/v1/training-runs/${sd15.json().id}`, headers: ctx.auth });
  assert.deepEqual(read.json().params, sd15.json().params, 'stored as resolved');

  // A CUDA server: SD 1.x trains in fp16 (diffusers' LoRA guide), SDXL in bf16; a run that names one keeps it.
  const cuda = new TrainingRunsService(ctx.db, ctx.app.services.models, {
    serverPrecision: CUDA_PRECISION,
    tenantMaxQueuedRuns: 100,
    tenantMaxModelBytes: 1024 ** 4,
    files: new FsRunFileStore(ctx.config.dataDir),
    webhookPolicy: new AddressPolicy({ allowHttp: false, allowedHosts: [] }),
    qualityMetrics: ctx.app.services.qualityMetrics,
  });
  const precision = async (model: string, params = {}) =>
    ((await cuda.create(ctx.tenantId, { dataset_id: datasetId, model, params })).params as { mixed_precision: string }).mixed_precision;
  assert.equal(await precision(SD15), 'fp16');
  assert.equal(await precision(SDXL), 'bf16');
  assert.equal(await precision(SD15, { mixed_precision: 'bf16' }), 'bf16');
  await assert.rejects(cuda.create(ctx.tenantId, { dataset_id: datasetId, model: SD15, params: { text_encoder_2_lr: 1e-5 } }),
    (error: unknown) => error instanceof ProblemError && error.status === 422 && error.errors?.[0]?.field === 'params.text_encoder_2_lr');

  // The file's database outlives this app: queued runs would keep the next test's worker busy.
  const queued = (await ctx.app.inject({ method: 'GET', url: '/v1/training-runs?status=queued&limit=100', headers: ctx.auth })).json().data;
  for (const run of queued) await ctx.app.inject({ method: 'POST', url: `/v1/training-runs/${run.id}/cancel`, headers: ctx.auth });
});

test('an SD 1.5 run trains and registers its kohya SD1 LoRA; a generation with it and clip_skip 2 writes Clip skip into the PNG', async (t) => {
  const ctx = await withTestApp(t);
  const datasetId = await datasetToTrain(ctx);
  const created = await createRun(ctx, {
    dataset_id: datasetId, model: SD15, name: 'rex-sd15',
    params: { resolution: 64, max_steps: 2, checkpoint_every: 0, clip_skip: 2, train_text_encoder: true, save_peft: false },
  });
  assert.equal(created.statusCode, 202, created.body);
  const runId = created.json().id;
  let run;
  for (let i = 0; i < 1200; i++) {
    run = (await ctx.app.inject({ method: 'GET', url: `/v1/training-runs/${runId}`, headers: ctx.auth })).json();
    if (FINISHED.includes(run.status)) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(run.status, 'succeeded', JSON.stringify(run.error));

  const [lora] = (await ctx.app.inject({ method: 'GET', url: '/v1/loras?source=training_run', headers: ctx.auth })).json().data;
  assert.deepEqual(
    { model: lora.model, layout: lora.layout, components: lora.components, run: lora.training_run_id },
    { model: SD15, layout: 'kohya-diffusers', components: ['unet', 'text_encoder'], run: runId },
    "kohya's SD1 names: diffusers blocks and lora_te_",
  );

  const generation = await generate(ctx, {
    model: SD15, prompt: 'a photo of ohwx dog', negative_prompt: 'blurry', width: 64, height: 64, steps: 2, seed: 5, clip_skip: 2,
    loras: [{ training_run_id: runId, scale: 0.8 }],
  });
  assert.equal(generation.params.clip_skip, 2);
  assert.equal(generation.params.size_conditioning, undefined);
  const image = await ctx.app.inject({ method: 'GET', url: generation.output[0].content_url, headers: ctx.auth });
  assert.equal(
    readPngText(image.rawPayload).get(PARAMETERS_KEYWORD),
    'a photo of ohwx dog <lora:rex-sd15:0.8>\nNegative prompt: blurry\n' +
      `Steps: 2, Sampler: Euler, CFG scale: 5, Seed: 5, Size: 64x64, Model: ${SD15}, Clip skip: 2, Lora hashes: "rex-sd15: ${lora.autov3.slice(0, 12)}"`,
  );

  // The clip skip reaches the text encoder: 2 conditions on another layer than the default, 1 on the same.
  const request = { model: SD15, prompt: 'a photo of ohwx dog', width: 64, height: 64, steps: 2, seed: 5 };
  const plain = await generate(ctx, request);
  const plainImage = await ctx.app.inject({ method: 'GET', url: plain.output[0].content_url, headers: ctx.auth });
  assert.doesNotMatch(readPngText(plainImage.rawPayload).get(PARAMETERS_KEYWORD)!, /Clip skip/, 'not asked for: not written');
  assert.notDeepEqual(await pixels(ctx, (await generate(ctx, { ...request, clip_skip: 2 })).id), await pixels(ctx, plain.id));
  assert.deepEqual(await pixels(ctx, (await generate(ctx, { ...request, clip_skip: 1 })).id), await pixels(ctx, plain.id));
});

test('an SDXL generation takes size_conditioning, resolves the fields left out and changes the image', async (t) => {
  const ctx = await withTestApp(t);
  const base = { model: SDXL, prompt: 'a photo of a dog', width: 64, height: 64, steps: 2, seed: 9 };
  const plain = await generate(ctx, base);
  const conditioned = await generate(ctx, { ...base, size_conditioning: { original_width: 256, original_height: 256, crop_top: 8 } });
  assert.deepEqual(conditioned.params.size_conditioning, {
    original_width: 256, original_height: 256, crop_top: 8, crop_left: 0, target_width: 64, target_height: 64,
  });
  const explicit = await generate(ctx, { ...base, size_conditioning: { original_width: 64, original_height: 64, crop_top: 0, crop_left: 0, target_width: 64, target_height: 64 } });
  assert.notDeepEqual(await pixels(ctx, conditioned.id), await pixels(ctx, plain.id), 'the conditioning reaches the UNet');
  assert.deepEqual(await pixels(ctx, explicit.id), await pixels(ctx, plain.id), "diffusers' defaults spelt out are the defaults");
});
