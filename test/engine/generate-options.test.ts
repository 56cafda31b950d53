// generate()'s options beyond the prompt: the three samplers, several images per call
// (image i from seed + i), and SDXL's size conditioning.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { loadModel, SAMPLER_NAMES, type GenerateOptions, type Model, type Progress, type RgbImage } from '../../src/engine/index.js';
import { tinyModelDir } from './fixtures.js';

// Image i of a batch and the one image of a call with seed + i start from the same noise
// and see the same conditioning; they differ only by float rounding in batched kernels
// (BLAS and convolution pick other blockings for other batch sizes), at most a level or two.
const BATCH_PIXEL_TOLERANCE = 2;

const BASE: GenerateOptions = { prompt: 'a photo of an astronaut riding a horse', width: 64, height: 64, steps: 3, seed: 11 };

let model: Model;
before(async () => {
  model = await loadModel({ modelPath: tinyModelDir });
});
after(() => model.dispose());

async function one(options: GenerateOptions): Promise<RgbImage> {
  const images = await model.generate(options).promise;
  assert.equal(images.length, 1);
  return images[0]!;
}

function maxPixelDiff(a: RgbImage, b: RgbImage): number {
  assert.equal(a.rgb.length, b.rgb.length);
  let max = 0;
  for (let i = 0; i < a.rgb.length; i++) max = Math.max(max, Math.abs(a.rgb[i]! - b.rgb[i]!));
  return max;
}

test('each sampler is reproducible for a seed, and the samplers differ', async () => {
  const images = new Map<string, RgbImage>();
  for (const sampler of SAMPLER_NAMES) {
    const image = await one({ ...BASE, sampler });
    assert.ok((await one({ ...BASE, sampler })).rgb.equals(image.rgb), `${sampler}: same seed, other image`);
    assert.ok(!(await one({ ...BASE, sampler, seed: 12 })).rgb.equals(image.rgb), `${sampler}: other seed, same image`);
    images.set(sampler, image);
  }
  assert.ok((await one(BASE)).rgb.equals(images.get('euler')!.rgb), 'euler is not the default');
  assert.ok(!images.get('euler_a')!.rgb.equals(images.get('euler')!.rgb));
  assert.ok(!images.get('dpmpp_2m_karras')!.rgb.equals(images.get('euler')!.rgb));
});

test('numImages gives one image per seed, each the image of a one-image call with seed + i', async () => {
  for (const sampler of SAMPLER_NAMES) {
    const progress: Progress[] = [];
    const batch = await model.generate({ ...BASE, sampler, numImages: 3 }, (report) => progress.push(report)).promise;
    assert.equal(batch.length, 3);
    for (const [i, image] of batch.entries()) {
      assert.deepEqual([image.width, image.height, image.channels], [64, 64, 3]);
      const alone = await one({ ...BASE, sampler, seed: 11 + i });
      const diff = maxPixelDiff(image, alone);
      assert.ok(diff <= BATCH_PIXEL_TOLERANCE, `${sampler} image ${i}: max pixel diff ${diff} from seed ${11 + i} alone`);
    }
    assert.ok(!batch[0]!.rgb.equals(batch[1]!.rgb) && !batch[1]!.rgb.equals(batch[2]!.rgb), `${sampler}: images repeat`);
    // One denoising report per step for the whole batch, then decoding.
    const denoising = progress.filter((report) => report.phase === 'denoising');
    assert.deepEqual(denoising.map((report) => [report.step, report.total]), [[0, 3], [1, 3], [2, 3]]);
    assert.equal(progress.at(-1)!.phase, 'decoding');
  }
});

test('size conditioning: the defaults are the output size and no crop; other values change the image', async () => {
  const plain = await one(BASE);
  const explicit = await one({ ...BASE, originalWidth: 64, originalHeight: 64, targetWidth: 64, targetHeight: 64, cropTop: 0, cropLeft: 0 });
  assert.ok(explicit.rgb.equals(plain.rgb), 'explicit defaults changed the image');
  for (const change of [{ originalWidth: 1024, originalHeight: 768 }, { cropTop: 32 }, { cropLeft: 16 }, { targetWidth: 512 }]) {
    const changed = await one({ ...BASE, ...change });
    assert.ok(!changed.rgb.equals(plain.rgb), `${JSON.stringify(change)} left the image unchanged`);
  }
});

test('bad sampler and size fields are refused naming the field', async () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ sampler: 'dpmpp_2m' }, /Expected one of euler, euler_a, dpmpp_2m_karras for options.sampler but received "dpmpp_2m"/],
    [{ numImages: 0 }, /Expected a positive integer up to 4 for options.numImages but received 0/],
    [{ numImages: 1.5 }, /options.numImages but received 1.5/],
    [{ originalWidth: -1 }, /options.originalWidth but received -1/],
    [{ targetHeight: 'big' }, /options.targetHeight but received "big"/],
    [{ cropLeft: 1e9 }, /options.cropLeft but received 1000000000/],
  ];
  for (const [options, message] of cases) {
    await assert.rejects(model.generate({ ...BASE, ...options } as never).promise, {
      name: 'EngineArgumentError',
      code: 'ERR_SDXL_INVALID_ARGUMENT',
      message,
    });
  }
});
