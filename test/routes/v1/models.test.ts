// /v1/models: the built-in demo model (written on first use under DATA_DIR/models), then
// MODELS_DIR's diffusers folders and single-file checkpoints; counts checked against the engine.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { loadModel } from '../../../src/engine/index.js';
import { withTestApp } from '../../helper.js';
import { kohyaLora, tinyModelDir, tinySingleFile } from '../../engine/fixtures.js';

const modelsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-models-'));
after(() => fs.rmSync(modelsDir, { recursive: true, force: true }));

// MODELS_DIR: the tiny fixture as a folder, as a single file with a .config sidecar naming
// that folder, and as a single file alone; plus things that are not models.
fs.cpSync(tinyModelDir, path.join(modelsDir, 'tiny-sdxl'), { recursive: true });
fs.copyFileSync(tinySingleFile, path.join(modelsDir, 'tiny-single.safetensors'));
fs.writeFileSync(path.join(modelsDir, 'tiny-single.safetensors.config'), 'tiny-sdxl\n');
fs.copyFileSync(tinySingleFile, path.join(modelsDir, 'alone.safetensors'));
fs.copyFileSync(kohyaLora, path.join(modelsDir, 'a-lora.safetensors'));
fs.mkdirSync(path.join(modelsDir, 'empty-folder'));
fs.mkdirSync(path.join(modelsDir, '.hidden'));
fs.writeFileSync(path.join(modelsDir, 'notes.txt'), 'not a model');

test('GET /v1/models lists the demo model first, then MODELS_DIR by id, with parameter counts', async (t) => {
  const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir } });
  const response = await ctx.app.inject({ method: 'GET', url: '/v1/models', headers: ctx.auth });
  assert.equal(response.statusCode, 200, response.body);
  const models = response.json().data as any[];
  assert.deepEqual(
    models.map((model) => [model.id, model.source_layout, model.demo]),
    [
      ['sdxl-tiny-demo', 'diffusers', true],
      ['alone.safetensors', 'single_file', false],
      ['tiny-sdxl', 'diffusers', false],
      ['tiny-single.safetensors', 'single_file', false],
    ],
  );
  const [demo, alone, folder, single] = models;
  assert.match(demo.description, /random weights/);
  assert.equal(demo.default_resolution, 128);
  assert.equal(folder.default_resolution, 128, 'sample_size 16 x VAE factor 8');
  assert.equal(single.default_resolution, 128, 'from the folder its .config names');
  assert.equal(alone.default_resolution, 1024, "SDXL-base's without a .config");
  assert.deepEqual(single.parameters, folder.parameters, 'the same weights in both layouts');
  for (const model of models) {
    const { unet, text_encoder, text_encoder_2, vae, total } = model.parameters;
    assert.ok(unet > 0 && text_encoder > 0 && text_encoder_2 > 0 && vae > 0, model.id);
    assert.equal(total, unet + text_encoder + text_encoder_2 + vae, model.id);
  }

  // The demo model was written under DATA_DIR/models, and its counts are the engine's.
  const demoDir = path.join(ctx.config.dataDir, 'models', 'sdxl-tiny-demo');
  assert.ok(fs.existsSync(path.join(demoDir, 'model_index.json')));
  for (const [id, modelPath] of [['sdxl-tiny-demo', demoDir], ['tiny-sdxl', path.join(modelsDir, 'tiny-sdxl')]] as const) {
    const engineModel = await loadModel({ modelPath });
    try {
      const info = engineModel.describe();
      const listed = models.find((model) => model.id === id)!.parameters;
      assert.deepEqual(
        [listed.unet, listed.text_encoder, listed.text_encoder_2, listed.vae],
        [info.unetParameters, info.textEncoderParameters, info.textEncoder2Parameters, info.vaeParameters],
        id,
      );
    } finally {
      engineModel.dispose();
    }
  }
});

test('GET /v1/models/{id} answers one model; unknown ids, non-models and paths are 404', async (t) => {
  const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir } });
  const demo = await ctx.app.inject({ method: 'GET', url: '/v1/models/sdxl-tiny-demo', headers: ctx.auth });
  assert.equal(demo.statusCode, 200);
  assert.equal(demo.json().architecture, 'sdxl');
  const single = await ctx.app.inject({ method: 'GET', url: '/v1/models/tiny-single.safetensors', headers: ctx.auth });
  assert.equal(single.json().source_layout, 'single_file');

  for (const id of ['nope', 'a-lora.safetensors', 'notes.txt', 'empty-folder', '.hidden', '..', '%2e%2e%2ftiny-sdxl']) {
    const response = await ctx.app.inject({ method: 'GET', url: `/v1/models/${id}`, headers: ctx.auth });
    assert.equal(response.statusCode, 404, id);
    assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
    assert.match(response.json().type, /not-found$/, id);
  }
  const anonymous = await ctx.app.inject({ method: 'GET', url: '/v1/models' });
  assert.equal(anonymous.statusCode, 401);
});

test('a MODELS_DIR that does not exist lists only the demo model', async (t) => {
  const ctx = await withTestApp(t, { env: { MODELS_DIR: path.join(modelsDir, 'missing') } });
  const response = await ctx.app.inject({ method: 'GET', url: '/v1/models', headers: ctx.auth });
  assert.deepEqual(response.json().data.map((model: { id: string }) => model.id), ['sdxl-tiny-demo']);
});
