// Training (a LoRA, or every weight: method "full") from TypeScript. TrainConfig is engine.h's TrainOptions in
// camelCase, as a TypeBox schema holding the defaults and limits; train()
// refuses a bad config with an error naming the field before any native work,
// names and sizes each image (its key and size as given, else its hash and header),
// then runs the native trainer on its own thread, which asks for an image's pixels
// (decoded here with sharp, one at a time) only when its cache lacks the image.
//
// Cancelling: before the native run starts (while images are read) the promise
// rejects with ERR_SDXL_CANCELLED; during the run the trainer writes a
// checkpoint and the promise resolves with { status: 'cancelled', checkpointPath }.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

import sharp from 'sharp';
import { Type, type Static, type TSchema } from 'typebox';
import { Value } from 'typebox/value';

import {
  checkDevice,
  checkInteger,
  checkObject,
  checkPath,
  checkProgressCallback,
  checkSeed,
  checkString,
  describeValue,
  EngineArgumentError,
  expected,
} from './checks.js';
import { failedJob, withCallerStack, type EngineJob } from './jobs.js';
import { checkMetricNames } from './metrics.js';
import { loadNativeAddon } from './native.js';
import { METRIC_NAMES } from './types.js';
import type { DecodedTrainImage, NativeJob, NativeTrainImage, NativeTrainOptions, Progress, ProgressCallback, TrainResult } from './types.js';

// ----------------------------------------------------------------------------
// Schema

const MAX_SIDE = 4096;
const LATENT_MULTIPLE = 8; // the VAE downsamples by 8: bucket sides are multiples of it
const MAX_RANK = 1024;
const MAX_STEPS = 1_000_000;
const MAX_BATCH = 64;
const MAX_IMAGES = 100_000;
/** Class images of prior preservation (diffusers uses 100 by default; a few hundred is the most people use). */
const MAX_CLASS_IMAGES = 1000;
const MAX_VALIDATION_PROMPTS = 64;
/** Images per validation prompt of the final set scored at the end. */
const MAX_FINAL_IMAGES = 64;
/** Widest side an image to plan may have (the service's pixel limits keep real ones far below). */
const MAX_IMAGE_SIDE = 1 << 16;
const MAX_DEVICES = 64; // ranks of one run (GPUs of one machine, or CPU ranks in tests)
const MAX_SAMPLING_STEPS = 1000; // the scheduler's training timesteps
const OUTPUT_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'; // a file name, never a path
// Training downsamples every image into a bucket of about resolution^2 pixels;
// keeping more than twice that side only costs memory on the way there.
const DECODE_SIDE_FACTOR = 2;
/** EXIF orientations 5 to 8 turn the image by 90 or 270 degrees: its displayed width is its stored height. */
const FIRST_TRANSPOSING_ORIENTATION = 5;

const integer = (minimum: number, maximum: number, value: number, description: string) =>
  Type.Integer({ minimum, maximum, default: value, description });
const number = (limits: { minimum?: number; exclusiveMinimum?: number; maximum?: number; exclusiveMaximum?: number },
  value: number, description: string) => Type.Number({ ...limits, default: value, description });
const flag = (value: boolean, description: string) => Type.Boolean({ default: value, description });
const names = (value: string[], description: string, minItems = 0) =>
  Type.Array(Type.String({ minLength: 1 }), { minItems, maxItems: 256, default: value, description });
const seed = (description: string) =>
  Type.Union([Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }), Type.BigInt()], { default: 0, description });

/**
 * One training image with its caption: a file, encoded bytes (any format sharp reads), or a reader of them.
 * `key` names what the bytes are (their SHA-256, say): the trainer's disk cache keeps its latents under it
 * (with the decode size), so a later run on the same bytes reuses them. `width` and `height` are its size as
 * displayed (after EXIF orientation); they choose its bucket. A file or bytes without them are hashed and
 * their header read before training; a reader must give all three, and is called only when the image must
 * be encoded.
 */
