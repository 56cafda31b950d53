// `params` of a training run: the public, snake_case face of the engine's TrainConfig
// (src/engine/train.ts). One table says, for each param, its schema (limits and the
// default for 5 to 20 photos of one subject), the model families and training methods it
// applies to, and the TrainConfig field it sets; the request schema (validation and
// OpenAPI), the resolved params a run stores and the mapping to TrainConfig all come from
// it. A param of some families only (clip_skip, text_encoder_2_lr) or of one method only
// (rank with lora, ema_decay with full) is stored as null for the others.
//
// `method` decides what is trained: lora (a LoRA network on the frozen model) or full
// (every weight: DreamBooth). A param whose default differs by method carries its defaults
// in x-method-defaults instead of a schema default (Ajv would fill a schema default into
// every request, and a full run could not tell a rank it was sent from one filled in).
//
// The device and the frozen weights' precision are the server's (TRAIN_DEVICES, TRAIN_DEVICE);
// mixed_precision, when given, overrides the precision. `devices` asks how many of a worker's
// devices the run trains on (the worker names them); zero_stage shards the optimizer over them.
import { Type, type Static, type TSchema } from 'typebox';
import type { TrainConfig } from '../engine/train.js';
import { METRIC_NAMES } from '../engine/types.js';
import { familiesOf, MAX_CLIP_SKIP, NO_CLIP_SKIP_ON_SDXL, onlyFor, type ModelFamily } from './model-families.js';

// ----------------------------------------------------------------------------
// Training methods

export const TRAINING_METHODS = ['lora', 'full'] as const;
export type TrainingMethod = (typeof TRAINING_METHODS)[number];

/** The schema keyword listing the methods a param applies to (an annotation, as x-model-families). */
export const METHODS_KEYWORD = 'x-training-methods';
/** The schema keyword holding a param's default under each method it applies to (an annotation: the server fills them in). */
export const METHOD_DEFAULTS_KEYWORD = 'x-method-defaults';

/** Schema options of a param of `method` only, whose default under it is `value`. */
function onlyForMethod(method: TrainingMethod, value: unknown): Record<string, unknown> {
  return { [METHODS_KEYWORD]: [method], [METHOD_DEFAULTS_KEYWORD]: { [method]: value } };
}

/** Schema options of a param of every method whose default differs by method. */
function byMethod(defaults: Record<TrainingMethod, unknown>): Record<string, unknown> {
  return { [METHOD_DEFAULTS_KEYWORD]: defaults };
}

/** The methods a param's schema is marked for; undefined: every method. */
export function methodsOf(schema: unknown): readonly TrainingMethod[] | undefined {
  return (schema as Record<string, TrainingMethod[] | undefined>)[METHODS_KEYWORD];
}

/** A param's default under `method` ({ value }: null is a default too), when it has one there. */
function methodDefault(schema: unknown, method: TrainingMethod): { value: unknown } | undefined {
  const defaults = (schema as Record<string, Partial<Record<TrainingMethod, unknown>> | undefined>)[METHOD_DEFAULTS_KEYWORD];
  return defaults !== undefined && Object.hasOwn(defaults, method) ? { value: structuredClone(defaults[method]) } : undefined;
}

export const MAX_STEPS = 100_000;
/** Devices of one run, and of one worker (the engine's limit). */
export const MAX_RUN_DEVICES = 64;
const MAX_VALIDATION_PROMPTS = 8;
/** Images per validation prompt of the end-of-run set the metrics score (the engine's limit). */
export const MAX_FINAL_IMAGES = 64;

const integer = (minimum: number, maximum: number, value: number, description: string) =>
  Type.Integer({ minimum, maximum, default: value, description });
const flag = (value: boolean, description: string) => Type.Boolean({ default: value, description });

