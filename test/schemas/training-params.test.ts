// Training-run params: one table gives the request schema, the resolved params a run
// stores and the engine's TrainConfig; the engine's own validation accepts what it maps to.
// Params of some model families only are null for the others, and refused when named; so
// are params of one training method (lora or full) only.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Value } from 'typebox/value';
import { EngineArgumentError, validateTrainConfig } from '../../src/engine/index.js';
import {
  CPU_PRECISION,
  CUDA_PRECISION,
  FULL_LEARNING_RATE,
  FULL_TEXT_ENCODER_LR,
  paramOfTrainField,
  paramsOutsideFamily,
  paramsOutsideMethod,
  resolveTrainingParams,
  storedTrainingParams,
  trainConfigFields,
  TRAINING_PARAMS,
  TrainingParams,
} from '../../src/schemas/training-params.js';
import { tinyModelDir } from '../engine/fixtures.js';
import { png } from '../support/images.js';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-params-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));
const photo = path.join(scratch, 'a.png');
fs.writeFileSync(photo, await png({ width: 256, height: 256 }));
const FILES = {
  modelPath: tinyModelDir,
  images: [{ name: 'a.png', path: photo, caption: 'a photo of ohwx dog' }],
  outputDir: path.join(scratch, 'out'),
};

test('the defaults, mapped to TrainConfig, are what the engine accepts, and land where they should', () => {
  const params = resolveTrainingParams({}, { family: 'sdxl', mixed_precision: 'bf16', resolution: 1024 });
  assert.equal(params.mixed_precision, 'bf16', "the server's precision");
  assert.equal(resolveTrainingParams({}, { family: 'sdxl', mixed_precision: 'no', resolution: 128 }).resolution, 128, "the model's resolution");
  assert.equal(resolveTrainingParams({ resolution: 64 }, { family: 'sdxl', mixed_precision: 'no', resolution: 128 }).resolution, 64, 'the request over it');
  assert.deepEqual(params.validation, { every: 0, prompts: [], steps: 25, guidance_scale: 5, seed: 0, metrics: [], final_images: 0 });
  const config = validateTrainConfig({ ...FILES, ...trainConfigFields(params) });
  assert.equal(config.resolution, 1024);
  assert.equal(config.maxSteps, 1000);
  assert.equal(config.rank, 16);
  assert.equal(config.unetLr, 1e-4);
  assert.equal(config.dtype, 'bfloat16');
  assert.equal(config.optimizer, 'adamw8bit');
  assert.equal(config.gradientCheckpointing, true);
  assert.equal(config.minSnrGamma, 5);
  assert.equal(config.checkpointEvery, 250);
  assert.equal(config.savePeft, true);
  assert.equal(config.validationSteps, 25);
});

test('every param sets TrainConfig fields the engine knows', () => {
  // validateTrainConfig refuses unknown fields, so a misspelt mapping fails here.
  const everything = resolveTrainingParams(
    { mixed_precision: 'no', train_text_encoder: true, validation: { every: 10, prompts: ['a photo of ohwx dog'] } },
    { family: 'sdxl', mixed_precision: 'bf16', resolution: 1024 },
  );
  const config = validateTrainConfig({ ...FILES, ...trainConfigFields(everything) });
  assert.equal(config.dtype, 'float32');
  assert.equal(config.saveDtype, 'float16', "kohya's usual precision by default");
  assert.equal(config.trainTextEncoder, true);
  assert.equal(config.validationEvery, 10);
  assert.deepEqual(config.validationPrompts, ['a photo of ohwx dog']);
  assert.equal(config.validationSteps, 25, 'the validation fields left out keep their defaults');
  assert.deepEqual([config.validationMetrics, config.validationFinalImages], [[], 0]);
  assert.equal(Object.keys(TRAINING_PARAMS).length, Object.keys(everything).length);
});

// As the route validates: defaults filled in first (Ajv's useDefaults), then checked.
const withDefaults = (params: Record<string, unknown>) => Value.Default(TrainingParams, structuredClone(params));

