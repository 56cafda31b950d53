// Refusals around full fine-tuning and tenants' models, on a real model: one tiny full run
// trains first (SD 1.5 demo, 2 steps at 64 px), then the worker stops, so runs and
// generations queued on the model stay queued. Each refusal is problem+json naming the
// field, and stores nothing: no run, generation, LoRA or model row, no artifact, and every
// file of the model still there.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { AddressPolicy } from '../../../src/webhooks/address-policy.js';
import { createTenantModelsRepository } from '../../../src/repositories/tenant-models.js';
import { ProblemError } from '../../../src/errors.js';
import { CPU_PRECISION } from '../../../src/schemas/training-params.js';
import { expectedModelBytes, TrainingRunsService } from '../../../src/services/training-runs.js';
import { FsRunFileStore } from '../../../src/storage/fs-run-file-store.js';
import { withTestApp, type TestApp } from '../../helper.js';
import { kohyaLora } from '../../engine/fixtures.js';
import { datasetToTrain } from '../../support/images-api.js';

const SD15 = 'sd15-tiny-demo';
const SDXL = 'sdxl-tiny-demo';
const TABLES = ['training_runs', 'training_run_images', 'generations', 'loras', 'tenant_models', 'training_run_artifacts'];

async function stored(ctx: TestApp): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of TABLES) counts[table] = (await ctx.db.query<{ n: number }>(`SELECT count(*)::integer AS n FROM ${table}`)).rows[0]!.n;
  return counts;
}

type Injected = { statusCode: number; headers: Record<string, unknown>; body: string; json(): any };

function assertRefused(name: string, response: Injected, status: number, type: string, field?: string, message?: RegExp): void {
  assert.equal(response.statusCode, status, `${name}: ${response.body}`);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/, name);
  const problem = response.json();
  assert.match(problem.type, new RegExp(`:${type}$`), `${name}: ${problem.type}`);
  if (field !== undefined) {
    const fields = (problem.errors ?? []).map((e: { field: string }) => e.field);
    assert.ok(fields.includes(field), `${name}: expected ${field} in ${JSON.stringify(fields)}`);
  }
  if (message !== undefined) assert.match(JSON.stringify(problem), message, name);
}