export const ValidationParams = Type.Object(
  {
    every: integer(0, MAX_STEPS, 0, 'Steps between validations (a loss on held samples and images of the prompts); 0 = at the end only'),
    prompts: Type.Array(Type.String({ minLength: 1, maxLength: 1000 }), {
      maxItems: MAX_VALIDATION_PROMPTS,
      default: [],
      description: 'Prompts of the validation images (none: the validation loss only)',
    }),
    steps: integer(1, 150, 25, 'Sampling steps of a validation image'),
    guidance_scale: Type.Number({ minimum: 0, maximum: 30, default: 5, description: 'Classifier-free guidance of validation images' }),
    seed: integer(0, Number.MAX_SAFE_INTEGER, 0, 'Seed of the validation images'),
    metrics: Type.Array(Type.Enum([...METRIC_NAMES]), {
      uniqueItems: true,
      maxItems: METRIC_NAMES.length,
      default: [],
      description: 'Quality metrics of the validation images (GET /v1/quality-metrics lists them and which this server has the ' +
        'networks of): at each validation clip_t, clip_i and hps of that step\'s images, at the end every one on the final ' +
        'set (final_images). clip_t and hps need prompts; fid, kid and is at least 10 final images (final_images x prompts); ' +
        'lpips final_images 2 or more. A metric whose network is missing is refused (422 metric-unavailable)',
    }),
    final_images: integer(0, MAX_FINAL_IMAGES, 0,
      'Images per prompt sampled with the final weights at the end (seeds seed + k) and scored with every metric; 0 = none'),
  },
  { additionalProperties: false, description: 'Validation during and after training' },
);

/** Prior preservation's defaults: diffusers' (the schema cannot say them: JSON Schema ignores defaults inside a nullable union). */
const PRIOR_PRESERVATION_DEFAULTS = { num_class_images: 100, loss_weight: 1 };

export const PriorPreservationParams = Type.Object(
  {
    class_prompt: Type.Optional(Type.String({ minLength: 1, maxLength: 1000, description: 'What the class images show; default: "a photo of <class_word>"' })),
    num_class_images: Type.Optional(Type.Integer({
      minimum: 1, maximum: 1000,
      description: `Class images the base model makes first (cached per model, prompt, seed and resolution; later runs reuse them); default ${PRIOR_PRESERVATION_DEFAULTS.num_class_images}`,
    })),
    loss_weight: Type.Optional(Type.Number({
      minimum: 0, maximum: 100,
      description: `Weight of the prior loss (diffusers' prior_loss_weight); default ${PRIOR_PRESERVATION_DEFAULTS.loss_weight}`,
    })),
  },
  { additionalProperties: false },
);
/** As a run stores it: every field resolved. */
export type PriorPreservationParams = Required<Omit<Static<typeof PriorPreservationParams>, 'class_prompt'>> & { class_prompt?: string };

type TrainFields = Partial<TrainConfig>;

interface ParamSpec {
  /** Marked onlyFor(...) when only some model families have the param, onlyForMethod(...) when only one method does. */
  schema: TSchema;
  /** Why a model of another family does not take it ("SD 1.x and 2.x models have one text encoder"). */
  otherFamilies?: string;
  /** Why a run of the other method does not take it ("a full fine-tune trains the weights themselves: there is no LoRA rank"). */
  otherMethods?: string;
  /**
   * Its default when the schema cannot carry it: a param of some families only (Ajv would
   * fill a schema default into every request), or another param's resolved value (the table
   * lists that one first).
   */
  fallback?: (resolved: Record<string, unknown>) => unknown;
  /** Defaults of an object param's fields that its schema cannot carry (inside a nullable union). */
  fieldDefaults?: Record<string, unknown>;
  /** The TrainConfig fields this param sets (null: a param the run's family or method does not have). */
  train: (value: never) => TrainFields;
  /** Each TrainConfig field it sets, with the path inside the param that sets it ('' = the param itself), so an
   *  error the engine reports by its own field names can name the param. */
  fields: Partial<Record<keyof TrainConfig, string>>;
}

const direct = <K extends keyof TrainConfig, S extends TSchema>(field: K, schema: S): ParamSpec & { schema: S } => ({
  schema,
  train: (value: never) => (value === null ? {} : { [field]: value }) as TrainFields,
  fields: { [field]: '' },
});