const identity = {
  key: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,95}$', description: 'What the bytes are, e.g. their SHA-256' })),
  width: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_IMAGE_SIDE })),
  height: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_IMAGE_SIDE })),
};
export const TrainImageSource = Type.Union([
  Type.Object({
    name: Type.String({ minLength: 1, description: 'Used in errors and in the dataset hash' }),
    caption: Type.String({ minLength: 1 }),
    path: Type.String({ minLength: 1, description: 'An image file' }),
    ...identity,
  }),
  Type.Object({
    name: Type.String({ minLength: 1 }),
    caption: Type.String({ minLength: 1 }),
    data: Type.Unsafe<Uint8Array>({ description: 'Encoded image bytes (a Buffer)' }),
    ...identity,
  }),
  Type.Object({
    name: Type.String({ minLength: 1 }),
    caption: Type.String({ minLength: 1 }),
    read: Type.Unsafe<() => Promise<Uint8Array>>({ description: 'Reads the encoded image bytes when they are needed' }),
    key: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,95}$' }),
    width: Type.Integer({ minimum: 1, maximum: MAX_IMAGE_SIDE }),
    height: Type.Integer({ minimum: 1, maximum: MAX_IMAGE_SIDE }),
  }),
]);
export type TrainImageSource = Static<typeof TrainImageSource>;

