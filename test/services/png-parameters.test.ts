// The AUTOMATIC1111 "parameters" chunk: the text as A1111 writes it, and a PNG that another
// decoder (libvips, through sharp) reads back with the chunk intact, in Latin-1 and UTF-8.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { a1111Parameters, PARAMETERS_KEYWORD, readPngText, withPngText } from '../../src/services/png-parameters.js';

const params = {
  prompt: 'a photo of ohwx dog, on a beach',
  negative_prompt: 'blurry',
  width: 1024,
  height: 768,
  steps: 30,
  guidance_scale: 5.5,
  sampler: 'dpmpp_2m_karras' as const,
  seed: 1234,
  num_images: 2,
};

test('the text has the prompt with LoRA tags, the negative prompt, and the settings line', () => {
  const text = a1111Parameters({
    params,
    seed: 1235,
    model: 'sdxl-base',
    loras: [{ name: 'rex', scale: 0.8, autov3: 'abcdef0123456789'.repeat(4) }, { name: 'style:x', scale: 1, autov3: '0'.repeat(64) }],
  });
  assert.equal(
    text,
    'a photo of ohwx dog, on a beach <lora:rex:0.8> <lora:style_x:1>\n' +
      'Negative prompt: blurry\n' +
      'Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 5.5, Seed: 1235, Size: 1024x768, Model: sdxl-base, ' +
      'Lora hashes: "rex: abcdef012345, style_x: 000000000000"',
  );
});

test('no negative prompt line without one, Euler a named as A1111 does, no Lora hashes without LoRAs', () => {
  const text = a1111Parameters({ params: { ...params, negative_prompt: '', sampler: 'euler_a' }, seed: 7, model: 'm', loras: [] });
  assert.equal(text, 'a photo of ohwx dog, on a beach\nSteps: 30, Sampler: Euler a, CFG scale: 5.5, Seed: 7, Size: 1024x768, Model: m');
});

test("Clip skip goes after Model, as A1111 writes it, when the generation asked for one", () => {
  const loras = [{ name: 'rex', scale: 1, autov3: 'abcdef0123456789'.repeat(4) }];
  assert.equal(
    a1111Parameters({ params: { ...params, negative_prompt: '', clip_skip: 2 }, seed: 7, model: 'v1-5-pruned-emaonly.safetensors', loras }),
    'a photo of ohwx dog, on a beach <lora:rex:1>\n' +
      'Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 5.5, Seed: 7, Size: 1024x768, Model: v1-5-pruned-emaonly.safetensors, ' +
      'Clip skip: 2, Lora hashes: "rex: abcdef012345"',
  );
  assert.match(a1111Parameters({ params: { ...params, clip_skip: 1 }, seed: 7, model: 'm', loras: [] }), /, Model: m, Clip skip: 1$/);
  assert.doesNotMatch(a1111Parameters({ params, seed: 7, model: 'm', loras: [] }), /Clip skip/, 'not asked for: not written');
});

for (const [name, text] of [
  ['ASCII (tEXt)', 'a cafe\nSteps: 4, Sampler: Euler'],
  ['Latin-1 (iTXt)', 'a café\nSteps: 4, Sampler: Euler'],
  ['UTF-8 (iTXt)', '東京の夜景 🌃\nSteps: 4, Sampler: Euler'],
] as const) {
  test(`the chunk round-trips through libvips: ${name}`, async () => {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#336699' } }).png().toBuffer();
    const tagged = withPngText(png, PARAMETERS_KEYWORD, text);
    assert.equal(readPngText(tagged).get(PARAMETERS_KEYWORD), text);
    const metadata = await sharp(tagged).metadata();
    assert.deepEqual(metadata.comments?.find((c) => c.keyword === PARAMETERS_KEYWORD)?.text, text);
    // The pixels are untouched.
    assert.deepEqual(await sharp(tagged).raw().toBuffer(), await sharp(png).raw().toBuffer());
  });
}

test('a buffer that is not a PNG is refused', () => {
  assert.throws(() => withPngText(Buffer.from('GIF89a....'), PARAMETERS_KEYWORD, 'x'), /Expected a PNG/);
});