/** Why each method's own params are refused on a run of the other. */
const NOT_LORA = 'a LoRA run trains a small network beside the frozen weights: there is no EMA of the weights or bf16 weight update';
const NOT_FULL = 'a full fine-tune trains the weights themselves: there is no LoRA network (rank, alpha) or peft file';

const PRECISION = { bf16: 'bfloat16', fp16: 'float16', no: 'float32' } as const;
export type Precision = keyof typeof PRECISION;

/**
 * The frozen weights' precision of a run that names none, by family: on CUDA bf16 for SDXL
 * and SD 2.x (diffusers' SDXL scripts; SD 2.1's attention overflows in fp16, hence its
 * upcast_attention), fp16 for SD 1.x (the precision of diffusers' LoRA guide and
 * ColossalAI's SD 1.4 DreamBooth); float32 on the CPU.
 */
export const CUDA_PRECISION: Record<ModelFamily, Precision> = { sd1: 'fp16', sd2: 'bf16', sdxl: 'bf16' };
export const CPU_PRECISION: Record<ModelFamily, Precision> = { sd1: 'no', sd2: 'no', sdxl: 'no' };
/** The last layer, as every SD 1.x/2.x pipeline conditions by default. */
const DEFAULT_CLIP_SKIP = 1;

/**
 * Learning rates of a full fine-tune: DreamBooth's, as diffusers' train_dreambooth.py README runs it with prior
 * preservation (5e-6 for the UNet, 800 steps) and with the text encoder trained (2e-6).
 */
export const FULL_LEARNING_RATE = 5e-6;
export const FULL_TEXT_ENCODER_LR = 2e-6;

