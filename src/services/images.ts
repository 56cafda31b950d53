// The images of datasets: storing an upload all-or-nothing, reading, deleting, and
// giving blobs back once nothing references them.
//
// Crash safety, in order of events:
//  - upload: blobs are written (fsync + rename) inside the transaction, before the rows
//    that name them are inserted; a crash before COMMIT leaves at most orphan blobs.
//  - delete: the row delete and the queueing of its blob (blob_releases, by trigger)
//    commit together; the blob is unlinked afterwards, so a crash leaves a queued
//    release that the next collection finishes.
//  - blob writers and the collector take the same per-blob advisory lock, so the
//    collector can never unlink a blob between an upload writing it and committing the
//    row that references it.
// Orphan blobs (written, then the request failed or the process died before COMMIT) are
// harmless and are removed by sweepOrphanBlobs().
// Thumbnails are a cache derived from a blob: once a blob is released (no row references
// it), its thumbnail is deleted too, best effort; a left-over one is harmless.
import type { FastifyBaseLogger } from 'fastify';
import type { Database } from '../db/database.js';
import { createImagesRepository, type ImageRow, type ImagesRepository } from '../repositories/images.js';
import type { Image } from '../schemas/images.js';
import type { BlobStore } from '../storage/blob-store.js';
import { insufficientStorage, isDiskFull } from '../storage/disk-space.js';
import { IMAGE_MEDIA_TYPES } from './file-sniffing.js';
import { ImageUploadError } from './image-upload-error.js';
import { prepareUpload, type PreparedImage, type UploadedFile, type UploadLimits } from './image-upload.js';
import type { ThumbnailCache } from './thumbnails.js';

export interface StoredImage {
  row: ImageRow;
  /** True when the dataset already held these bytes (the existing image is returned). */
  duplicate: boolean;
}

export class DatasetNotFoundError extends Error {
  override name = 'DatasetNotFoundError';
}

/** What one pass over the release queue did. */
export interface BlobCollection {
  unlinked: number;
  /** Blobs left queued because unlinking them failed. */
  failures: Array<{ sha256: string, error: unknown }>;
}

/** Queue entries handled per collection pass. */
const RELEASE_BATCH = 100;
export const CAPTION_SOURCE_UPLOAD = 'upload';

export interface ImagesServiceOptions {
  /** Serves thumbnail() and loses a blob's thumbnail when the blob is released. */
  thumbnails?: ThumbnailCache;
  /** Hears of thumbnails that could not be deleted. */
  log?: Pick<FastifyBaseLogger, 'warn'>;
}

export class ImagesService {
  readonly limits: UploadLimits;
  private readonly db: Database;
  private readonly blobs: BlobStore;
  private readonly thumbnails: ThumbnailCache | undefined;
  private readonly log: Pick<FastifyBaseLogger, 'warn'> | undefined;

  constructor(db: Database, blobs: BlobStore, limits: UploadLimits, options: ImagesServiceOptions = {}) {
    this.db = db;
    this.blobs = blobs;
    this.limits = limits;
    this.thumbnails = options.thumbnails;
    this.log = options.log;
  }

  async datasetExists(tenantId: string, datasetId: string): Promise<boolean> {
    return createImagesRepository(this.db).datasetExists(tenantId, datasetId);
  }

