// /v1/models: the built-in demo models (written on first use under DATA_DIR/models), then
// MODELS_DIR's diffusers folders and single-file checkpoints of every family, as the
// engine's inspectModel reads them; entries it refuses are left out (logged once) and
// naming one is a 422 with its reason.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { loadModel } from '../../../src/engine/index.js';
import { ModelsService } from '../../../src/services/models.js';
import { fileTempDir, withTestApp } from '../../helper.js';
import { kohyaLora, tinyModelDir, tinySingleFile } from '../../engine/fixtures.js';
import { tinySd15Dir, tinySd15SingleFile, tinySd2vDir } from '../../support/sd1-fixtures.js';

const modelsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-models-'));
after(() => fs.rmSync(modelsDir, { recursive: true, force: true }));

// MODELS_DIR: the SDXL fixture as a folder, as a single file with a .config sidecar naming
// that folder, and as a single file alone; the same for SD 1.5 (an LDM file); the SD 2.x
// v-prediction folder; models the engine refuses; and things that are not models at all.
fs.cpSync(tinyModelDir, path.join(modelsDir, 'tiny-sdxl'), { recursive: true });
fs.copyFileSync(tinySingleFile, path.join(modelsDir, 'tiny-single.safetensors'));
fs.writeFileSync(path.join(modelsDir, 'tiny-single.safetensors.config'), 'tiny-sdxl\n');
fs.copyFileSync(tinySingleFile, path.join(modelsDir, 'alone.safetensors'));
// A single file without a .config uses the built-in configs and the tokenizer folders beside it.
for (const tokenizer of ['tokenizer', 'tokenizer_2']) fs.cpSync(path.join(tinyModelDir, tokenizer), path.join(modelsDir, tokenizer), { recursive: true });
fs.cpSync(tinySd15Dir, path.join(modelsDir, 'tiny-sd15'), { recursive: true });
fs.copyFileSync(tinySd15SingleFile, path.join(modelsDir, 'tiny-sd15-single.safetensors'));
fs.writeFileSync(path.join(modelsDir, 'tiny-sd15-single.safetensors.config'), 'tiny-sd15\n');
fs.copyFileSync(tinySd15SingleFile, path.join(modelsDir, 'sd15-alone.safetensors'));
fs.cpSync(tinySd2vDir, path.join(modelsDir, 'tiny-sd2v'), { recursive: true });
// Refused: a LoRA (keys of no model family), a folder without its VAE, a prediction type no sampler has.
fs.copyFileSync(kohyaLora, path.join(modelsDir, 'a-lora.safetensors'));
fs.cpSync(tinySd15Dir, path.join(modelsDir, 'no-vae'), { recursive: true, filter: (source) => !source.startsWith(path.join(tinySd15Dir, 'vae')) });
fs.cpSync(tinySd15Dir, path.join(modelsDir, 'sample-prediction'), { recursive: true });
const schedulerConfig = path.join(modelsDir, 'sample-prediction', 'scheduler', 'scheduler_config.json');
fs.writeFileSync(schedulerConfig, JSON.stringify({ ...JSON.parse(fs.readFileSync(schedulerConfig, 'utf8')), prediction_type: 'sample' }));
fs.mkdirSync(path.join(modelsDir, 'empty-folder'));
fs.mkdirSync(path.join(modelsDir, '.hidden'));
fs.writeFileSync(path.join(modelsDir, 'notes.txt'), 'not a model');

const REFUSED = ['a-lora.safetensors', 'no-vae', 'sample-prediction'];
const SDXL_COMPONENTS = ['unet', 'vae', 'text_encoder', 'text_encoder_2'];
const SD_COMPONENTS = ['unet', 'vae', 'text_encoder'];

