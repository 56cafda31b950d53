// Full fine-tuning (params.method full, DreamBooth) over real HTTP on both demo models:
// a few steps at 64 px with prior preservation, memory in the run's progress and metrics,
// the model it registers listed by GET /v1/models as the tenant's (and not another
// tenant's), its files downloaded (the single file with Range, the diffusers folder as a
// tar holding every component, the one checkpoint kept), a generation with it that differs
// from the base model's at the same seed, a LoRA run on top of it, and its deletion, which
// frees its files and leaves the base model's untouched.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import sharp from 'sharp';
import { followEvents } from '../../../openapi/client/index.js';
import { inspectSafetensors } from '../../../src/engine/index.js';
import { withTestApp } from '../../helper.js';
import { httpApi, type HttpApi } from '../../support/http-api.js';
import { png } from '../../support/images.js';
import { readTar } from '../../support/tar.js';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

async function datasetWithPhotos(api: HttpApi): Promise<string> {
  const dataset = await (await api('POST', '/v1/datasets', { name: 'rex', class_word: 'dog', trigger_token: 'ohwx' })).json() as { id: string };
  const form = new FormData();
  form.append('files', new Blob([new Uint8Array(await png({ width: 256, height: 256, seed: 21 }))], { type: 'image/png' }), 'a.png');
  form.append('files', new Blob([new Uint8Array(await png({ width: 256, height: 320, seed: 22 }))], { type: 'image/png' }), 'b.png');
  assert.equal((await api('POST', `/v1/datasets/${dataset.id}/images`, form)).status, 201);
  return dataset.id;
}

/** Follows a run's events to its end; the events, and the run as it ended. */
async function trainToEnd(api: HttpApi, base: string, apiKey: string, body: Record<string, unknown>) {
  const created = await api('POST', '/v1/training-runs', body);
  assert.equal(created.status, 202, await created.clone().text());
  const run = await created.json() as { id: string; params: Record<string, unknown> };
  const events: Array<{ type: string; data: Record<string, any> }> = [];
  for await (const message of followEvents(`${base}/v1/training-runs/${run.id}/events`, { apiKey, retryMs: 50 })) events.push(JSON.parse(message.data));
  const finished = await (await api('GET', `/v1/training-runs/${run.id}`)).json();
  assert.equal(finished.status, 'succeeded', `${JSON.stringify(finished.error)}\n${await (await api('GET', `/v1/training-runs/${run.id}/logs`)).text()}`);
  return { created: run, events, finished };
}

async function imagePixels(api: HttpApi, body: Record<string, unknown>): Promise<Buffer> {
  const response = await api('POST', '/v1/generations', body, { prefer: 'wait=60' });
  assert.equal(response.status, 201, await response.clone().text());
  const generation = await response.json();
  assert.equal(generation.status, 'succeeded', JSON.stringify(generation.error));
  return sharp(Buffer.from(await (await api('GET', generation.output[0].content_url)).arrayBuffer())).raw().toBuffer();
}

/** Every file under `dir` (links followed) with its bytes' hash, by path relative to it. */
function filesOf(dir: string, prefix = ''): Map<string, string> {
  const found = new Map<string, string>();
  for (const name of fs.readdirSync(dir).sort()) {
    const full = path.join(dir, name);
    if (fs.statSync(full).isDirectory()) for (const [inner, hash] of filesOf(full, `${prefix}${name}/`)) found.set(inner, hash);
    else found.set(`${prefix}${name}`, sha256(fs.readFileSync(full)));
  }
  return found;
}

