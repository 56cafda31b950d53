// /v1/training-runs over HTTP, with the app's own training worker, on the demo model:
// create (202), follow to succeeded, list with filters, cancel; refusals name the field.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { DATABASE_MODES, withTestApp, type TestApp } from '../../helper.js';
import { createDataset, datasetToTrain } from '../../support/images-api.js';

const QUICK = { resolution: 64, max_steps: 3, checkpoint_every: 0, save_peft: false };

function create(ctx: TestApp, payload: unknown) {
  return ctx.app.inject({ method: 'POST', url: '/v1/training-runs', headers: ctx.auth, payload: payload as object });
}

async function until(ctx: TestApp, id: string, done: (run: any) => boolean): Promise<any> {
  for (let i = 0; i < 1200; i++) {
    const run = (await ctx.app.inject({ method: 'GET', url: `/v1/training-runs/${id}`, headers: ctx.auth })).json();
    if (done(run)) return run;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`training run ${id} did not get there`);
}

for (const mode of DATABASE_MODES) {
  describe(`training runs on ${mode.name}`, () => {
    test('a run is queued (202, Location), trains on the demo model and succeeds; lists filter it; a finished run cannot be canceled', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await datasetToTrain(ctx);
      const response = await create(ctx, { dataset_id: datasetId, model: 'sdxl-tiny-demo', name: 'rex v1', params: QUICK, metadata: { ticket: '42' } });
      assert.equal(response.statusCode, 202, response.body);
      const queued = response.json();
      assert.equal(response.headers.location, `/v1/training-runs/${queued.id}`);
      assert.match(queued.id, /^tr_/);
      assert.equal(queued.image_count, 2);
      assert.equal(queued.params.rank, 16, 'defaults resolved and shown');
      assert.equal(queued.params.mixed_precision, 'no', 'the CPU server precision');
      assert.deepEqual(queued.metadata, { ticket: '42' });

      const run = await until(ctx, queued.id, (r) => ['succeeded', 'failed', 'canceled'].includes(r.status));
      assert.equal(run.status, 'succeeded', JSON.stringify(run.error));
      assert.equal(run.metrics.steps, 3);
      assert.equal(run.attempt, 1);
      assert.ok(run.completed_at);
      assert.ok(fs.existsSync(path.join(ctx.config.dataDir, 'runs', queued.id, 'lora.safetensors')));

      const list = await ctx.app.inject({ method: 'GET', url: `/v1/training-runs?dataset_id=${datasetId}&status=succeeded`, headers: ctx.auth });
      assert.deepEqual(list.json().data.map((r: { id: string }) => r.id), [queued.id]);
      const none = await ctx.app.inject({ method: 'GET', url: `/v1/training-runs?dataset_id=${datasetId}&status=queued`, headers: ctx.auth });
      assert.deepEqual(none.json().data, []);
      const cancel = await ctx.app.inject({ method: 'POST', url: `/v1/training-runs/${queued.id}/cancel`, headers: ctx.auth });
      assert.equal(cancel.statusCode, 409);
      assert.match(cancel.json().type, /training-run-finished$/);
    });

    test('refusals are problems naming the field, and store nothing', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded, env: { TRAINING_SLOTS: '0' } });
      const datasetId = await datasetToTrain(ctx);
      const empty = await createDataset(ctx);
      const otherKey = await ctx.createTenantKey();
      const otherDataset = (await ctx.app.inject({
        method: 'POST', url: '/v1/datasets', headers: { authorization: `Bearer ${otherKey}` }, payload: { name: 'x', class_word: 'cat' },
      })).json().id;
      const cases: Array<[unknown, number, string]> = [
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { lr: 1e-4 } }, 400, 'params.lr'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { rank: 0 } }, 400, 'params.rank'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { resolution: 1000 } }, 400, 'params.resolution'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { learning_rate: 0 } }, 400, 'params.learning_rate'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { max_steps: 1_000_000 } }, 400, 'params.max_steps'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { validation: { prompts: Array(9).fill('x') } } }, 400, 'params.validation.prompts'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { resolution: 256 } }, 422, 'params.resolution'], // above the demo model's 128
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { save_dtype: 'int8' } }, 400, 'params.save_dtype'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { optimizer: 'sgd' } }, 400, 'params.optimizer'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { mixed_precision: 'fp8' } }, 400, 'params.mixed_precision'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { batch_size: 0 } }, 400, 'params.batch_size'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { gradient_accumulation: 65 } }, 400, 'params.gradient_accumulation'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { lr_scheduler: 'step' } }, 400, 'params.lr_scheduler'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { caption_dropout: 0.9 } }, 400, 'params.caption_dropout'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { repeats: 0 } }, 400, 'params.repeats'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { seed: -1 } }, 400, 'params.seed'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { alpha: 0 } }, 400, 'params.alpha'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { text_encoder_lr: 0 } }, 400, 'params.text_encoder_lr'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { noise_offset: 2 } }, 400, 'params.noise_offset'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { checkpoint_every: -1 } }, 400, 'params.checkpoint_every'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { validation: { steps: 0 } } }, 400, 'params.validation.steps'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { validation: { guidance_scale: 50 } } }, 400, 'params.validation.guidance_scale'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { validation: { colour: 'red' } } }, 400, 'params.validation.colour'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', params: 'fast' }, 400, 'params'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', name: '' }, 400, 'name'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', metadata: { ticket: 'x'.repeat(1001) } }, 400, 'metadata.ticket'],
        [{ dataset_id: datasetId, model: 'sdxl-tiny-demo', extra: 1 }, 400, 'extra'],
        [{ dataset_id: datasetId }, 400, 'model'],
        [{ dataset_id: 'nope', model: 'sdxl-tiny-demo' }, 400, 'dataset_id'],
        [{ dataset_id: datasetId, model: 'no-such-model' }, 422, 'model'],
        [{ dataset_id: empty, model: 'sdxl-tiny-demo' }, 409, ''],
        [{ dataset_id: otherDataset, model: 'sdxl-tiny-demo' }, 404, ''],
      ];
      for (const [payload, status, field] of cases) {
        const response = await create(ctx, payload);
        assert.equal(response.statusCode, status, `${JSON.stringify(payload)}: ${response.body}`);
        assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
        if (field !== '') assert.ok(response.json().errors.some((e: { field: string }) => e.field === field), `${field}: ${response.body}`);
      }
      const list = await ctx.app.inject({ method: 'GET', url: '/v1/training-runs', headers: ctx.auth });
      assert.deepEqual(list.json().data, [], 'nothing was stored');
      for (const url of ['/v1/training-runs/tr_01JD3Q5V8Z6ZK2W7M4N1T0X9PA', '/v1/training-runs/nope']) {
        assert.equal((await ctx.app.inject({ method: 'GET', url, headers: ctx.auth })).statusCode, 404, url);
      }
      const badCursor = await ctx.app.inject({ method: 'GET', url: '/v1/training-runs?cursor=zzz', headers: ctx.auth });
      assert.equal(badCursor.statusCode, 400);
    });

    test('a queued run is canceled at once', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded, env: { TRAINING_SLOTS: '0' } });
      const datasetId = await datasetToTrain(ctx);
      const queued = (await create(ctx, { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: QUICK })).json();
      const cancel = await ctx.app.inject({ method: 'POST', url: `/v1/training-runs/${queued.id}/cancel`, headers: ctx.auth });
      assert.equal(cancel.statusCode, 202);
      assert.equal(cancel.json().status, 'canceled');
      assert.equal(cancel.json().cancel_requested, true);
    });
  });
}
