// Test images made on the spot with sharp: nothing is downloaded, every call can
// produce distinct bytes (the seed changes the noise) so duplicates are deliberate.
import { crc32, deflateSync } from 'node:zlib';
import sharp, { type Sharp } from 'sharp';

export interface ImageSpec {
  width: number;
  height: number;
  /** Different seeds give different pixels, hence different SHA-256s. */
  seed?: number;
}

/** Deterministic RGB noise: real photos do not compress to nothing, and neither does this. */
export function noisePixels({ width, height, seed = 1 }: ImageSpec): Buffer {
  const pixels = Buffer.alloc(width * height * 3);
  let state = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < pixels.length; i++) {
    // xorshift32
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    pixels[i] = state & 0xff;
  }
  return pixels;
}

function noise(spec: ImageSpec): Sharp {
  return sharp(noisePixels(spec), { raw: { width: spec.width, height: spec.height, channels: 3 } });
}

export function jpeg(spec: ImageSpec & { orientation?: number, quality?: number }): Promise<Buffer> {
  const image = noise(spec).jpeg({ quality: spec.quality ?? 80 });
  return (spec.orientation === undefined ? image : image.withMetadata({ orientation: spec.orientation })).toBuffer();
}

export function png(spec: ImageSpec): Promise<Buffer> {
  return noise(spec).png().toBuffer();
}

export function webp(spec: ImageSpec): Promise<Buffer> {
  return noise(spec).webp().toBuffer();
}

/** A two-frame animated WebP. */
export async function animatedWebp(spec: ImageSpec): Promise<Buffer> {
  const frames = await Promise.all([0, 1].map((i) => noise({ ...spec, seed: (spec.seed ?? 1) + i }).png().toBuffer()));
  return sharp(frames, { join: { animated: true } }).webp().toBuffer();
}

export function gif(spec: ImageSpec): Promise<Buffer> {
  return noise(spec).gif().toBuffer();
}

export function tiff(spec: ImageSpec): Promise<Buffer> {
  return noise(spec).tiff().toBuffer();
}

export function svg({ width, height }: ImageSpec): Buffer {
  return Buffer.from(`<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="red"/></svg>`);
}

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const typeAndData = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typeAndData));
  return Buffer.concat([length, typeAndData, crc]);
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const BIT_DEPTH_8 = 8;
const COLOUR_TYPE_RGB = 2;

/**
 * A well-formed PNG header that claims `width` x `height` but carries almost no pixel
 * data: a service that decodes before checking the header would fail (or explode) on it.
 */
export function pngHeaderClaiming(width: number, height: number): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.writeUInt8(BIT_DEPTH_8, 8);
  header.writeUInt8(COLOUR_TYPE_RGB, 9);
  // compression, filter and interlace methods stay 0
  const oneRow = Buffer.alloc(1 + 3 * Math.min(width, 16));
  return Buffer.concat([
    PNG_SIGNATURE,
    pngChunk('IHDR', header),
    pngChunk('IDAT', deflateSync(oneRow)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}
