// Requests that do not fit the family of the model they name (SD 1.x, SD 2.x, SDXL), and
// models the engine refuses: each refusal is problem+json naming the field, and nothing is
// stored (no run, no generation, no LoRA).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { withTestApp, type TestApp } from '../../helper.js';
import { kohyaLora } from '../../engine/fixtures.js';
import { createDataset, upload } from '../../support/images-api.js';
import { png } from '../../support/images.js';
import { filesBody } from '../../support/multipart.js';
import { sd15KohyaLora, tinySd15Dir, tinySd15SingleFile, tinySd2vDir } from '../../support/sd1-fixtures.js';

const SDXL = 'sdxl-tiny-demo';
const SD15 = 'sd15-tiny-demo';

// MODELS_DIR: an SD 2.x model, SD 1.5 as one file with SD 1.5's own configs (512 px, 12 layers),
// and three the engine refuses.
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-families-'));
const modelsDir = path.join(scratch, 'models');
fs.cpSync(tinySd2vDir, path.join(modelsDir, 'tiny-sd2v'), { recursive: true });
fs.mkdirSync(modelsDir, { recursive: true });
fs.copyFileSync(tinySd15SingleFile, path.join(modelsDir, 'sd15-alone.safetensors'));
fs.cpSync(path.join(tinySd15Dir, 'tokenizer'), path.join(modelsDir, 'tokenizer'), { recursive: true }); // beside it, as a single file needs
fs.copyFileSync(kohyaLora, path.join(modelsDir, 'not-a-model.safetensors'));
fs.cpSync(tinySd15Dir, path.join(modelsDir, 'no-vae'), { recursive: true, filter: (source) => !source.startsWith(path.join(tinySd15Dir, 'vae')) });
fs.cpSync(tinySd15Dir, path.join(modelsDir, 'sample-prediction'), { recursive: true });
const schedulerConfig = path.join(modelsDir, 'sample-prediction', 'scheduler', 'scheduler_config.json');
fs.writeFileSync(schedulerConfig, JSON.stringify({ ...JSON.parse(fs.readFileSync(schedulerConfig, 'utf8')), prediction_type: 'sample' }));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));
const BROKEN = ['not-a-model.safetensors', 'no-vae', 'sample-prediction'];

const TABLES = ['training_runs', 'training_run_images', 'generations', 'generation_images', 'loras'];

async function stored(ctx: TestApp): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of TABLES) counts[table] = (await ctx.db.query<{ n: number }>(`SELECT count(*)::integer AS n FROM ${table}`)).rows[0]!.n;
  return counts;
}

async function uploadLora(ctx: TestApp, model: string, file: string) {
  const form = new FormData();
  form.append('model', model);
  form.append('file', new Blob([new Uint8Array(fs.readFileSync(file))]), path.basename(file));
  const request = new Request('http://x', { method: 'POST', body: form });
  const payload = Buffer.from(await request.arrayBuffer());
  return ctx.app.inject({ method: 'POST', url: '/v1/loras', headers: { ...ctx.auth, 'content-type': request.headers.get('content-type')! }, payload });
}

/** A refusal: its status, problem+json, the field named, and (when given) its type and a message matching `message`. */
function assertRefused(name: string, response: { statusCode: number; headers: Record<string, unknown>; body: string; json(): any }, status: number, field: string, type?: string, message?: RegExp) {
  assert.equal(response.statusCode, status, `${name}: ${response.body}`);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/, name);
  const problem = response.json();
  const fields = (problem.errors ?? []).map((e: { field: string }) => e.field);
  assert.ok(fields.includes(field), `${name}: expected ${field} in ${JSON.stringify(fields)}`);
  if (type !== undefined) assert.match(problem.type, new RegExp(`${type}$`), name);
  if (message !== undefined) assert.match(JSON.stringify(problem), message, name);
}

