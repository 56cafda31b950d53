// The typed engine API for the service: validates arguments in TypeScript with
// clear messages before anything reaches C++, then calls the native addon.
// Short operations return promises; long ones (generate, verify) run on their
// own native thread and return an EngineJob with cancel() and onProgress().
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

import { loadNativeAddon } from './native.js';
import type {
  BuildInfo,
  GenerateOptions,
  LoadOptions,
  ModelInfo,
  NativeAddon,
  NativeJob,
  NativeModel,
  Progress,
  ProgressCallback,
  PromptEmbeddings,
  RgbImage,
  SafetensorsHeader,
  TokenIds,
  VerifyOptions,
  VerifyReport,
} from './types.js';

export type * from './types.js';
export { EngineLoadError, addonCandidates, loadNativeAddon } from './native.js';

// ----------------------------------------------------------------------------
// Errors

export class EngineArgumentError extends TypeError {
  readonly code = 'ERR_SDXL_INVALID_ARGUMENT';
  override name = 'EngineArgumentError';
}

export function isCancelled(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ERR_SDXL_CANCELLED';
}

// ----------------------------------------------------------------------------
// Argument checks

const LATENT_MULTIPLE = 8; // the VAE downsamples by 8
const MAX_SIDE = 4096;
const MAX_STEPS = 1000; // the scheduler's training timesteps
const MAX_SEED = (1n << 64n) - 1n;
const DEVICE_PATTERN = /^(cpu|cuda|cuda:\d{1,4})$/;
const DTYPES = ['float32', 'bfloat16', 'float16'] as const;

function describeValue(value: unknown): string {
  if (typeof value === 'string') return `"${value.length > 60 ? `${value.slice(0, 60)}...` : value}"`;
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || value === undefined || typeof value === 'number' || typeof value === 'boolean') {
    return String(value);
  }
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

function expected(what: string, name: string, value: unknown): never {
  throw new EngineArgumentError(`Expected ${what} for ${name} but received ${describeValue(value)}`);
}

function checkObject(name: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) expected('an object', name, value);
  return value as Record<string, unknown>;
}

function checkString(name: string, value: unknown, { allowEmpty = true } = {}): string {
  if (typeof value !== 'string' || (!allowEmpty && value.length === 0)) {
    expected(allowEmpty ? 'a string' : 'a non-empty string', name, value);
  }
  return value;
}

function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    expected(min === 1 ? `a positive integer up to ${max}` : `an integer from ${min} to ${max}`, name, value);
  }
  return value;
}

function checkFinite(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) expected('a finite number', name, value);
  return value;
}

function checkSide(name: string, value: unknown): number {
  const side = checkInteger(name, value, 1, MAX_SIDE);
  if (side % LATENT_MULTIPLE !== 0) expected(`a multiple of ${LATENT_MULTIPLE}`, name, value);
  return side;
}

function checkSeed(name: string, value: unknown): number | bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value > MAX_SEED) expected('an unsigned 64-bit integer', name, value);
    return value;
  }
  return checkInteger(name, value, 0, Number.MAX_SAFE_INTEGER);
}

function checkDevice(name: string, value: unknown): string {
  if (typeof value !== 'string' || !DEVICE_PATTERN.test(value)) expected('"cpu", "cuda" or "cuda:N"', name, value);
  return value;
}

function checkDtype(name: string, value: unknown): string {
  if (typeof value !== 'string' || !(DTYPES as readonly string[]).includes(value)) {
    expected(DTYPES.map((dtype) => `"${dtype}"`).join(', ').replace(/, ([^,]*)$/, ' or $1'), name, value);
  }
  return value;
}

type PathKind = 'file' | 'directory' | 'file or directory';
function checkPath(name: string, value: unknown, kind: PathKind): string {
  const file = checkString(name, value, { allowEmpty: false });
  if (!existsSync(file)) throw new EngineArgumentError(`${name} does not exist: ${file}`);
  const isDirectory = statSync(file).isDirectory();
  if ((kind === 'file' && isDirectory) || (kind === 'directory' && !isDirectory)) {
    throw new EngineArgumentError(`Expected a ${kind} for ${name} but ${file} is ${isDirectory ? 'a directory' : 'a file'}`);
  }
  return file;
}