/** Options of one training run; see engine.h TrainOptions for what each does. */
export const TrainConfig = Type.Object({
  // Model and files
  modelPath: Type.String({ minLength: 1, description: 'A diffusers folder or one single-file checkpoint (SGM for SDXL, LDM for SD 1.x)' }),
  configDir: Type.Optional(Type.String({ minLength: 1, description: 'For a single file: a diffusers folder with its configs' })),
  device: Type.String({ default: 'cpu', description: '"cpu", "cuda" or "cuda:N"' }),
  dtype: Type.Enum(['float32', 'bfloat16', 'float16'], { default: 'float32', description: 'Frozen weights' }),
  images: Type.Array(TrainImageSource, { minItems: 1, maxItems: MAX_IMAGES }),
  outputDir: Type.String({ minLength: 1, description: 'Receives the LoRA file(s), checkpoints/ and samples/; created when missing' }),
  outputName: Type.String({ pattern: OUTPUT_NAME_PATTERN, default: 'lora', description: '<outputDir>/<outputName>.safetensors' }),
  resumeFrom: Type.Optional(Type.String({ minLength: 1, description: 'A checkpoint of an earlier run with the same config' })),
  cacheDir: Type.Optional(Type.String({
    minLength: 1,
    description: 'Where latents and prompt embeddings are cached (created when missing); one folder per model shares them between runs. Absent: <outputDir>/cache',
  })),
  triggerPhrase: Type.String({ default: '', description: 'Recorded as modelspec.trigger_phrase' }),
  // Data
  resolution: integer(LATENT_MULTIPLE, MAX_SIDE, 1024, 'Buckets hold about resolution^2 pixels; a multiple of bucketStep'),
  minResolution: integer(0, MAX_SIDE, 0,
    '> 0: multi-resolution: each image trains at the largest resolution from minResolution to resolution (multiples of bucketStep) that fits in its own pixels; images below minResolution are skipped. 0: all at resolution'),
  bucketStep: Type.Integer({ minimum: LATENT_MULTIPLE, maximum: 1024, multipleOf: LATENT_MULTIPLE, default: 64 }),
  minBucketSide: integer(LATENT_MULTIPLE, MAX_SIDE, 256, 'Shortest bucket side, at most resolution'),
  maxBucketSide: integer(LATENT_MULTIPLE, MAX_SIDE, 2048, 'Longest bucket side, at least resolution'),
  randomFlip: flag(false, 'Mirror images at random'),
  repeats: integer(1, 10_000, 1, 'Times each image is seen per epoch'),
  captionDropout: number({ minimum: 0, exclusiveMaximum: 1 }, 0, 'Probability of training on the empty prompt'),
  classImages: Type.Array(TrainImageSource, {
    maxItems: MAX_CLASS_IMAGES,
    default: [],
    description: 'Prior preservation: class images (one size), each micro-batch trains on as many; [] = off',
  }),
  priorLossWeight: number({ minimum: 0, maximum: 100 }, 1, 'Weight of the loss on class images'),
  validationImages: Type.Array(TrainImageSource, {
    maxItems: MAX_IMAGES,
    default: [],
    description: 'Held out (a validation split): never trained on; the validation loss is over them instead of over images. [] = none',
  }),
  // What is trained
  method: Type.Enum(['lora', 'full'], {
    default: 'lora',
    description: 'lora: a LoRA network on the frozen model; full: every weight of the UNet (and of the text encoder(s) with trainTextEncoder)',
  }),
  // LoRA network (method "lora")
  rank: integer(1, MAX_RANK, 16, 'LoRA rank'),
  alpha: number({ exclusiveMinimum: 0, maximum: 65_536 }, 16, 'Scale = alpha / rank'),
  dropout: number({ minimum: 0, exclusiveMaximum: 1 }, 0, 'Dropout on the LoRA path'),
  unetTargets: names(['to_q', 'to_k', 'to_v', 'to_out.0'], 'UNet module-name suffixes that get a LoRA', 1),
  trainTextEncoder: flag(false, 'Also train LoRAs on the text encoder(s): one for SD 1.x/2.x, both for SDXL'),
  textEncoderTargets: names(['q_proj', 'k_proj', 'v_proj', 'out_proj'], 'Text-encoder module-name suffixes'),
  clipSkip: integer(0, 64, 0, "SD 1.x/2.x: condition on final_layer_norm(hidden_states[-clipSkip]) (AUTOMATIC1111's Clip skip); 0 or 1 = the last layer; SDXL takes 0 only"),
  // Loop
  maxSteps: integer(1, MAX_STEPS, 1000, 'Optimizer steps'),
  batchSize: integer(1, MAX_BATCH, 1, 'Images per forward'),
  gradientAccumulation: integer(1, 1024, 1, 'Forwards per optimizer step'),
  maxGradNorm: number({}, 1, 'Gradient clipping norm; <= 0 disables clipping'),
  lrScheduler: Type.Enum(['constant', 'constant_with_warmup', 'linear', 'cosine'], { default: 'constant' }),
  lrWarmupSteps: integer(0, MAX_STEPS, 0, 'Steps of linear warmup, at most maxSteps'),
  unetLr: number({ exclusiveMinimum: 0, maximum: 1 }, 1e-4, 'UNet LoRA learning rate'),
  textEncoderLr: number({ minimum: 0, maximum: 1 }, 5e-5, 'Text-encoder LoRA learning rate (> 0 when trainTextEncoder)'),
  textEncoder2Lr: number({ minimum: 0, maximum: 1 }, 0, "SDXL: the second text encoder's LoRA learning rate; 0 = textEncoderLr"),
  minSnrGamma: number({ minimum: 0, maximum: 1000 }, 0, 'Min-SNR loss weighting; 0 = off, 5 is usual'),
  noiseOffset: number({ minimum: 0, maximum: 1 }, 0, 'Offset noise strength'),
  seed: seed('Seed of the whole run'),
  // Optimizer
  optimizer: Type.Enum(['adamw', 'adamw8bit', 'adafactor'], {
    default: 'adamw8bit',
    description: 'adamw8bit keeps 8-bit states; adafactor a factored second moment and no first moment (fixed learning rate)',
  }),
  adamBeta1: number({ minimum: 0, exclusiveMaximum: 1 }, 0.9, 'AdamW beta1'),
  adamBeta2: number({ minimum: 0, exclusiveMaximum: 1 }, 0.999, 'AdamW beta2'),
  adamEpsilon: number({ exclusiveMinimum: 0, maximum: 1 }, 1e-8, 'AdamW epsilon'),
  weightDecay: number({ minimum: 0, maximum: 1 }, 1e-2, 'AdamW decoupled weight decay'),
  // Precision and memory
  vaeDtype: Type.Enum(['float32', 'bfloat16'], { default: 'float32', description: 'Never float16 (its known NaNs)' }),
  gradientCheckpointing: flag(false, 'Recompute activations in backward to save memory'),
  initialLossScale: number({ minimum: 1, maximum: 2 ** 32 }, 65_536, 'float16 only: dynamic loss scaling start'),
  fullBf16: flag(false, 'Method "full", dtype bfloat16: weights, gradients and updates in bfloat16 (stochastic rounding), no float32 master copies'),
  // EMA of the trained weights (method "full")
  emaDecay: number({ minimum: 0, exclusiveMaximum: 1 }, 0, 'Decay of the EMA of the trained weights; 0 = off, 0.9999 is usual'),
  emaStartStep: integer(0, MAX_STEPS, 0, 'Optimizer steps before the EMA starts following the weights'),
  emaOnCpu: flag(false, 'Keep the EMA copy in host memory'),
  validationWeights: Type.Enum(['trained', 'ema'], { default: 'trained', description: 'Which weights validation samples with' }),
  // Devices (data parallel)
  devices: Type.Array(Type.String(), {
    maxItems: MAX_DEVICES,
    default: [],
    description: 'Data parallel: one rank per device ("cpu" may be named several times, each GPU once), each taking batchSize / devices.length images of every batch; [] = device alone',
  }),
  collectiveTimeoutMs: integer(1, 24 * 3_600_000, 1_800_000, 'A rank waiting longer than this for the others fails the run'),
  zeroStage: integer(0, 2, 0, 'Several devices: 0 = every rank keeps all optimizer states; 1 = each keeps and updates its shard of them (ZeRO-1); 2 = and of the gradients (ZeRO-2)'),
  // Checkpoints, validation, output
  checkpointEvery: integer(0, MAX_STEPS, 0, 'Steps between checkpoints; 0 = only on cancel'),
  keepCheckpoints: integer(0, MAX_STEPS, 0, '> 0: only the newest this many checkpoints stay on disk; 0 = all'),
  stopAfterStep: integer(0, MAX_STEPS, 0, '> 0: stop as if cancelled after this step'),
  validationEvery: integer(0, MAX_STEPS, 0, 'Steps between validations; 0 = only at the end'),
  validationPrompts: Type.Array(Type.String({ minLength: 1 }), { maxItems: MAX_VALIDATION_PROMPTS, default: [] }),
  validationSeed: seed('Seed of the validation images'),
  validationSteps: integer(1, MAX_SAMPLING_STEPS, 20, 'Sampling steps of a validation image'),
  validationGuidanceScale: number({ minimum: 0, maximum: 100 }, 5, 'Guidance of validation images'),
  validationLossSamples: integer(0, 1024, 4, 'Fixed (image, timestep, noise) triples of the validation loss'),
  validationMetrics: Type.Array(Type.Enum([...METRIC_NAMES]), {
    maxItems: METRIC_NAMES.length,
    uniqueItems: true,
    default: [],
    description: 'Metrics of the validation images: at each validation the per-image ones (clip_t, clip_i, hps), at the end every one on the final set',
  }),
  validationFinalImages: integer(0, MAX_FINAL_IMAGES, 0, 'Images per validation prompt sampled with the final weights (seeds validationSeed + k) and scored with every metric; 0 = none'),
  metricsModelsDir: Type.String({ default: '', description: "The metrics' networks (METRICS_MODELS_DIR); '' = no metric available (each reported unavailable)" }),
  savePeft: flag(false, 'Also write <outputName>_peft.safetensors'),
  saveDtype: Type.Enum(['float32', 'float16', 'bfloat16'], { default: 'float32', description: "The LoRA or model files' tensors; float32 keeps the trained values exactly" }),
  metadata: Type.Record(Type.String(), Type.String(), { default: {}, description: 'Extra LoRA or model file header entries' }),
});
export type TrainConfig = Static<typeof TrainConfig>;
/** What callers pass: every field with a default may be left out. */
export type TrainConfigInput = Partial<TrainConfig> & Pick<TrainConfig, 'modelPath' | 'images' | 'outputDir'>;