test('the request schema refuses unknown params and values out of bounds, naming them', () => {
  assert.ok(Value.Check(TrainingParams, withDefaults({})));
  assert.ok(Value.Check(TrainingParams, withDefaults({ rank: 32, validation: { prompts: ['x'] } })));
  const bad: Array<[Record<string, unknown>, string]> = [
    [{ lr: 1e-4 }, ''],
    [{ rank: 0 }, '/rank'],
    [{ resolution: 1000 }, '/resolution'],
    [{ resolution: 4096 }, '/resolution'],
    [{ learning_rate: 0 }, '/learning_rate'],
    [{ max_steps: 1_000_000 }, '/max_steps'],
    [{ optimizer: 'sgd' }, '/optimizer'],
    [{ mixed_precision: 'fp8' }, '/mixed_precision'],
    [{ validation: { prompts: Array.from({ length: 9 }, () => 'x') } }, '/validation/prompts'],
    [{ validation: { every: 10, guidance: 5 } }, '/validation'],
  ];
  for (const [params, pointer] of bad) {
    const errors = [...Value.Errors(TrainingParams, withDefaults(params))];
    assert.ok(errors.length > 0, JSON.stringify(params));
    assert.ok(errors.some((error) => error.instancePath === pointer), `${JSON.stringify(params)}: ${JSON.stringify(errors.map((e) => e.instancePath))}`);
  }
});

test("an engine error about its own field names the param that sets it", () => {
  assert.equal(paramOfTrainField('lrWarmupSteps'), 'warmup_steps');
  assert.equal(paramOfTrainField('unetLr'), 'learning_rate');
  assert.equal(paramOfTrainField('dtype'), 'mixed_precision');
  assert.equal(paramOfTrainField('validationPrompts'), 'validation.prompts');
  assert.equal(paramOfTrainField('modelPath'), undefined, "not a param: the server's");
  const params = resolveTrainingParams({ max_steps: 10, warmup_steps: 20 }, { family: 'sdxl', mixed_precision: 'no', resolution: 1024 });
  assert.throws(
    () => validateTrainConfig({ ...FILES, ...trainConfigFields(params) }),
    (error: unknown) => {
      assert.ok(error instanceof EngineArgumentError);
      const field = /for config\.(\w+)/.exec(error.message)?.[1];
      assert.equal(paramOfTrainField(field ?? ''), 'warmup_steps', error.message);
      return true;
    },
  );
});

test('params of some families only: SD 1.x/2.x runs resolve clip_skip 1 and no second text-encoder rate, SDXL runs the reverse', () => {
  for (const family of ['sd1', 'sd2'] as const) {
    const params = resolveTrainingParams({ text_encoder_lr: 2e-5 }, { family, mixed_precision: CUDA_PRECISION[family], resolution: 512 });
    assert.equal(params.clip_skip, 1, family);
    assert.equal(params.text_encoder_2_lr, null, family);
    assert.equal(resolveTrainingParams({ clip_skip: 2 }, { family, mixed_precision: 'no', resolution: 512 }).clip_skip, 2);
    const config = validateTrainConfig({ ...FILES, ...trainConfigFields(params) });
    assert.equal(config.clipSkip, 1);
    assert.equal(config.textEncoder2Lr, 0, "not set: the engine's default");
  }
  const sdxl = resolveTrainingParams({ text_encoder_lr: 2e-5 }, { family: 'sdxl', mixed_precision: 'bf16', resolution: 1024 });
  assert.equal(sdxl.clip_skip, null);
  assert.equal(sdxl.text_encoder_2_lr, 2e-5, 'text_encoder_lr, as given');
  assert.equal(resolveTrainingParams({}, { family: 'sdxl', mixed_precision: 'bf16', resolution: 1024 }).text_encoder_2_lr, 5e-5, "text_encoder_lr's default");
  const own = resolveTrainingParams({ text_encoder_2_lr: 1e-5 }, { family: 'sdxl', mixed_precision: 'bf16', resolution: 1024 });
  const config = validateTrainConfig({ ...FILES, ...trainConfigFields(own) });
  assert.equal(config.textEncoder2Lr, 1e-5);
  assert.equal(config.clipSkip, 0, 'not set on SDXL');
  assert.equal(paramOfTrainField('clipSkip'), 'clip_skip');
  assert.equal(paramOfTrainField('textEncoder2Lr'), 'text_encoder_2_lr');
});

