import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { assertSha256, isSha256, type BlobRef, type BlobStore } from './blob-store.js';

/** Temp files start with this prefix so list() and sweeps can tell them from blobs. */
const TEMP_PREFIX = '.tmp-';

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Blobs as files under `<root>/sha256/ab/cd/<hash>`. Two levels of 256 fan-out keep
 * directories small. Writes go to a temp file in the final directory, are fsynced,
 * renamed into place and the directory is fsynced, so a crash leaves either the whole
 * blob or no blob (plus at most a stray temp file), never a partial one under its name.
 */
export class FsBlobStore implements BlobStore {
  readonly root: string;

  constructor(root: string) {
    this.root = join(root, 'sha256');
  }

  pathOf(sha256: string): string {
    assertSha256(sha256);
    return join(this.root, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
  }

  async put(bytes: Uint8Array): Promise<BlobRef> {
    const ref = { sha256: sha256Hex(bytes), size: bytes.byteLength };
    const finalPath = this.pathOf(ref.sha256);
    const existing = await stat(finalPath).catch(() => null);
    if (existing?.isFile() === true && existing.size === ref.size) return ref;

    const dir = join(finalPath, '..');
    await mkdir(dir, { recursive: true });
    const tempPath = join(dir, `${TEMP_PREFIX}${ref.sha256}-${randomBytes(6).toString('hex')}`);
    const file = await open(tempPath, 'wx');
    try {
      await file.writeFile(bytes);
      await file.sync();
    } catch (error) {
      await file.close();
      await rm(tempPath, { force: true });
      throw error;
    }
    await file.close();
    try {
      await rename(tempPath, finalPath);
    } catch (error) {
      await rm(tempPath, { force: true });
      throw error;
    }
    await syncDirectory(dir);
    return ref;
  }

  async get(sha256: string): Promise<Buffer | null> {
    try {
      return await readFile(this.pathOf(sha256));
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async stream(sha256: string): Promise<Readable | null> {
    const path = this.pathOf(sha256);
    // Open first so a missing blob is a null, not an error event after headers went out.
    let handle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
    return handle.createReadStream();
  }

  async exists(sha256: string): Promise<boolean> {
    const info = await stat(this.pathOf(sha256)).catch(() => null);
    return info?.isFile() === true;
  }

  async writtenAt(sha256: string): Promise<Date | null> {
    const info = await stat(this.pathOf(sha256)).catch(() => null);
    return info?.isFile() === true ? info.mtime : null;
  }

  async delete(sha256: string): Promise<boolean> {
    try {
      await unlink(this.pathOf(sha256));
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  async * list(): AsyncIterable<string> {
    for (const first of await readdirOrEmpty(this.root)) {
      for (const second of await readdirOrEmpty(join(this.root, first))) {
        for (const name of await readdirOrEmpty(join(this.root, first, second))) {
          if (isSha256(name)) yield name;
        }
      }
    }
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
}

/** Makes the rename itself durable (POSIX needs the directory entry flushed too). */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch (error) {
    // Some filesystems refuse fsync on directories; the data itself is already synced.
    if ((error as NodeJS.ErrnoException).code !== 'EINVAL' && (error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
  } finally {
    await handle.close();
  }
}

function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException)?.code === 'ENOENT';
}