// ----------------------------------------------------------------------------
// Checks

// "an integer from 1 to 1024", "a number > 0 and <= 1", "\"adamw\" or \"adamw8bit\"": what a schema accepts.
function describeSchema(schema: TSchema): string {
  const s = schema as Record<string, unknown>;
  if (Array.isArray(s.enum)) {
    return s.enum.map((value) => `"${String(value)}"`).join(', ').replace(/, ([^,]*)$/, ' or $1');
  }
  switch (s.type) {
    case 'integer':
    case 'number': {
      const bounds = [
        s.minimum !== undefined && `>= ${s.minimum}`,
        s.exclusiveMinimum !== undefined && `> ${s.exclusiveMinimum}`,
        s.maximum !== undefined && `<= ${s.maximum}`,
        s.exclusiveMaximum !== undefined && `< ${s.exclusiveMaximum}`,
      ].filter(Boolean);
      const kind = s.type === 'integer' ? 'an integer' : 'a finite number';
      const multiple = s.multipleOf !== undefined ? ` that is a multiple of ${s.multipleOf}` : '';
      return `${kind}${bounds.length > 0 ? ` ${bounds.join(' and ')}` : ''}${multiple}`;
    }
    case 'boolean':
      return 'a boolean';
    case 'string':
      if (s.pattern !== undefined) return `a string matching /${s.pattern}/`;
      return s.minLength !== undefined ? 'a non-empty string' : 'a string';
    case 'array': {
      const items = s.items as Record<string, unknown> | undefined;
      const of = items?.type === 'string' ? (items.minLength !== undefined ? ' of non-empty strings' : ' of strings') : '';
      const count = s.minItems !== undefined && (s.minItems as number) > 0 ? ` with at least ${s.minItems} item` : '';
      return `an array${of}${count}${s.maxItems !== undefined ? ` (at most ${s.maxItems} items)` : ''}`;
    }
    default:
      return 'a valid value';
  }
}

