// One run on several devices, over real HTTP on a worker with TRAIN_DEVICES=cpu*2: a 2-device
// run trains data parallel on the tiny demo model (world_size 2) while a 1-device run created
// after it waits queued, saying why, and trains once the devices are free; /metrics shows the
// pool. Then the refusals of params.devices and params.zero_stage, each problem+json naming the
// field with nothing stored, and a run asking more devices than the largest live worker has.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { trainingDevices } from '../../../src/plugins/device.js';
import { ConfigError } from '../../../src/config.js';
import { withTestApp, type TestApp } from '../../helper.js';
import { httpApi, type HttpApi } from '../../support/http-api.js';
import { datasetToTrain } from '../../support/images-api.js';
import { sample } from '../../support/metrics.js';

const FINISHED = ['succeeded', 'failed', 'canceled'];
/** A tiny run: 64 px, a batch of 2 (one image per device on two), a few steps. */
const TINY = { resolution: 64, max_steps: 4, batch_size: 2, checkpoint_every: 0, save_peft: false };

async function finished(api: HttpApi, runId: string): Promise<any> {
  for (;;) {
    const run = await (await api('GET', `/v1/training-runs/${runId}`)).json();
    if (FINISHED.includes(run.status)) return run;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('TRAIN_DEVICES=cpu*2: a 2-device run trains while a later 1-device run waits queued with its reason, then trains', async (t) => {
  const ctx = await withTestApp(t, { env: { TRAIN_DEVICES: 'cpu*2', GENERATION_SLOTS: '0' } });
  const base = await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const api = httpApi(base, ctx.auth);
  const datasetId = await datasetToTrain(ctx);

  const wideResponse = await api('POST', '/v1/training-runs', { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { ...TINY, devices: 2 } });
  assert.equal(wideResponse.status, 202, await wideResponse.clone().text());
  const wide = await wideResponse.json();
  assert.equal(wide.params.devices, 2);
  assert.equal(wide.params.zero_stage, 0, 'a LoRA run on several devices keeps its whole (small) optimizer state on each');
  const narrowResponse = await api('POST', '/v1/training-runs', { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { ...TINY, max_steps: 2 } });
  assert.equal(narrowResponse.status, 202, await narrowResponse.clone().text());
  const narrow = await narrowResponse.json();
  assert.equal(narrow.params.devices, 1);

  // While the 2-device run holds both devices, the 1-device run stays queued and says why.
  let reason: string | undefined;
  for (;;) {
    const [first, second] = await Promise.all([wide, narrow].map(async (run) => (await api('GET', `/v1/training-runs/${run.id}`)).json()));
    assert.ok(!FINISHED.includes(first.status), `the 2-device run finished before the queued run said it waits for free devices (${second.queue_reason})`);
    if (first.status === 'queued') continue;
    assert.equal(second.status, 'queued', 'no device is free for the 1-device run');
    if (/waiting for 1 free device\b/.test(second.queue_reason)) {
      reason = second.queue_reason;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.match(reason!, /^waiting for 1 free device \(the workers' devices are training other runs\)$/);
  const busy = (await (await fetch(`${base}/metrics`)).text());
  assert.equal(sample(busy, 'sdxl_training_devices'), 2);
  assert.equal(sample(busy, 'sdxl_training_devices_busy'), 2);

  const wideDone = await finished(api, wide.id);
  assert.equal(wideDone.status, 'succeeded', JSON.stringify(wideDone.error));
  assert.equal(wideDone.metrics.world_size, 2, JSON.stringify(wideDone.metrics));
  assert.equal(wideDone.metrics.devices, 2);
  assert.equal(wideDone.progress.devices, 2);
  assert.equal(wideDone.progress.device, 'cpu');
  assert.equal(wideDone.queue_reason, null);
  const narrowDone = await finished(api, narrow.id);
  assert.equal(narrowDone.status, 'succeeded', JSON.stringify(narrowDone.error));
  assert.equal(narrowDone.metrics.devices, 1);
  assert.equal(narrowDone.metrics.world_size, undefined, 'one device: no data parallel figures');
  assert.ok(new Date(narrowDone.started_at) >= new Date(wideDone.completed_at), 'the 1-device run started once the devices were free');

  const logs = await (await api('GET', `/v1/training-runs/${wide.id}/logs`)).text();
  assert.match(logs, /on 2 devices \(cpu, cpu\)/);
  const idle = await (await fetch(`${base}/metrics`)).text();
  assert.equal(sample(idle, 'sdxl_training_devices_busy'), 0, 'every device given back');
});

async function stored(ctx: TestApp): Promise<number> {
  return (await ctx.db.query<{ n: number }>('SELECT count(*)::integer AS n FROM training_runs')).rows[0]!.n;
}

test('params.devices and params.zero_stage refusals name the field and store nothing; with no live worker a run waits', async (t) => {
  // A live worker with one device; every refused run is refused before it is stored.
  const ctx = await withTestApp(t, { env: { TRAIN_DEVICES: 'cpu', GENERATION_SLOTS: '0' } });
  await ctx.db.query('DELETE FROM training_runs');
  const datasetId = await datasetToTrain(ctx);
  const create = (params: Record<string, unknown>) =>
    ctx.app.inject({ method: 'POST', url: '/v1/training-runs', headers: ctx.auth, payload: { dataset_id: datasetId, model: 'sdxl-tiny-demo', params } });
  const cases: Array<[string, Record<string, unknown>, number, string, string, RegExp]> = [
    ['no device', { devices: 0 }, 400, 'validation-error', 'params.devices', />= 1|minimum|at least/i],
    ['more than a run may take', { devices: 65 }, 400, 'validation-error', 'params.devices', /64/],
    ['a batch that does not split', { devices: 2, batch_size: 3 }, 400, 'validation-error', 'params.devices', /must divide batch_size \(3\).*multiple of 2/],
    ['ZeRO on one device', { zero_stage: 1 }, 400, 'validation-error', 'params.zero_stage', /must be 0 on one device/],
    ['more devices than any live worker', { devices: 2, batch_size: 2 }, 422, 'devices-unavailable', 'params.devices', /largest running training worker has 1/],
  ];
  for (const [name, params, status, type, field, message] of cases) {
    const response = await create(params);
    assert.equal(response.statusCode, status, `${name}: ${response.body}`);
    assert.match(String(response.headers['content-type']), /^application\/problem\+json/, name);
    const problem = response.json();
    assert.match(problem.type, new RegExp(`${type}$`), `${name}: ${problem.type}`);
    assert.deepEqual(problem.errors.map((e: { field: string }) => e.field), [field], name);
    assert.match(JSON.stringify(problem), message, name);
    assert.equal(await stored(ctx), 0, `${name}: nothing stored`);
  }

  // The worker stops (its row goes): with no live worker, the run is accepted and waits.
  await ctx.app.training.worker!.stop();
  const waiting = await create({ devices: 2, batch_size: 2, method: 'full', prior_preservation: null });
  assert.equal(waiting.statusCode, 202, waiting.body);
  assert.equal(waiting.json().status, 'queued');
  assert.equal(waiting.json().params.zero_stage, 2, 'a full run on several devices shards its optimizer state and gradients');
  assert.equal(waiting.json().queue_reason, 'waiting for a training worker: none is running');
});

test('TRAIN_DEVICES=all asks the engine at start, and refuses to start without CUDA devices', () => {
  const cudaCount = (() => {
    try {
      return trainingDevices({ devices: { pool: 'all' }, slots: undefined }).devices.length;
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error));
      assert.match(error.message, /TRAIN_DEVICES is all but the engine/);
      return 0;
    }
  })();
  if (cudaCount > 0) assert.deepEqual(trainingDevices({ devices: { pool: 'all' }, slots: undefined }).devices, Array.from({ length: cudaCount }, (_, i) => `cuda:${i}`));
  assert.equal(trainingDevices({ devices: { pool: 'all' }, slots: 0 }).slots, 0, 'a process that trains nothing does not ask');
});
