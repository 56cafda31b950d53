// The image and archive limits: environment variables (merged into the service's EnvSchema
// by src/config.ts) and the UploadLimits the images service enforces.
import { Type } from 'typebox';
import type { UploadLimits } from './image-upload.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Environment variables of the images feature, with their defaults (README "Configuration"). */
export const ImageEnvProperties = {
  /** Largest accepted width x height of one image, checked on its header before decoding (decompression bombs). */
  IMAGE_MAX_PIXELS: Type.Integer({ minimum: 1, default: 50_000_000 }),
  /** Smallest accepted shorter side of an image, in pixels, after EXIF orientation. */
  IMAGE_MIN_SIDE: Type.Integer({ minimum: 1, default: 256 }),
  /** Most images one dataset may hold. */
  DATASET_MAX_IMAGES: Type.Integer({ minimum: 1, default: 100_000 }),
  /** Most bytes one upload request may carry: a dataset import's whole archive (streamed to disk); a synchronous upload also stops at SYNC_UPLOAD_MAX_REQUEST_BYTES. */
  UPLOAD_MAX_REQUEST_BYTES: Type.Integer({ minimum: 1024, default: 50 * GiB }),
  /** Most entries (files and folders) an uploaded zip may list. */
  ZIP_MAX_ENTRIES: Type.Integer({ minimum: 1, default: 1000 }),
  /** Most bytes the entries of one uploaded zip may inflate to in all (counted while inflating). */
  ZIP_MAX_UNCOMPRESSED_BYTES: Type.Integer({ minimum: 1024, default: 512 * MiB }),
  /** Highest inflated/compressed ratio of a zip entry larger than 1 MiB (zip bombs). */
  ZIP_MAX_COMPRESSION_RATIO: Type.Integer({ minimum: 1, default: 100 }),
  /** Largest caption sidecar (.txt) accepted, in bytes. */
  CAPTION_MAX_BYTES: Type.Integer({ minimum: 1, default: 16 * KiB }),
};

export interface ImageEnv {
  IMAGE_MAX_PIXELS: number;
  IMAGE_MIN_SIDE: number;
  DATASET_MAX_IMAGES: number;
  UPLOAD_MAX_REQUEST_BYTES: number;
  ZIP_MAX_ENTRIES: number;
  ZIP_MAX_UNCOMPRESSED_BYTES: number;
  ZIP_MAX_COMPRESSION_RATIO: number;
  CAPTION_MAX_BYTES: number;
}

/** What src/config.ts keeps of ImageEnv, as Config['images']. */
export interface ImageConfig {
  maxPixels: number;
  minSide: number;
  maxImagesPerDataset: number;
  maxRequestBytes: number;
  zipMaxEntries: number;
  zipMaxUncompressedBytes: number;
  zipMaxCompressionRatio: number;
  captionMaxBytes: number;
}

export function imageConfigFromEnv(env: ImageEnv): ImageConfig {
  return {
    maxPixels: env.IMAGE_MAX_PIXELS,
    minSide: env.IMAGE_MIN_SIDE,
    maxImagesPerDataset: env.DATASET_MAX_IMAGES,
    maxRequestBytes: env.UPLOAD_MAX_REQUEST_BYTES,
    zipMaxEntries: env.ZIP_MAX_ENTRIES,
    zipMaxUncompressedBytes: env.ZIP_MAX_UNCOMPRESSED_BYTES,
    zipMaxCompressionRatio: env.ZIP_MAX_COMPRESSION_RATIO,
    captionMaxBytes: env.CAPTION_MAX_BYTES,
  };
}

/**
 * A synchronous upload (POST /v1/datasets/{id}/images) holds its files in memory: it stays a
 * small-upload endpoint below this whatever UPLOAD_MAX_REQUEST_BYTES allows imports.
 */
export const SYNC_UPLOAD_MAX_REQUEST_BYTES = 512 * MiB;

/** The limits the service enforces, from the whole configuration. */
export function uploadLimits(config: { uploadMaxFileBytes: number, uploadMaxFiles: number, images: ImageConfig }): UploadLimits {
  return {
    maxBytes: config.uploadMaxFileBytes,
    maxPixels: config.images.maxPixels,
    minSide: config.images.minSide,
    maxFilesPerRequest: config.uploadMaxFiles,
    maxImagesPerDataset: config.images.maxImagesPerDataset,
    zip: {
      maxEntries: config.images.zipMaxEntries,
      maxTotalBytes: config.images.zipMaxUncompressedBytes,
      maxCaptionBytes: config.images.captionMaxBytes,
      maxCompressionRatio: config.images.zipMaxCompressionRatio,
    },
  };
}
