// Long jobs as the service sees them: a native { promise, cancel() } wrapped
// with any number of progress listeners, and errors that carry the caller's
// stack (native errors are created on the main thread after the work).
import type { NativeJob, Progress, ProgressCallback } from './types.js';

// A long job on a native thread.
export interface EngineJob<T> {
  readonly promise: Promise<T>;
  // Asks the native thread to stop at its next step; the promise then rejects with ERR_SDXL_CANCELLED
  // (a training run mid-way resolves with status 'cancelled' instead: see train.ts).
  cancel(): void;
  // Adds a progress listener; returns a function that removes it.
  onProgress(listener: ProgressCallback): () => void;
}

// Native errors are created on the main thread after the work; give them the caller's stack.
export function withCallerStack<T>(promise: Promise<T>, caller: Error): Promise<T> {
  return promise.catch((error: unknown) => {
    if (error instanceof Error && caller.stack) {
      const callerFrames = caller.stack.split('\n').slice(1).join('\n');
      error.stack = `${error.name}: ${error.message}\n${callerFrames}`;
    }
    throw error;
  });
}

export function startJob<T>(
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

export function failedJob<T>(error: unknown): EngineJob<T> {
  const promise = Promise.reject(error as Error);
  promise.catch(() => {}); // reported when the caller awaits it
  return { promise, cancel: () => {}, onProgress: () => () => {} };
}
