// /v1/loras and LoRAs in generations: uploads in the three layouts checked against their base
// model (keys that name nothing, shapes that do not fit: refused, keys named), download,
// delete (409 while a queued generation wants it); a succeeded training run registers its
// LoRA; generations apply LoRAs per request, concurrently, without seeing each other's.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { withTestApp, type TestApp } from '../../helper.js';
import { goldenDir, tinyModelDir } from '../../engine/fixtures.js';
import { createDataset, upload } from '../../support/images-api.js';
import { png } from '../../support/images.js';
import { filesBody } from '../../support/multipart.js';
import { readSafetensors, writeSafetensors } from '../../support/safetensors.js';
import { PARAMETERS_KEYWORD, readPngText } from '../../../src/services/png-parameters.js';
import { generate, pixels } from '../../support/generations-api.js';

const DEMO = 'sdxl-tiny-demo';
const TINY = 'tiny-sdxl';
const LORA_FILES = {
  'kohya-sgm': path.join(goldenDir, 'lora', 'tiny_lora_kohya.safetensors'),
  'kohya-diffusers': path.join(goldenDir, 'lora', 'tiny_lora_kohya_diffusers_names.safetensors'),
  peft: path.join(goldenDir, 'lora', 'tiny_lora_peft.safetensors'),
} as const;
const QUICK = { model: TINY, prompt: 'a photo of an astronaut riding a horse', width: 64, height: 64, steps: 3, seed: 3 };

// MODELS_DIR: the fixture model beside the built-in demo model (the same shapes, other weights).
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-loras-'));
const modelsDir = path.join(scratch, 'models');
fs.cpSync(tinyModelDir, path.join(modelsDir, TINY), { recursive: true });
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** A variant of the peft fixture: its B matrices multiplied by `factor` (another adapter of the same shape). */
function scaledLora(factor: number): string {
  const file = readSafetensors(LORA_FILES.peft);
  for (const [name, tensor] of file.tensors) {
    if (!name.endsWith('lora_B.weight')) continue;
    const values = new Float32Array(tensor.data.buffer.slice(tensor.data.byteOffset, tensor.data.byteOffset + tensor.data.length));
    for (let i = 0; i < values.length; i++) values[i]! *= factor;
    tensor.data = Buffer.from(values.buffer);
  }
  const out = path.join(scratch, `scaled-${factor}.safetensors`);
  writeSafetensors(out, file.tensors, file.metadata);
  return out;
}

function uploadForm(fields: Record<string, string>, file?: { name: string; data: Buffer }): FormData {
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) form.append(key, value);
  if (file !== undefined) form.append('file', new Blob([new Uint8Array(file.data)]), file.name);
  return form;
}

async function postForm(ctx: TestApp, form: FormData, headers: Record<string, string> = ctx.auth) {
  const request = new Request('http://x', { method: 'POST', body: form });
  const payload = Buffer.from(await request.arrayBuffer());
  return ctx.app.inject({ method: 'POST', url: '/v1/loras', headers: { ...headers, 'content-type': request.headers.get('content-type')! }, payload });
}

async function uploadLora(ctx: TestApp, file: string, fields: Record<string, string> = { model: TINY }) {
  return postForm(ctx, uploadForm(fields, { name: path.basename(file), data: fs.readFileSync(file) }));
}