/** Every param, in the order the document lists them. */
export const TRAINING_PARAMS = {
  // First: the defaults of others follow it.
  method: direct('method', Type.Enum([...TRAINING_METHODS], {
    default: 'lora',
    description: 'What is trained. lora: a LoRA adapter beside the frozen model (a file of megabytes; the default). full: every ' +
      'weight of the UNet, and of the text encoder(s) with train_text_encoder (DreamBooth; the run registers a model of ' +
      'yours, gigabytes, counted against TENANT_MAX_MODEL_BYTES). Params of one method only are refused on the other',
  })),
  resolution: {
    // No schema default: left out, it is the base model's own (resolveTrainingParams' context).
    schema: Type.Integer({ minimum: 64, maximum: 2048, multipleOf: 64, description: "Side of the training images' buckets, a multiple of 64, at most the base model's default_resolution; default: that resolution (512 for SD 1.x, 768 for SD 2.x v-prediction, 1024 for SDXL)" }),
    // kohya's smallest bucket side is 256; a smaller resolution (the demo model's 128) lowers it.
    train: (value: number) => ({ resolution: value, minBucketSide: Math.min(256, value) }),
    fields: { resolution: '', minBucketSide: '' },
  },
  // After resolution: its smallest bucket side wins over resolution's.
  min_resolution: {
    schema: Type.Union([Type.Integer({ minimum: 64, maximum: 2048, multipleOf: 64 }), Type.Null()], {
      default: null,
      description: 'Multi-resolution training, for datasets of mixed sizes: each image trains at the largest resolution from ' +
        'min_resolution to resolution (in steps of 64) whose square fits in its own pixels, in that resolution\'s aspect-ratio ' +
        'buckets, so it is never enlarged; images of fewer than min_resolution x min_resolution pixels are skipped ' +
        '(metrics.skipped_images; the run\'s log names them). At most resolution. null = every image at resolution (smaller ones enlarged)',
    }),
    train: (value: number | null) => (value === null ? {} : { minResolution: value, minBucketSide: Math.min(256, value) }),
    fields: { minResolution: '' },
  },
  max_steps: direct('maxSteps', Type.Integer({
    minimum: 1, maximum: MAX_STEPS, ...byMethod({ lora: 1000, full: 800 }),
    description: 'Optimizer steps. Default: lora 1000 (about 100 passes over 10 photos); full 800 (diffusers\' DreamBooth with prior preservation)',
  })),
  max_epochs: {
    schema: Type.Union([Type.Integer({ minimum: 1, maximum: 10_000 }), Type.Null()], {
      default: null,
      description: 'Passes over the dataset (its training part, with validation_split), instead of max_steps: the run then ' +
        'takes ceil(max_epochs x batches per epoch / gradient_accumulation) steps, which its params.max_steps shows once ' +
        'created (an epoch holds each aspect-ratio bucket\'s images x repeats, in batches of batch_size). Giving both is refused. null = max_steps decides',
    }),
    train: () => ({}), // turned into max_steps when the run is created
    fields: {},
  },
  rank: {
    ...direct('rank', Type.Integer({
      minimum: 1, maximum: 256, ...onlyForMethod('lora', 16),
      description: 'lora only: the LoRA rank; 16 keeps a likeness (93 MB as float32 on SDXL, 13 MB on SD 1.5; half that as float16). Default 16. Null on full runs',
    })),
    otherMethods: NOT_FULL,
  },
  alpha: {
    ...direct('alpha', Type.Number({ exclusiveMinimum: 0, maximum: 1024, ...onlyForMethod('lora', 16), description: 'lora only: LoRA alpha; the scale is alpha / rank. Default 16. Null on full runs' })),
    otherMethods: NOT_FULL,
  },
  learning_rate: direct('unetLr', Type.Number({
    exclusiveMinimum: 0, maximum: 0.01, ...byMethod({ lora: 1e-4, full: FULL_LEARNING_RATE }),
    description: `UNet learning rate. Default: lora 1e-4 (the usual AdamW LoRA rate); full ${FULL_LEARNING_RATE.toExponential()} (DreamBooth's, with prior preservation)`,
  })),
  text_encoder_lr: direct('textEncoderLr', Type.Number({
    exclusiveMinimum: 0, maximum: 0.01, ...byMethod({ lora: 5e-5, full: FULL_TEXT_ENCODER_LR }),
    description: `Text-encoder learning rate (the first text encoder's, on SDXL), with train_text_encoder. Default: lora 5e-5; full ${FULL_TEXT_ENCODER_LR.toExponential()}`,
  })),
  text_encoder_2_lr: {
    schema: Type.Number({
      exclusiveMinimum: 0, maximum: 0.01, ...onlyFor('sdxl'),
      description: "SDXL only: the second text encoder's LoRA learning rate; default: text_encoder_lr. Null on SD 1.x/2.x runs",
    }),
    otherFamilies: 'SD 1.x and 2.x models have one text encoder: text_encoder_lr sets its rate',
    fallback: (resolved) => resolved.text_encoder_lr,
    train: (value: number | null) => (value === null ? {} : { textEncoder2Lr: value }),
    fields: { textEncoder2Lr: '' },
  },
  clip_skip: {
    schema: Type.Integer({
      minimum: 1, maximum: MAX_CLIP_SKIP, ...onlyFor('sd1', 'sd2'),
      description: "SD 1.x/2.x only (AUTOMATIC1111's Clip skip): train on the text encoder's hidden states this many layers " +
        "from the end; 1 = the last layer, 2 = the penultimate (usual for anime models); at most the model's clip_skip_max. " +
        'Default: 1. Null on SDXL runs',
    }),
    otherFamilies: NO_CLIP_SKIP_ON_SDXL,
    fallback: () => DEFAULT_CLIP_SKIP,
    train: (value: number | null) => (value === null ? {} : { clipSkip: value }),
    fields: { clipSkip: '' },
  },
  train_text_encoder: direct('trainTextEncoder', flag(false, 'Also train the text encoder (both of them on SDXL): LoRAs on it, or (full) every weight of it')),
  optimizer: direct('optimizer', Type.Enum(['adamw8bit', 'adamw', 'adafactor'], {
    default: 'adamw8bit',
    description: 'adamw8bit: both AdamW moments in 8 bits, a quarter of the memory; adafactor: a factored second moment and no ' +
      'first moment (at a fixed learning rate), the least memory, what kohya suggests for full SDXL fine-tunes',
  })),
  mixed_precision: {
    schema: Type.Enum(['bf16', 'fp16', 'no'], {
      description: 'Precision of the frozen weights; default: on a CUDA server bf16 for SDXL and SD 2.x, fp16 for SD 1.x; no (float32) on the CPU',
    }),
    train: (value: keyof typeof PRECISION) => ({ dtype: PRECISION[value] }),
    fields: { dtype: '' },
  },
  gradient_checkpointing: direct('gradientCheckpointing', flag(true, 'Recompute activations in backward: much less memory (what lets SDXL at 1024 fit one GPU), for more time')),
  full_bf16: {
    ...direct('fullBf16', Type.Boolean({
      ...onlyForMethod('full', false),
      description: "full only (kohya's --full_bf16): weights, gradients and updates in bfloat16 with stochastic rounding, no float32 " +
        'master copies: about half the memory of the weights and optimizer. Needs mixed_precision bf16. Default false. Null on LoRA runs',
    })),
    otherMethods: NOT_LORA,
  },
  ema_decay: {
    ...direct('emaDecay', Type.Number({
      minimum: 0, exclusiveMaximum: 1, ...onlyForMethod('full', 0),
      description: "full only: keep an EMA of the trained weights with this decay (diffusers' EMAModel; 0.9999 is usual) and save it " +
        'as a second file; 0 = off (the default). Costs one more copy of the trained weights. Null on LoRA runs',
    })),
    otherMethods: NOT_LORA,
  },
  ema_start_step: {
    ...direct('emaStartStep', Type.Integer({ minimum: 0, maximum: MAX_STEPS, ...onlyForMethod('full', 0), description: 'full only: optimizer steps before the EMA starts following the weights. Default 0. Null on LoRA runs' })),
    otherMethods: NOT_LORA,
  },
  ema_on_cpu: {
    ...direct('emaOnCpu', Type.Boolean({ ...onlyForMethod('full', false), description: "full only: keep the EMA copy in host memory instead of the device's. Default false. Null on LoRA runs" })),
    otherMethods: NOT_LORA,
  },
  validation_weights: {
    ...direct('validationWeights', Type.Enum(['trained', 'ema'], {
      ...onlyForMethod('full', 'trained'),
      description: 'full only: which weights validation samples with, the trained ones or their EMA (needs ema_decay). Default trained. Null on LoRA runs',
    })),
    otherMethods: NOT_LORA,
  },
  batch_size: direct('batchSize', integer(1, 16, 1, 'Images per forward')),
  gradient_accumulation: direct('gradientAccumulation', integer(1, 64, 1, 'Forwards per optimizer step')),
  devices: {
    schema: integer(1, MAX_RUN_DEVICES, 1,
      'Devices (GPUs) the run trains on at once, data parallel: each takes batch_size / devices images of every batch (so ' +
      'batch_size must be a multiple of it) and their gradients are summed every step. The run waits until one worker has ' +
      'that many free; more than the largest running worker has is refused (422 devices-unavailable)'),
    // The worker names the devices it gives the run (TrainConfig.devices).
    train: () => ({}),
    fields: { devices: '' },
  },
  zero_stage: {
    // No schema default: it follows method and devices (fallback).
    schema: Type.Integer({
      minimum: 0, maximum: 2,
      description: 'With several devices, what each keeps of the optimizer: 0 = every device all of its state; 1 (ZeRO-1) = each ' +
        'keeps and updates only its shard of the optimizer state; 2 (ZeRO-2) = and of the gradients too. Default: 2 for full ' +
        'runs on several devices (their optimizer state is gigabytes), else 0 (a LoRA\'s is megabytes: sharding only adds ' +
        'communication). Must be 0 on one device',
    }),
    fallback: (resolved) => (resolved.method === 'full' && (resolved.devices as number) > 1 ? 2 : 0),
    train: (value: number) => ({ zeroStage: value }),
    fields: { zeroStage: '' },
  },
  lr_scheduler: direct('lrScheduler', Type.Enum(['constant', 'constant_with_warmup', 'linear', 'cosine'], { default: 'constant' })),
  warmup_steps: direct('lrWarmupSteps', integer(0, MAX_STEPS, 0, 'Steps of linear warmup, at most max_steps')),
  min_snr_gamma: direct('minSnrGamma', Type.Number({ minimum: 0, maximum: 20, default: 5, description: 'Min-SNR loss weighting (5 converges faster); 0 = off' })),
  noise_offset: direct('noiseOffset', Type.Number({ minimum: 0, maximum: 1, default: 0, description: 'Offset noise strength' })),
  validation_split: {
    schema: Type.Number({
      minimum: 0, maximum: 0.5, default: 0,
      description: "Share of the dataset's images held out of training (each chosen by a hash of its sha256, the same " +
        'images in every run of the dataset); the validation loss of each validation is then over them, one timestep each. ' +
        '0 = none: the validation loss is over training images',
    }),
    train: () => ({}), // the worker passes the held-out images (services/training-data-plan.ts)
    fields: {},
  },
  caption_dropout: direct('captionDropout', Type.Number({ minimum: 0, maximum: 0.5, default: 0, description: 'Probability of training a step on the empty prompt' })),
  random_flip: direct('randomFlip', flag(false, 'Mirror images at random (off: faces are not symmetric)')),
  repeats: direct('repeats', integer(1, 100, 1, 'Times each image is seen per epoch')),
  seed: direct('seed', integer(0, Number.MAX_SAFE_INTEGER, 0, 'Seed of the whole run: the same seed, data and params train the same LoRA')),
  checkpoint_every: direct('checkpointEvery', integer(0, MAX_STEPS, 250, 'Steps between checkpoints a crashed run resumes from; 0 = on cancel only')),
  keep_checkpoints: direct('keepCheckpoints', Type.Integer({
    minimum: 0, maximum: 1000, ...byMethod({ lora: 0, full: 1 }),
    description: 'Only the newest this many checkpoints stay on disk (and in the artifacts); 0 = every one. Default: lora 0; ' +
      "full 1 (a full run's checkpoint holds every trained weight and its optimizer state: gigabytes)",
  })),
  validation: {
    schema: ValidationParams,
    train: (value: Static<typeof ValidationParams>) => ({
      validationEvery: value.every,
      validationPrompts: value.prompts,
      validationSteps: value.steps,
      validationGuidanceScale: value.guidance_scale,
      validationSeed: value.seed,
      validationMetrics: value.metrics,
      validationFinalImages: value.final_images,
    }),
    fields: {
      validationEvery: 'every',
      validationPrompts: 'prompts',
      validationSteps: 'steps',
      validationGuidanceScale: 'guidance_scale',
      validationSeed: 'seed',
      validationMetrics: 'metrics',
      validationFinalImages: 'final_images',
    },
  },
  prior_preservation: {
    schema: Type.Union([PriorPreservationParams, Type.Null()], {
      ...byMethod({ lora: null, full: {} }),
      description: "DreamBooth's prior preservation (diffusers' --with_prior_preservation): the base model makes class images " +
        'from the class prompt, and every step also trains on them, keeping the class from drifting to the subject. null = off. ' +
        'Default: lora null; full on, with every field at its default (a full fine-tune forgets the class without it)',
    }),
    fieldDefaults: PRIOR_PRESERVATION_DEFAULTS,
    train: (value: PriorPreservationParams | null) => (value === null ? {} : { priorLossWeight: value.loss_weight }),
    fields: { priorLossWeight: 'loss_weight' },
  },
  save_dtype: direct('saveDtype', Type.Enum(['float16', 'bfloat16', 'float32'], {
    default: 'float16',
    description: "Precision of the LoRA or model files' tensors: float16 as kohya's LoRAs and the published SD 1.5 and SDXL " +
      'checkpoints are (half the size of float32, which keeps the trained values exactly; three more mantissa bits than bfloat16)',
  })),
  save_peft: {
    ...direct('savePeft', Type.Boolean({ ...onlyForMethod('lora', true), description: 'lora only: also write the LoRA in the peft/diffusers layout. Default true. Null on full runs' })),
    otherMethods: NOT_FULL,
  },
} satisfies Record<string, ParamSpec>;