  /**
   * Validates every file, then stores the new images in one transaction. Files whose
   * bytes the dataset already holds (or that repeat an earlier file of the same request)
   * come back as the existing image with duplicate: true. Throws ImageUploadError or
   * DatasetNotFoundError and stores nothing when any file is refused.
   */
  async upload(tenantId: string, datasetId: string, files: UploadedFile[]): Promise<StoredImage[]> {
    const prepared = await prepareUpload(files, this.limits);
    return this.db.transaction(async (tx) => {
      const images = createImagesRepository(tx);
      const imageCount = await images.lockDataset(tenantId, datasetId);
      if (imageCount === null) throw new DatasetNotFoundError(datasetId);

      const existing = new Map<string, ImageRow>();
      for (const row of await images.findBySha256s(tenantId, datasetId, [...new Set(prepared.map((p) => p.sha256))])) {
        existing.set(row.sha256, row);
      }
      const fresh = new Map<string, PreparedImage>();
      for (const image of prepared) {
        if (!existing.has(image.sha256) && !fresh.has(image.sha256)) fresh.set(image.sha256, image);
      }
      if (imageCount + fresh.size > this.limits.maxImagesPerDataset) {
        throw new ImageUploadError(
          'dataset-image-limit',
          409,
          `Dataset ${datasetId} holds ${imageCount} images and this request adds ${fresh.size} new ones; a dataset holds at most ${this.limits.maxImagesPerDataset}.`,
          { field: 'files' },
        );
      }

      // Sorted so two uploads sharing blobs take the locks in the same order.
      for (const sha256 of [...fresh.keys()].sort()) await images.lockBlob(sha256);
      const created = new Map<string, ImageRow>();
      for (const [sha256, image] of fresh) created.set(sha256, await this.storeNew(images, tenantId, datasetId, image));

      // One answer per uploaded image, in request order; only the first copy of new bytes is "created".
      const answered = new Set<string>();
      return prepared.map((image) => {
        const row = created.get(image.sha256);
        if (row !== undefined && !answered.has(image.sha256)) {
          answered.add(image.sha256);
          return { row, duplicate: false };
        }
        return { row: row ?? existing.get(image.sha256)!, duplicate: true };
      });
    });
  }

  /**
   * Stores one validated image the dataset does not hold yet, inside the caller's
   * transaction (`images` is its repository, and it holds the dataset's lock): the blob
   * under its lock, written before the row that names it (see the crash-safety notes above).
   */
  async storeNew(images: ImagesRepository, tenantId: string, datasetId: string, image: PreparedImage): Promise<ImageRow> {
    await images.lockBlob(image.sha256);
    try {
      await this.blobs.put(image.bytes);
    } catch (error) {
      // The blob store removed its partial file; the caller's transaction rolls back the rest.
      if (!isDiskFull(error)) throw error;
      const name = image.originalFilename === '' ? `image ${image.sha256.slice(0, 12)}` : image.originalFilename;
      throw insufficientStorage(`The server's storage is full: ${name} could not be stored, and nothing of this request was`, name);
    }
    return images.insert(tenantId, datasetId, {
      sha256: image.sha256,
      byte_size: image.image.byteSize,
      format: image.image.format,
      width: image.image.width,
      height: image.image.height,
      original_filename: image.originalFilename === '' ? null : image.originalFilename,
      caption: image.caption,
      caption_source: image.caption === null ? null : CAPTION_SOURCE_UPLOAD,
    });
  }

  async get(tenantId: string, id: string): Promise<ImageRow | null> {
    return createImagesRepository(this.db).findById(tenantId, id);
  }

  async list(tenantId: string, datasetId: string, limit: number, before?: string): Promise<ImageRow[]> {
    return createImagesRepository(this.db).listNewestFirst(tenantId, datasetId, limit, before);
  }

  /** The stored bytes of an image row, as a stream; null if the blob is missing (which the design rules out). */
  async content(row: ImageRow) {
    return this.blobs.stream(row.sha256);
  }

  /**
   * The WebP thumbnail of an image row (see ThumbnailCache), made from its blob on the
   * first request; null if the blob is missing.
   */
  async thumbnail(row: ImageRow): Promise<Buffer | null> {
    if (this.thumbnails === undefined) throw new Error('ImagesService was built without a thumbnail cache');
    return this.thumbnails.get(row.sha256, () => this.blobs.get(row.sha256));
  }

