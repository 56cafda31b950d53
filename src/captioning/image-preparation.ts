// Shrinks an image before it is sent to a vision model: EXIF orientation applied (models see
// the pixels, not the tag), long side at most 1568 px (larger images are downscaled by the
// Anthropic API anyway, so the extra bytes only cost upload time), alpha flattened, JPEG.
import sharp from 'sharp';
import { CaptionError } from './captioner.js';

/** Longest side sent to a caption model, in pixels. */
export const CAPTION_IMAGE_MAX_SIDE = 1568;
const JPEG_QUALITY = 85;

export interface PreparedImage {
  /** JPEG bytes. */
  data: Buffer;
  mediaType: 'image/jpeg';
  width: number;
  height: number;
}

export async function prepareCaptionImage(bytes: Buffer, maxSide: number = CAPTION_IMAGE_MAX_SIDE): Promise<PreparedImage> {
  const { data, info } = await sharp(bytes)
    .rotate()
    .resize({ width: maxSide, height: maxSide, fit: 'inside', withoutEnlargement: true })
    .flatten({ background: '#ffffff' })
    .jpeg({ quality: JPEG_QUALITY, mozjpeg: false })
    .toBuffer({ resolveWithObject: true });
  return { data, mediaType: 'image/jpeg', width: info.width, height: info.height };
}

/** prepareCaptionImage for a provider: a canceled signal or an undecodable image becomes a CaptionError. */
export async function prepareForCaption(image: { imageId: string; bytes: Buffer }, signal: AbortSignal): Promise<PreparedImage> {
  if (signal.aborted) throw new CaptionError('canceled', 'caption request canceled', { retryable: false, attempts: 0 });
  try {
    return await prepareCaptionImage(image.bytes);
  } catch {
    throw new CaptionError('bad_request', `image ${image.imageId} could not be decoded for captioning`, { retryable: false, attempts: 0 });
  }
}
