// Argument checks shared by the engine's TypeScript entry points: each failure
// is an EngineArgumentError (code ERR_SDXL_INVALID_ARGUMENT) whose message names
// the field and the value, e.g. "Expected a positive integer up to 1000 for
// options.steps but received 0".
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

import type { ProgressCallback } from './types.js';

// ----------------------------------------------------------------------------
// Errors

export class EngineArgumentError extends TypeError {
  readonly code = 'ERR_SDXL_INVALID_ARGUMENT';
  override name = 'EngineArgumentError';
}

/** An argument the engine refused: checked here (EngineArgumentError) or in C++ (the same code). */
export function isInvalidArgument(error: unknown): error is Error {
  return error instanceof Error && (error as { code?: unknown }).code === 'ERR_SDXL_INVALID_ARGUMENT';
}

export function isCancelled(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ERR_SDXL_CANCELLED';
}

// ----------------------------------------------------------------------------
// Argument checks

export const LATENT_MULTIPLE = 8; // the VAE downsamples by 8
export const MAX_SIDE = 4096;
export const MAX_STEPS = 1000; // the scheduler's training timesteps
export const MAX_SEED = (1n << 64n) - 1n;
export const DEVICE_PATTERN = /^(cpu|cuda|cuda:\d{1,4})$/;
export const DTYPES = ['float32', 'bfloat16', 'float16'] as const;

export function describeValue(value: unknown): string {
  if (typeof value === 'string') return `"${value.length > 60 ? `${value.slice(0, 60)}...` : value}"`;
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || value === undefined || typeof value === 'number' || typeof value === 'boolean') {
    return String(value);
  }
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

export function expected(what: string, name: string, value: unknown): never {
  throw new EngineArgumentError(`Expected ${what} for ${name} but received ${describeValue(value)}`);
}

export function checkObject(name: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) expected('an object', name, value);
  return value as Record<string, unknown>;
}

export function checkString(name: string, value: unknown, { allowEmpty = true } = {}): string {
  if (typeof value !== 'string' || (!allowEmpty && value.length === 0)) {
    expected(allowEmpty ? 'a string' : 'a non-empty string', name, value);
  }
  return value;
}

export function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    expected(min === 1 ? `a positive integer up to ${max}` : `an integer from ${min} to ${max}`, name, value);
  }
  return value;
}

export function checkFinite(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) expected('a finite number', name, value);
  return value;
}

export function checkSide(name: string, value: unknown): number {
  const side = checkInteger(name, value, 1, MAX_SIDE);
  if (side % LATENT_MULTIPLE !== 0) expected(`a multiple of ${LATENT_MULTIPLE}`, name, value);
  return side;
}

export function checkSeed(name: string, value: unknown): number | bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value > MAX_SEED) expected('an unsigned 64-bit integer', name, value);
    return value;
  }
  return checkInteger(name, value, 0, Number.MAX_SAFE_INTEGER);
}

export function checkDevice(name: string, value: unknown): string {
  if (typeof value !== 'string' || !DEVICE_PATTERN.test(value)) expected('"cpu", "cuda" or "cuda:N"', name, value);
  return value;
}

export function checkDtype(name: string, value: unknown): string {
  if (typeof value !== 'string' || !(DTYPES as readonly string[]).includes(value)) {
    expected(DTYPES.map((dtype) => `"${dtype}"`).join(', ').replace(/, ([^,]*)$/, ' or $1'), name, value);
  }
  return value;
}

export type PathKind = 'file' | 'directory' | 'file or directory';
export function checkPath(name: string, value: unknown, kind: PathKind): string {
  const file = checkString(name, value, { allowEmpty: false });
  if (!existsSync(file)) throw new EngineArgumentError(`${name} does not exist: ${file}`);
  const isDirectory = statSync(file).isDirectory();
  if ((kind === 'file' && isDirectory) || (kind === 'directory' && !isDirectory)) {
    throw new EngineArgumentError(`Expected a ${kind} for ${name} but ${file} is ${isDirectory ? 'a directory' : 'a file'}`);
  }
  return file;
}

export function checkWritableTarget(name: string, value: unknown): string {
  const file = checkString(name, value, { allowEmpty: false });
  const parent = path.dirname(path.resolve(file));
  if (!existsSync(parent) || !statSync(parent).isDirectory()) {
    throw new EngineArgumentError(`${name}: the folder ${parent} does not exist`);
  }
  return file;
}

export function checkRuntime(options: Record<string, unknown>): { device?: string; dtype?: string } {
  const runtime: { device?: string; dtype?: string } = {};
  if (options.device !== undefined) runtime.device = checkDevice('options.device', options.device);
  if (options.dtype !== undefined) runtime.dtype = checkDtype('options.dtype', options.dtype);
  return runtime;
}

export function checkProgressCallback(value: unknown): ProgressCallback | undefined {
  if (value !== undefined && typeof value !== 'function') expected('a function', 'onProgress', value);
  return value as ProgressCallback | undefined;
}