type ParamName = keyof typeof TRAINING_PARAMS;

/** The request's `params`: every param optional, unknown ones refused. */
export const TrainingParams = Type.Object(
  Object.fromEntries(Object.entries(TRAINING_PARAMS).map(([name, spec]) => [name, Type.Optional(spec.schema)])) as {
    [K in ParamName]: ReturnType<typeof Type.Optional<(typeof TRAINING_PARAMS)[K]['schema']>>;
  },
  { additionalProperties: false, description: 'Training parameters; each one left out takes its default' },
);
/** What a caller may send: every param, and every field of `validation`, may be left out. */
export type TrainingParamsInput = Omit<Static<typeof TrainingParams>, 'validation' | 'prior_preservation'> & {
  validation?: Partial<Static<typeof ValidationParams>>;
  prior_preservation?: Partial<PriorPreservationParams> | null;
};

/** The params only some model families, or one method, have: stored as null for the others. */
type FamilyParam = { [K in ParamName]: (typeof TRAINING_PARAMS)[K] extends { otherFamilies: string } ? K : never }[ParamName];
type MethodParam = { [K in ParamName]: (typeof TRAINING_PARAMS)[K] extends { otherMethods: string } ? K : never }[ParamName];

/** What a run stores: every param resolved. */
export type ResolvedTrainingParams = {
  [K in ParamName]: Static<(typeof TRAINING_PARAMS)[K]['schema']> | (K extends FamilyParam | MethodParam ? null : never);
};