async function waitFor(ctx: TestApp, runId: string): Promise<any> {
  for (;;) {
    const run = (await ctx.app.inject({ method: 'GET', url: `/v1/training-runs/${runId}`, headers: ctx.auth })).json();
    if (['succeeded', 'failed', 'canceled'].includes(run.status)) return run;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function uploadLora(ctx: TestApp, key: string, model: string) {
  const form = new FormData();
  form.append('model', model);
  form.append('file', new Blob([new Uint8Array(fs.readFileSync(kohyaLora))]), 'lora.safetensors');
  const request = new Request('http://x', { method: 'POST', body: form });
  return request.arrayBuffer().then((payload) => ctx.app.inject({
    method: 'POST', url: '/v1/loras', headers: { authorization: `Bearer ${key}`, 'content-type': request.headers.get('content-type')! }, payload: Buffer.from(payload),
  }));
}

test('full fine-tuning and tenant models: refusals name the field and store nothing', { timeout: 300_000 }, async (t) => {
  const ctx = await withTestApp(t, { env: { GENERATION_SLOTS: '0' } });
  const datasetId = await datasetToTrain(ctx);
  const created = await ctx.app.inject({
    method: 'POST', url: '/v1/training-runs', headers: ctx.auth,
    payload: { dataset_id: datasetId, model: SD15, params: { method: 'full', resolution: 64, max_steps: 2, prior_preservation: null, checkpoint_every: 0 } },
  });
  assert.equal(created.statusCode, 202, created.body);
  const fullRun = await waitFor(ctx, created.json().id);
  assert.equal(fullRun.status, 'succeeded', JSON.stringify(fullRun.error));
  const modelId = fullRun.output.model_id as string;
  // From here on nothing runs: what is queued stays queued.
  await ctx.app.training.worker?.stop();

  // A queued LoRA run and a queued generation on the model: it is in use.
  const onTop = await ctx.app.inject({ method: 'POST', url: '/v1/training-runs', headers: ctx.auth, payload: { dataset_id: datasetId, model: modelId, params: { max_steps: 2 } } });
  assert.equal(onTop.statusCode, 202, onTop.body);
  const queuedGeneration = await ctx.app.inject({ method: 'POST', url: '/v1/generations', headers: ctx.auth, payload: { model: modelId, prompt: 'a dog', steps: 2 } });
  assert.equal(queuedGeneration.statusCode, 202, queuedGeneration.body);
  const stranger = await ctx.createTenantKey();
  const strangerAuth = { authorization: `Bearer ${stranger}` };
  const strangerDataset = await ctx.app.inject({ method: 'POST', url: '/v1/datasets', headers: strangerAuth, payload: { name: 'x', class_word: 'cat' } });
  const modelFiles = path.join(ctx.config.dataDir, 'runs', fullRun.id);
  const filesBefore = fs.readdirSync(modelFiles).sort();
  const before = await stored(ctx);

  const run = (params: Record<string, unknown>, model = SD15) => ({ dataset_id: datasetId, model, params });
  const post = (url: string, payload: unknown, auth = ctx.auth) => ctx.app.inject({ method: 'POST', url, headers: auth, payload: payload as object });
  const cases: Array<[string, () => Promise<Injected>, number, string, string?, RegExp?]> = [
    ['rank on a full run', () => post('/v1/training-runs', run({ method: 'full', rank: 8 })), 422, 'unsupported-by-method', 'params.rank', /no LoRA network/],
    ['alpha and save_peft on a full run', () => post('/v1/training-runs', run({ method: 'full', alpha: 8, save_peft: true })), 422, 'unsupported-by-method', 'params.save_peft'],
    ['ema_decay on a LoRA run (the default method)', () => post('/v1/training-runs', run({ ema_decay: 0.999 })), 422, 'unsupported-by-method', 'params.ema_decay', /method full only/],
    ['full_bf16 on a LoRA run', () => post('/v1/training-runs', run({ method: 'lora', full_bf16: true })), 422, 'unsupported-by-method', 'params.full_bf16'],
    ['validation_weights on a LoRA run', () => post('/v1/training-runs', run({ validation_weights: 'ema' })), 422, 'unsupported-by-method', 'params.validation_weights'],
    ['an unknown method', () => post('/v1/training-runs', run({ method: 'dreambooth' })), 400, 'validation-error', 'params.method'],
    ['an ema_decay of 1', () => post('/v1/training-runs', run({ method: 'full', ema_decay: 1 })), 400, 'validation-error', 'params.ema_decay'],
    ['validating with an EMA that is off', () => post('/v1/training-runs', run({ method: 'full', validation_weights: 'ema' })), 400, 'validation-error', 'params.validation_weights', /no EMA/],
    ['full_bf16 on a CPU server (float32)', () => post('/v1/training-runs', run({ method: 'full', full_bf16: true })), 400, 'validation-error', 'params.full_bf16', /mixed_precision bf16/],
    ['a negative keep_checkpoints', () => post('/v1/training-runs', run({ method: 'full', keep_checkpoints: -1 })), 400, 'validation-error', 'params.keep_checkpoints'],
    ["another tenant's model as a run's base", () => post('/v1/training-runs', { dataset_id: strangerDataset.json().id, model: modelId, params: { method: 'full' } }, strangerAuth), 422, 'model-not-found', 'model'],
    ["another tenant's model in a generation", () => post('/v1/generations', { model: modelId, prompt: 'a dog' }, strangerAuth), 422, 'model-not-found', 'model'],
    ["a LoRA uploaded for another tenant's model", () => uploadLora(ctx, stranger, modelId), 422, 'model-not-found', 'model'],
    ["another tenant's model read", () => ctx.app.inject({ method: 'GET', url: `/v1/models/${modelId}`, headers: strangerAuth }), 404, 'not-found'],
    ["another tenant's model deleted", () => ctx.app.inject({ method: 'DELETE', url: `/v1/models/${modelId}`, headers: strangerAuth }), 404, 'not-found'],
    ['a built-in model deleted', () => ctx.app.inject({ method: 'DELETE', url: `/v1/models/${SDXL}`, headers: ctx.auth }), 403, 'model-read-only', undefined, /built-in demo model/],
    ['an unknown model deleted', () => ctx.app.inject({ method: 'DELETE', url: '/v1/models/mdl_01JD3Q5V8Z6ZK2W7M4N1T0X9PA', headers: ctx.auth }), 404, 'not-found'],
    ['a model a queued run and generation use, deleted', () => ctx.app.inject({ method: 'DELETE', url: `/v1/models/${modelId}`, headers: ctx.auth }), 409, 'model-in-use',
      undefined, new RegExp(`generation ${queuedGeneration.json().id}, training run ${onTop.json().id}`)],
    ['the run that holds a model, deleted', () => ctx.app.inject({ method: 'DELETE', url: `/v1/training-runs/${fullRun.id}`, headers: ctx.auth }), 409, 'training-run-has-model', undefined, new RegExp(modelId)],
  ];
  for (const [name, send, status, type, field, message] of cases) assertRefused(name, await send(), status, type, field, message);
  const listed = (await ctx.app.inject({ method: 'GET', url: '/v1/models', headers: strangerAuth })).json().data.map((m: { id: string }) => m.id);
  assert.deepEqual(listed, [SDXL, SD15], "another tenant lists the server's models only");

  // Model storage (TENANT_MAX_MODEL_BYTES): the model's bytes, its run's checkpoints and what queued full runs will write count.
  const stats = (await ctx.app.inject({ method: 'GET', url: `/v1/models/${modelId}`, headers: ctx.auth })).json();
  const sd15 = (await ctx.app.inject({ method: 'GET', url: `/v1/models/${SD15}`, headers: ctx.auth })).json();
  const expected = expectedModelBytes(sd15, { save_dtype: 'float16', train_text_encoder: false, ema_decay: 0 } as never);
  const usage = await createTenantModelsRepository(ctx.db).usage(ctx.tenantId);
  assert.equal(usage.stored, stats.byte_size, "the model's byte_size is what it keeps");
  assert.equal(usage.expected, 0, 'no full run queued');
  const held = usage.stored + usage.checkpoints;
  assert.ok(stats.byte_size > 0 && expected > 0);
  const capped = (cap: number) => new TrainingRunsService(ctx.db, ctx.app.services.models, {
    serverPrecision: CPU_PRECISION, tenantMaxQueuedRuns: 100, tenantMaxModelBytes: cap,
    files: new FsRunFileStore(path.join(ctx.config.dataDir, 'runs')), webhookPolicy: new AddressPolicy({ allowHttp: false, allowedHosts: [] }),
    qualityMetrics: ctx.app.services.qualityMetrics,
  });
  const refusedForStorage = (error: unknown) =>
    error instanceof ProblemError && error.status === 429 && error.type.endsWith(':model-storage-full') && error.errors?.[0]?.field === 'params.method' &&
    /DELETE \/v1\/models/.test(error.detail ?? '');
  // Over the cap with the model kept: refused; a LoRA run writes no model and is not.
  await assert.rejects(capped(held + expected - 1).create(ctx.tenantId, run({ method: 'full' })), refusedForStorage);
  const beforeQuota = await stored(ctx);
  assert.deepEqual(beforeQuota, before, 'nothing stored by the refusals');
  const fits = capped(held + expected);
  const first = await fits.create(ctx.tenantId, run({ method: 'full' }));
  assert.equal(Number(first.expected_model_bytes), expected);
  // The first, queued, is counted: a second does not fit.
  await assert.rejects(fits.create(ctx.tenantId, run({ method: 'full' })), refusedForStorage);
  await fits.create(ctx.tenantId, run({ rank: 4 }));
  assert.deepEqual(fs.readdirSync(modelFiles).sort(), filesBefore, "the model's files are all there");
  assert.ok(fs.existsSync(path.join(modelFiles, 'model', 'unet')));
});

test('TENANT_MAX_MODEL_BYTES: a full run past it is a 429 naming params.method; a LoRA run is not counted', async (t) => {
  const ctx = await withTestApp(t, { env: { TENANT_MAX_MODEL_BYTES: '1000', TRAINING_SLOTS: '0', GENERATION_SLOTS: '0' } });
  const datasetId = await datasetToTrain(ctx);
  const before = await stored(ctx);
  const refused = await ctx.app.inject({ method: 'POST', url: '/v1/training-runs', headers: ctx.auth, payload: { dataset_id: datasetId, model: SD15, params: { method: 'full' } } });
  assertRefused('a full run of the SD 1.5 demo past 1000 bytes', refused, 429, 'model-storage-full', 'params.method', /TENANT_MAX_MODEL_BYTES/);
  assert.deepEqual(await stored(ctx), before, 'nothing stored');
  const lora = await ctx.app.inject({ method: 'POST', url: '/v1/training-runs', headers: ctx.auth, payload: { dataset_id: datasetId, model: SD15 } });
  assert.equal(lora.statusCode, 202, lora.body);
});
