// The room left in DATA_DIR, and what a write that found none looks like. New work that
// writes there (uploads, imports, training runs) is refused while the free space is below
// DATA_DIR_MIN_FREE_BYTES, so the disk does not fill up under the runs already going; a
// write that still meets a full disk (ENOSPC, or EDQUOT on a quota) is a 507 to the client
// and `disk_full` to a run, never a 500, and what it was writing is removed.
import { statfs } from 'node:fs/promises';
import { ProblemError, fieldError } from '../errors.js';

const DISK_FULL_CODES = new Set(['ENOSPC', 'EDQUOT']);
/** How the native engine's messages carry the same errors (strerror). */
const DISK_FULL_MESSAGE = /No space left on device|Disk quota exceeded/;

/** Whether `error`, or an error it was caused by, says the file system had no room. */
export function isDiskFull(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if ((typeof code === 'string' && DISK_FULL_CODES.has(code)) || DISK_FULL_MESSAGE.test(e.message)) return true;
  }
  return false;
}

/** 507: the server had no room for what the request stores; `file` names the upload when there is one. */
export function insufficientStorage(detail: string, file?: string): ProblemError {
  return new ProblemError({
    status: 507,
    type: 'insufficient-storage',
    title: 'Insufficient Storage',
    detail,
    ...(file === undefined ? {} : { errors: [fieldError('body', 'files', `${file}: no room left to store it`)] }),
  });
}

export class DiskSpace {
  /** DATA_DIR. */
  readonly dir: string;
  /** DATA_DIR_MIN_FREE_BYTES: below it, new work is refused. */
  readonly minFreeBytes: number;

  constructor(dir: string, minFreeBytes: number) {
    this.dir = dir;
    this.minFreeBytes = minFreeBytes;
  }

  /** Bytes this process may still write to DATA_DIR's file system (what df calls available). */
  async freeBytes(): Promise<number> {
    const stats = await statfs(this.dir);
    return stats.bavail * stats.bsize;
  }

  /** Refuses `what` (an upload, a training run) with a 507 while the free space is below the floor. */
  async assertRoomFor(what: string): Promise<void> {
    if (this.minFreeBytes === 0) return;
    const free = await this.freeBytes();
    if (free >= this.minFreeBytes) return;
    throw insufficientStorage(
      `The server's storage has ${free} bytes free, below its floor of ${this.minFreeBytes} (DATA_DIR_MIN_FREE_BYTES): ` +
        `${what} is refused until room is made`,
    );
  }
}
