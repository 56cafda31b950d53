/** What the first bytes of a file say it is, regardless of the name or Content-Type it came with. */
export type SniffedFormat =
  | 'jpeg' | 'png' | 'webp' // accepted images
  | 'zip' // archives of images
  | 'gif' | 'tiff' | 'bmp' | 'svg' | 'heif' | 'avif' | 'jxl' | 'ico' | 'pdf' | 'gzip' | 'rar' | '7z' | 'tar' // named in refusals
  | 'unknown';

export const ACCEPTED_IMAGE_FORMATS = ['jpeg', 'png', 'webp'] as const;
export type ImageFormat = typeof ACCEPTED_IMAGE_FORMATS[number];

export const IMAGE_MEDIA_TYPES: Record<ImageFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp'
};

export function isAcceptedImageFormat(format: SniffedFormat): format is ImageFormat {
  return (ACCEPTED_IMAGE_FORMATS as readonly string[]).includes(format);
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
/** How far into a text file to look for an `<svg` tag (after an XML prolog, comments, a doctype). */
const SVG_SNIFF_WINDOW = 1024;
const TAR_MAGIC_OFFSET = 257;

function startsWith(bytes: Uint8Array, signature: readonly number[], offset = 0): boolean {
  if (bytes.length < offset + signature.length) return false;
  return signature.every((value, index) => bytes[offset + index] === value);
}

function ascii(bytes: Uint8Array, start: number, end: number): string {
  return Buffer.from(bytes.subarray(start, end)).toString('latin1');
}

export function sniffFormat(bytes: Uint8Array): SniffedFormat {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith(bytes, PNG_SIGNATURE)) return 'png';
  if (ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 12) === 'WEBP') return 'webp';
  // Local file header, or the end-of-central-directory record of an empty archive.
  if (startsWith(bytes, [0x50, 0x4b, 0x03, 0x04]) || startsWith(bytes, [0x50, 0x4b, 0x05, 0x06])) return 'zip';
  if (ascii(bytes, 0, 6) === 'GIF87a' || ascii(bytes, 0, 6) === 'GIF89a') return 'gif';
  if (startsWith(bytes, [0x49, 0x49, 0x2a, 0x00]) || startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2a])) return 'tiff';
  if (ascii(bytes, 0, 2) === 'BM' && bytes.length >= 14) return 'bmp';
  if (ascii(bytes, 4, 8) === 'ftyp') {
    const brand = ascii(bytes, 8, 12);
    if (brand === 'avif' || brand === 'avis') return 'avif';
    if (['heic', 'heix', 'hevc', 'hevx', 'mif1', 'msf1'].includes(brand)) return 'heif';
  }
  if (startsWith(bytes, [0xff, 0x0a]) || startsWith(bytes, [0x00, 0x00, 0x00, 0x0c, 0x4a, 0x58, 0x4c, 0x20])) return 'jxl';
  if (startsWith(bytes, [0x00, 0x00, 0x01, 0x00])) return 'ico';
  if (ascii(bytes, 0, 5) === '%PDF-') return 'pdf';
  if (startsWith(bytes, [0x1f, 0x8b])) return 'gzip';
  if (ascii(bytes, 0, 6) === 'Rar!\x1a\x07') return 'rar';
  if (startsWith(bytes, [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c])) return '7z';
  if (ascii(bytes, TAR_MAGIC_OFFSET, TAR_MAGIC_OFFSET + 5) === 'ustar') return 'tar';
  if (/<svg[\s>]/i.test(ascii(bytes, 0, SVG_SNIFF_WINDOW))) return 'svg';
  return 'unknown';
}

/** Formats that are archives; an archive inside an archive is refused. */
export function isArchiveFormat(format: SniffedFormat): boolean {
  return format === 'zip' || format === 'gzip' || format === 'rar' || format === '7z' || format === 'tar';
}