const KNOWN_IMAGE_FIELDS = new Set(['name', 'caption', 'path', 'data', 'read', 'key', 'width', 'height']);
const IMAGE_KEY = /^[A-Za-z0-9][A-Za-z0-9_-]{0,95}$/;

function checkImages(value: unknown, field = 'images', limit = MAX_IMAGES): TrainImageSource[] {
  if (!Array.isArray(value)) expected('an array of images', `config.${field}`, value);
  if (value.length === 0 && field === 'images') throw new EngineArgumentError('config.images is empty: training needs at least one image');
  if (value.length > limit) expected(`at most ${limit} images`, `config.${field}`, value);
  return value.map((entry: unknown, index): TrainImageSource => {
    const at = `config.${field}[${index}]`;
    const image = checkObject(at, entry);
    for (const key of Object.keys(image)) {
      if (!KNOWN_IMAGE_FIELDS.has(key)) throw new EngineArgumentError(`Unknown field ${at}.${key} (expected name, caption, one of path, data or read, and key, width and height)`);
    }
    const name = checkString(`${at}.name`, image.name, { allowEmpty: false });
    // The engine refuses whitespace-only captions too: they train the empty prompt.
    if (typeof image.caption !== 'string' || image.caption.trim().length === 0) {
      expected('a non-empty caption', `${at}.caption`, image.caption);
    }
    const caption = image.caption;
    if ([image.path, image.data, image.read].filter((source) => source !== undefined).length !== 1) {
      throw new EngineArgumentError(`${at} ("${name}") needs exactly one of path, data or read`);
    }
    const identity: { key?: string; width?: number; height?: number } = {};
    if (image.key !== undefined) {
      if (typeof image.key !== 'string' || !IMAGE_KEY.test(image.key)) expected(`a string matching ${IMAGE_KEY}`, `${at}.key`, image.key);
      identity.key = image.key;
    }
    for (const side of ['width', 'height'] as const) {
      if (image[side] !== undefined) identity[side] = checkInteger(`${at}.${side}`, image[side], 1, MAX_IMAGE_SIDE);
    }
    if ((identity.width === undefined) !== (identity.height === undefined)) {
      throw new EngineArgumentError(`${at} ("${name}") gives ${identity.width === undefined ? 'height' : 'width'} without ${identity.width === undefined ? 'width' : 'height'}`);
    }
    if (image.read !== undefined) {
      if (typeof image.read !== 'function') expected('a function', `${at}.read`, image.read);
      if (identity.key === undefined || identity.width === undefined || identity.height === undefined) {
        throw new EngineArgumentError(`${at} ("${name}") has read but not key, width and height: they are needed before it is read`);
      }
      return { name, caption, read: image.read as () => Promise<Uint8Array>, key: identity.key, width: identity.width, height: identity.height! };
    }
    if (image.path !== undefined) return { name, caption, path: checkPath(`${at}.path`, image.path, 'file'), ...identity };
    if (!(image.data instanceof Uint8Array) || image.data.length === 0) {
      expected('a non-empty Buffer', `${at}.data`, image.data);
    }
    return { name, caption, data: image.data, ...identity };
  });
}

function checkMetadata(value: unknown): Record<string, string> {
  const metadata = checkObject('config.metadata', value);
  for (const [key, entry] of Object.entries(metadata)) checkString(`config.metadata.${key}`, entry);
  return metadata as Record<string, string>;
}

