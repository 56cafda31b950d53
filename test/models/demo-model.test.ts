// The built-in demo models: written by the service itself, the same bytes every time, and
// real pipelines to the engine (they load, tokenize any text, generate). The SD 1.5 demo has
// the reference SD 1.5 layout, so its modules (and LoRA keys) are full-size SD 1.5's.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { loadModel, type RgbImage } from '../../src/engine/index.js';
import { byteLevelVocabulary, DEMO_MODELS, ensureDemoModel, SD15_DEMO, SDXL_DEMO, writeDemoModel } from '../../src/models/demo-model.js';
import { readSafetensors } from '../support/safetensors.js';
import { sd15BaseKeysDir, sd15KohyaLora, tinySd15Dir } from '../support/sd1-fixtures.js';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-demo-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

const WEIGHTS: Record<string, string[]> = {
  [SDXL_DEMO.id]: ['text_encoder/model.safetensors', 'text_encoder_2/model.safetensors', 'unet/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.safetensors'],
  [SD15_DEMO.id]: ['text_encoder/model.safetensors', 'unet/diffusion_pytorch_model.safetensors', 'vae/diffusion_pytorch_model.safetensors'],
};
const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
const demoJson = (relative: string) => JSON.parse(SD15_DEMO.files()[relative]!) as Record<string, unknown>;

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

test("the SD 1.5 demo's configs have the reference SD 1.5 layout (tiny-sd15) at the demo's widths", () => {
  const files = SD15_DEMO.files();
  assert.deepEqual(Object.keys(files).filter((name) => name.includes('_2')), [], 'no second text encoder or tokenizer');
  assert.deepEqual(demoJson('model_index.json'), readJson(path.join(tinySd15Dir, 'model_index.json')));
  assert.deepEqual(demoJson('scheduler/scheduler_config.json'), readJson(path.join(tinySd15Dir, 'scheduler', 'scheduler_config.json')),
    "exactly the published stable-diffusion-v1-5 scheduler config's keys");
  const unet = demoJson('unet/config.json');
  const reference = readJson(path.join(tinySd15Dir, 'unet', 'config.json'));
  for (const key of ['down_block_types', 'up_block_types', 'mid_block_type', 'block_out_channels', 'layers_per_block', 'attention_head_dim',
    'cross_attention_dim', 'use_linear_projection', 'norm_num_groups', 'sample_size', 'in_channels', 'out_channels']) {
    assert.deepEqual(unet[key], reference[key], `unet ${key}`);
  }
  assert.equal(unet.addition_embed_type, undefined, 'no added (text-time) embedding');
  const encoder = demoJson('text_encoder/config.json');
  assert.deepEqual(
    [encoder.architectures, encoder.hidden_size, encoder.num_hidden_layers, encoder.num_attention_heads, encoder.intermediate_size, encoder.hidden_act],
    [['CLIPTextModel'], unet.cross_attention_dim, 3, 2, 64, 'quick_gelu'],
  );
  assert.deepEqual(demoJson('tokenizer/vocab.json'), byteLevelVocabulary(), "the SDXL demo's byte-level vocabulary");
  assert.equal(demoJson('tokenizer/tokenizer_config.json').pad_token, '<|endoftext|>');
  assert.equal(encoder.pad_token_id, byteLevelVocabulary()['<|endoftext|>']);
  const vae = demoJson('vae/config.json');
  assert.equal(vae.scaling_factor, 0.18215);
  assert.deepEqual(vae.block_out_channels, JSON.parse(SDXL_DEMO.files()['vae/config.json']!).block_out_channels, "four levels, as the SDXL demo's");
});

for (const demo of DEMO_MODELS) {
  test(`writing ${demo.id} twice gives the same bytes, weights included`, async () => {
    await writeDemoModel(path.join(scratch, `${demo.id}-first`), demo);
    await writeDemoModel(path.join(scratch, `${demo.id}-second`), demo);
    const first = digests(path.join(scratch, `${demo.id}-first`));
    assert.deepEqual(digests(path.join(scratch, `${demo.id}-second`)), first);
    for (const weights of WEIGHTS[demo.id]!) assert.ok(first[weights], `${weights} written`);
    assert.equal(Object.keys(first).filter((name) => name.endsWith('.safetensors')).length, WEIGHTS[demo.id]!.length, 'no other weights');
    assert.ok(fs.statSync(path.join(scratch, `${demo.id}-first`, 'unet', 'diffusion_pytorch_model.safetensors')).size > 1_000_000);
  });
}

test('ensureDemoModel writes each demo once, into place, and concurrent callers share it', async () => {
  const root = path.join(scratch, 'models');
  const [a, b, c] = await Promise.all([ensureDemoModel(root), ensureDemoModel(root, SDXL_DEMO), ensureDemoModel(root, SD15_DEMO)]);
  assert.equal(a, path.join(root, SDXL_DEMO.id));
  assert.equal(b, a);
  assert.equal(c, path.join(root, SD15_DEMO.id));
  assert.deepEqual(fs.readdirSync(root).sort(), [SD15_DEMO.id, SDXL_DEMO.id], 'no staging folder left behind');
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

test('the engine loads the SD 1.5 demo as an SD 1.x model, tokenizes with one tokenizer, and generates finite pixels', async () => {
  const model = await loadModel({ modelPath: await ensureDemoModel(path.join(scratch, 'models'), SD15_DEMO) });
  try {
    const info = model.describe();
    assert.deepEqual([info.family, info.predictionType, info.sourceLayout, info.textEncoder2Parameters], ['sd1', 'epsilon', 'diffusers', 0]);
    const ids = await model.tokenize('a photo of ohwx dog');
    assert.equal(ids.tokenizer[0], 512);
    assert.equal(ids.tokenizer.at(-1), 513, 'pads with <|endoftext|>');
    assert.deepEqual(ids.tokenizer2, [], 'one tokenizer');
    const [image] = (await model.generate({ prompt: 'a photo of ohwx dog', width: 128, height: 128, steps: 2, seed: 1, clipSkip: 2 }).promise) as [RgbImage];
    assert.equal(image.rgb.length, 128 * 128 * 3);
    assert.ok(new Set(image.rgb).size > 1, 'not a constant image');
  } finally {
    model.dispose();
  }
});

test("the SD 1.5 demo's modules are full-size SD 1.5's: the same UNet keys, and an SD 1.5 LoRA fits it whole", async () => {
  const dir = await ensureDemoModel(path.join(scratch, 'models'), SD15_DEMO);
  const unet = [...readSafetensors(path.join(dir, 'unet', 'diffusion_pytorch_model.safetensors')).tensors.keys()];
  const full = Object.keys(readJson(path.join(sd15BaseKeysDir, 'unet_keys.json')).keys as Record<string, unknown>);
  assert.deepEqual(unet.filter((key) => !full.includes(key)), [], 'no key full-size SD 1.5 lacks');
  // Its first two levels have equal widths, so the second needs no shortcut convolution.
  assert.deepEqual(full.filter((key) => !unet.includes(key)).sort(), ['down_blocks.1.resnets.0.conv_shortcut.bias', 'down_blocks.1.resnets.0.conv_shortcut.weight']);
  const model = await loadModel({ modelPath: dir });
  try {
    const check = await model.checkLora(sd15KohyaLora);
    assert.deepEqual(check.problems, []);
    assert.equal(check.layout, 'kohya-diffusers');
    assert.deepEqual([...check.components].sort(), ['text_encoder', 'unet']);
    assert.equal(check.modules, 140, 'every attention projection of the UNet (128) and of the text encoder (12)');
  } finally {
    model.dispose();
  }
});
