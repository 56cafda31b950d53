// The typed engine API for the service: validates arguments in TypeScript with
// clear messages before anything reaches C++, then calls the native addon.
// Short operations return promises; long ones (generate, verify, train) run on
// their own native thread and return an EngineJob with cancel() and onProgress().
import { loadNativeAddon } from './native.js';
import {
  checkFinite,
  checkInteger,
  checkObject,
  checkPath,
  checkProgressCallback,
  checkRuntime,
  checkSeed,
  checkSide,
  checkString,
  checkWritableTarget,
  expected,
  MAX_STEPS,
} from './checks.js';
import { failedJob, startJob, withCallerStack, type EngineJob } from './jobs.js';
import { SAMPLER_NAMES, type SamplerName } from './types.js';
import type {
  BuildInfo,
  GenerateOptions,
  LoraCacheStats,
  LoraCheck,
  LoadOptions,
  MemoryStats,
  ModelInfo,
  ModelSummary,
  NativeAddon,
  NativeModel,
  ProgressCallback,
  PromptEmbeddings,
  RandomWeightsOptions,
  RgbImage,
  SafetensorsHeader,
  TokenIds,
  VerifyOptions,
  VerifyReport,
} from './types.js';

export type * from './types.js';
export { SAMPLER_NAMES } from './types.js';

/** Images one generate() call makes at most. */
const MAX_IMAGES_PER_CALL = 4;
/** Largest size a micro-conditioning field may name. */
const MAX_CONDITIONING_SIDE = 16384;
/** Largest clip skip the argument check lets through (the engine checks the model's own layer count). */
const MAX_CLIP_SKIP = 64;
export { EngineLoadError, addonCandidates, loadNativeAddon } from './native.js';
export { EngineArgumentError, isCancelled, isInvalidArgument } from './checks.js';
export type { EngineJob } from './jobs.js';
export { checkMetricNames, evaluate, metricNetworks, reportedScores, validateEvaluateOptions, type ReportedScores } from './metrics.js';
export { METRIC_NAMES, METRIC_NETWORK_NAMES } from './types.js';
export {
  TrainConfig,
  TrainImageSource,
  batchesPerEpoch,
  decodeTrainImage,
  train,
  validateTrainConfig,
  type EpochPlan,
  type TrainConfigInput,
  type TrainJob,
} from './train.js';

// ----------------------------------------------------------------------------
// Argument checks

export function validateLoadOptions(value: unknown): LoadOptions {
  const options = checkObject('options', value);
  return {
    modelPath: checkPath('options.modelPath', options.modelPath, 'file or directory'),
    ...(options.configDir !== undefined && { configDir: checkPath('options.configDir', options.configDir, 'directory') }),
    ...(options.loraCacheBytes !== undefined && {
      loraCacheBytes: checkInteger('options.loraCacheBytes', options.loraCacheBytes, 0, Number.MAX_SAFE_INTEGER),
    }),
    ...checkRuntime(options),
  };
}

export function validateGenerateOptions(value: unknown): GenerateOptions {
  const options = checkObject('options', value);
  const result: GenerateOptions = { prompt: checkString('options.prompt', options.prompt) };
  if (options.negativePrompt !== undefined) result.negativePrompt = checkString('options.negativePrompt', options.negativePrompt);
  if (options.width !== undefined) result.width = checkSide('options.width', options.width);
  if (options.height !== undefined) result.height = checkSide('options.height', options.height);
  if (options.steps !== undefined) result.steps = checkInteger('options.steps', options.steps, 1, MAX_STEPS);
  if (options.guidanceScale !== undefined) result.guidanceScale = checkFinite('options.guidanceScale', options.guidanceScale);
  if (options.sampler !== undefined) {
    if (!SAMPLER_NAMES.includes(options.sampler as SamplerName)) expected(`one of ${SAMPLER_NAMES.join(', ')}`, 'options.sampler', options.sampler);
    result.sampler = options.sampler as SamplerName;
  }
  if (options.seed !== undefined) result.seed = checkSeed('options.seed', options.seed);
  if (options.numImages !== undefined) result.numImages = checkInteger('options.numImages', options.numImages, 1, MAX_IMAGES_PER_CALL);
  for (const field of ['originalWidth', 'originalHeight', 'cropTop', 'cropLeft', 'targetWidth', 'targetHeight'] as const) {
    if (options[field] !== undefined) result[field] = checkInteger(`options.${field}`, options[field], 0, MAX_CONDITIONING_SIDE);
  }
  if (options.clipSkip !== undefined) result.clipSkip = checkInteger('options.clipSkip', options.clipSkip, 0, MAX_CLIP_SKIP);
  if (options.loras !== undefined) {
    if (!Array.isArray(options.loras)) expected('an array', 'options.loras', options.loras);
    result.loras = options.loras.map((entry: unknown, index) => {
      const lora = checkObject(`options.loras[${index}]`, entry);
      return {
        path: checkPath(`options.loras[${index}].path`, lora.path, 'file'),
        scale: lora.scale === undefined ? 1 : checkFinite(`options.loras[${index}].scale`, lora.scale),
        ...(lora.sha256 !== undefined && { sha256: checkString(`options.loras[${index}].sha256`, lora.sha256) }),
      };
    });
  }
  return result;
}