/** A resolved param's schema: as the request's, or null where the run's model family or method does not have it. */
export function resolvedParamSchema(schema: TSchema): TSchema {
  return familiesOf(schema) === undefined && methodsOf(schema) === undefined
    ? schema
    : Type.Union([schema, Type.Null()], { description: (schema as { description?: string }).description });
}

/** The defaults of a param's object form (itself, or the object member of a nullable union). */
function objectDefaults(schema: TSchema): Record<string, unknown> {
  const members = [schema, ...((schema as { anyOf?: TSchema[] }).anyOf ?? [])];
  const object = members.find((member) => (member as { properties?: unknown }).properties !== undefined);
  return object === undefined ? {} : (defaultOf({ ...object, default: undefined } as TSchema) as Record<string, unknown>);
}

function defaultOf(schema: TSchema): unknown {
  const object = schema as { default?: unknown; properties?: Record<string, TSchema> };
  if (object.default !== undefined) return structuredClone(object.default);
  if (object.properties !== undefined) {
    return Object.fromEntries(Object.entries(object.properties).map(([key, property]) => [key, defaultOf(property)]));
  }
  return undefined;
}

/** What the base model decides: its family (which params apply), the server's precision for it, its own resolution. */
export interface ContextDefaults {
  family: ModelFamily;
  mixed_precision: Precision;
  resolution: number;
}