function checkWritableTarget(name: string, value: unknown): string {
  const file = checkString(name, value, { allowEmpty: false });
  const parent = path.dirname(path.resolve(file));
  if (!existsSync(parent) || !statSync(parent).isDirectory()) {
    throw new EngineArgumentError(`${name}: the folder ${parent} does not exist`);
  }
  return file;
}

function checkRuntime(options: Record<string, unknown>): { device?: string; dtype?: string } {
  const runtime: { device?: string; dtype?: string } = {};
  if (options.device !== undefined) runtime.device = checkDevice('options.device', options.device);
  if (options.dtype !== undefined) runtime.dtype = checkDtype('options.dtype', options.dtype);
  return runtime;
}

function checkProgressCallback(value: unknown): ProgressCallback | undefined {
  if (value !== undefined && typeof value !== 'function') expected('a function', 'onProgress', value);
  return value as ProgressCallback | undefined;
}

export function validateLoadOptions(value: unknown): LoadOptions {
  const options = checkObject('options', value);
  return {
    modelPath: checkPath('options.modelPath', options.modelPath, 'file or directory'),
    ...(options.configDir !== undefined && { configDir: checkPath('options.configDir', options.configDir, 'directory') }),
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
  if (options.seed !== undefined) result.seed = checkSeed('options.seed', options.seed);
  if (options.loras !== undefined) {
    if (!Array.isArray(options.loras)) expected('an array', 'options.loras', options.loras);
    result.loras = options.loras.map((entry: unknown, index) => {
      const lora = checkObject(`options.loras[${index}]`, entry);
      return {
        path: checkPath(`options.loras[${index}].path`, lora.path, 'file'),
        scale: lora.scale === undefined ? 1 : checkFinite(`options.loras[${index}].scale`, lora.scale),
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

// ----------------------------------------------------------------------------
// Jobs and stacks

// A long job on a native thread.
export interface EngineJob<T> {
  readonly promise: Promise<T>;
  // Asks the native thread to stop at its next step; the promise then rejects with ERR_SDXL_CANCELLED.
  cancel(): void;
  // Adds a progress listener; returns a function that removes it.
  onProgress(listener: ProgressCallback): () => void;
}

// Native errors are created on the main thread after the work; give them the caller's stack.
function withCallerStack<T>(promise: Promise<T>, caller: Error): Promise<T> {
  return promise.catch((error: unknown) => {
    if (error instanceof Error && caller.stack) {
      const callerFrames = caller.stack.split('\n').slice(1).join('\n');
      error.stack = `${error.name}: ${error.message}\n${callerFrames}`;
    }
    throw error;
  });
}

function startJob<T>(
  caller: Error,
  onProgress: ProgressCallback | undefined,
  start: (report: ProgressCallback) => NativeJob<T>,
): EngineJob<T> {
  const listeners = new Set<ProgressCallback>();
  if (onProgress) listeners.add(onProgress);
  const native = start((progress: Progress) => {
    for (const listener of listeners) listener(progress);
  });
  return {
    promise: withCallerStack(native.promise, caller),
    cancel: () => native.cancel(),
    onProgress(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

function failedJob<T>(error: unknown): EngineJob<T> {
  const promise = Promise.reject(error as Error);
  promise.catch(() => {}); // reported when the caller awaits it
  return { promise, cancel: () => {}, onProgress: () => () => {} };
}

function addon(): NativeAddon {
  return loadNativeAddon();
}

// ----------------------------------------------------------------------------
// API

export function buildInfo(): BuildInfo {
  return addon().buildInfo();
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

  // Text to image on a native thread. Invalid options give a job whose promise rejects.
  generate(options: GenerateOptions, onProgress?: ProgressCallback): EngineJob<RgbImage> {
    const caller = new Error();
    try {
      const checked = validateGenerateOptions(options);
      const callback = checkProgressCallback(onProgress);
      return startJob(caller, callback, (report) => this.#native.generate(checked, report));
    } catch (error) {
      return failedJob(error);
    }
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
