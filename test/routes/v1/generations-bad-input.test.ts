// Bad input to /v1/generations and /v1/loras: each refusal is problem+json with the status
// and the field it names, and nothing is stored (no generation, no LoRA, no blob).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { withTestApp, type TestApp } from '../../helper.js';
import { goldenDir, tinyModelDir } from '../../engine/fixtures.js';
import { png } from '../../support/images.js';

const DEMO = 'sdxl-tiny-demo';
const OK = { model: DEMO, prompt: 'a dog', width: 64, height: 64, steps: 2 };
const PEFT = path.join(goldenDir, 'lora', 'tiny_lora_peft.safetensors');

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-bad-'));
const modelsDir = path.join(scratch, 'models');
fs.cpSync(tinyModelDir, path.join(modelsDir, 'tiny-sdxl'), { recursive: true });
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

async function stored(ctx: TestApp): Promise<Record<string, number>> {
  const count = async (table: string) => (await ctx.db.query<{ n: number }>(`SELECT count(*)::integer AS n FROM ${table}`)).rows[0]!.n;
  return { generations: await count('generations'), loras: await count('loras'), generation_images: await count('generation_images') };
}

async function multipart(parts: Array<[string, string | { name: string; data: Buffer }]>) {
  const form = new FormData();
  for (const [name, value] of parts) {
    if (typeof value === 'string') form.append(name, value);
    else form.append(name, new Blob([new Uint8Array(value.data)]), value.name);
  }
  const request = new Request('http://x', { method: 'POST', body: form });
  return { payload: Buffer.from(await request.arrayBuffer()), type: request.headers.get('content-type')! };
}

/** A .safetensors file whose 8-byte prefix declares a 1 GB header. */
function hugeHeader(): Buffer {
  const bytes = Buffer.alloc(64);
  bytes.writeBigUInt64LE(1_000_000_000n);
  return bytes;
}