test('GET /v1/models lists both demos first, then the models of MODELS_DIR by id, each with its family, resolution and components', async (t) => {
  const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir } });
  const response = await ctx.app.inject({ method: 'GET', url: '/v1/models', headers: ctx.auth });
  assert.equal(response.statusCode, 200, response.body);
  const models = response.json().data as any[];
  assert.deepEqual(
    models.map((model) => [model.id, model.family, model.prediction_type, model.source_layout, model.default_resolution, model.clip_skip_max, model.demo]),
    [
      ['sdxl-tiny-demo', 'sdxl', 'epsilon', 'diffusers', 128, null, true],
      ['sd15-tiny-demo', 'sd1', 'epsilon', 'diffusers', 128, 3, true],
      ['alone.safetensors', 'sdxl', 'epsilon', 'single_file', 1024, null, false], // SDXL-base's configs
      ['sd15-alone.safetensors', 'sd1', 'epsilon', 'single_file', 512, 12, false], // SD 1.5's configs
      ['tiny-sd15', 'sd1', 'epsilon', 'diffusers', 128, 3, false],
      ['tiny-sd15-single.safetensors', 'sd1', 'epsilon', 'single_file', 128, 3, false], // its .config's
      ['tiny-sd2v', 'sd2', 'v_prediction', 'diffusers', 128, 3, false],
      ['tiny-sdxl', 'sdxl', 'epsilon', 'diffusers', 128, null, false],
      ['tiny-single.safetensors', 'sdxl', 'epsilon', 'single_file', 128, null, false],
    ],
    'the models the engine refuses are left out',
  );
  const byId = new Map(models.map((model) => [model.id, model]));
  for (const model of models) {
    const sdxl = model.family === 'sdxl';
    assert.deepEqual(model.components, sdxl ? SDXL_COMPONENTS : SD_COMPONENTS, model.id);
    assert.deepEqual(Object.keys(model.parameters).sort(), [...model.components, 'total'].sort(), `${model.id}: a count per component`);
    for (const component of model.components) assert.ok(model.parameters[component] > 0, `${model.id} ${component}`);
    assert.equal(model.parameters.total, model.components.reduce((sum: number, component: string) => sum + model.parameters[component], 0), model.id);
    assert.equal(model.architecture, undefined, 'family replaced architecture');
    if (!model.demo) assert.match(model.description, sdxl ? /^SDXL / : model.family === 'sd1' ? /^SD 1\.x / : /^SD 2\.x .*v-prediction/, model.id);
    if (!sdxl) assert.doesNotMatch(model.description, /SDXL/, `${model.id} does not call itself SDXL`);
  }
  assert.match(byId.get('sdxl-tiny-demo').description, /SDXL-shaped .* random weights/);
  assert.match(byId.get('sd15-tiny-demo').description, /Stable Diffusion 1\.5-shaped .* random weights/);
  assert.match(byId.get('tiny-sd15-single.safetensors').description, /LDM file .* with the configs of .*tiny-sd15/);
  assert.match(byId.get('tiny-single.safetensors').description, /SGM file/);
  assert.deepEqual(byId.get('tiny-single.safetensors').parameters, byId.get('tiny-sdxl').parameters, 'the same weights in both layouts');
  assert.deepEqual(byId.get('tiny-sd15-single.safetensors').parameters, byId.get('tiny-sd15').parameters, 'the same weights in both layouts');
  assert.equal(byId.get('tiny-sd15').parameters.unet, 2_446_788, "the fixture's documented count");

  // The demos were written under DATA_DIR/models, and the counts are the loaded engine's.
  const dataModels = path.join(ctx.config.dataDir, 'models');
  for (const [id, modelPath] of [
    ['sdxl-tiny-demo', path.join(dataModels, 'sdxl-tiny-demo')],
    ['sd15-tiny-demo', path.join(dataModels, 'sd15-tiny-demo')],
    ['tiny-sd15', path.join(modelsDir, 'tiny-sd15')],
    ['tiny-sd2v', path.join(modelsDir, 'tiny-sd2v')],
  ] as const) {
    assert.ok(fs.existsSync(path.join(modelPath, 'model_index.json')), id);
    const engineModel = await loadModel({ modelPath });
    try {
      const info = engineModel.describe();
      const listed = byId.get(id);
      assert.deepEqual([listed.family, listed.prediction_type], [info.family, info.predictionType], id);
      assert.deepEqual(
        [listed.parameters.unet, listed.parameters.text_encoder, listed.parameters.text_encoder_2 ?? 0, listed.parameters.vae],
        [info.unetParameters, info.textEncoderParameters, info.textEncoder2Parameters, info.vaeParameters],
        id,
      );
    } finally {
      engineModel.dispose();
    }
  }
});

test('GET /v1/models/{id} answers one model; a model the engine refuses is a 422 naming the id with the reason; others are 404', async (t) => {
  const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir } });
  const demo = await ctx.app.inject({ method: 'GET', url: '/v1/models/sd15-tiny-demo', headers: ctx.auth });
  assert.equal(demo.statusCode, 200, demo.body);
  assert.deepEqual([demo.json().family, demo.json().components], ['sd1', SD_COMPONENTS]);
  const single = await ctx.app.inject({ method: 'GET', url: '/v1/models/tiny-single.safetensors', headers: ctx.auth });
  assert.deepEqual([single.json().source_layout, single.json().family], ['single_file', 'sdxl']);

  const reasons: Record<string, RegExp> = {
    'a-lora.safetensors': /found .*lora_unet_/, // what it found: LoRA keys
    'no-vae': /vae/i,
    'sample-prediction': /sample/,
  };
  for (const id of REFUSED) {
    const response = await ctx.app.inject({ method: 'GET', url: `/v1/models/${id}`, headers: ctx.auth });
    assert.equal(response.statusCode, 422, `${id}: ${response.body}`);
    assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
    const problem = response.json();
    assert.match(problem.type, /model-invalid$/, id);
    assert.deepEqual(problem.errors.map((e: { in: string; field: string }) => [e.in, e.field]), [['params', 'id']], id);
    assert.match(problem.detail, reasons[id]!, `${id}: the engine's reason`);
  }
  for (const id of ['nope', 'notes.txt', 'empty-folder', 'tokenizer', '.hidden', '..', '%2e%2e%2ftiny-sdxl']) {
    const response = await ctx.app.inject({ method: 'GET', url: `/v1/models/${id}`, headers: ctx.auth });
    assert.equal(response.statusCode, 404, id);
    assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
    assert.match(response.json().type, /not-found$/, id);
  }
  const anonymous = await ctx.app.inject({ method: 'GET', url: '/v1/models' });
  assert.equal(anonymous.statusCode, 401);
});

test('a refused MODELS_DIR entry is logged once with its reason, not on every listing', async () => {
  const warnings: Array<{ model: string; reason: string }> = [];
  const logger = { warn: (details: object) => void warnings.push(details as { model: string; reason: string }) };
  const service = new ModelsService(modelsDir, path.join(fileTempDir(), 'models'), logger);
  await service.list(null);
  await service.list(null);
  await service.get(null, 'no-vae').catch(() => undefined);
  assert.deepEqual(warnings.map((warning) => warning.model).sort(), REFUSED);
  for (const warning of warnings) assert.ok(warning.reason.length > 0, warning.model);
});

test('a MODELS_DIR that does not exist lists only the demo models', async (t) => {
  const ctx = await withTestApp(t, { env: { MODELS_DIR: path.join(modelsDir, 'missing') } });
  const response = await ctx.app.inject({ method: 'GET', url: '/v1/models', headers: ctx.auth });
  assert.deepEqual(response.json().data.map((model: { id: string }) => model.id), ['sdxl-tiny-demo', 'sd15-tiny-demo']);
});