/** The run's method: the request's, else lora (the route's validation fills it in too). */
export function methodOf(input: TrainingParamsInput): TrainingMethod {
  return input.method ?? 'lora';
}

/**
 * Fills every param the request left out: the context's for mixed_precision and resolution,
 * else its default under the run's method; a param the model's family or the run's method
 * does not have is null (the caller has refused a request that names one:
 * paramsOutsideFamily, paramsOutsideMethod).
 */
export function resolveTrainingParams(input: TrainingParamsInput, context: ContextDefaults): ResolvedTrainingParams {
  const method = methodOf(input);
  const resolved: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(TRAINING_PARAMS) as Array<[string, ParamSpec]>) {
    if (familiesOf(spec.schema)?.includes(context.family) === false || methodsOf(spec.schema)?.includes(method) === false) {
      resolved[name] = null;
      continue;
    }
    const given = (input as Record<string, unknown>)[name];
    const contextual = (context as unknown as Record<string, unknown>)[name] ?? spec.fallback?.(resolved);
    const byMethod = methodDefault(spec.schema, method);
    const fallback = contextual !== undefined ? contextual : byMethod !== undefined ? byMethod.value : defaultOf(spec.schema);
    const value = given !== undefined ? given : fallback; // a given null (prior_preservation off) stays null
    resolved[name] =
      value !== undefined && value !== null && typeof value === 'object' && !Array.isArray(value)
        // validation, prior_preservation: the fields it names over the defaults
        ? { ...objectDefaults(spec.schema), ...spec.fieldDefaults, ...((fallback ?? {}) as object), ...(given as object | undefined) }
        : value;
  }
  return resolved as ResolvedTrainingParams;
}

