// Prior preservation on the demo model: the base model makes the class images once, a
// later run reuses them (and makes only the ones it lacks), the loss split is reported in
// the run's progress and log, and the LoRA records the class images as kohya does.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { inspectSafetensors } from '../../../src/engine/index.js';
import { withTestApp, type TestApp } from '../../helper.js';
import { createDataset, upload } from '../../support/images-api.js';
import { png } from '../../support/images.js';
import { filesBody } from '../../support/multipart.js';

const QUICK = { resolution: 64, max_steps: 3, checkpoint_every: 0, save_peft: false };

async function train(ctx: TestApp, datasetId: string, params: Record<string, unknown>): Promise<any> {
  const created = await ctx.app.inject({ method: 'POST', url: '/v1/training-runs', headers: ctx.auth, payload: { dataset_id: datasetId, model: 'sdxl-tiny-demo', params } });
  assert.equal(created.statusCode, 202, created.body);
  for (let i = 0; i < 1200; i++) {
    const run = (await ctx.app.inject({ method: 'GET', url: `/v1/training-runs/${created.json().id}`, headers: ctx.auth })).json();
    if (['succeeded', 'failed', 'canceled'].includes(run.status)) return run;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail('the run did not finish');
}

async function classImageCount(ctx: TestApp, prompt: string): Promise<number> {
  const { rows } = await ctx.db.query<{ n: number }>('SELECT count(*)::integer AS n FROM class_images WHERE prompt = $1', [prompt]);
  return rows[0]!.n;
}

async function log(ctx: TestApp, runId: string): Promise<string> {
  return (await ctx.app.inject({ method: 'GET', url: `/v1/training-runs/${runId}/logs`, headers: ctx.auth })).body;
}

test('class images are made once and reused; the loss split is reported; the LoRA counts them', async (t) => {
  const ctx = await withTestApp(t);
  const datasetId = await createDataset(ctx);
  const uploaded = await upload(ctx, datasetId, filesBody([
    { name: 'a.png', data: await png({ width: 256, height: 256, seed: 5 }) },
    { name: 'b.png', data: await png({ width: 256, height: 320, seed: 6 }) },
  ]));
  assert.equal(uploaded.statusCode, 201, uploaded.body);

  const first = await train(ctx, datasetId, { ...QUICK, prior_preservation: { num_class_images: 2 } });
  assert.equal(first.status, 'succeeded', JSON.stringify(first.error));
  assert.deepEqual(first.params.prior_preservation, { class_prompt: 'a photo of dog', num_class_images: 2, loss_weight: 1 });
  assert.equal(await classImageCount(ctx, 'a photo of dog'), 2);
  assert.match(await log(ctx, first.id), /class images for prior preservation: 0 reused, 2 made \("a photo of dog", 64px\)/);
  assert.equal(typeof first.progress.loss_prior, 'number');
  assert.equal(typeof first.progress.loss_instance, 'number');
  assert.match(await log(ctx, first.id), /step \d+\/3 loss [\d.]+ lr [\d.e-]+ \(instance [\d.]+, prior [\d.]+\)/);
  const lora = await inspectSafetensors(path.join(ctx.config.dataDir, 'runs', first.id, 'lora.safetensors'));
  assert.equal(lora.metadata.ss_num_reg_images, '2');
  assert.equal(lora.metadata.ss_prior_loss_weight, '1.0');

  const second = await train(ctx, datasetId, { ...QUICK, seed: 9, prior_preservation: { num_class_images: 3, loss_weight: 0.5 } });
  assert.equal(second.status, 'succeeded', JSON.stringify(second.error));
  assert.match(await log(ctx, second.id), /class images for prior preservation: 2 reused, 1 made/);
  assert.equal(await classImageCount(ctx, 'a photo of dog'), 3);

  const without = await train(ctx, datasetId, QUICK);
  assert.equal(without.params.prior_preservation, null);
  assert.equal(without.progress.loss_prior, null);
  assert.doesNotMatch(await log(ctx, without.id), /class images/);

  const refused = await ctx.app.inject({
    method: 'POST', url: '/v1/training-runs', headers: ctx.auth,
    payload: { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { prior_preservation: { num_class_images: 0 } } },
  });
  assert.equal(refused.statusCode, 400);
  assert.ok(refused.json().errors.some((e: { field: string }) => e.field.startsWith('params.prior_preservation')), refused.body);
});
