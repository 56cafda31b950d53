// The built-in demo model: written by the service itself, the same bytes every time, and
// a real SDXL pipeline to the engine (it loads, tokenizes any text, generates, trains).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { loadModel, type RgbImage } from '../../src/engine/index.js';
import { byteLevelVocabulary, DEMO_MODEL_ID, ensureDemoModel, writeDemoModel } from '../../src/models/demo-model.js';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-demo-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

const WEIGHTS = [
  'text_encoder/model.safetensors',
  'text_encoder_2/model.safetensors',
  'unet/diffusion_pytorch_model.safetensors',
  'vae/diffusion_pytorch_model.safetensors',
];

function digests(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const file of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!file.isFile()) continue;
    const full = path.join(file.parentPath, file.name);
    out[path.relative(dir, full)] = createHash('sha256').update(fs.readFileSync(full)).digest('hex');
  }
  return out;
}

test('the byte-level vocabulary has the 256 byte symbols, their </w> forms and the two special tokens', () => {
  const vocabulary = byteLevelVocabulary();
  assert.equal(Object.keys(vocabulary).length, 514);
  assert.deepEqual(new Set(Object.values(vocabulary)).size, 514, 'ids are distinct');
  assert.equal(vocabulary['!'], 0);
  assert.equal(vocabulary['a</w>'], 256 + vocabulary.a!);
  assert.equal(vocabulary['Ā'], 188, 'byte 0 maps to U+0100, after the 188 printable bytes');
  assert.equal(vocabulary['<|startoftext|>'], 512);
  assert.equal(vocabulary['<|endoftext|>'], 513);
});

test('writing the demo model twice gives the same bytes, weights included', async () => {
  await writeDemoModel(path.join(scratch, 'first'));
  await writeDemoModel(path.join(scratch, 'second'));
  const first = digests(path.join(scratch, 'first'));
  assert.deepEqual(digests(path.join(scratch, 'second')), first);
  for (const weights of WEIGHTS) assert.ok(first[weights], `${weights} written`);
  assert.ok(fs.statSync(path.join(scratch, 'first', 'unet', 'diffusion_pytorch_model.safetensors')).size > 1_000_000);
});

test('ensureDemoModel writes it once, into place, and concurrent callers share it', async () => {
  const root = path.join(scratch, 'models');
  const [a, b] = await Promise.all([ensureDemoModel(root), ensureDemoModel(root)]);
  assert.equal(a, path.join(root, DEMO_MODEL_ID));
  assert.equal(b, a);
  assert.deepEqual(fs.readdirSync(root), [DEMO_MODEL_ID], 'no staging folder left behind');
  const mtime = fs.statSync(path.join(a, 'unet', 'diffusion_pytorch_model.safetensors')).mtimeMs;
  await ensureDemoModel(root);
  assert.equal(fs.statSync(path.join(a, 'unet', 'diffusion_pytorch_model.safetensors')).mtimeMs, mtime, 'not rewritten');
});

test('the engine loads the demo model, tokenizes any text byte by byte, and generates finite pixels', async () => {
  const model = await loadModel({ modelPath: await ensureDemoModel(path.join(scratch, 'models')) });
  try {
    const info = model.describe();
    assert.equal(info.sourceLayout, 'diffusers');
    const ids = await model.tokenize('a photo of ohwx dog, é');
    // <start> a</w> p h o t o</w> ... : every word is its bytes, the last one word-final.
    const vocabulary = byteLevelVocabulary();
    assert.deepEqual(ids.tokenizer.slice(0, 4), [512, vocabulary['a</w>'], vocabulary.p, vocabulary.h]);
    assert.ok(ids.tokenizer.includes(513), 'ends with <|endoftext|>');
    assert.equal(ids.tokenizer2.at(-1), 0, 'tokenizer_2 pads with "!"');

    const [image] = (await model.generate({ prompt: 'a photo of ohwx dog', width: 128, height: 128, steps: 2, seed: 1 }).promise) as [RgbImage];
    assert.equal(image.rgb.length, 128 * 128 * 3);
    assert.ok(new Set(image.rgb).size > 1, 'not a constant image');
  } finally {
    model.dispose();
  }
});