test('a param another family has is named with why; the request schema bounds clip_skip to 1..12 and fills in no default', () => {
  assert.deepEqual(paramsOutsideFamily({ text_encoder_2_lr: 1e-5, rank: 8 }, 'sd1').map((outside) => [outside.param, outside.families]), [['text_encoder_2_lr', ['sdxl']]]);
  assert.match(paramsOutsideFamily({ text_encoder_2_lr: 1e-5 }, 'sd2')[0]!.why, /one text encoder/);
  assert.deepEqual(paramsOutsideFamily({ clip_skip: 2 }, 'sdxl').map((outside) => outside.param), ['clip_skip']);
  assert.deepEqual(paramsOutsideFamily({ clip_skip: 2 }, 'sd1'), []);
  assert.deepEqual(paramsOutsideFamily({ text_encoder_2_lr: 1e-5 }, 'sdxl'), []);
  // A schema default would be filled into every request (Ajv's useDefaults), SDXL ones included.
  const filled = withDefaults({}) as Record<string, unknown>;
  assert.equal(filled.clip_skip, undefined);
  assert.equal(filled.text_encoder_2_lr, undefined);
  for (const clipSkip of [0, 13, 1.5]) {
    assert.ok([...Value.Errors(TrainingParams, withDefaults({ clip_skip: clipSkip }))].some((error) => error.instancePath === '/clip_skip'), String(clipSkip));
  }
  assert.ok(Value.Check(TrainingParams, withDefaults({ clip_skip: 12, text_encoder_2_lr: 1e-4 })));
});

test("the precision a run names none of follows the family on CUDA, and is float32 on the CPU", () => {
  assert.deepEqual(CUDA_PRECISION, { sd1: 'fp16', sd2: 'bf16', sdxl: 'bf16' });
  assert.deepEqual(CPU_PRECISION, { sd1: 'no', sd2: 'no', sdxl: 'no' });
  const params = resolveTrainingParams({}, { family: 'sd1', mixed_precision: CUDA_PRECISION.sd1, resolution: 512 });
  assert.equal(validateTrainConfig({ ...FILES, ...trainConfigFields(params) }).dtype, 'float16');
});

test('runs stored before clip_skip and text_encoder_2_lr existed read as the SDXL runs they were', () => {
  const old = resolveTrainingParams({ text_encoder_lr: 3e-5 }, { family: 'sdxl', mixed_precision: 'no', resolution: 1024 }) as Record<string, unknown>;
  delete old.clip_skip;
  delete old.text_encoder_2_lr;
  const stored = storedTrainingParams(structuredClone(old));
  assert.equal(stored.clip_skip, null);
  assert.equal(stored.text_encoder_2_lr, 3e-5);
  const sd1 = resolveTrainingParams({}, { family: 'sd1', mixed_precision: 'no', resolution: 512 });
  assert.deepEqual(storedTrainingParams(structuredClone(sd1)), sd1, 'a null stays null');
});

test('validation.metrics and final_images map to the engine; runs stored before them scored nothing', () => {
  const context = { family: 'sdxl', mixed_precision: 'no', resolution: 128 } as const;
  const scored = resolveTrainingParams({ validation: { prompts: ['a photo of ohwx dog'], metrics: ['clip_t', 'fid'], final_images: 10 } }, context);
  const config = validateTrainConfig({ ...FILES, ...trainConfigFields(scored) });
  assert.deepEqual([config.validationMetrics, config.validationFinalImages], [['clip_t', 'fid'], 10]);
  assert.equal(paramOfTrainField('validationMetrics'), 'validation.metrics');
  assert.equal(paramOfTrainField('validationFinalImages'), 'validation.final_images');
  assert.equal(Value.Check(TrainingParams, withDefaults({ validation: { metrics: ['clip_t', 'clip_t'] } })), false, 'each metric once');
  assert.equal(Value.Check(TrainingParams, withDefaults({ validation: { metrics: ['dino'] } })), false, 'known metrics only');
  assert.equal(Value.Check(TrainingParams, withDefaults({ validation: { final_images: 65 } })), false, 'at most 64 per prompt');
  const old = structuredClone(resolveTrainingParams({}, context)) as Record<string, any>;
  delete old.validation.metrics;
  delete old.validation.final_images;
  assert.deepEqual(storedTrainingParams(old).validation, { every: 0, prompts: [], steps: 25, guidance_scale: 5, seed: 0, metrics: [], final_images: 0 });
});

