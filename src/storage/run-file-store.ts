import path from 'node:path';
import type { Readable } from 'node:stream';

/** Where the runs' folders are, under DATA_DIR. */
export const RUNS_SUBDIR = 'runs';
/** The trainer's latent and prompt-embedding caches, one folder per model (derived data: safe to delete). */
export const TRAINING_CACHE_SUBDIR = path.join('cache', 'training');

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
 * The files of training runs: checkpoints, validation images, the LoRA files, and a full
 * run's model (its single file and its diffusers folder). The native trainer writes into a
 * local work folder per run; publish() makes a written file durable and readable by every
 * replica (fs-run-file-store.ts: the work folder is the store, on a shared volume; an
 * object store would upload here and download the latest checkpoint into the work folder
 * before a resumed run starts, and a model's files before the engine loads it).
 */
export interface RunFileStore {
  /** The local folder the trainer writes run `runId`'s files into (created when missing). */
  workDir(runId: string): Promise<string>;
  /** The local path of a file or folder of the run, for the engine to read. */
  localPath(runId: string, name: string): string;
  /** Publishes `name` (a path under the work folder) and returns its size and hash. */
  publish(runId: string, name: string): Promise<RunFileInfo>;
  /** Publishes folder `name` as a tar of its files (links followed, entries under `<prefix>/`): the tar's size and hash. */
  publishTar(runId: string, name: string, prefix: string): Promise<RunFileInfo>;
  /** A stream of the file, or of `range` of it; null when it does not exist. */
  read(runId: string, name: string, range?: ByteRange): Promise<Readable | null>;
  /** The tar publishTar described (of `size` bytes), or `range` of it; null when the folder is gone or its files changed since. */
  readTar(runId: string, name: string, prefix: string, size: number, range?: ByteRange): Promise<Readable | null>;
  /**
   * Makes folder `name` stand alone of every other run's folder: a link inside it into
   * another run's folder (a tenant model's component its base lent it) becomes a copy of
   * what it points to (hard links where the file system allows: no bytes are copied);
   * any other link (a server model's component) is re-pointed at its final target, so no
   * chain of links runs through a folder that may be deleted.
   */
  detachLinks(runId: string, name: string): Promise<void>;
  /** Makes `name` in the run's folder a link to `target` (an absolute path), replacing what was there. */
  link(runId: string, name: string, target: string): Promise<void>;
  /** Bytes of the files and folders `names` hold themselves (a link counts as the link, not what it points to). */
  ownBytes(runId: string, names: string[]): Promise<number>;
  /** Removes files or folders of the run (a link inside a folder goes, never what it points to). */
  deleteFiles(runId: string, names: string[]): Promise<void>;
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