test('params, fields and LoRAs of another model family, and models the engine refuses, are named refusals that store nothing', async (t) => {
  const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir, TRAINING_SLOTS: '0', GENERATION_SLOTS: '0' } });
  const datasetId = await createDataset(ctx);
  const photos = await upload(ctx, datasetId, filesBody([{ name: 'a.png', data: await png({ width: 256, height: 256, seed: 3 }) }]));
  assert.equal(photos.statusCode, 201, photos.body);
  // One LoRA of each family, each on its own demo model.
  const sd15Lora = await uploadLora(ctx, SD15, sd15KohyaLora);
  assert.equal(sd15Lora.statusCode, 201, sd15Lora.body);
  const sdxlLora = await uploadLora(ctx, SDXL, kohyaLora);
  assert.equal(sdxlLora.statusCode, 201, sdxlLora.body);
  const before = await stored(ctx);

  const run = (model: string, params: Record<string, unknown> = {}) => ({ dataset_id: datasetId, model, params });
  const runCases: Array<[string, unknown, number, string, string?, RegExp?]> = [
    ['an SDXL-only param on an SD 1.x run', run(SD15, { text_encoder_2_lr: 1e-5 }), 422, 'params.text_encoder_2_lr', 'unsupported-by-model', /one text encoder/],
    ['an SDXL-only param on an SD 2.x run', run('tiny-sd2v', { text_encoder_2_lr: 1e-5 }), 422, 'params.text_encoder_2_lr', 'unsupported-by-model', /SD 2\.x/],
    ['clip_skip on an SDXL run', run(SDXL, { clip_skip: 2 }), 422, 'params.clip_skip', 'unsupported-by-model', /SD 1\.x and SD 2\.x models only/],
    ['clip_skip 0', run(SD15, { clip_skip: 0 }), 400, 'params.clip_skip', 'validation-error'],
    ['clip_skip 13', run(SD15, { clip_skip: 13 }), 400, 'params.clip_skip', 'validation-error'],
    ["clip_skip above the model's clip_skip_max", run(SD15, { clip_skip: 4 }), 422, 'params.clip_skip', 'unsupported-by-model', /at most 3/],
    ["resolution above the SD 1.5 demo's default", run(SD15, { resolution: 256 }), 422, 'params.resolution', 'unsupported-by-model', /at most 128/],
    ["resolution above SD 1.5's 512", run('sd15-alone.safetensors', { resolution: 576 }), 422, 'params.resolution', 'unsupported-by-model', /at most 512/],
    ...BROKEN.map((id): [string, unknown, number, string, string] => [`a run naming ${id}`, run(id), 422, 'model', 'model-invalid']),
  ];
  for (const [name, payload, status, field, type, message] of runCases) {
    const response = await ctx.app.inject({ method: 'POST', url: '/v1/training-runs', headers: ctx.auth, payload: payload as object });
    assertRefused(name, response, status, field, type, message);
  }

  const generation = (model: string, extra: Record<string, unknown> = {}) => ({ model, prompt: 'a dog', width: 64, height: 64, steps: 2, ...extra });
  const generationCases: Array<[string, unknown, number, string, string?, RegExp?]> = [
    ['an SD 1.x LoRA with an SDXL model', generation(SDXL, { loras: [{ lora_id: sd15Lora.json().id }] }), 422, 'loras.0.lora_id', 'lora-family-mismatch', /SD 1\.x LoRA/],
    ['an SDXL LoRA with an SD 1.x model', generation(SD15, { loras: [{ lora_id: sdxlLora.json().id }] }), 422, 'loras.0.lora_id', 'lora-family-mismatch', /SDXL LoRA/],
    ['size_conditioning on an SD 1.x generation', generation(SD15, { size_conditioning: { original_width: 1024, original_height: 1024 } }), 422, 'size_conditioning', 'unsupported-by-model', /no size conditioning/],
    ['size_conditioning on an SD 2.x generation', generation('tiny-sd2v', { size_conditioning: { crop_top: 8 } }), 422, 'size_conditioning', 'unsupported-by-model'],
    ['clip_skip on an SDXL generation', generation(SDXL, { clip_skip: 2 }), 422, 'clip_skip', 'unsupported-by-model', /penultimate/],
    ['clip_skip 0 on a generation', generation(SD15, { clip_skip: 0 }), 400, 'clip_skip', 'validation-error'],
    ["clip_skip above the model's clip_skip_max on a generation", generation(SD15, { clip_skip: 4 }), 422, 'clip_skip', 'unsupported-by-model', /at most 3/],
    ['a size_conditioning field out of bounds', generation(SDXL, { size_conditioning: { crop_top: -1 } }), 400, 'size_conditioning.crop_top', 'validation-error'],
    ['an unknown size_conditioning field', generation(SDXL, { size_conditioning: { aesthetic_score: 6 } }), 400, 'size_conditioning.aesthetic_score', 'validation-error'],
    ...BROKEN.map((id): [string, unknown, number, string, string] => [`a generation naming ${id}`, generation(id), 422, 'model', 'model-invalid']),
  ];
  for (const [name, payload, status, field, type, message] of generationCases) {
    const response = await ctx.app.inject({ method: 'POST', url: '/v1/generations', headers: ctx.auth, payload: payload as object });
    assertRefused(name, response, status, field, type, message);
  }

  for (const id of BROKEN) {
    const response = await ctx.app.inject({ method: 'GET', url: `/v1/models/${id}`, headers: ctx.auth });
    assertRefused(`GET /v1/models/${id}`, response, 422, 'id', 'model-invalid');
  }
  const listed = (await ctx.app.inject({ method: 'GET', url: '/v1/models', headers: ctx.auth })).json().data.map((model: { id: string }) => model.id);
  assert.deepEqual(listed, [SDXL, SD15, 'sd15-alone.safetensors', 'tiny-sd2v'], 'the refused models are not listed');

  // LoRAs of the other family: the engine names the keys that fit no module.
  const sd15OnSdxl = await uploadLora(ctx, SDXL, sd15KohyaLora);
  assertRefused('an SD 1.x LoRA uploaded for an SDXL model', sd15OnSdxl, 422, 'file', 'lora-invalid', /lora_(unet_down_blocks|te_text_model)_/);
  assert.ok(sd15OnSdxl.json().errors.length > 1, 'the keys are named, one error each');
  const sdxlOnSd15 = await uploadLora(ctx, SD15, kohyaLora);
  assertRefused('an SDXL LoRA uploaded for an SD 1.x model', sdxlOnSd15, 422, 'file', 'lora-invalid', /lora_unet_(input_blocks|middle_block|output_blocks)_/);
  assertRefused('a LoRA uploaded for a model the engine refuses', await uploadLora(ctx, 'no-vae', sd15KohyaLora), 422, 'model', 'model-invalid');

  assert.deepEqual(await stored(ctx), before, 'nothing stored');
  assert.deepEqual(fs.readdirSync(path.join(ctx.config.dataDir, 'tmp', 'lora-uploads')), [], 'no upload left behind');
});