// Rules between fields, after each field passed on its own.
function checkRelations(config: TrainConfig): void {
  const refuse = (message: string): never => {
    throw new EngineArgumentError(message);
  };
  if (config.resolution % config.bucketStep !== 0) {
    refuse(`Expected a multiple of config.bucketStep (${config.bucketStep}) for config.resolution but received ${config.resolution}`);
  }
  if (config.minResolution > 0 && (config.minResolution > config.resolution || config.minResolution % config.bucketStep !== 0)) {
    refuse(`Expected 0 or a multiple of config.bucketStep (${config.bucketStep}) up to config.resolution (${config.resolution}) for config.minResolution but received ${config.minResolution}`);
  }
  if (config.minBucketSide > config.resolution || config.maxBucketSide < config.resolution) {
    refuse(
      `config.resolution (${config.resolution}) must lie between config.minBucketSide (${config.minBucketSide}) ` +
        `and config.maxBucketSide (${config.maxBucketSide})`,
    );
  }
  if (config.lrWarmupSteps > config.maxSteps) {
    refuse(`Expected at most config.maxSteps (${config.maxSteps}) for config.lrWarmupSteps but received ${config.lrWarmupSteps}`);
  }
  if (config.method === 'lora' && config.trainTextEncoder && config.textEncoderTargets.length === 0) {
    refuse('config.textEncoderTargets is empty but config.trainTextEncoder is set: name at least one module suffix');
  }
  if (config.trainTextEncoder && config.textEncoderLr <= 0) {
    refuse(`Expected a number > 0 for config.textEncoderLr when config.trainTextEncoder is set but received ${config.textEncoderLr}`);
  }
  if (config.method !== 'full') {
    if (config.fullBf16) refuse('config.fullBf16 is set but config.method is "lora": it is for method "full"');
    if (config.emaDecay > 0) refuse(`config.emaDecay is ${config.emaDecay} but config.method is "lora": an EMA is kept of full fine-tuning only`);
  }
  if (config.fullBf16 && config.dtype !== 'bfloat16') {
    refuse(`config.fullBf16 needs config.dtype "bfloat16" but received "${config.dtype}"`);
  }
  if (config.validationWeights === 'ema' && config.emaDecay <= 0) {
    refuse('config.validationWeights is "ema" but config.emaDecay is 0: there is no EMA to validate with');
  }
  if (config.validationEvery > 0 && config.validationPrompts.length === 0 && config.validationLossSamples === 0) {
    refuse(
      `config.validationEvery is ${config.validationEvery} but there is nothing to validate: ` +
        'give config.validationPrompts or a config.validationLossSamples above 0',
    );
  }
  if ((config.validationMetrics.length > 0 || config.validationFinalImages > 0) && config.validationPrompts.length === 0) {
    refuse(
      `config.validation${config.validationMetrics.length > 0 ? 'Metrics' : 'FinalImages'} needs config.validationPrompts: ` +
        'the metrics score the images sampled from them',
    );
  }
  if (config.devices.length > 1 && config.batchSize % config.devices.length !== 0) {
    refuse(
      `config.batchSize (${config.batchSize}) does not split evenly over the ${config.devices.length} config.devices ` +
        `(each takes batchSize / devices of every batch): use a multiple of ${config.devices.length}`,
    );
  }
  if (config.zeroStage > 0 && config.devices.length < 2) {
    refuse(`config.zeroStage ${config.zeroStage} shards over several ranks but config.devices names ${config.devices.length}: give two or more devices, or zeroStage 0`);
  }
  if (existsSync(config.outputDir) && !statSync(config.outputDir).isDirectory()) {
    refuse(`Expected a directory for config.outputDir but ${config.outputDir} is a file`);
  }
}

function checkDevices(name: string, value: unknown): string[] {
  if (!Array.isArray(value) || value.length > MAX_DEVICES) expected(`an array of at most ${MAX_DEVICES} devices`, name, value);
  return value.map((device, index) => checkDevice(`${name}[${index}]`, device));
}

// Fields whose checks need more than their schema (files, seeds, the images).
const SPECIAL_FIELDS: Record<string, (name: string, value: unknown) => unknown> = {
  modelPath: (name, value) => checkPath(name, value, 'file or directory'),
  configDir: (name, value) => checkPath(name, value, 'directory'),
  resumeFrom: (name, value) => checkPath(name, value, 'file'),
  device: (name, value) => checkDevice(name, value),
  devices: (name, value) => checkDevices(name, value),
  images: (_name, value) => checkImages(value),
  classImages: (_name, value) => checkImages(value, 'classImages', MAX_CLASS_IMAGES),
  validationImages: (_name, value) => checkImages(value, 'validationImages'),
  metadata: (_name, value) => checkMetadata(value),
  seed: (name, value) => checkSeed(name, value),
  validationSeed: (name, value) => checkSeed(name, value),
  validationMetrics: (name, value) => checkMetricNames(name, value),
  metricsModelsDir: (name, value) => (value === '' ? '' : checkPath(name, value, 'directory')),
};