describe('LoRAs', () => {
  test('uploads in the three layouts are checked and kept; downloads are the same bytes; A1111 hashes are the data hash', async (t) => {
    const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir } });
    for (const [layout, file] of Object.entries(LORA_FILES)) {
      const response = await uploadLora(ctx, file, { model: TINY, name: `astro-${layout}`, trigger_phrase: 'astro' });
      assert.equal(response.statusCode, 201, response.body);
      const lora = response.json();
      assert.equal(response.headers.location, `/v1/loras/${lora.id}`);
      const bytes = fs.readFileSync(file);
      const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
      assert.deepEqual(
        { layout: lora.layout, rank: lora.rank, alpha: lora.alpha, modules: lora.modules, components: lora.components, model: lora.model, source: lora.source, trigger: lora.trigger_phrase },
        { layout, rank: 4, alpha: 2, modules: 224, components: ['unet'], model: TINY, source: 'upload', trigger: 'astro' },
      );
      assert.equal(lora.sha256, createHash('sha256').update(bytes).digest('hex'));
      assert.equal(lora.autov3, createHash('sha256').update(bytes.subarray(headerEnd)).digest('hex'));
      const download = await ctx.app.inject({ method: 'GET', url: lora.content_url, headers: ctx.auth });
      assert.equal(download.statusCode, 200);
      assert.deepEqual(download.rawPayload, bytes);
      assert.equal(download.headers.etag, `"${lora.sha256}"`);
    }
    const list = await ctx.app.inject({ method: 'GET', url: `/v1/loras?model=${TINY}`, headers: ctx.auth });
    assert.deepEqual(list.json().data.map((l: { name: string }) => l.name), ['astro-peft', 'astro-kohya-diffusers', 'astro-kohya-sgm']);
    const other = await ctx.createTenantKey();
    assert.equal((await ctx.app.inject({ method: 'GET', url: '/v1/loras', headers: { authorization: `Bearer ${other}` } })).json().data.length, 0);
  });

  test('files that do not fit are refused with their keys named, and nothing is kept', async (t) => {
    const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir } });
    const peft = readSafetensors(LORA_FILES.peft);
    const renamed = new Map([...peft.tensors].map(([name, tensor]) => [name.replace('down_blocks.1.attentions.0', 'down_blocks.7.attentions.0'), tensor]));
    writeSafetensors(path.join(scratch, 'renamed.safetensors'), renamed, peft.metadata);
    const reshaped = new Map(peft.tensors);
    const key = 'unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight';
    const original = reshaped.get(key)!;
    reshaped.set(key, { dtype: 'F32', shape: [4, 32], data: original.data.subarray(0, 4 * 32 * 4) });
    writeSafetensors(path.join(scratch, 'reshaped.safetensors'), reshaped, peft.metadata);

    const renamedAnswer = await uploadLora(ctx, path.join(scratch, 'renamed.safetensors'));
    assert.equal(renamedAnswer.statusCode, 422, renamedAnswer.body);
    assert.match(renamedAnswer.body, /down_blocks\.7\.attentions\.0/);
    assert.ok(renamedAnswer.json().errors.every((e: { field: string }) => e.field === 'file'));
    const reshapedAnswer = await uploadLora(ctx, path.join(scratch, 'reshaped.safetensors'));
    assert.equal(reshapedAnswer.statusCode, 422, reshapedAnswer.body);
    assert.match(reshapedAnswer.body, /mid_block\.attentions\.0\.transformer_blocks\.0\.attn2\.to_k/);
    assert.equal((await ctx.app.inject({ method: 'GET', url: '/v1/loras', headers: ctx.auth })).json().data.length, 0);
  });

  test('generations apply LoRAs per request: scale 0 is the base model, two at once equal each alone, concurrent requests never mix', async (t) => {
    const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir, GENERATION_SLOTS: '3' } });
    const a = (await uploadLora(ctx, LORA_FILES['kohya-sgm'], { model: TINY, name: 'a' })).json();
    const b = (await uploadLora(ctx, scaledLora(-3), { model: TINY, name: 'b' })).json();
    const base = await pixels(ctx, (await generate(ctx, QUICK)).id);
    const zero = await pixels(ctx, (await generate(ctx, { ...QUICK, loras: [{ lora_id: a.id, scale: 0 }] })).id);
    assert.deepEqual(zero, base);

    const requests = [
      { ...QUICK, loras: [{ lora_id: a.id, scale: 1 }] },
      { ...QUICK, loras: [{ lora_id: b.id, scale: 0.7 }] },
      { ...QUICK, loras: [{ lora_id: a.id, scale: 1 }, { lora_id: b.id, scale: 0.7 }] },
    ];
    const alone: Buffer[] = [];
    for (const request of requests) alone.push(await pixels(ctx, (await generate(ctx, request)).id));
    assert.notDeepEqual(alone[0], base);
    assert.notDeepEqual(alone[0], alone[1]);
    assert.notDeepEqual(alone[2], alone[0]);
    const together = await Promise.all([...requests, QUICK].map((request) => generate(ctx, request)));
    for (const [index, generation] of together.entries()) {
      assert.deepEqual(await pixels(ctx, generation.id), index < 3 ? alone[index] : base, `request ${index} run concurrently`);
    }
    const generation = together[2];
    assert.deepEqual(generation.loras, [{ lora_id: a.id, name: 'a', scale: 1, sha256: a.sha256 }, { lora_id: b.id, name: 'b', scale: 0.7, sha256: b.sha256 }]);
    const image = await ctx.app.inject({ method: 'GET', url: generation.output[0].content_url, headers: ctx.auth });
    const parameters = readPngText(image.rawPayload).get(PARAMETERS_KEYWORD)!;
    assert.match(parameters, /^a photo of an astronaut riding a horse <lora:a:1> <lora:b:0.7>\n/);
    assert.match(parameters, new RegExp(`Lora hashes: "a: ${a.autov3.slice(0, 12)}, b: ${b.autov3.slice(0, 12)}"$`));
  });

  test('a LoRA of another base model is a 422 and another tenant\'s a 404; a LoRA a queued generation wants cannot be deleted', async (t) => {
    const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir, GENERATION_SLOTS: '0' } });
    const lora = (await uploadLora(ctx, scaledLora(5))).json(); // bytes no other test stores, so its blob can go
    const mismatch = await ctx.app.inject({ method: 'POST', url: '/v1/generations', headers: ctx.auth, payload: { ...QUICK, model: DEMO, loras: [{ lora_id: lora.id }] } });
    assert.equal(mismatch.statusCode, 422, mismatch.body);
    assert.equal(mismatch.json().errors[0].field, 'loras.0.lora_id');
    const other = await ctx.createTenantKey();
    const foreign = await ctx.app.inject({ method: 'POST', url: '/v1/generations', headers: { authorization: `Bearer ${other}` }, payload: { ...QUICK, loras: [{ lora_id: lora.id }] } });
    assert.equal(foreign.statusCode, 404, foreign.body);
    assert.equal(foreign.json().errors[0].field, 'loras.0.lora_id');

    const queued = await ctx.app.inject({ method: 'POST', url: '/v1/generations', headers: ctx.auth, payload: { ...QUICK, loras: [{ lora_id: lora.id, scale: 0.5 }] } });
    assert.equal(queued.statusCode, 202, queued.body);
    const refused = await ctx.app.inject({ method: 'DELETE', url: `/v1/loras/${lora.id}`, headers: ctx.auth });
    assert.equal(refused.statusCode, 409, refused.body);
    await ctx.app.inject({ method: 'POST', url: `/v1/generations/${queued.json().id}/cancel`, headers: ctx.auth });
    const deleted = await ctx.app.inject({ method: 'DELETE', url: `/v1/loras/${lora.id}`, headers: ctx.auth });
    assert.equal(deleted.statusCode, 204);
    assert.equal((await ctx.app.inject({ method: 'GET', url: `/v1/loras/${lora.id}`, headers: ctx.auth })).statusCode, 404);
    const blob = path.join(ctx.config.dataDir, 'blobs', 'sha256', lora.sha256.slice(0, 2), lora.sha256.slice(2, 4), lora.sha256);
    assert.equal(fs.existsSync(blob), false, 'the file is released');
  });

  test('a succeeded training run registers its LoRA, and a generation names it by the run', async (t) => {
    const ctx = await withTestApp(t);
    const datasetId = await createDataset(ctx);
    const uploaded = await upload(ctx, datasetId, filesBody([{ name: 'a.png', data: await png({ width: 256, height: 256, seed: 3 }) }]));
    assert.equal(uploaded.statusCode, 201, uploaded.body);
    const created = await ctx.app.inject({
      method: 'POST', url: '/v1/training-runs', headers: ctx.auth,
      payload: { dataset_id: datasetId, model: DEMO, name: 'rex', params: { resolution: 64, max_steps: 2, learning_rate: 1e-2 } },
    });
    assert.equal(created.statusCode, 202, created.body);
    const runId = created.json().id;
    let run;
    for (let i = 0; i < 600; i++) {
      run = (await ctx.app.inject({ method: 'GET', url: `/v1/training-runs/${runId}`, headers: ctx.auth })).json();
      if (['succeeded', 'failed', 'canceled'].includes(run.status)) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(run.status, 'succeeded', JSON.stringify(run.error));
    const loras = (await ctx.app.inject({ method: 'GET', url: '/v1/loras?source=training_run', headers: ctx.auth })).json().data;
    assert.equal(loras.length, 1);
    const [lora] = loras;
    assert.deepEqual(
      { name: lora.name, run: lora.training_run_id, model: lora.model, rank: lora.rank, alpha: lora.alpha, layout: lora.layout, trigger: lora.trigger_phrase },
      { name: 'rex', run: runId, model: DEMO, rank: 16, alpha: 16, layout: 'kohya-sgm', trigger: run.trigger_token },
    );
    const runLora = await ctx.app.inject({ method: 'GET', url: run.output.lora_url, headers: ctx.auth });
    assert.equal(lora.sha256, createHash('sha256').update(runLora.rawPayload).digest('hex'));

    const generation = await generate(ctx, { model: DEMO, prompt: `a photo of ${run.trigger_token} dog`, width: 64, height: 64, steps: 3, seed: 1, loras: [{ training_run_id: runId }] });
    assert.deepEqual(generation.loras.map((l: { lora_id: string }) => l.lora_id), [lora.id]);
    const unknownRun = await ctx.app.inject({
      method: 'POST', url: '/v1/generations', headers: ctx.auth,
      payload: { model: DEMO, prompt: 'x', loras: [{ training_run_id: 'tr_01JD3Q5V8Z6ZK2W7M4N1T0X9PA' }] },
    });
    assert.equal(unknownRun.statusCode, 404);
    assert.equal(unknownRun.json().errors[0].field, 'loras.0.training_run_id');
  });
});
