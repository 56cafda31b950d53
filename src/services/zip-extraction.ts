import yauzl from 'yauzl';
import { isArchiveFormat, sniffFormat } from './file-sniffing.js';
import { ImageUploadError } from './image-upload-error.js';

export interface ZipLimits {
  /** Most entries the central directory may list (directories and skipped files included). */
  maxEntries: number;
  /** Most bytes all kept entries may inflate to, counted while inflating. */
  maxTotalBytes: number;
  /** Most bytes one image entry may inflate to (the per-image upload limit). */
  maxEntryBytes: number;
  /** Most bytes one caption (.txt) entry may inflate to. */
  maxCaptionBytes: number;
  /** Highest inflated/compressed ratio of an entry once it is past RATIO_FLOOR_BYTES. */
  maxCompressionRatio: number;
}

export interface ZipImageEntry {
  kind: 'image';
  /** Path inside the archive, with `/` separators. */
  path: string;
  bytes: Buffer;
}

export interface ZipCaptionEntry {
  kind: 'caption';
  path: string;
  text: string;
}

export type ZipEntry = ZipImageEntry | ZipCaptionEntry;

/** Small entries compress arbitrarily well (a blank caption); the ratio is judged only above this size. */
export const RATIO_FLOOR_BYTES = 1024 * 1024;
/** Unix zip tools put the file mode in the high 16 bits of the external attributes. */
const UNIX_MODE_SHIFT = 16;
const UNIX_TYPE_MASK = 0o170000;
const UNIX_SYMLINK = 0o120000;
const ZIP_DEFLATE = 8;
const ZIP_STORE = 0;

/** Entries that are not data: folders, macOS resource forks, dotfiles, Windows thumbnails. */
export function isSkippedEntry(path: string): boolean {
  if (path.endsWith('/')) return true;
  const segments = path.split('/');
  if (segments[0] === '__MACOSX') return true;
  const base = segments[segments.length - 1] ?? '';
  if (segments.some((segment) => segment.startsWith('.'))) return true;
  return base === 'Thumbs.db' || base === 'desktop.ini';
}

export function isCaptionPath(path: string): boolean {
  return path.toLowerCase().endsWith('.txt');
}

/** `a/b/img01.jpg` -> `a/b/img01`: an image and its caption sidecar share this stem. */
export function pathStem(path: string): string {
  const slash = path.lastIndexOf('/');
  const dot = path.lastIndexOf('.');
  return dot > slash + 1 ? path.slice(0, dot) : path;
}

/** Names yauzl refuses to decode; all of them would escape an extraction directory. */
const UNSAFE_NAME_ERRORS = ['absolute path', 'invalid relative path', 'invalid characters in fileName'];

/**
 * Reads every data entry of a zip held in memory. Nothing is trusted from the headers:
 * sizes are counted while inflating and the stream is cut as soon as a limit is passed,
 * so a zip bomb costs at most the limit, whatever its directory claims.
 */
export async function extractZip(archive: Buffer, archiveName: string, limits: ZipLimits): Promise<ZipEntry[]> {
  const zip = await openZip(archive, archiveName);
  try {
    if (zip.entryCount > limits.maxEntries) {
      throw new ImageUploadError('archive-too-many-entries', 413, `Archive "${archiveName}" lists ${zip.entryCount} entries; the limit is ${limits.maxEntries}.`, { file: archiveName });
    }
    const entries: ZipEntry[] = [];
    const seen = new Set<string>();
    const budget = { remaining: limits.maxTotalBytes };
    for (let entry = await nextEntry(zip, archiveName); entry !== null; entry = await nextEntry(zip, archiveName)) {
      const path = entry.fileName;
      const where = { file: `${archiveName}/${path}` };
      checkZipEntryName(entry, archiveName);
      if (isSkippedEntry(path)) continue;
      const key = path.toLowerCase();
      if (seen.has(key)) {
        throw new ImageUploadError('archive-invalid', 400, `Archive "${archiveName}" holds "${path}" more than once.`, where);
      }
      seen.add(key);
      checkZipEntryData(entry, archiveName);

      const caption = isCaptionPath(path);
      const entryLimit = caption ? limits.maxCaptionBytes : limits.maxEntryBytes;
      const bytes = await readEntry(zip, entry, { archiveName, path, entryLimit, budget, limits });
      if (caption) {
        entries.push({ kind: 'caption', path, text: decodeCaption(bytes, `${archiveName}/${path}`) });
        continue;
      }
      const sniffed = sniffFormat(bytes);
      if (isArchiveFormat(sniffed)) {
        throw new ImageUploadError('archive-nested', 400, `Entry "${path}" of "${archiveName}" is itself an archive (${sniffed}); archives inside archives are not accepted.`, where);
      }
      entries.push({ kind: 'image', path, bytes });
    }
    return entries;
  } finally {
    zip.close();
  }
}

/** Refuses an entry that is a symbolic link or whose name holds a NUL. */
export function checkZipEntryName(entry: yauzl.Entry, archiveName: string): void {
  const path = entry.fileName;
  const where = { file: `${archiveName}/${path}` };
  if (((entry.externalFileAttributes >>> UNIX_MODE_SHIFT) & UNIX_TYPE_MASK) === UNIX_SYMLINK) {
    throw new ImageUploadError('archive-unsafe-path', 400, `Archive "${archiveName}" holds a symbolic link "${path}"; links are not accepted.`, where);
  }
  if (path.includes('\0')) {
    throw new ImageUploadError('archive-unsafe-path', 400, `Archive "${archiveName}" holds an entry name with a NUL character.`, where);
  }
}