/**
 * Checks every field of `value` against TrainConfig and the rules between fields, and fills the defaults.
 * Throws EngineArgumentError (code ERR_SDXL_INVALID_ARGUMENT) naming the first bad field.
 */
export function validateTrainConfig(value: unknown): TrainConfig {
  const input = checkObject('config', value);
  const properties = TrainConfig.properties as Record<string, TSchema>;
  for (const key of Object.keys(input)) {
    if (!Object.hasOwn(properties, key)) throw new EngineArgumentError(`Unknown field config.${key} (not a TrainConfig option)`);
  }
  const required = new Set(TrainConfig.required as string[]);
  const result: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(properties)) {
    const name = `config.${key}`;
    let field = input[key];
    if (field === undefined) {
      const fallback = (schema as { default?: unknown }).default;
      if (fallback === undefined) {
        if (required.has(key)) expected(describeSchema(schema), name, field);
        continue; // optional without a default: left out
      }
      field = structuredClone(fallback); // never share the schema's arrays and objects
    }
    const special = SPECIAL_FIELDS[key];
    if (special) result[key] = special(name, field);
    else if (Value.Check(schema, field)) result[key] = field;
    else expected(describeSchema(schema), name, field);
  }
  const config = result as TrainConfig;
  checkRelations(config);
  return config;
}

// ----------------------------------------------------------------------------
// Images

/**
 * Decodes config.images[index] as training wants it: EXIF-rotated, flattened onto white, sRGB,
 * at most `maxSide` on the long side, raw RGB. Throws EngineArgumentError naming the image.
 */
