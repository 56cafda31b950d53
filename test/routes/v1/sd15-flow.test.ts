// The whole SD 1.x flow over real HTTP on the built-in sd15-tiny-demo: dataset, upload,
// captions (template), a LoRA run that trains the text encoder too, its kohya file holding
// exactly the tensors sd-scripts writes for SD 1.5's attention and text-encoder projections
// (derived from the full-size SD 1.5 key table: the demo's UNet module names are SD 1.5's,
// its text encoder SD 1.5's first layers), and
// generations with that LoRA: at scale 0 the image equals one without it, at scale 1 it differs.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { followEvents } from '../../../openapi/client/index.js';
import { inspectSafetensors } from '../../../src/engine/index.js';
import { withTestApp } from '../../helper.js';
import { httpApi } from '../../support/http-api.js';
import { png } from '../../support/images.js';
import { sd15BaseKeysDir } from '../../support/sd1-fixtures.js';

const UNET_TARGETS = ['to_q', 'to_k', 'to_v', 'to_out.0']; // the run's default unet targets
const TEXT_ENCODER_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'out_proj'];

/** The kohya tensor names sd-scripts writes for SD 1.x LoRAs on these modules of a key table. */
function kohyaNames(table: string, prefix: string, targets: string[]): string[] {
  const keys = Object.keys((JSON.parse(fs.readFileSync(path.join(sd15BaseKeysDir, table), 'utf8')) as { keys: object }).keys);
  const modules = keys
    .filter((key) => key.endsWith('.weight'))
    .map((key) => key.slice(0, -'.weight'.length))
    .filter((module) => targets.some((target) => module.endsWith(`.${target}`)));
  return modules.flatMap((module) => {
    const name = prefix + module.replaceAll('.', '_');
    return [`${name}.lora_down.weight`, `${name}.lora_up.weight`, `${name}.alpha`];
  });
}

test('SD 1.5 demo over HTTP: captions, a LoRA run with its text encoder, kohya SD 1.5 names, generations at LoRA scale 0 and 1', { timeout: 300_000 }, async (t) => {
  const ctx = await withTestApp(t);
  const base = await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const api = httpApi(base, ctx.auth);

  const model = await (await api('GET', '/v1/models/sd15-tiny-demo')).json();
  assert.equal(model.family, 'sd1');
  const dataset = await (await api('POST', '/v1/datasets', { name: 'rex', class_word: 'dog', trigger_token: 'ohwx' })).json() as { id: string };
  const form = new FormData();
  form.append('files', new Blob([new Uint8Array(await png({ width: 256, height: 256, seed: 17 }))], { type: 'image/png' }), 'a.png');
  form.append('files', new Blob([new Uint8Array(await png({ width: 256, height: 320, seed: 18 }))], { type: 'image/png' }), 'b.png');
  assert.equal((await api('POST', `/v1/datasets/${dataset.id}/images`, form)).status, 201);
  const captioning = await api('POST', `/v1/datasets/${dataset.id}/captioning-jobs`, { provider: 'template' });
  assert.equal(captioning.status, 202, await captioning.clone().text());
  const jobUrl = captioning.headers.get('location')!;
  let job = await (await api('GET', jobUrl)).json();
  while (!['succeeded', 'failed', 'canceled'].includes(job.status)) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    job = await (await api('GET', jobUrl)).json();
  }
  assert.equal(job.status, 'succeeded');

  const created = await api('POST', '/v1/training-runs', {
    dataset_id: dataset.id, model: 'sd15-tiny-demo', name: 'rex-sd15',
    params: { resolution: 128, max_steps: 4, rank: 4, alpha: 4, train_text_encoder: true, learning_rate: 1e-3, checkpoint_every: 0, seed: 3 },
  });
  assert.equal(created.status, 202, await created.clone().text());
  const run = await created.json() as { id: string; params: Record<string, unknown> };
  assert.equal(run.params.clip_skip, 1);
  for await (const message of followEvents(`${base}/v1/training-runs/${run.id}/events`, { apiKey: ctx.apiKey, retryMs: 50 })) {
    if (JSON.parse(message.data).type === 'status') t.diagnostic(`run ${JSON.parse(message.data).data.status}`);
  }
  const finished = await (await api('GET', `/v1/training-runs/${run.id}`)).json();
  assert.equal(finished.status, 'succeeded', JSON.stringify(finished.error));

  // The kohya file: exactly SD 1.5's attention projections and text-encoder projections, lora_te_.
  const download = await api('GET', finished.output.lora_url);
  assert.equal(download.status, 200);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sd15-lora-')), 'lora.safetensors');
  fs.writeFileSync(file, Buffer.from(await download.arrayBuffer()));
  t.after(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
  const header = await inspectSafetensors(file);
  // The demo's text encoder has SD 1.5's layers but fewer of them (its clip_skip_max).
  const demoLayer = new RegExp(`^lora_te_text_model_encoder_layers_(${[...Array(model.clip_skip_max).keys()].join('|')})_`);
  const expected = [
    ...kohyaNames('unet_keys.json', 'lora_unet_', UNET_TARGETS),
    // The table has transformers 5's keys (no text_model.); sd-scripts names them with it.
    ...kohyaNames('text_encoder_keys.json', 'lora_te_text_model_', TEXT_ENCODER_TARGETS).filter((name) => demoLayer.test(name)),
  ].sort();
  assert.equal(expected.length, 3 * (128 + 4 * model.clip_skip_max), "SD 1.5's 128 UNet attention projections, 4 per text-encoder layer");
  assert.deepEqual(Object.keys(header.tensors).sort(), expected);
  assert.equal(header.metadata.ss_base_model_version, 'sd_v1');
  assert.equal(header.metadata['modelspec.architecture'], 'stable-diffusion-v1/lora');

  // Generations with the run's LoRA: scale 0 is the base model's image, scale 1 another.
  const generate = async (loras: Array<{ training_run_id: string; scale: number }>) => {
    const response = await api('POST', '/v1/generations', {
      model: 'sd15-tiny-demo', prompt: 'a photo of ohwx dog', width: 64, height: 64, steps: 3, seed: 11, loras,
    }, { prefer: 'wait=60' });
    assert.equal(response.status, 201, await response.clone().text());
    const generation = await response.json();
    assert.equal(generation.status, 'succeeded', JSON.stringify(generation.error));
    const image = await api('GET', generation.output[0].content_url);
    return sharp(Buffer.from(await image.arrayBuffer())).raw().toBuffer();
  };
  const plain = await generate([]);
  assert.deepEqual(await generate([{ training_run_id: run.id, scale: 0 }]), plain, 'scale 0: the image without the LoRA');
  assert.notDeepEqual(await generate([{ training_run_id: run.id, scale: 1 }]), plain, 'scale 1: the trained LoRA changes the image');
});
