// Turns the files of one upload request into validated images with their captions,
// before anything is stored: zips are expanded, sidecar .txt files are paired with their
// image by name, and every image is checked. Any refusal rejects the whole request.
import { availableParallelism } from 'node:os';
import { sha256Hex } from '../storage/fs-blob-store.js';
import { sniffFormat } from './file-sniffing.js';
import { ImageUploadError } from './image-upload-error.js';
import { validateImage, type ImageLimits, type ValidatedImage } from './image-validation.js';
import { decodeCaption, extractZip, isCaptionPath, pathStem, type ZipLimits } from './zip-extraction.js';

export interface UploadLimits extends ImageLimits {
  /** Most images one request may carry, counting those inside archives. */
  maxFilesPerRequest: number;
  /** Most images a dataset may hold. */
  maxImagesPerDataset: number;
  zip: Omit<ZipLimits, 'maxEntryBytes'>;
}

/** One file part of the multipart body. */
export interface UploadedFile {
  /** The multipart field name (`files` or `file`). */
  field: string;
  /** The file name the client sent; may be empty. */
  filename: string;
  bytes: Buffer;
}

export interface PreparedImage {
  /** The uploaded file name, or the path inside the uploaded archive. */
  originalFilename: string;
  /** How refusals and logs name it: `photo.jpg` or `photos.zip/img01.jpg`. */
  displayName: string;
  bytes: Buffer;
  sha256: string;
  image: ValidatedImage;
  caption: string | null;
}

interface Candidate {
  originalFilename: string;
  displayName: string;
  /** Images and captions of the same group with the same stem belong together. */
  group: string;
  bytes: Buffer;
  field: string;
}

/** Longest original file name kept on the image row. */
const MAX_FILENAME_LENGTH = 255;
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/g;

/** The client's file name is only a label: control characters (NUL breaks Postgres text) go, and it is capped. */
export function cleanFilename(filename: string): string {
  return filename.replace(CONTROL_CHARACTERS, '').slice(0, MAX_FILENAME_LENGTH);
}

/** Name used for a part sent without a file name. */
function partName(file: UploadedFile, index: number): string {
  return file.filename === '' ? `${file.field}[${index}]` : file.filename;
}

export async function prepareUpload(files: UploadedFile[], limits: UploadLimits): Promise<PreparedImage[]> {
  const candidates: Candidate[] = [];
  const captions = new Map<string, string>();
  const captionKey = (group: string, path: string): string => `${group}\0${pathStem(path).toLowerCase()}`;

  for (const [index, file] of files.entries()) {
    const name = partName(file, index);
    if (file.bytes.byteLength === 0) {
      throw new ImageUploadError('empty-file', 400, `File "${name}" is empty.`, { file: name, field: file.field });
    }
    if (sniffFormat(file.bytes) === 'zip') {
      const entries = await extractZip(file.bytes, name, { ...limits.zip, maxEntryBytes: limits.maxBytes });
      const group = `zip:${index}`;
      let images = 0;
      for (const entry of entries) {
        if (entry.kind === 'caption') {
          captions.set(captionKey(group, entry.path), entry.text);
        } else {
          images++;
          candidates.push({ originalFilename: entry.path, displayName: `${name}/${entry.path}`, group, bytes: entry.bytes, field: file.field });
        }
      }
      if (images === 0) {
        throw new ImageUploadError('archive-empty', 400, `Archive "${name}" holds no image files (only folders, captions or skipped entries).`, { file: name, field: file.field });
      }
    } else if (isCaptionPath(file.filename)) {
      captions.set(captionKey('parts', file.filename), decodeCaption(file.bytes, name));
    } else {
      candidates.push({ originalFilename: file.filename, displayName: name, group: 'parts', bytes: file.bytes, field: file.field });
    }
  }

  if (candidates.length === 0) {
    throw new ImageUploadError('no-files', 400, 'The request carries no image: send JPEG, PNG or WebP files (or a zip of them) in the "files" field.', { field: 'files' });
  }
  if (candidates.length > limits.maxFilesPerRequest) {
    throw new ImageUploadError('too-many-files', 413, `The request carries ${candidates.length} images; at most ${limits.maxFilesPerRequest} are accepted per request.`, { field: 'files' });
  }

  return mapWithConcurrency(candidates, availableParallelism(), async (candidate) => {
    const caption = captions.get(captionKey(candidate.group, candidate.originalFilename)) || null;
    try {
      return await prepareImage(candidate.bytes, candidate.originalFilename, candidate.displayName, limits, caption);
    } catch (error) {
      if (error instanceof ImageUploadError) {
        throw new ImageUploadError(error.kind, error.status, error.message, { file: candidate.displayName, field: candidate.field });
      }
      throw error;
    }
  });
}

/**
 * One image as every path stores it (an upload's file, a zip's entry, an import's entry):
 * checked by validateImage (throws ImageUploadError naming `displayName`), hashed, with its
 * file name cleaned.
 */
export async function prepareImage(
  bytes: Buffer, originalFilename: string, displayName: string, limits: ImageLimits, caption: string | null,
): Promise<PreparedImage> {
  const image = await validateImage(bytes, displayName, limits);
  return { originalFilename: cleanFilename(originalFilename), displayName, bytes, sha256: sha256Hex(bytes), image, caption };
}

/**
 * Like Promise.all over `items` with at most `concurrency` calls in flight. After a
 * rejection no new call starts, and the rejection of the earliest item is the one thrown,
 * so a request with one bad file always names that file.
 */
async function mapWithConcurrency<T, R>(items: T[], concurrency: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  const failures: Array<{ index: number, error: unknown }> = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (failures.length === 0 && next < items.length) {
      const index = next++;
      try {
        results[index] = await fn(items[index]!);
      } catch (error) {
        failures.push({ index, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  if (failures.length > 0) throw failures.sort((a, b) => a.index - b.index)[0]!.error;
  return results;
}
