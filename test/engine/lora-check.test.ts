// Model#checkLora: a LoRA file matched against a model, every key that does not fit
// named, and files that are not LoRAs refused as bad arguments.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { loadModel, type Model } from '../../src/engine/index.js';
import { readSafetensors, writeSafetensors } from '../support/safetensors.js';
import { goldenDir, tinyModelDir } from './fixtures.js';

const scratch = mkdtempSync(path.join(tmpdir(), 'sdxl-lora-check-'));
const loraDir = path.join(goldenDir, 'lora');
const FIXTURE_LORAS = {
  'kohya-sgm': path.join(loraDir, 'tiny_lora_kohya.safetensors'),
  'kohya-diffusers': path.join(loraDir, 'tiny_lora_kohya_diffusers_names.safetensors'),
  peft: path.join(loraDir, 'tiny_lora_peft.safetensors'),
} as const;
const FIXTURE_MODULES = 224; // every attention to_q, to_k, to_v, to_out.0 of the tiny UNet

let model: Model;
before(async () => {
  model = await loadModel({ modelPath: tinyModelDir });
});
after(() => {
  model.dispose();
  rmSync(scratch, { recursive: true, force: true });
});

test('the fixture LoRAs fit, in all three layouts', async () => {
  for (const [layout, file] of Object.entries(FIXTURE_LORAS)) {
    assert.deepEqual(await model.checkLora(file), {
      layout,
      modules: FIXTURE_MODULES,
      components: ['unet'],
      ranks: [4],
      alphas: [2],
      problems: [],
    });
  }
});

test('renamed keys and wrong shapes are each named, with both shapes', async () => {
  const peft = readSafetensors(FIXTURE_LORAS.peft);
  const renamed = new Map(
    [...peft.tensors].map(([name, tensor]) => [name.replace('down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q', 'down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_z'), tensor]),
  );
  const renamedFile = path.join(scratch, 'renamed.safetensors');
  writeSafetensors(renamedFile, renamed, peft.metadata);
  const check = await model.checkLora(renamedFile);
  assert.equal(check.modules, FIXTURE_MODULES - 1);
  assert.deepEqual(check.problems, [
    'unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_z.lora_A.weight: names no module of the model',
    'unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_z.lora_B.weight: names no module of the model',
  ]);

  // attn2.to_k reads the 64-wide text embeddings: a down matrix over 32 inputs does not fit.
  const reshaped = new Map(peft.tensors);
  const key = 'unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight';
  const original = reshaped.get(key)!;
  assert.deepEqual(original.shape, [4, 64]);
  reshaped.set(key, { dtype: 'F32', shape: [4, 32], data: original.data.subarray(0, 4 * 32 * 4) });
  const reshapedFile = path.join(scratch, 'reshaped.safetensors');
  writeSafetensors(reshapedFile, reshaped, peft.metadata);
  const shapes = await model.checkLora(reshapedFile);
  assert.equal(shapes.modules, FIXTURE_MODULES);
  assert.equal(shapes.problems.length, 1);
  assert.match(
    shapes.problems[0]!,
    /^unet\.mid_block\.attentions\.0\.transformer_blocks\.0\.attn2\.to_k\.lora_A\.weight \[4, 32\] \/ unet\.mid_block\.attentions\.0\.transformer_blocks\.0\.attn2\.to_k\.lora_B\.weight \[64, 4\] do not fit Linear\(64 -> 64\)/,
  );

  // Half a pair, in kohya naming.
  const kohya = readSafetensors(FIXTURE_LORAS['kohya-sgm']);
  kohya.tensors.delete('lora_unet_middle_block_1_transformer_blocks_0_attn1_to_k.lora_up.weight');
  const halfFile = path.join(scratch, 'half.safetensors');
  writeSafetensors(halfFile, kohya.tensors, kohya.metadata);
  const half = await model.checkLora(halfFile);
  assert.equal(half.layout, 'kohya-sgm');
  assert.equal(half.modules, FIXTURE_MODULES - 1);
  assert.deepEqual(half.problems, [
    'lora_unet_middle_block_1_transformer_blocks_0_attn1_to_k.lora_down.weight: unet module mid_block.attentions.0.transformer_blocks.0.attn1.to_k lacks its up matrix',
  ]);

  // generate() refuses what the check reports.
  await assert.rejects(model.generate({ prompt: 'x', width: 64, height: 64, steps: 1, loras: [{ path: reshapedFile }] }).promise, {
    code: 'ERR_SDXL_INVALID_ARGUMENT',
    message: /does not fit the model: .*attn2\.to_k\.lora_A\.weight \[4, 32\]/,
  });
});

test('files that are not LoRAs are refused as bad arguments', async () => {
  await assert.rejects(model.checkLora(path.join(tinyModelDir, 'unet', 'diffusion_pytorch_model.safetensors')), {
    code: 'ERR_SDXL_INVALID_ARGUMENT',
    message: /no lora_down.weight or lora_A.weight keys; not a LoRA file/,
  });
  const text = path.join(scratch, 'notes.safetensors');
  writeFileSync(text, 'not a safetensors file at all');
  await assert.rejects(model.checkLora(text), { code: 'ERR_SDXL_INVALID_ARGUMENT', message: /Not a readable safetensors LoRA file: .*notes.safetensors/ });
  await assert.rejects(model.checkLora(path.join(scratch, 'missing.safetensors')), {
    name: 'EngineArgumentError',
    message: /path does not exist/,
  });
  await assert.rejects(model.checkLora(scratch), { name: 'EngineArgumentError', message: /Expected a file for path/ });
});

test('checkLora runs on a worker thread: the event loop turns while it works', async () => {
  let turned = false;
  setImmediate(() => {
    turned = true;
  });
  await model.checkLora(FIXTURE_LORAS.peft);
  assert.ok(turned, 'checkLora settled before the event loop turned');
});