/** Refuses an entry whose data cannot be read: encrypted, or compressed with another method than store or deflate. */
export function checkZipEntryData(entry: yauzl.Entry, archiveName: string): void {
  const path = entry.fileName;
  const where = { file: `${archiveName}/${path}` };
  if (entry.isEncrypted()) {
    throw new ImageUploadError('archive-invalid', 400, `Entry "${path}" of "${archiveName}" is encrypted.`, where);
  }
  if (entry.compressionMethod !== ZIP_DEFLATE && entry.compressionMethod !== ZIP_STORE) {
    throw new ImageUploadError('archive-invalid', 400, `Entry "${path}" of "${archiveName}" uses compression method ${entry.compressionMethod}; only stored and deflated entries are read.`, where);
  }
}

/** Captions are UTF-8 text (a BOM is dropped); anything else is refused rather than guessed. */
export function decodeCaption(bytes: Uint8Array, name: string): string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new ImageUploadError('caption-invalid', 400, `Caption file "${name}" is not UTF-8 text.`, { file: name });
  }
  if (text.includes('\0')) throw new ImageUploadError('caption-invalid', 400, `Caption file "${name}" holds NUL characters.`, { file: name });
  return text.trim();
}

const ZIP_OPTIONS: yauzl.Options = { lazyEntries: true, decodeStrings: true, validateEntrySizes: true, strictFileNames: true };

function openZip(archive: Buffer, archiveName: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(archive, ZIP_OPTIONS, (error, zip) => {
      if (error !== null || zip === undefined) reject(invalidArchive(archiveName, error));
      else resolve(zip);
    });
  });
}

/** Opens a zip stored in a file: only its central directory and the entry being read are in memory. */
export function openZipFile(file: string, archiveName: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.open(file, ZIP_OPTIONS, (error, zip) => {
      if (error !== null || zip === undefined) reject(invalidArchive(archiveName, error));
      else resolve(zip);
    });
  });
}

export function nextEntry(zip: yauzl.ZipFile, archiveName: string): Promise<yauzl.Entry | null> {
  return new Promise((resolve, reject) => {
    const onEntry = (entry: yauzl.Entry): void => {
      cleanup();
      resolve(entry);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(null);
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(invalidArchive(archiveName, error));
    };
    const cleanup = (): void => {
      zip.off('entry', onEntry);
      zip.off('end', onEnd);
      zip.off('error', onError);
    };
    zip.on('entry', onEntry);
    zip.on('end', onEnd);
    zip.on('error', onError);
    zip.readEntry();
  });
}

export interface ReadContext {
  archiveName: string;
  path: string;
  entryLimit: number;
  budget: { remaining: number };
  limits: ZipLimits;
}

export async function readEntry(zip: yauzl.ZipFile, entry: yauzl.Entry, context: ReadContext): Promise<Buffer> {
  const { archiveName, path, entryLimit, budget, limits } = context;
  const where = { file: `${archiveName}/${path}` };
  const tooLarge = (count: number): ImageUploadError => count > entryLimit
    ? new ImageUploadError('file-too-large', 413, `Entry "${path}" of "${archiveName}" inflates to more than ${entryLimit} bytes, the limit for one file.`, where)
    : new ImageUploadError('archive-too-large', 413, `Archive "${archiveName}" inflates to more than ${limits.maxTotalBytes} bytes in all, the limit.`, where);
  // Cheap refusal from the header; the counting below is what actually enforces the limits.
  if (entry.uncompressedSize > entryLimit || entry.uncompressedSize > budget.remaining) throw tooLarge(entry.uncompressedSize);

  const stream = await new Promise<NodeJS.ReadableStream & { destroy: () => void }>((resolve, reject) => {
    zip.openReadStream(entry, (error, readable) => {
      if (error !== null || readable === undefined) reject(invalidArchive(archiveName, error, path));
      else resolve(readable as NodeJS.ReadableStream & { destroy: () => void });
    });
  });
  const chunks: Buffer[] = [];
  let count = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      count += chunk.length;
      if (count > entryLimit || count > budget.remaining) throw tooLarge(count);
      if (count > RATIO_FLOOR_BYTES && count / Math.max(entry.compressedSize, 1) > limits.maxCompressionRatio) {
        throw new ImageUploadError('archive-too-large', 413, `Entry "${path}" of "${archiveName}" inflates more than ${limits.maxCompressionRatio} times its compressed size; refused as a likely zip bomb.`, where);
      }
      chunks.push(chunk);
    }
  } catch (error) {
    stream.destroy();
    if (error instanceof ImageUploadError) throw error;
    throw invalidArchive(archiveName, error, path);
  }
  budget.remaining -= count;
  return Buffer.concat(chunks, count);
}

function invalidArchive(archiveName: string, error: unknown, path?: string): ImageUploadError {
  const message = error instanceof Error ? error.message : String(error);
  if (UNSAFE_NAME_ERRORS.some((prefix) => message.startsWith(prefix))) {
    const name = message.slice(message.indexOf(':') + 2);
    return new ImageUploadError('archive-unsafe-path', 400, `Archive "${archiveName}" holds an unsafe entry name "${name}" (absolute, with "..", or with a backslash).`, { file: `${archiveName}/${name}` });
  }
  const where = path === undefined ? { file: archiveName } : { file: `${archiveName}/${path}` };
  return new ImageUploadError('archive-invalid', 400, `Archive "${archiveName}" could not be read${path === undefined ? '' : ` at "${path}"`}: ${message}`, where);
}