test('method full resolves DreamBooth defaults, nulls the LoRA params, and maps to what the engine accepts', () => {
  const context = { family: 'sdxl', mixed_precision: 'no', resolution: 128 } as const;
  const full = resolveTrainingParams({ method: 'full' }, context);
  assert.equal(full.method, 'full');
  assert.equal(full.learning_rate, FULL_LEARNING_RATE);
  assert.equal(full.text_encoder_lr, FULL_TEXT_ENCODER_LR);
  assert.equal(full.text_encoder_2_lr, FULL_TEXT_ENCODER_LR, "the second encoder follows the first's full rate");
  assert.equal(full.max_steps, 800);
  assert.equal(full.keep_checkpoints, 1);
  assert.deepEqual(JSON.parse(JSON.stringify(full.prior_preservation)), { num_class_images: 100, loss_weight: 1 }, 'prior preservation on, every field at its default');
  assert.deepEqual([full.rank, full.alpha, full.save_peft], [null, null, null], 'no LoRA network');
  assert.deepEqual([full.full_bf16, full.ema_decay, full.ema_start_step, full.ema_on_cpu, full.validation_weights], [false, 0, 0, false, 'trained']);
  assert.equal(full.save_dtype, 'float16');
  const config = validateTrainConfig({ ...FILES, ...trainConfigFields(full) });
  assert.equal(config.method, 'full');
  assert.equal(config.unetLr, FULL_LEARNING_RATE);
  assert.equal(config.keepCheckpoints, 1);
  assert.equal(config.rank, 16, "not set: the engine's default, which a full run ignores");

  const lora = resolveTrainingParams({}, context);
  assert.equal(lora.method, 'lora');
  assert.deepEqual([lora.rank, lora.alpha, lora.save_peft, lora.learning_rate, lora.max_steps, lora.keep_checkpoints, lora.prior_preservation], [16, 16, true, 1e-4, 1000, 0, null]);
  assert.deepEqual([lora.full_bf16, lora.ema_decay, lora.ema_start_step, lora.ema_on_cpu, lora.validation_weights], [null, null, null, null, null], 'no full-only param');
  assert.equal(validateTrainConfig({ ...FILES, ...trainConfigFields(lora) }).method, 'lora');

  // What a full run is given stays given: rates, prior preservation off, an EMA.
  const given = resolveTrainingParams({ method: 'full', learning_rate: 1e-6, prior_preservation: null, ema_decay: 0.999, validation_weights: 'ema' }, context);
  assert.deepEqual([given.learning_rate, given.prior_preservation, given.ema_decay, given.validation_weights], [1e-6, null, 0.999, 'ema']);
  const ema = validateTrainConfig({ ...FILES, ...trainConfigFields(given) });
  assert.deepEqual([ema.emaDecay, ema.validationWeights], [0.999, 'ema']);
});

test('params of the other method are named with why; the request schema fills in no method-dependent default', () => {
  assert.deepEqual(paramsOutsideMethod({ rank: 8, alpha: 8, learning_rate: 1e-5 }, 'full').map((outside) => outside.param), ['rank', 'alpha']);
  assert.match(paramsOutsideMethod({ save_peft: false }, 'full')[0]!.why, /no LoRA network/);
  assert.deepEqual(paramsOutsideMethod({ ema_decay: 0.9, full_bf16: true }, 'lora').map((outside) => [outside.param, outside.methods]), [['full_bf16', ['full']], ['ema_decay', ['full']]]);
  assert.deepEqual(paramsOutsideMethod({ rank: 8 }, 'lora'), []);
  const filled = withDefaults({}) as Record<string, unknown>;
  assert.equal(filled.method, 'lora', 'the method has a plain default');
  for (const name of ['rank', 'alpha', 'save_peft', 'learning_rate', 'text_encoder_lr', 'max_steps', 'keep_checkpoints', 'ema_decay', 'full_bf16', 'prior_preservation']) {
    assert.equal(filled[name], undefined, `${name}: a default filled in by the schema would be taken for one the request gave`);
  }
  assert.ok([...Value.Errors(TrainingParams, withDefaults({ method: 'dreambooth' }))].some((error) => error.instancePath === '/method'));
  assert.ok([...Value.Errors(TrainingParams, withDefaults({ ema_decay: 1 }))].some((error) => error.instancePath === '/ema_decay'));
  assert.ok(Value.Check(TrainingParams, withDefaults({ method: 'full', optimizer: 'adafactor', keep_checkpoints: 2 })));
});

test('runs stored before method existed read as the LoRA runs they were', () => {
  const old = resolveTrainingParams({}, { family: 'sdxl', mixed_precision: 'no', resolution: 1024 }) as Record<string, unknown>;
  for (const name of ['method', 'keep_checkpoints', 'full_bf16', 'ema_decay', 'ema_start_step', 'ema_on_cpu', 'validation_weights']) delete old[name];
  const stored = storedTrainingParams(structuredClone(old));
  assert.equal(stored.method, 'lora');
  assert.equal(stored.keep_checkpoints, 0, 'every checkpoint kept, as they were');
  assert.equal(stored.ema_decay, null);
  assert.deepEqual(stored, resolveTrainingParams({}, { family: 'sdxl', mixed_precision: 'no', resolution: 1024 }));
});
