// Thumbnails of stored images, made once per SHA-256 and cached on disk beside the blobs:
// `<root>/ab/cd/<sha256>-256.webp` (the blob store's two-level fan-out). The bytes are a
// pure function of the source bytes, so a cached file never goes stale; a missing one is
// simply made again. Writes go to a temp file that is renamed into place, so a reader
// sees a whole thumbnail or none. Requests for the same SHA-256 that arrive while it is
// being made wait for that one generation instead of starting their own.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import sharp from 'sharp';
import { assertSha256 } from '../storage/blob-store.js';

/** Longest side of a thumbnail, in pixels; part of its ETag and file name. */
export const THUMBNAIL_SIZE = 256;
export const THUMBNAIL_QUALITY = 80;
export const THUMBNAIL_MEDIA_TYPE = 'image/webp';
/** Temp files start with this prefix, as the blob store's do. */
const TEMP_PREFIX = '.tmp-';

/** The thumbnail of `bytes`: EXIF orientation applied, fit inside the square, never enlarged, as WebP. */
export async function makeThumbnail(bytes: Buffer): Promise<Buffer> {
  return sharp(bytes)
    .rotate()
    .resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: 'inside', withoutEnlargement: true })
    .webp({ quality: THUMBNAIL_QUALITY })
    .toBuffer();
}

export class ThumbnailCache {
  readonly root: string;
  private readonly log: Pick<FastifyBaseLogger, 'warn'> | undefined;
  private readonly inFlight = new Map<string, Promise<Buffer | null>>();

  /** `root` is the cache's own directory, e.g. DATA_DIR/thumbnails; `log` hears of cache writes that failed. */
  constructor(root: string, options: { log?: Pick<FastifyBaseLogger, 'warn'> } = {}) {
    this.root = root;
    this.log = options.log;
  }

  pathOf(sha256: string): string {
    assertSha256(sha256);
    return join(this.root, sha256.slice(0, 2), sha256.slice(2, 4), `${sha256}-${THUMBNAIL_SIZE}.webp`);
  }

  /**
   * The thumbnail of the image whose bytes have this SHA-256: from the cache, or made from
   * `source()` (called only on a miss) and cached. Null when the cache misses and
   * `source()` returns null (the image bytes are gone).
   */
  async get(sha256: string, source: () => Promise<Buffer | null>): Promise<Buffer | null> {
    const path = this.pathOf(sha256);
    const cached = await readIfPresent(path);
    if (cached !== null) return cached;
    const pending = this.inFlight.get(sha256);
    if (pending !== undefined) return pending;
    const generation = this.generate(path, source).finally(() => this.inFlight.delete(sha256));
    this.inFlight.set(sha256, generation);
    return generation;
  }

  /**
   * Removes the cached thumbnail of this SHA-256 (after a generation in progress has
   * written it); true when a file was removed. Throws only on a filesystem failure.
   */
  async delete(sha256: string): Promise<boolean> {
    const path = this.pathOf(sha256);
    await this.inFlight.get(sha256)?.catch(() => null);
    try {
      await unlink(path);
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  private async generate(path: string, source: () => Promise<Buffer | null>): Promise<Buffer | null> {
    // Another process (or a request that just finished) may have written it meanwhile.
    const cached = await readIfPresent(path);
    if (cached !== null) return cached;
    const bytes = await source();
    if (bytes === null) return null;
    const thumbnail = await makeThumbnail(bytes);
    try {
      await writeAtomically(path, thumbnail);
    } catch (error) {
      // The cache is an optimisation: the thumbnail is still good to send.
      this.log?.warn({ err: error, path }, 'could not cache a thumbnail');
    }
    return thumbnail;
  }
}

/** The file's bytes, or null when it is missing (or empty: never a whole thumbnail). */
async function readIfPresent(path: string): Promise<Buffer | null> {
  try {
    const bytes = await readFile(path);
    return bytes.length === 0 ? null : bytes;
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

async function writeAtomically(path: string, bytes: Buffer): Promise<void> {
  const dir = join(path, '..');
  await mkdir(dir, { recursive: true });
  const tempPath = join(dir, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`);
  try {
    const file = await open(tempPath, 'wx');
    try {
      await file.writeFile(bytes);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tempPath, path);
  } catch (error) {
    await rm(tempPath, { force: true });
    throw error;
  }
}

function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException)?.code === 'ENOENT';
}