/** The params a request names that a model of `family` does not have, each with why. */
export function paramsOutsideFamily(input: TrainingParamsInput, family: ModelFamily): Array<{ param: string; families: readonly ModelFamily[]; why: string }> {
  const outside = [];
  for (const [name, spec] of Object.entries(TRAINING_PARAMS) as Array<[string, ParamSpec]>) {
    const families = familiesOf(spec.schema);
    if (families === undefined || families.includes(family) || (input as Record<string, unknown>)[name] === undefined) continue;
    outside.push({ param: name, families, why: spec.otherFamilies ?? '' });
  }
  return outside;
}

/** The params a request names that a run of `method` does not have, each with why. */
export function paramsOutsideMethod(input: TrainingParamsInput, method: TrainingMethod): Array<{ param: string; methods: readonly TrainingMethod[]; why: string }> {
  const outside = [];
  for (const [name, spec] of Object.entries(TRAINING_PARAMS) as Array<[string, ParamSpec]>) {
    const methods = methodsOf(spec.schema);
    if (methods === undefined || methods.includes(method) || (input as Record<string, unknown>)[name] === undefined) continue;
    outside.push({ param: name, methods, why: spec.otherMethods ?? '' });
  }
  return outside;
}

/**
 * A run's params as stored: runs queued before a param existed lack it. The first were
 * SDXL runs, trained with no clip skip and both text encoders at text_encoder_lr; every
 * run before `method` was a LoRA run that kept all its checkpoints; every run before
 * `devices` trained on one device; every run before `validation.metrics` scored nothing.
 */
const NO_METRICS = { metrics: [], final_images: 0 };

export function storedTrainingParams(stored: unknown): ResolvedTrainingParams {
  const params = stored as ResolvedTrainingParams;
  const has = (name: ParamName) => Object.hasOwn(params, name);
  return {
    ...params,
    method: has('method') ? params.method : 'lora',
    clip_skip: has('clip_skip') ? params.clip_skip : null,
    text_encoder_2_lr: has('text_encoder_2_lr') ? params.text_encoder_2_lr : params.text_encoder_lr,
    keep_checkpoints: has('keep_checkpoints') ? params.keep_checkpoints : 0,
    full_bf16: has('full_bf16') ? params.full_bf16 : null,
    ema_decay: has('ema_decay') ? params.ema_decay : null,
    ema_start_step: has('ema_start_step') ? params.ema_start_step : null,
    ema_on_cpu: has('ema_on_cpu') ? params.ema_on_cpu : null,
    validation_weights: has('validation_weights') ? params.validation_weights : null,
    devices: has('devices') ? params.devices : 1,
    max_epochs: has('max_epochs') ? params.max_epochs : null,
    validation_split: has('validation_split') ? params.validation_split : 0,
    min_resolution: has('min_resolution') ? params.min_resolution : null,
    zero_stage: has('zero_stage') ? params.zero_stage : 0,
    // Runs before the quality metrics scored nothing.
    validation: { ...NO_METRICS, ...params.validation },
  };
}

/** The TrainConfig fields resolved params set (the caller adds model, device, images and files). */
export function trainConfigFields(params: ResolvedTrainingParams): TrainFields {
  let fields: TrainFields = {};
  for (const [name, spec] of Object.entries(TRAINING_PARAMS)) {
    fields = { ...fields, ...(spec.train as (value: unknown) => TrainFields)(params[name as ParamName]) };
  }
  return fields;
}

/** The param that sets a TrainConfig field, to name it in an error the engine reports (e.g. lrWarmupSteps -> warmup_steps). */
export function paramOfTrainField(field: string): string | undefined {
  for (const [name, spec] of Object.entries(TRAINING_PARAMS)) {
    const path = (spec.fields as Record<string, string>)[field];
    if (path !== undefined) return path === '' ? name : `${name}.${path}`;
  }
  return undefined;
}