  /**
   * Deletes the image row (its blob is queued for release in the same transaction), then
   * gives the blob back if nothing else references it. The deletion stands even when
   * that last step fails: the release stays queued for the next collection.
   */
  async delete(tenantId: string, id: string): Promise<{ row: ImageRow | null, collection: BlobCollection }> {
    const row = await createImagesRepository(this.db).delete(tenantId, id);
    const collection = row === null ? { unlinked: 0, failures: [] } : await this.collectReleasedBlobs();
    return { row, collection };
  }

  /**
   * Works through blob_releases: unlinks each queued blob that no row references any
   * more and forgets the queue entry. Safe to run anywhere, any time, concurrently.
   * A blob that cannot be released stays queued and is reported, not thrown.
   */
  async collectReleasedBlobs(): Promise<BlobCollection> {
    const result: BlobCollection = { unlinked: 0, failures: [] };
    for (;;) {
      const pending = await createImagesRepository(this.db).pendingReleases(RELEASE_BATCH);
      for (const sha256 of pending) {
        try {
          if (await this.releaseBlob(sha256, true)) result.unlinked++;
        } catch (error) {
          result.failures.push({ sha256, error });
        }
      }
      // A failed entry stays queued: stop rather than meet it again in the next pass.
      if (pending.length < RELEASE_BATCH || result.failures.length > 0) return result;
    }
  }

  /**
   * Unlinks every stored blob that no row references (left behind by a request that
   * failed, or a process that died, between writing a blob and committing its row) and
   * was written more than `graceMs` ago; stops once `deadline` (ms since the epoch) passes.
   */
  async sweepOrphanBlobs(graceMs = 0, deadline = Infinity): Promise<number> {
    let unlinked = 0;
    for await (const sha256 of this.blobs.list()) {
      if (Date.now() >= deadline) break;
      const writtenAt = await this.blobs.writtenAt(sha256);
      if (writtenAt === null || Date.now() - writtenAt.getTime() < graceMs) continue;
      if (await this.releaseOrphanBlob(sha256)) unlinked++;
    }
    return unlinked;
  }

  /** Unlinks one blob (and its thumbnail) if no row references it, checked under its lock; whether it was unlinked. */
  releaseOrphanBlob(sha256: string): Promise<boolean> {
    return this.releaseBlob(sha256, false);
  }

  private async releaseBlob(sha256: string, queued: boolean): Promise<boolean> {
    const released = await this.db.transaction(async (tx) => {
      const images = createImagesRepository(tx);
      await images.lockBlob(sha256);
      if (queued) await images.forgetRelease(sha256);
      if (await images.isBlobReferenced(sha256)) return null;
      // Unlinked under the lock: no upload can be between "blob written" and "row committed" now.
      return { unlinked: await this.blobs.delete(sha256) };
    });
    if (released === null) return false;
    // Also when the blob was already gone: a crash may have come between the two unlinks.
    await this.deleteThumbnail(sha256);
    return released.unlinked;
  }

  /** Best effort: a thumbnail left behind is only a stray cache file. */
  private async deleteThumbnail(sha256: string): Promise<void> {
    if (this.thumbnails === undefined) return;
    try {
      await this.thumbnails.delete(sha256);
    } catch (error) {
      this.log?.warn({ err: error, sha256 }, 'could not delete a released blob\'s thumbnail');
    }
  }
}

/** The API shape of an image row. */
export function toImage(row: ImageRow): Image {
  return {
    id: row.id,
    dataset_id: row.dataset_id,
    sha256: row.sha256,
    byte_size: Number(row.byte_size),
    format: row.format,
    media_type: IMAGE_MEDIA_TYPES[row.format],
    width: Number(row.width),
    height: Number(row.height),
    original_filename: row.original_filename,
    caption: row.caption,
    caption_source: row.caption_source,
    content_url: `/v1/images/${row.id}/content`,
    created_at: new Date(row.created_at).toISOString(),
  };
}