async function fullFineTune(t: TestContext, demo: 'sdxl-tiny-demo' | 'sd15-tiny-demo', family: string, trainTextEncoder: boolean) {
  const ctx = await withTestApp(t);
  const base = await ctx.app.listen({ port: 0, host: '127.0.0.1' });
  const api = httpApi(base, ctx.auth);
  const datasetId = await datasetWithPhotos(api);
  const baseDir = path.join(ctx.config.dataDir, 'models', demo);

  // ---- train: a handful of steps, float32 files (so a generation differs by training alone, not by rounding)
  const { created, events, finished } = await trainToEnd(api, base, ctx.apiKey, {
    dataset_id: datasetId, model: demo, name: `rex-${family}-full`,
    params: {
      method: 'full', resolution: 64, max_steps: 4, checkpoint_every: 2, learning_rate: 1e-3, text_encoder_lr: 1e-4,
      train_text_encoder: trainTextEncoder, save_dtype: 'float32', prior_preservation: { num_class_images: 2 }, seed: 5,
    },
  });
  assert.equal(created.params.method, 'full');
  assert.deepEqual([created.params.rank, created.params.alpha, created.params.save_peft], [null, null, null], 'no LoRA network on a full run');
  assert.equal(created.params.keep_checkpoints, 1, "a full run's default: the newest checkpoint only");
  assert.equal((created.params.prior_preservation as { class_prompt: string }).class_prompt, 'a photo of dog');
  // Memory is part of progress, on the run's device, and of the metrics.
  const training = events.filter((e) => e.type === 'progress' && e.data.phase === 'training');
  assert.ok(training.length > 0, 'training progress');
  for (const progress of training) {
    assert.equal(progress.data.device, 'cpu');
    assert.ok(progress.data.memory_bytes > 0 && progress.data.peak_memory_bytes >= progress.data.memory_bytes, JSON.stringify(progress.data));
  }
  assert.ok(finished.metrics.peak_memory_bytes >= training.at(-1)!.data.peak_memory_bytes, JSON.stringify(finished.metrics));
  assert.equal(finished.metrics.steps, 4);

  // ---- the model: the tenant's, listed with the server's
  const modelId = finished.output.model_id as string;
  assert.match(modelId, /^mdl_/);
  assert.deepEqual([finished.output.lora_url, finished.output.lora_peft_url], [null, null]);
  const listed = (await (await api('GET', '/v1/models')).json()).data as Array<Record<string, any>>;
  assert.deepEqual(listed.slice(0, 2).map((m) => [m.id, m.owner]), [['sdxl-tiny-demo', 'server'], ['sd15-tiny-demo', 'server']]);
  const mine = listed.find((m) => m.id === modelId)!;
  const baseModel = listed.find((m) => m.id === demo)!;
  assert.ok(mine, 'the new model is listed');
  assert.deepEqual(
    [mine.owner, mine.base_model, mine.training_run_id, mine.name, mine.family, mine.demo, mine.source_layout, mine.default_resolution],
    ['tenant', demo, created.id, `rex-${family}-full`, family, false, 'diffusers', baseModel.default_resolution],
  );
  assert.deepEqual(mine.parameters, baseModel.parameters, 'the same architecture as its base');
  assert.deepEqual((await (await api('GET', `/v1/models/${modelId}`)).json()), mine);

  // ---- its files: the single file (Range), the folder as a tar, the one checkpoint kept
  const artifacts = (await (await api('GET', `/v1/training-runs/${created.id}/artifacts`)).json()).data as Array<Record<string, any>>;
  assert.deepEqual(artifacts.filter((a) => a.kind.startsWith('model')).map((a) => [a.name, a.kind]), [['model.safetensors', 'model'], ['model.tar', 'model_diffusers']]);
  assert.deepEqual(artifacts.filter((a) => a.kind === 'checkpoint').map((a) => a.name), ['checkpoints/step-000004.safetensors'], 'keep_checkpoints 1: the newest only');
  assert.deepEqual(fs.readdirSync(path.join(ctx.config.dataDir, 'runs', created.id, 'checkpoints')).filter((n) => n.endsWith('.safetensors')), ['step-000004.safetensors']);
  const single = artifacts.find((a) => a.kind === 'model')!;
  assert.equal(single.content_url, finished.output.model_url);
  const whole = await api('GET', single.content_url);
  assert.equal(whole.status, 200);
  const bytes = Buffer.from(await whole.arrayBuffer());
  assert.equal(bytes.length, single.byte_size);
  assert.equal(sha256(bytes), single.sha256);
  assert.equal(whole.headers.get('etag'), `"${single.sha256}"`);
  const partial = await api('GET', single.content_url, undefined, { range: 'bytes=100-1099' });
  assert.equal(partial.status, 206);
  assert.ok(Buffer.from(await partial.arrayBuffer()).equals(bytes.subarray(100, 1100)), 'the range is that slice of the file');
  // The single file is the family's official layout, and carries the run in its metadata.
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'full-model-'));
  t.after(() => fs.rmSync(scratch, { recursive: true, force: true }));
  fs.writeFileSync(path.join(scratch, 'model.safetensors'), bytes);
  const header = await inspectSafetensors(path.join(scratch, 'model.safetensors'));
  assert.ok(Object.keys(header.tensors).some((key) => key.startsWith('model.diffusion_model.')), 'SGM/LDM UNet keys');
  assert.equal(header.metadata['sdxl_lora_service.run_id'], created.id);

  const tarArtifact = artifacts.find((a) => a.kind === 'model_diffusers')!;
  assert.equal(tarArtifact.content_url, finished.output.model_diffusers_url);
  const tarResponse = await api('GET', tarArtifact.content_url);
  assert.equal(tarResponse.headers.get('content-type'), 'application/x-tar');
  const tar = Buffer.from(await tarResponse.arrayBuffer());
  assert.equal(tar.length, tarArtifact.byte_size);
  assert.equal(sha256(tar), tarArtifact.sha256, 'the tar made as it downloads has the bytes it was published with');
  const tarRange = await api('GET', tarArtifact.content_url, undefined, { range: 'bytes=1000-5999', 'if-range': `"${tarArtifact.sha256}"` });
  assert.equal(tarRange.status, 206);
  assert.ok(Buffer.from(await tarRange.arrayBuffer()).equals(tar.subarray(1000, 6000)));
  const entries = new Map(readTar(tar).filter((e) => e.type === 'file').map((e) => [e.name, sha256(e.data)]));
  const prefix = `${created.id}-model/`;
  // Every component is in it: the trained ones as trained, the untouched ones as the base model has them.
  const folder = path.join(ctx.config.dataDir, 'runs', created.id, 'model');
  assert.deepEqual(new Map([...entries].map(([name, hash]) => [name.slice(prefix.length), hash])), filesOf(folder));
  const baseFiles = filesOf(baseDir);
  for (const [name, hash] of baseFiles) {
    const trained = name.startsWith('unet/') || (trainTextEncoder && name.startsWith('text_encoder'));
    if (!name.endsWith('.safetensors')) continue;
    assert.ok(entries.has(prefix + name), `${name} is in the archive`);
    if (trained) assert.notEqual(entries.get(prefix + name), hash, `${name} was trained`);
    else assert.equal(entries.get(prefix + name), hash, `${name} is the base model's`);
  }

  // ---- a generation with it differs from the base model's at the same seed
  const generation = { prompt: 'a photo of ohwx dog', width: 64, height: 64, steps: 3, seed: 11 };
  const fromBase = await imagePixels(api, { ...generation, model: demo });
  const fromMine = await imagePixels(api, { ...generation, model: modelId });
  assert.notDeepEqual(fromMine, fromBase, 'the fine-tuned weights change the image');
  assert.deepEqual(await imagePixels(api, { ...generation, model: modelId }), fromMine, 'and make the same image again');

  // ---- another tenant does not see it
  const stranger = httpApi(base, { authorization: `Bearer ${await ctx.createTenantKey()}` });
  assert.ok(!(await (await stranger('GET', '/v1/models')).json()).data.some((m: { id: string }) => m.id === modelId));
  assert.equal((await stranger('GET', `/v1/models/${modelId}`)).status, 404);

  // ---- a LoRA run on top of it
  const lora = await trainToEnd(api, base, ctx.apiKey, {
    dataset_id: datasetId, model: modelId, params: { resolution: 64, max_steps: 2, rank: 4, alpha: 4, checkpoint_every: 0 },
  });
  assert.equal(lora.finished.model, modelId);
  const loraRow = (await (await api('GET', `/v1/loras?model=${modelId}`)).json()).data;
  assert.deepEqual(loraRow.map((l: { training_run_id: string }) => l.training_run_id), [lora.created.id], 'its LoRA adapts the tenant model');
  await imagePixels(api, { ...generation, model: modelId, loras: [{ training_run_id: lora.created.id, scale: 1 }] });

  // ---- cleaning up: the run holds the model's files, so the model goes first
  const runFirst = await api('DELETE', `/v1/training-runs/${created.id}`);
  assert.equal(runFirst.status, 409);
  assert.match((await runFirst.json()).type, /training-run-has-model$/);
  assert.equal((await api('DELETE', `/v1/models/${modelId}`)).status, 204);
  assert.equal((await api('GET', `/v1/models/${modelId}`)).status, 404);
  const runDir = path.join(ctx.config.dataDir, 'runs', created.id);
  for (const name of ['model', 'model.safetensors']) assert.ok(!fs.existsSync(path.join(runDir, name)), `${name} removed`);
  assert.deepEqual(filesOf(baseDir), baseFiles, "the base model's files, which the folder linked to, are untouched");
  const after = await (await api('GET', `/v1/training-runs/${created.id}`)).json();
  assert.deepEqual([after.output.model_id, after.output.model_url, after.output.model_diffusers_url], [null, null, null]);
  const left = (await (await api('GET', `/v1/training-runs/${created.id}/artifacts`)).json()).data as Array<{ kind: string }>;
  assert.ok(!left.some((a) => a.kind.startsWith('model')), 'its artifacts are gone');
  assert.equal((await api('DELETE', `/v1/training-runs/${created.id}`)).status, 204);
  assert.ok(!fs.existsSync(runDir));
}

test('a full fine-tune of the SDXL demo: its model listed, generated with, trained on, downloaded and deleted', { timeout: 300_000 }, (t) =>
  fullFineTune(t, 'sdxl-tiny-demo', 'sdxl', false));

test('a full fine-tune of the SD 1.5 demo with its text encoder', { timeout: 300_000 }, (t) =>
  fullFineTune(t, 'sd15-tiny-demo', 'sd1', true));
