// Prior preservation's class images: the base model's own pictures of the class ("a photo
// of a dog"), made once per (model, prompt, resolution, seed) and kept as blobs, so every
// later run asking for them (or for fewer) reuses them. Image i has seed i, whatever the
// run's seed, so runs share them. Made on the resident model the generations use.
import sharp from 'sharp';
import type { Database } from '../db/database.js';
import { createImagesRepository } from '../repositories/images.js';
import type { BlobStore } from '../storage/blob-store.js';
import { sha256Hex } from '../storage/fs-blob-store.js';
import type { ResidentModels } from './resident-models.js';

/** How class images are sampled (diffusers' DreamBooth script leaves the pipeline's defaults). */
const CLASS_IMAGE_STEPS = 30;
const CLASS_IMAGE_GUIDANCE = 5;
/** Images per engine call: one batch through the UNet. */
const BATCH = 4;

export interface ClassImage {
  seed: number;
  sha256: string;
}

export interface ClassImagesRequest {
  /** The run's tenant: its own models are found for it only. */
  tenantId: string;
  modelId: string;
  prompt: string;
  resolution: number;
  count: number;
}

export class ClassImagesService {
  constructor(
    private readonly db: Database,
    private readonly blobs: BlobStore,
    private readonly resident: ResidentModels,
  ) {}

  /**
   * The first `count` class images (seeds 0 to count - 1), making those not cached yet;
   * `made` says how many were made now. `signal` stops between batches.
   */
  async ensure(request: ClassImagesRequest, signal: AbortSignal): Promise<{ images: ClassImage[]; made: number }> {
    const cached = await this.#cached(request);
    const missing = [];
    for (let seed = 0; seed < request.count; seed++) if (!cached.has(seed)) missing.push(seed);
    let made = 0;
    if (missing.length > 0) {
      const held = await this.resident.acquire(request.tenantId, request.modelId);
      try {
        let next = 0;
        while (next < missing.length) {
          signal.throwIfAborted();
          // Consecutive seeds in one call (image i has seed + i); a gap starts a new call.
          const first = missing[next]!;
          let size = 1;
          while (size < BATCH && missing[next + size] === first + size) size++;
          const job = held.model.generate({
            prompt: request.prompt, width: request.resolution, height: request.resolution,
            steps: CLASS_IMAGE_STEPS, guidanceScale: CLASS_IMAGE_GUIDANCE, seed: first, numImages: size,
          });
          const stop = () => job.cancel();
          signal.addEventListener('abort', stop, { once: true });
          const images = await job.promise.finally(() => signal.removeEventListener('abort', stop));
          for (const [index, image] of images.entries()) {
            const png = await sharp(image.rgb, { raw: { width: image.width, height: image.height, channels: 3 } }).png().toBuffer();
            cached.set(first + index, await this.#store(request, first + index, png));
            made++;
          }
          next += size;
        }
      } finally {
        held.release();
      }
    }
    const images = [...Array(request.count).keys()].map((seed) => ({ seed, sha256: cached.get(seed)! }));
    return { images, made };
  }

  async #cached(request: ClassImagesRequest): Promise<Map<number, string>> {
    const { rows } = await this.db.query<{ seed: number; sha256: string }>(
      'SELECT seed, sha256 FROM class_images WHERE model_id = $1 AND prompt = $2 AND resolution = $3 AND seed < $4',
      [request.modelId, request.prompt, request.resolution, request.count],
    );
    return new Map(rows.map((row) => [row.seed, row.sha256]));
  }

  /**
   * Written under the blob's lock and referenced in the same transaction, as uploads are
   * (services/images.ts); the hash the table holds for the seed (another run's, when it made it first).
   */
  async #store(request: ClassImagesRequest, seed: number, png: Buffer): Promise<string> {
    return this.db.transaction(async (tx) => {
      await createImagesRepository(tx).lockBlob(sha256Hex(png));
      const ref = await this.blobs.put(png);
      // Two runs making the same image at once: the first stored wins (the same picture, up to rounding).
      const { rows } = await tx.query<{ sha256: string }>(
        `INSERT INTO class_images (model_id, prompt, resolution, seed, sha256) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (model_id, prompt, resolution, seed) DO UPDATE SET model_id = EXCLUDED.model_id
         RETURNING sha256`,
        [request.modelId, request.prompt, request.resolution, seed, ref.sha256],
      );
      return rows[0]!.sha256;
    });
  }
}
