import sharp, { type Metadata } from 'sharp';
import { IMAGE_MEDIA_TYPES, isAcceptedImageFormat, sniffFormat, type ImageFormat } from './file-sniffing.js';
import { ImageUploadError } from './image-upload-error.js';

export interface ImageLimits {
  /** Largest accepted file, in bytes (413 above). */
  maxBytes: number;
  /** Largest accepted width x height, checked on the header before any pixel is decoded. */
  maxPixels: number;
  /** Smallest accepted short side, in pixels, after EXIF orientation. */
  minSide: number;
}

export interface ValidatedImage {
  format: ImageFormat;
  mediaType: string;
  /** Width and height as displayed, i.e. after the EXIF orientation is applied. */
  width: number;
  height: number;
  byteSize: number;
}

/** EXIF orientations 5 to 8 rotate by 90 or 270 degrees, swapping width and height. */
const FIRST_TRANSPOSING_ORIENTATION = 5;

/**
 * Accepts a file only when its bytes are a JPEG, PNG or WebP that decodes completely.
 * The order matters: cheap checks (size, magic bytes, header dimensions) come before the
 * full decode, so a decompression bomb is refused from its header alone.
 */
export async function validateImage(bytes: Uint8Array, name: string, limits: ImageLimits): Promise<ValidatedImage> {
  const where = { file: name };
  if (bytes.byteLength === 0) throw new ImageUploadError('empty-file', 400, `File "${name}" is empty.`, where);
  if (bytes.byteLength > limits.maxBytes) {
    throw new ImageUploadError('file-too-large', 413, `File "${name}" is ${bytes.byteLength} bytes; the limit is ${limits.maxBytes} bytes.`, where);
  }

  const sniffed = sniffFormat(bytes);
  if (!isAcceptedImageFormat(sniffed)) {
    const what = sniffed === 'unknown' ? 'not a recognised image' : `a ${sniffed.toUpperCase()} file`;
    throw new ImageUploadError('unsupported-media-type', 415, `File "${name}" is ${what}; accepted formats are JPEG, PNG and WebP (detected from the file's bytes, not its name or Content-Type).`, where);
  }

  // Header only: no pixel is decoded here.
  let header: Metadata;
  try {
    header = await sharp(bytes, { failOn: 'error', limitInputPixels: false }).metadata();
  } catch (error) {
    throw corrupt(name, error);
  }
  if (header.format !== sniffed) {
    throw new ImageUploadError('corrupt-image', 422, `File "${name}" starts like a ${sniffed.toUpperCase()} but does not decode as one.`, where);
  }
  if ((header.pages ?? 1) > 1) {
    throw new ImageUploadError('unsupported-media-type', 415, `File "${name}" is an animated ${sniffed.toUpperCase()}; only still images are accepted.`, where);
  }
  const pixels = header.width * header.height;
  if (pixels > limits.maxPixels) {
    throw new ImageUploadError('image-too-many-pixels', 422, `File "${name}" declares ${header.width}x${header.height} pixels (${pixels}); the limit is ${limits.maxPixels} pixels.`, where);
  }

  const transposed = (header.orientation ?? 1) >= FIRST_TRANSPOSING_ORIENTATION;
  const width = transposed ? header.height : header.width;
  const height = transposed ? header.width : header.height;
  if (Math.min(width, height) < limits.minSide) {
    throw new ImageUploadError('image-too-small', 422, `File "${name}" is ${width}x${height}; the shorter side must be at least ${limits.minSide} pixels.`, where);
  }

  // Decode every pixel, so truncated or corrupt pixel data fails here instead of in the
  // trainer. A raw decode is several times faster than stats(); its buffer (at most
  // maxPixels x channels bytes) is dropped at once.
  try {
    await sharp(bytes, { failOn: 'error', limitInputPixels: limits.maxPixels, sequentialRead: true }).raw().toBuffer();
  } catch (error) {
    throw corrupt(name, error);
  }

  return { format: sniffed, mediaType: IMAGE_MEDIA_TYPES[sniffed], width, height, byteSize: bytes.byteLength };
}

function corrupt(name: string, error: unknown): ImageUploadError {
  // libvips repeats lines; the first one says what went wrong.
  const reason = error instanceof Error ? (error.message.split('\n')[0] ?? error.message) : String(error);
  return new ImageUploadError('corrupt-image', 422, `File "${name}" could not be decoded: ${reason}`, { file: name });
}