/** A well-formed .safetensors file holding one tensor that is no LoRA. */
function notALora(): Buffer {
  const header = Buffer.from(JSON.stringify({ 'model.weight': { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([length, header, Buffer.alloc(8)]);
}

test('bad generation requests and LoRA uploads are refused, naming the field, and change nothing', async (t) => {
  const ctx = await withTestApp(t, { env: { MODELS_DIR: modelsDir, GENERATION_SLOTS: '0', TENANT_MAX_QUEUED_GENERATIONS: '1' } });
  // Another tenant's LoRA, and one of another base model.
  const upload = async (headers: Record<string, string>, model: string) => {
    const body = await multipart([['model', model], ['file', { name: 'l.safetensors', data: fs.readFileSync(PEFT) }]]);
    const response = await ctx.app.inject({ method: 'POST', url: '/v1/loras', headers: { ...headers, 'content-type': body.type }, payload: body.payload });
    assert.equal(response.statusCode, 201, response.body);
    return response.json().id as string;
  };
  const foreignLora = await upload({ authorization: `Bearer ${await ctx.createTenantKey()}` }, DEMO);
  const tinyLora = await upload(ctx.auth, 'tiny-sdxl');
  const before = await stored(ctx);

  const generationCases: Array<[string, unknown, number, string]> = [
    ['unknown model', { ...OK, model: 'sdxl-nope' }, 422, 'model'],
    ['unknown sampler', { ...OK, sampler: 'ddim' }, 400, 'sampler'],
    ['width not a multiple of 8', { ...OK, width: 100 }, 400, 'width'],
    ['height not a multiple of 8', { ...OK, height: 60 }, 400, 'height'],
    ['width over the limit', { ...OK, width: 4096 }, 400, 'width'],
    ['height under the limit', { ...OK, height: 8 }, 400, 'height'],
    ['steps 0', { ...OK, steps: 0 }, 400, 'steps'],
    ['steps over the limit', { ...OK, steps: 1000 }, 400, 'steps'],
    ['steps not an integer', { ...OK, steps: 2.5 }, 400, 'steps'],
    ['guidance below 0', { ...OK, guidance_scale: -1 }, 400, 'guidance_scale'],
    ['guidance over the limit', { ...OK, guidance_scale: 100 }, 400, 'guidance_scale'],
    ['num_images 5', { ...OK, num_images: 5 }, 400, 'num_images'],
    ['num_images 0', { ...OK, num_images: 0 }, 400, 'num_images'],
    ['negative seed', { ...OK, seed: -1 }, 400, 'seed'],
    ['seed over 32 bits', { ...OK, seed: 2 ** 32 }, 400, 'seed'],
    ['empty prompt', { ...OK, prompt: '' }, 400, 'prompt'],
    ['missing prompt', { model: DEMO }, 400, 'prompt'],
    ['unknown field', { ...OK, cfg: 7 }, 400, 'cfg'],
    ['a LoRA of another tenant', { ...OK, loras: [{ lora_id: foreignLora }] }, 404, 'loras.0.lora_id'],
    ['a LoRA for another base model', { ...OK, loras: [{ lora_id: tinyLora }] }, 422, 'loras.0.lora_id'],
    ['a LoRA id that is no id', { ...OK, loras: [{ lora_id: 'abc' }] }, 400, 'loras.0.lora_id'],
    ['a LoRA named twice over', { ...OK, loras: [{ lora_id: tinyLora, training_run_id: 'tr_01JD3Q5V8Z6ZK2W7M4N1T0X9PA' }] }, 400, 'loras.0'],
    ['a LoRA named by nothing', { ...OK, loras: [{ scale: 1 }] }, 400, 'loras.0'],
    ['a LoRA scale out of range', { ...OK, loras: [{ lora_id: tinyLora, scale: 10 }] }, 400, 'loras.0.scale'],
    ['too many LoRAs', { ...OK, loras: Array(9).fill({ lora_id: tinyLora }) }, 400, 'loras'],
    ['a webhook that is not a URL', { ...OK, webhook: { url: 'not a url' } }, 400, 'webhook.url'],
    ['a webhook to a private address', { ...OK, webhook: { url: 'https://10.0.0.1/hook' } }, 400, 'webhook.url'],
    ['a webhook event of runs', { ...OK, webhook: { url: 'https://example.com/h', events: ['training_run.succeeded'] } }, 400, 'webhook.events.0'],
  ];
  for (const [name, payload, status, field] of generationCases) {
    const response = await ctx.app.inject({ method: 'POST', url: '/v1/generations', headers: ctx.auth, payload: payload as object });
    assert.equal(response.statusCode, status, `${name}: ${response.body}`);
    assert.match(String(response.headers['content-type']), /^application\/problem\+json/, name);
    const fields = (response.json().errors ?? []).map((e: { field: string }) => e.field);
    assert.ok(fields.includes(field), `${name}: expected ${field} in ${JSON.stringify(fields)}`);
  }

  const uploadCases: Array<[string, Array<[string, string | { name: string; data: Buffer }]>, number, string]> = [
    ['not safetensors', [['model', 'tiny-sdxl'], ['file', { name: 'photo.safetensors', data: await png({ width: 8, height: 8 }) }]], 422, 'file'],
    ['a 1 GB header', [['model', 'tiny-sdxl'], ['file', { name: 'huge.safetensors', data: hugeHeader() }]], 422, 'file'],
    ['no LoRA keys', [['model', 'tiny-sdxl'], ['file', { name: 'model.safetensors', data: notALora() }]], 422, 'file'],
    ['no file', [['model', 'tiny-sdxl']], 400, 'file'],
    ['no model', [['file', { name: 'l.safetensors', data: fs.readFileSync(PEFT) }]], 400, 'model'],
    ['unknown model', [['model', 'sdxl-nope'], ['file', { name: 'l.safetensors', data: fs.readFileSync(PEFT) }]], 422, 'model'],
    ['unknown field', [['model', 'tiny-sdxl'], ['strength', '1'], ['file', { name: 'l.safetensors', data: fs.readFileSync(PEFT) }]], 400, 'strength'],
  ];
  for (const [name, parts, status, field] of uploadCases) {
    const body = await multipart(parts);
    const response = await ctx.app.inject({ method: 'POST', url: '/v1/loras', headers: { ...ctx.auth, 'content-type': body.type }, payload: body.payload });
    assert.equal(response.statusCode, status, `${name}: ${response.body}`);
    assert.match(String(response.headers['content-type']), /^application\/problem\+json/, name);
    const fields = (response.json().errors ?? []).map((e: { field: string }) => e.field);
    assert.ok(fields.includes(field), `${name}: expected ${field} in ${JSON.stringify(fields)}`);
  }
  const json = await ctx.app.inject({ method: 'POST', url: '/v1/loras', headers: ctx.auth, payload: { model: 'tiny-sdxl' } });
  assert.equal(json.statusCode, 415);

  assert.deepEqual(await stored(ctx), before, 'nothing stored');
  assert.deepEqual(fs.readdirSync(path.join(ctx.config.dataDir, 'tmp', 'lora-uploads')), [], 'no upload left behind');

  // The per-tenant queue limit: one queued generation is the most here.
  assert.equal((await ctx.app.inject({ method: 'POST', url: '/v1/generations', headers: ctx.auth, payload: OK })).statusCode, 202);
  const full = await ctx.app.inject({ method: 'POST', url: '/v1/generations', headers: ctx.auth, payload: OK });
  assert.equal(full.statusCode, 429);
  assert.equal(full.headers['retry-after'], '5');
});