export function validateVerifyOptions(value: unknown): VerifyOptions {
  const options = checkObject('options', value);
  return {
    modelPath: checkPath('options.modelPath', options.modelPath, 'file or directory'),
    goldenDir: checkPath('options.goldenDir', options.goldenDir, 'directory'),
    ...(options.configDir !== undefined && { configDir: checkPath('options.configDir', options.configDir, 'directory') }),
    ...(options.outPath !== undefined && { outPath: checkWritableTarget('options.outPath', options.outPath) }),
    ...checkRuntime(options),
  };
}

function addon(): NativeAddon {
  return loadNativeAddon();
}

// ----------------------------------------------------------------------------
// API

export function buildInfo(): BuildInfo {
  return addon().buildInfo();
}

/** Memory of `device` ("cpu", "cuda", "cuda:N") now and at its peak. */
export function memoryStats(device: string): MemoryStats {
  return addon().memoryStats(device);
}

export class Model {
  readonly #native: NativeModel;

  constructor(native: NativeModel) {
    this.#native = native;
  }

  get disposed(): boolean {
    return this.#native.disposed;
  }

  describe(): ModelInfo {
    return this.#native.describe();
  }

  async tokenize(prompt: string): Promise<TokenIds> {
    const caller = new Error();
    return withCallerStack(this.#native.tokenize(checkString('prompt', prompt)), caller);
  }

  async encodePrompt(prompt: string): Promise<PromptEmbeddings> {
    const caller = new Error();
    return withCallerStack(this.#native.encodePrompt(checkString('prompt', prompt)), caller);
  }

  // Text to image on a native thread: numImages images (seed, seed + 1, ...). Invalid
  // options give a job whose promise rejects.
  generate(options: GenerateOptions, onProgress?: ProgressCallback): EngineJob<RgbImage[]> {
    const caller = new Error();
    try {
      const checked = validateGenerateOptions(options);
      const callback = checkProgressCallback(onProgress);
      return startJob(caller, callback, (report) => this.#native.generate(checked, report));
    } catch (error) {
      return failedJob(error);
    }
  }

  /** Checks a LoRA file against this model (on a worker thread): its layout, and every key that does not fit. */
  async checkLora(file: string): Promise<LoraCheck> {
    const caller = new Error();
    return withCallerStack(this.#native.checkLora(checkPath('path', file, 'file')), caller);
  }

  /** What the model's cache of parsed LoRAs holds and how it has served. */
  loraCacheStats(): LoraCacheStats {
    return this.#native.loraCacheStats();
  }

  // Frees this handle's reference to the weights; running jobs finish first.
  dispose(): void {
    this.#native.dispose();
  }
}

export async function loadModel(options: LoadOptions): Promise<Model> {
  const caller = new Error();
  const checked = validateLoadOptions(options);
  return new Model(await withCallerStack(addon().loadModel(checked), caller));
}

export async function inspectSafetensors(file: string): Promise<SafetensorsHeader> {
  const caller = new Error();
  return withCallerStack(addon().inspectSafetensors(checkPath('path', file, 'file')), caller);
}

/**
 * What a model is, from its configs and weight headers alone (no weights loaded): its
 * family, prediction type, default resolution and parameter counts. Rejects (an
 * invalid-argument error naming what was found) a folder with a missing component, a
 * scheduler config the engine does not implement, or a single file of no known family.
 */
export async function inspectModel(options: { modelPath: string; configDir?: string }): Promise<ModelSummary> {
  const caller = new Error();
  const checked = checkObject('options', options);
  const modelPath = checkPath('options.modelPath', checked.modelPath, 'file or directory');
  const configDir = checked.configDir === undefined ? undefined : checkPath('options.configDir', checked.configDir, 'directory');
  return withCallerStack(addon().inspectModel({ modelPath, ...(configDir === undefined ? {} : { configDir }) }), caller);
}

/**
 * Writes seeded random weights into a diffusers folder that holds the configs and
 * tokenizers (engine.h: write_random_weights): the built-in demo model and test models.
 */
export async function writeRandomWeights(options: RandomWeightsOptions): Promise<void> {
  const caller = new Error();
  const checked = checkObject('options', options);
  const modelDir = checkPath('options.modelDir', checked.modelDir, 'directory');
  const seed = checked.seed === undefined ? 0 : checkInteger('options.seed', checked.seed, 0, Number.MAX_SAFE_INTEGER);
  return withCallerStack(addon().writeRandomWeights({ modelDir, seed }), caller);
}

// Recomputes every tensor a golden fixture names and compares (see engine.h).
export function verify(options: VerifyOptions, onProgress?: ProgressCallback): EngineJob<VerifyReport> {
  const caller = new Error();
  try {
    const checked = validateVerifyOptions(options);
    const callback = checkProgressCallback(onProgress);
    return startJob(caller, callback, (report) => addon().verify(checked, report));
  } catch (error) {
    return failedJob(error);
  }
}
