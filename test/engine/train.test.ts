// LoRA training through the engine API: bad configs are refused naming the
// field before any native work; images are decoded upright and shrunk; a short
// run on the tiny model reports phases and metrics and writes its LoRA; cancel
// mid-run leaves a checkpoint that a resumed run completes from.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';

import sharp from 'sharp';

import {
  EngineArgumentError,
  batchesPerEpoch,
  decodeTrainImage,
  inspectSafetensors,
  train,
  validateTrainConfig,
  type NativeAddon,
  type Progress,
  type TrainConfigInput,
  type TrainResult,
} from '../../src/engine/index.js';
import { loadNativeAddon } from '../../src/engine/native.js';
import { tinyModelDir } from './fixtures.js';

const scratch = mkdtempSync(path.join(tmpdir(), 'sdxl-train-'));
let outputs = 0;
const freshOutputDir = () => path.join(scratch, `run-${++outputs}`);

// Noise images of three shapes (square, landscape, portrait), PNG-encoded.
async function noiseImage(width: number, height: number, seed: number): Promise<Buffer> {
  const pixels = Buffer.alloc(width * height * 3);
  let state = seed;
  for (let i = 0; i < pixels.length; i += 1) {
    state = (state * 1103515245 + 12345) >>> 0; // a small LCG: the same bytes every run
    pixels[i] = state >>> 24;
  }
  return sharp(pixels, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

const squarePng = await noiseImage(160, 160, 1);
const landscapePng = await noiseImage(200, 120, 2);
const portraitPng = await noiseImage(120, 200, 3);
const squarePath = path.join(scratch, 'square.png');
writeFileSync(squarePath, squarePng);

// A config that passes every check: images given both as a file and as bytes.
function baseConfig(overrides: Record<string, unknown> = {}): TrainConfigInput {
  return {
    modelPath: tinyModelDir,
    outputDir: freshOutputDir(),
    images: [
      { name: 'square', caption: 'a photo of sks noise', path: squarePath },
      { name: 'landscape', caption: 'a wide photo of sks noise', data: landscapePng },
      { name: 'portrait', caption: 'a tall photo of sks noise', data: portraitPng },
    ],
    resolution: 128,
    minBucketSide: 64,
    maxBucketSide: 256,
    rank: 4,
    alpha: 4,
    maxSteps: 4,
    optimizer: 'adamw',
    seed: 1,
    ...overrides,
  } as TrainConfigInput;
}

describe('bad configs are refused naming the field, before any native work', () => {
  const image = { name: 'a', caption: 'a photo', path: squarePath };
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['rank 0', { rank: 0 }, /^Expected an integer >= 1 and <= 1024 for config\.rank but received 0$/],
    ['rank not an integer', { rank: 4.5 }, /config\.rank but received 4\.5/],
    ['negative learning rate', { unetLr: -1e-4 }, /^Expected a finite number > 0 and <= 1 for config\.unetLr but received -0\.0001$/],
    ['NaN learning rate', { unetLr: Number.NaN }, /config\.unetLr but received NaN/],
    ['resolution off the bucket step', { resolution: 100 },
      /^Expected a multiple of config\.bucketStep \(64\) for config\.resolution but received 100$/],
    ['resolution off a custom bucket step', { resolution: 160, bucketStep: 32 * 3 }, /multiple of config\.bucketStep \(96\)/],
    ['bucket step not a multiple of 8', { bucketStep: 60 }, /that is a multiple of 8 for config\.bucketStep but received 60/],
    ['resolution below the smallest bucket side', { resolution: 128, minBucketSide: 256 },
      /config\.resolution \(128\) must lie between config\.minBucketSide \(256\) and config\.maxBucketSide \(256\)/],
    ['no images', { images: [] }, /^config\.images is empty: training needs at least one image$/],
    ['images not an array', { images: 'photos/' }, /Expected an array of images for config\.images but received "photos\/"/],
    ['missing caption', { images: [image, { name: 'b', path: squarePath }] },
      /^Expected a non-empty caption for config\.images\[1\]\.caption but received undefined$/],
    ['empty caption', { images: [{ ...image, caption: '' }] }, /config\.images\[0\]\.caption but received ""/],
    ['whitespace caption', { images: [{ ...image, caption: ' \t ' }] }, /config\.images\[0\]\.caption/],
    ['image without a name', { images: [{ caption: 'x', path: squarePath }] }, /config\.images\[0\]\.name but received undefined/],
    ['image with both path and data', { images: [{ ...image, data: squarePng }] }, /config\.images\[0\] \("a"\) needs exactly one of path, data or read/],
    ['image with neither path nor data', { images: [{ name: 'a', caption: 'x' }] }, /needs exactly one of path, data or read/],
    ['an image reader without its key and size', { images: [{ name: 'a', caption: 'x', read: async () => squarePng, key: 'abc' }] },
      /^config\.images\[0\] \("a"\) has read but not key, width and height/],
    ['an image key that is not a file name', { images: [{ ...image, key: '../up' }] }, /for config\.images\[0\]\.key but received "\.\.\/up"/],
    ['a width without a height', { images: [{ ...image, width: 160 }] }, /^config\.images\[0\] \("a"\) gives width without height$/],
    ['image file missing', { images: [{ ...image, path: path.join(scratch, 'nope.png') }] }, /config\.images\[0\]\.path does not exist/],
    ['image data not bytes', { images: [{ name: 'a', caption: 'x', data: 'base64...' }] }, /non-empty Buffer for config\.images\[0\]\.data/],
    ['unknown image field', { images: [{ ...image, weight: 2 }] }, /Unknown field config\.images\[0\]\.weight/],
    ['unknown optimizer', { optimizer: 'sgd' }, /^Expected "adamw", "adamw8bit" or "adafactor" for config\.optimizer but received "sgd"$/],
    ['unknown method', { method: 'dreambooth' }, /^Expected "lora" or "full" for config\.method but received "dreambooth"$/],
    ['fullBf16 on a LoRA', { fullBf16: true, dtype: 'bfloat16' }, /config\.fullBf16 is set but config\.method is "lora"/],
    ['fullBf16 on float32 weights', { method: 'full', fullBf16: true }, /config\.fullBf16 needs config\.dtype "bfloat16" but received "float32"/],
    ['an EMA of a LoRA', { emaDecay: 0.999 }, /config\.emaDecay is 0\.999 but config\.method is "lora"/],
    ['an EMA decay of 1', { method: 'full', emaDecay: 1 }, /for config\.emaDecay but received 1$/],
    ['validating with no EMA', { method: 'full', validationWeights: 'ema' }, /config\.validationWeights is "ema" but config\.emaDecay is 0/],
    ['negative keepCheckpoints', { keepCheckpoints: -1 }, /for config\.keepCheckpoints but received -1$/],
    ['unknown lr scheduler', { lrScheduler: 'step' },
      /^Expected "constant", "constant_with_warmup", "linear" or "cosine" for config\.lrScheduler but received "step"$/],
    ['unknown dtype', { dtype: 'int8' }, /^Expected "float32", "bfloat16" or "float16" for config\.dtype but received "int8"$/],
    ['float16 VAE', { vaeDtype: 'float16' }, /Expected "float32" or "bfloat16" for config\.vaeDtype/],
    ['unknown device', { device: 'tpu' }, /for config\.device but received "tpu"/],
    ['an unknown device among devices', { devices: ['cpu', 'tpu'], batchSize: 2 }, /for config\.devices\[1\] but received "tpu"/],
    ['a batch that does not split over the devices', { devices: ['cpu', 'cpu', 'cpu'], batchSize: 2 },
      /^config\.batchSize \(2\) does not split evenly over the 3 config\.devices/],
    ['zeroStage on one device', { zeroStage: 1 }, /^config\.zeroStage 1 shards over several ranks/],
    ['zeroStage 3', { devices: ['cpu', 'cpu'], batchSize: 2, zeroStage: 3 }, /for config\.zeroStage but received 3$/],
    ['validation every N steps with nothing to validate', { validationEvery: 10, validationLossSamples: 0 },
      /^config\.validationEvery is 10 but there is nothing to validate/],
    ['empty validation prompt', { validationPrompts: ['a photo', ''] }, /config\.validationPrompts but received an array/],
    ['validation steps 0', { validationPrompts: ['a photo'], validationSteps: 0 }, /config\.validationSteps but received 0/],
    ['warmup longer than the run', { maxSteps: 10, lrWarmupSteps: 20 },
      /Expected at most config\.maxSteps \(10\) for config\.lrWarmupSteps but received 20/],
    ['text encoder training without targets', { trainTextEncoder: true, textEncoderTargets: [] },
      /config\.textEncoderTargets is empty but config\.trainTextEncoder is set/],
    ['text encoder training at lr 0', { trainTextEncoder: true, textEncoderLr: 0 }, /config\.textEncoderLr when config\.trainTextEncoder/],
    ['caption dropout of 1', { captionDropout: 1 }, /config\.captionDropout but received 1/],
    ['negative seed', { seed: -1 }, /config\.seed but received -1/],
    ['seed past 64 bits', { seed: 1n << 64n }, /unsigned 64-bit integer for config\.seed/],
    ['output name with a path', { outputName: '../elsewhere' }, /config\.outputName but received "\.\.\/elsewhere"/],
    ['missing model', { modelPath: path.join(scratch, 'no-model') }, /config\.modelPath does not exist/],
    ['missing checkpoint', { resumeFrom: path.join(scratch, 'no.ckpt') }, /config\.resumeFrom does not exist/],
    ['output dir that is a file', { outputDir: squarePath }, /Expected a directory for config\.outputDir but .* is a file/],
    ['an unknown validation metric', { validationPrompts: ['a photo'], validationMetrics: ['clip_t', 'dino'] },
      /^Expected one of clip_t, clip_i, hps, lpips, fid, kid, is for config\.validationMetrics\[1\] but received "dino"$/],
    ['a validation metric twice', { validationPrompts: ['a photo'], validationMetrics: ['fid', 'fid'] }, /^config\.validationMetrics\[1\] repeats "fid"$/],
    ['validation metrics without prompts', { validationMetrics: ['clip_i'] }, /^config\.validationMetrics needs config\.validationPrompts/],
    ['a final set without prompts', { validationFinalImages: 4 }, /^config\.validationFinalImages needs config\.validationPrompts/],
    ['more than 64 final images per prompt', { validationPrompts: ['a photo'], validationFinalImages: 65 }, /config\.validationFinalImages but received 65$/],
    ['a missing metrics models folder', { metricsModelsDir: path.join(scratch, 'no-metrics') }, /config\.metricsModelsDir does not exist/],
    ['unknown field', { learningRate: 1e-4 }, /^Unknown field config\.learningRate/],
    ['a field named like an Object method', { toString: 'x' }, /^Unknown field config\.toString/],
    ['metadata value not a string', { metadata: { epochs: 3 } }, /Expected a string for config\.metadata\.epochs but received 3/],
  ];

  for (const [title, overrides, message] of cases) {
    test(title, async () => {
      const config = baseConfig(overrides);
      const outputDir = config.outputDir;
      const progress: Progress[] = [];
      assert.throws(() => validateTrainConfig(config), (error: Error) => {
        assert.match(error.message, message);
        return true;
      });
      const job = train(config, (report) => progress.push(report));
      await assert.rejects(job.promise, (error: unknown) => {
        assert.ok(error instanceof EngineArgumentError, String(error));
        assert.equal(error.code, 'ERR_SDXL_INVALID_ARGUMENT');
        assert.match(error.message, message);
        return true;
      });
      job.cancel(); // harmless on a job that never started
      assert.deepEqual(progress, [], 'a refused config reported progress');
      if (outputDir !== squarePath) assert.ok(!existsSync(outputDir), 'the output folder was created for a refused config');
    });
  }

  test('missing required fields and non-objects', async () => {
    await assert.rejects(train(null as never).promise, /Expected an object for config but received null/);
    const { modelPath: _model, ...withoutModel } = baseConfig();
    await assert.rejects(train(withoutModel as never).promise, /Expected a non-empty string for config\.modelPath but received undefined/);
    const { outputDir: _output, ...withoutOutput } = baseConfig();
    await assert.rejects(train(withoutOutput as never).promise, /config\.outputDir but received undefined/);
    await assert.rejects(train(baseConfig(), 5 as never).promise, /Expected a function for onProgress but received 5/);
  });

  test('an image that does not decode is refused by name; the native trainer never starts', async () => {
    const config = baseConfig({
      images: [
        { name: 'square', caption: 'x', path: squarePath },
        { name: 'broken', caption: 'x', data: Buffer.from('not an image at all') },
      ],
    });
    const phases = new Set<string>();
    await assert.rejects(train(config, (report) => phases.add(report.phase)).promise, (error: unknown) => {
      assert.ok(error instanceof EngineArgumentError, String(error));
      assert.match(error.message, /^config\.images\[1\] \("broken"\) is not a readable image: /);
      return true;
    });
    assert.deepEqual([...phases], ['decoding']);
    assert.ok(!existsSync(config.outputDir), 'the output folder was created');
  });

  test('defaults are filled from the schema and never shared between configs', () => {
    const first = validateTrainConfig(baseConfig());
    assert.equal(first.bucketStep, 64);
    assert.equal(first.lrScheduler, 'constant');
    assert.deepEqual(first.unetTargets, ['to_q', 'to_k', 'to_v', 'to_out.0']);
    first.unetTargets.push('proj_in');
    assert.deepEqual(validateTrainConfig(baseConfig()).unetTargets, ['to_q', 'to_k', 'to_v', 'to_out.0']);
  });
});

describe('decoding training images', () => {
  test('EXIF orientation is applied, the long side is capped, output is 3-channel RGB', async () => {
    // 120 x 80 stored, EXIF 6 (rotate 90° clockwise): upright it is 80 x 120.
    const stored = await sharp({ create: { width: 120, height: 80, channels: 3, background: { r: 200, g: 10, b: 10 } } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const upright = await decodeTrainImage({ name: 'rotated', caption: 'x', data: stored }, 0, 1024);
    assert.deepEqual([upright.width, upright.height], [80, 120]);
    assert.equal(upright.rgb.length, 80 * 120 * 3);
    const capped = await decodeTrainImage({ name: 'rotated', caption: 'x', data: stored }, 0, 60);
    assert.deepEqual([capped.width, capped.height], [40, 60]);
  });

  test('grey and transparent images become RGB on white', async () => {
    const transparent = await sharp({ create: { width: 8, height: 8, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
      .png()
      .toBuffer();
    const decoded = await decodeTrainImage({ name: 'clear', caption: 'x', data: transparent }, 0, 64);
    assert.equal(decoded.rgb.length, 8 * 8 * 3);
    assert.ok(decoded.rgb.every((byte) => byte === 255), 'transparent pixels are not white');
    const grey = await sharp({ create: { width: 4, height: 6, channels: 3, background: '#808080' } }).greyscale().png().toBuffer();
    const fromGrey = await decodeTrainImage({ name: 'grey', caption: 'x', data: grey }, 0, 64);
    assert.equal(fromGrey.rgb.length, 4 * 6 * 3);
  });
});

describe('the raw addon converts training options in C++', () => {
  let addon: NativeAddon;
  before(() => {
    addon = loadNativeAddon();
  });
  const rawOptions = (overrides: Record<string, unknown>) => ({
    modelPath: tinyModelDir,
    outputDir: freshOutputDir(),
    images: [{ name: 'a', caption: 'x', width: 4, height: 4, rgb: Buffer.alloc(4 * 4 * 3) }],
    ...overrides,
  });

  test('wrong JavaScript types are TypeErrors naming the field, thrown synchronously', () => {
    const typeError = (message: RegExp) => ({ name: 'TypeError', code: 'ERR_SDXL_INVALID_ARGUMENT', message });
    assert.throws(() => addon.train(rawOptions({ rank: '4' }) as never), typeError(/^Expected integer for options\.rank but received string "4"$/));
    assert.throws(() => addon.train(rawOptions({ randomFlip: 1 }) as never), typeError(/Expected boolean for options\.randomFlip/));
    assert.throws(() => addon.train(rawOptions({ unetTargets: ['to_q', 3] }) as never), typeError(/options\.unetTargets\[1\]/));
    assert.throws(() => addon.train(rawOptions({ metadata: { a: 1 } }) as never), typeError(/options\.metadata\.a but received number/));
    assert.throws(() => addon.train(rawOptions({ images: 'x' }) as never), typeError(/Expected array for options\.images/));
    assert.throws(
      () => addon.train(rawOptions({ images: [{ name: 'a', caption: 'x', width: 4, height: 4, rgb: [1, 2] }] }) as never),
      typeError(/Expected Buffer for options\.images\[0\]\.rgb but received array/),
    );
    assert.throws(
      () => addon.train(rawOptions({ images: [{ name: 'a', caption: 'x', width: 4, height: 4, rgb: Buffer.alloc(5) }] }) as never),
      typeError(/^Expected 48 bytes \(4 x 4 x 3\) for options\.images\[0\]\.rgb but received 5$/),
    );
    assert.throws(() => addon.train(undefined as never), /Expected object for options but received undefined/);
  });

  test('values the engine refuses reject with ERR_SDXL_INVALID_ARGUMENT before any model work', async () => {
    const phases: string[] = [];
    await assert.rejects(addon.train(rawOptions({ rank: 0 }) as never, (report: Progress) => phases.push(report.phase)).promise,
      { code: 'ERR_SDXL_INVALID_ARGUMENT', message: /^rank: must be at least 1, got 0$/ });
    await assert.rejects(addon.train(rawOptions({ optimizer: 'sgd' }) as never).promise,
      { code: 'ERR_SDXL_INVALID_ARGUMENT', message: /optimizer: 'sgd' is not one of adamw, adamw8bit/ });
    await assert.rejects(addon.train(rawOptions({ devices: ['cpu', 'cpu'], dropout: 0.1, batchSize: 2 }) as never).promise,
      { code: 'ERR_SDXL_INVALID_ARGUMENT', message: /^dropout: is not supported on several devices/ });
    assert.deepEqual(phases, []);
  });
});

describe('training the tiny model', () => {
  const phasesOf = (progress: Progress[]) => [...new Set(progress.map((report) => report.phase))];

  test('a short run reports phases and metrics and writes the LoRA, peft file and samples', async () => {
    const progress: Progress[] = [];
    const config = baseConfig({
      validationPrompts: ['a photo of sks noise'],
      validationSteps: 2,
      validationLossSamples: 2,
      savePeft: true,
      triggerPhrase: 'sks',
      metadata: { 'test.note': 'train.test.ts' },
    });
    const result = await train(config, (report) => progress.push(report)).promise;

    assert.equal(result.status, 'completed');
    assert.equal(result.steps, 4);
    const phases = phasesOf(progress);
    for (const phase of ['decoding', 'loading', 'caching', 'training', 'validating', 'saving']) {
      assert.ok(phases.includes(phase), `no "${phase}" progress in ${phases.join(', ')}`);
    }
    const training = progress.filter((report) => report.phase === 'training');
    assert.ok(training.every((report) => report.total === 4 && report.step >= 1 && report.step <= 4), JSON.stringify(training));
    const last = training.at(-1)!;
    assert.equal(last.step, 4, 'the last step is always reported');
    for (const metric of ['loss', 'loss_avg', 'lr', 'it_per_s', 'images_per_s', 'eta_s', 'memory_bytes', 'peak_memory_bytes']) {
      assert.ok(Number.isFinite(last.metrics[metric]), `metrics.${metric} = ${last.metrics[metric]}`);
    }
    assert.ok(last.metrics.loss! > 0 && last.metrics.peak_memory_bytes! > 0, JSON.stringify(last.metrics));
    assert.ok(Math.abs(last.metrics.lr! - 1e-4) < 1e-12, 'constant schedule at the default unetLr');
    for (const report of progress) assert.ok(Array.isArray(report.files) && typeof report.metrics === 'object');

    assert.ok(result.loraPath !== undefined && existsSync(result.loraPath), result.loraPath);
    assert.equal(result.loraPath, path.join(config.outputDir, 'lora.safetensors'));
    const header = await inspectSafetensors(result.loraPath);
    const names = Object.keys(header.tensors);
    assert.ok(names.length > 0 && names.every((name) => name.startsWith('lora_unet_')), names.slice(0, 3).join(', '));
    assert.equal(header.metadata.ss_network_dim, '4');
    assert.equal(header.metadata['modelspec.trigger_phrase'], 'sks');
    assert.equal(header.metadata['test.note'], 'train.test.ts');
    assert.ok(result.peftPath && existsSync(result.peftPath), String(result.peftPath));

    assert.ok(result.samplePaths.length >= 1, 'no validation samples');
    const reportedFiles = progress.flatMap((report) => report.files);
    for (const sample of result.samplePaths) {
      assert.ok(existsSync(sample), sample);
      assert.ok(reportedFiles.includes(sample), `${sample} never appeared in a progress report's files`);
      assert.equal((await sharp(sample).metadata()).format, 'png');
    }
    assert.ok(Number.isFinite(result.metrics.final_loss), JSON.stringify(result.metrics));
    assert.ok(Number.isFinite(result.metrics.validation_loss_last), JSON.stringify(result.metrics));
  });

  test('images given as readers are read only when the cache lacks them; a second run on a shared cache reads none', async () => {
    const cacheDir = path.join(scratch, 'shared-cache');
    const reads: string[] = [];
    const sources = [['square', squarePng, 160, 160], ['landscape', landscapePng, 200, 120], ['portrait', portraitPng, 120, 200]] as const;
    const images = sources.map(([name, bytes, width, height]) => ({
      name, caption: `a photo of sks ${name}`, key: `noise-${name}`, width, height,
      read: async () => {
        reads.push(name);
        return bytes;
      },
    }));
    const first = await train(baseConfig({ images, cacheDir, maxSteps: 2 })).promise;
    assert.equal(first.status, 'completed');
    assert.deepEqual(reads.sort(), ['landscape', 'portrait', 'square']);
    assert.equal(first.metrics.cache_latents_encoded, 3);
    assert.equal(first.metrics.cache_prompts_encoded, 4); // three captions and the empty prompt

    reads.length = 0;
    const second = await train(baseConfig({ images, cacheDir, maxSteps: 2 })).promise;
    assert.deepEqual(reads, []);
    assert.equal(second.metrics.cache_latents_reused, 3);
    assert.equal(second.metrics.cache_latents_encoded, 0);
    assert.equal(second.metrics.cache_prompts_encoded, 0);
    const [a, b] = await Promise.all([readFile(first.loraPath!), readFile(second.loraPath!)]);
    assert.ok(a.equals(b), 'the run on the cache trained another LoRA');

    // A reader that fails fails the run with its message.
    const broken = [{ ...images[0]!, key: 'noise-broken', read: async () => { throw new Error('the blob is gone'); } }];
    await assert.rejects(train(baseConfig({ images: broken, cacheDir, maxSteps: 1 })).promise, /the blob is gone/);
  });

  test('cancel mid-run resolves "cancelled" with a checkpoint, and a run resumed from it completes', async () => {
    const maxSteps = 10; // cancel() lands a step or two after the first report; the resumed run does the rest
    const config = baseConfig({ maxSteps });
    const progress: Progress[] = [];
    const job = train(config, (report) => {
      progress.push(report);
      if (report.phase === 'training') job.cancel();
    });
    const cancelled: TrainResult = await job.promise;
    assert.equal(cancelled.status, 'cancelled');
    assert.ok(cancelled.steps >= 1 && cancelled.steps < maxSteps, `cancelled after ${cancelled.steps} of ${maxSteps} steps`);
    assert.equal(cancelled.loraPath, undefined);
    assert.ok(cancelled.checkpointPath && existsSync(cancelled.checkpointPath), String(cancelled.checkpointPath));
    assert.ok(!existsSync(path.join(config.outputDir, 'lora.safetensors')), 'a cancelled run wrote a LoRA');
    assert.ok(phasesOf(progress).includes('saving'), 'progress after cancel() (saving the checkpoint) was not delivered');

    const resumedProgress: Progress[] = [];
    const resumed = await train({ ...config, resumeFrom: cancelled.checkpointPath }, (report) => resumedProgress.push(report))
      .promise;
    assert.equal(resumed.status, 'completed');
    assert.equal(resumed.steps, maxSteps);
    assert.ok(resumed.loraPath !== undefined && existsSync(resumed.loraPath), resumed.loraPath);
    const firstStep = resumedProgress.find((report) => report.phase === 'training')?.step ?? 0;
    assert.ok(firstStep > cancelled.steps, `the resumed run started over (first step ${firstStep})`);
  });

  test('a run on two CPU ranks (devices) trains what one device trains from the same batches, and says so in its metrics', async () => {
    const config = { batchSize: 2, maxSteps: 3, seed: 9, validationLossSamples: 0 };
    const one = await train(baseConfig(config)).promise;
    const progress: Progress[] = [];
    const two = await train(baseConfig({ ...config, devices: ['cpu', 'cpu'] }), (report) => progress.push(report)).promise;
    assert.equal(two.status, 'completed');
    assert.equal(two.metrics.world_size, 2);
    assert.ok(two.metrics.allreduce_ms_mean! >= 0);
    assert.ok(Math.abs(two.metrics.final_loss! - one.metrics.final_loss!) < 1e-6, `${two.metrics.final_loss} vs ${one.metrics.final_loss}`);
    assert.deepEqual(phasesOf(progress).slice(-2), ['saving', 'done'], 'rank 0 reports progress, once');
    assert.ok(existsSync(two.loraPath!));
  });

  test('a run on two CPU ranks with sharded optimizer states (zeroStage 2) trains what unsharded ranks train', async () => {
    const config = { batchSize: 2, maxSteps: 3, seed: 9, validationLossSamples: 0, devices: ['cpu', 'cpu'], optimizer: 'adamw8bit' };
    const unsharded = await train(baseConfig(config)).promise;
    const progress: Progress[] = [];
    const sharded = await train(baseConfig({ ...config, zeroStage: 2 }), (report) => progress.push(report)).promise;
    assert.equal(sharded.status, 'completed');
    assert.equal(sharded.metrics.zero_stage, 2);
    assert.ok(sharded.metrics.optimizer_state_bytes! < unsharded.metrics.optimizer_state_bytes!, 'rank 0 keeps its shard only');
    assert.ok(Math.abs(sharded.metrics.final_loss! - unsharded.metrics.final_loss!) < 1e-6);
    const step = progress.find((report) => report.phase === 'training' && report.metrics.allreduce_ms !== undefined);
    assert.ok(step !== undefined && step.metrics.memory_bytes_rank1! > 0, 'a step reports its all-reduce time and each rank\'s memory');
  });

  test('cancel before the native run starts rejects with ERR_SDXL_CANCELLED', async () => {
    const config = baseConfig();
    const job = train(config);
    job.cancel();
    await assert.rejects(job.promise, { code: 'ERR_SDXL_CANCELLED', message: 'cancelled' });
    assert.ok(!existsSync(config.outputDir));
  });
});

test('batchesPerEpoch: the trainer\'s batches of one epoch, by bucket, repeats and batch size; a bad plan names the field', () => {
  const plan = { resolution: 256, bucketStep: 64, minBucketSide: 64, maxBucketSide: 512, repeats: 2, batchSize: 2 };
  const square = { width: 512, height: 512 };
  const wide = { width: 1024, height: 512 }; // 2:1, in the 320x192 bucket, not 256x256
  assert.equal(batchesPerEpoch({ ...plan, images: [square, square, square] }), 3); // ceil(3 x 2 / 2)
  assert.equal(batchesPerEpoch({ ...plan, images: [square, square, square, wide] }), 4); // 3 + ceil(1 x 2 / 2)
  assert.equal(batchesPerEpoch({ ...plan, repeats: 1, batchSize: 4, images: [square, square, square, wide] }), 2);
  assert.throws(() => batchesPerEpoch({ ...plan, images: [] }), { code: 'ERR_SDXL_INVALID_ARGUMENT', message: /plan\.images is empty/ });
  assert.throws(() => batchesPerEpoch({ ...plan, images: [{ width: 0, height: 8 }] }), { code: 'ERR_SDXL_INVALID_ARGUMENT', message: /plan\.images\[0\]\.width/ });
  assert.throws(() => batchesPerEpoch({ ...plan, batchSize: 0, images: [square] }), { code: 'ERR_SDXL_INVALID_ARGUMENT', message: /plan\.batchSize/ });
});