export async function decodeTrainImage(image: TrainImageSource, index: number, maxSide: number): Promise<DecodedTrainImage> {
  const input = 'path' in image ? image.path : 'data' in image ? image.data : await image.read();
  try {
    const { data, info } = await sharp(input, { autoOrient: true })
      .flatten({ background: '#ffffff' }) // transparent pixels would otherwise train on their hidden colour
      .toColourspace('srgb')
      .resize({ width: maxSide, height: maxSide, fit: 'inside', withoutEnlargement: true })
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
      throw new Error(`decoded to ${info.channels} channels of ${data.length} bytes, expected RGB`);
    }
    return { name: image.name, caption: image.caption, width: info.width, height: info.height, rgb: data };
  } catch (error) {
    throw new EngineArgumentError(
      `config.images[${index}] (${describeValue(image.name)}) is not a readable image: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/**
 * What the trainer is told of config.images[index] before any pixel is decoded: its size as displayed (its
 * bucket) and a key naming its bytes and the decode size (its cache entries). Given ones are taken as they are;
 * otherwise the bytes are hashed and their header read. Throws EngineArgumentError naming the image.
 */
export async function describeTrainImage(image: TrainImageSource, index: number, maxSide: number): Promise<NativeTrainImage> {
  let { key, width, height } = image;
  if (key === undefined || width === undefined || height === undefined) {
    const bytes = await bytesOf(image);
    key ??= createHash('sha256').update(bytes).digest('hex');
    if (width === undefined || height === undefined) {
      try {
        const header = await sharp(bytes).metadata();
        if (header.width === undefined || header.height === undefined) throw new Error('no size in its header');
        const transposed = (header.orientation ?? 1) >= FIRST_TRANSPOSING_ORIENTATION;
        width = transposed ? header.height : header.width;
        height = transposed ? header.width : header.height;
      } catch (error) {
        throw new EngineArgumentError(
          `config.images[${index}] (${describeValue(image.name)}) is not a readable image: ${(error as Error).message}`,
          { cause: error },
        );
      }
    }
  }
  return { name: image.name, caption: image.caption, width, height, key: `${key}-d${maxSide}` };
}

async function bytesOf(image: TrainImageSource): Promise<Uint8Array> {
  if ('read' in image) return image.read();
  if ('path' in image) return readFile(image.path);
  return image.data;
}

// ----------------------------------------------------------------------------
// Running

/** A training run on a native thread; see the header for what cancel() resolves with. */
export type TrainJob = EngineJob<TrainResult>;

function cancelledError(): Error {
  return Object.assign(new Error('cancelled'), { code: 'ERR_SDXL_CANCELLED' });
}

function progress(phase: string, step: number, total: number, message: string): Progress {
  return { phase, step, total, message, metrics: {}, files: [] };
}

/** The bucketing and batching fields of a train config that decide how many micro-batches an epoch holds. */
export interface EpochPlan {
  /** Each training image's size as displayed (after its EXIF orientation), as the trainer decodes it. */
  images: Array<{ width: number; height: number }>;
  resolution: number;
  /** 0 (absent): every image at resolution; else multi-resolution, images below it skipped (TrainConfig.minResolution). */
  minResolution?: number;
  bucketStep: number;
  minBucketSide: number;
  maxBucketSide: number;
  repeats: number;
  batchSize: number;
}

/**
 * Micro-batches in one epoch of training on these image sizes: the images of each aspect-ratio bucket, times
 * repeats, in batches of batchSize that never mix buckets (what the trainer's sampler does). A number of epochs
 * is ceil(epochs * this / gradientAccumulation) optimizer steps.
 */
export function batchesPerEpoch(plan: EpochPlan): number {
  if (plan.images.length === 0) throw new EngineArgumentError('plan.images is empty: an epoch needs at least one image');
  for (const [index, image] of plan.images.entries()) {
    checkInteger(`plan.images[${index}].width`, image.width, 1, MAX_IMAGE_SIDE);
    checkInteger(`plan.images[${index}].height`, image.height, 1, MAX_IMAGE_SIDE);
  }
  for (const field of ['resolution', 'bucketStep', 'minBucketSide', 'maxBucketSide', 'repeats', 'batchSize'] as const) {
    checkInteger(`plan.${field}`, plan[field], 1, MAX_IMAGE_SIDE);
  }
  if (plan.minResolution !== undefined) checkInteger('plan.minResolution', plan.minResolution, 0, MAX_IMAGE_SIDE);
  return loadNativeAddon().batchesPerEpoch(plan);
}

/**
 * Trains a LoRA, or the whole model (method "full"). A bad config gives a job whose promise rejects with an EngineArgumentError
 * before any image is decoded and before the native trainer is called.
 */
export function train(config: TrainConfigInput, onProgress?: ProgressCallback): TrainJob {
  const caller = new Error();
  let checked: TrainConfig;
  const listeners = new Set<ProgressCallback>();
  try {
    checked = validateTrainConfig(config);
    const callback = checkProgressCallback(onProgress);
    if (callback) listeners.add(callback);
  } catch (error) {
    return failedJob(error);
  }
  const report = (update: Progress) => {
    for (const listener of listeners) listener(update);
  };
  let cancelled = false;
  let native: NativeJob<TrainResult> | undefined;

  const run = async (): Promise<TrainResult> => {
    await Promise.resolve(); // report nothing before train() has returned the job to its caller
    const { images, classImages, validationImages, ...options } = checked;
    const maxSide = Math.min(MAX_SIDE, checked.resolution * DECODE_SIDE_FACTOR);
    const all = [...images, ...classImages, ...validationImages];
    // Only what names and sizes each image: the pixels are decoded when the trainer asks for them.
    const described: NativeTrainImage[] = [];
    for (const [index, image] of all.entries()) {
      if (cancelled) throw cancelledError();
      const known = image.key !== undefined && image.width !== undefined;
      if (!known) report(progress('decoding', index, all.length, image.name));
      described.push(await describeTrainImage(image, index, maxSide));
    }
    report(progress('decoding', all.length, all.length, ''));
    if (cancelled) throw cancelledError();
    mkdirSync(checked.outputDir, { recursive: true });
    const nativeOptions: NativeTrainOptions = {
      ...options,
      images: described.slice(0, images.length),
      classImages: described.slice(images.length, images.length + classImages.length),
      validationImages: described.slice(images.length + classImages.length),
      loadPixels: async (index: number) => {
        const image = all[index];
        if (image === undefined) throw new Error(`loadPixels: no image ${index}`);
        const { width, height, rgb } = await decodeTrainImage(image, index, maxSide);
        return { width, height, rgb };
      },
    };
    native = loadNativeAddon().train(nativeOptions, report);
    return native.promise;
  };

  return {
    promise: withCallerStack(run(), caller),
    cancel() {
      cancelled = true;
      native?.cancel();
    },
    onProgress(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
