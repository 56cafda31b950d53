import type { Readable } from 'node:stream';

/** A file a training run wrote, as published. */
export interface RunFileInfo {
  byteSize: number;
  /** Lower-case hex SHA-256 of the bytes (the ETag of its download). */
  sha256: string;
}

/** An inclusive byte range of a file. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * The files of training runs: checkpoints, validation images and the LoRA files. The
 * native trainer writes into a local work folder per run; publish() makes a written file
 * durable and readable by every replica (fs-run-file-store.ts: the work folder is the
 * store, on a shared volume; an object store would upload here and download the latest
 * checkpoint into the work folder before a resumed run starts).
 */
export interface RunFileStore {
  /** The local folder the trainer writes run `runId`'s files into (created when missing). */
  workDir(runId: string): Promise<string>;
  /** Publishes `name` (a path under the work folder) and returns its size and hash. */
  publish(runId: string, name: string): Promise<RunFileInfo>;
  /** A stream of the file, or of `range` of it; null when it does not exist. */
  read(runId: string, name: string, range?: ByteRange): Promise<Readable | null>;
  /** Removes every file of the run. */
  deleteRun(runId: string): Promise<void>;
}

// A run's file names come from the trainer (lora.safetensors, checkpoints/step-000250.safetensors,
// samples/step-000250-00.png); anything else never reaches the disk.
const RUN_FILE_NAME = /^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,127}\/)?[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const RUN_ID = /^[A-Za-z0-9_-]{1,100}$/;

/** Refuses a run id or file name that could leave the run's folder. */
export function assertRunFileName(runId: string, name: string): void {
  if (!RUN_ID.test(runId)) throw new TypeError(`Expected a run id but received ${JSON.stringify(runId)}`);
  if (!RUN_FILE_NAME.test(name) || name.split('/').some((part) => part === '..' || part === '.')) {
    throw new TypeError(`Expected a run file name but received ${JSON.stringify(name)}`);
  }
}
