// Reads one stored archive into its dataset: the work of a dataset import, run by
// src/jobs/dataset-import-worker.ts under its lease.
//
// Two passes over the archive. The first reads only the captions (sidecars name.txt /
// name.caption, and metadata.jsonl files): small text, kept in maps, so a caption may stand
// before or after its image in a tar. The second reads the images, one entry at a time, each
// checked and stored through the same ImagesService path as a synchronous upload; the next
// entry is read and decoded (sharp, on the thread pool) while the current one is written, so
// at most two images are in memory.
//
// Crash safety: the second pass works in batches of about a second (or CHECKPOINT_ENTRIES
// entries), each one transaction that stores its images and writes the checkpoint (the
// counts and the number of entries handled). A worker that dies loses at most its open
// batch (rolled back: at most orphan blobs, swept like any others); the next one skips the
// entries the checkpoint counts and goes on, so no image is stored twice and the counts
// stay right.
import path from 'node:path';
import type { Database } from '../db/database.js';
import { createDatasetImportsRepository, type DatasetImportRow, type ImportCheckpoint, type Refusal } from '../repositories/dataset-imports.js';
import { createImagesRepository } from '../repositories/images.js';
import { MAX_LISTED_REFUSALS } from '../schemas/dataset-imports.js';
import { sha256Hex } from '../storage/fs-blob-store.js';
import { ArchiveReadError, readArchive, type ArchiveEntry, type ArchiveLimits } from './archive-entries.js';
import { ImageUploadError } from './image-upload-error.js';
import { prepareImage, type PreparedImage } from './image-upload.js';
import type { ImageLimits } from './image-validation.js';
import type { ImagesService } from './images.js';
import { decodeCaption, isSkippedEntry, pathStem } from './zip-extraction.js';

/** A batch ends after this long, so progress is seen about once a second. */
export const CHECKPOINT_MS = 1000;
/** ... or after this many entries. */
export const CHECKPOINT_ENTRIES = 500;
/** Largest metadata.jsonl read (about 100 bytes a line: a million images). */
const MAX_METADATA_BYTES = 128 * 1024 * 1024;
/** Most caption text the first pass keeps in all (about 1 KiB for each of 100,000 images); past it, captions are refused. */
const MAX_CAPTION_INDEX_CHARS = 128 * 1024 * 1024;
const SIDECAR_EXTENSIONS = ['.txt', '.caption'];
const METADATA_FILE = 'metadata.jsonl';

export interface ArchiveImportLimits extends ArchiveLimits {
  image: ImageLimits;
  maxImagesPerDataset: number;
  captionMaxBytes: number;
}

export interface ArchiveImportContext {
  db: Database;
  images: ImagesService;
  limits: ArchiveImportLimits;
  /** The stored archive. */
  file: string;
  /** The import as claimed (its checkpoint is where this run starts). */
  row: DatasetImportRow;
  owner: string;
  /** Aborted when the run must stop: the batch in hand is committed first. */
  signal: AbortSignal;
}

/** How the run ended: every entry read, stopped by the signal, or the archive could not be read on. */
export type ArchiveImportEnd = { kind: 'done' } | { kind: 'stopped' } | { kind: 'unreadable'; error: ArchiveReadError };

/** The lease went to another worker: the batch in hand is rolled back. */
export class ImportLeaseLostError extends Error {
  override name = 'ImportLeaseLostError';
}

/** The dataset was deleted under the import. */
export class ImportDatasetGoneError extends Error {
  override name = 'ImportDatasetGoneError';
}

const isSidecar = (entryPath: string): boolean => SIDECAR_EXTENSIONS.some((ext) => entryPath.toLowerCase().endsWith(ext));
const isMetadata = (entryPath: string): boolean => path.posix.basename(entryPath).toLowerCase() === METADATA_FILE;

/** Captions found by the first pass, and the refusals it met, by entry index (reported when the second pass reaches them). */
interface CaptionIndex {
  /** By the image's path stem, lower-case. */
  sidecars: Map<string, string>;
  /** By the image's path, lower-case. */
  metadata: Map<string, string>;
  refusals: Map<number, { count: number; listed: Refusal[] }>;
  /** Characters of caption text kept. */
  chars: number;
}

/** Keeps one caption, unless the archive's captions would pass MAX_CAPTION_INDEX_CHARS. */
function keepCaption(index: CaptionIndex, map: Map<string, string>, key: string, text: string, source: string): void {
  if (index.chars + text.length > MAX_CAPTION_INDEX_CHARS) {
    throw new ImageUploadError('caption-invalid', 400, `The captions of this archive pass ${MAX_CAPTION_INDEX_CHARS} characters in all; the caption of "${source}" was not kept.`, { file: source });
  }
  index.chars += text.length;
  map.set(key, text);
}

function refusalOf(entry: string, error: ImageUploadError): Refusal {
  return { entry, code: error.kind, detail: error.message };
}

async function indexCaptions(context: ArchiveImportContext): Promise<CaptionIndex | ArchiveReadError> {
  const { file, row, limits } = context;
  const index: CaptionIndex = { sidecars: new Map(), metadata: new Map(), refusals: new Map(), chars: 0 };
  let listed = 0;
  const refuse = (at: number, refusal: Refusal): void => {
    const slot = index.refusals.get(at) ?? { count: 0, listed: [] };
    slot.count++;
    // Only as many as the import can list are kept: a garbage metadata file stays cheap.
    if (listed < MAX_LISTED_REFUSALS) {
      slot.listed.push(refusal);
      listed++;
    }
    index.refusals.set(at, slot);
  };
  let archive;
  try {
    archive = await readArchive(file, row.format, row.filename ?? row.id, limits);
  } catch (error) {
    if (error instanceof ArchiveReadError) return error;
    throw error;
  }
  try {
    for await (const entry of archive.entries) {
      if (context.signal.aborted) break;
      if (entry.kind !== 'file' || isSkippedEntry(entry.path)) continue;
      try {
        if (isSidecar(entry.path)) {
          const text = decodeCaption(await entry.read(limits.captionMaxBytes), entry.path);
          if (text !== '') keepCaption(index, index.sidecars, pathStem(entry.path).toLowerCase(), text, entry.path);
        } else if (isMetadata(entry.path)) {
          readMetadata(entry, await entry.read(MAX_METADATA_BYTES), limits.captionMaxBytes, index, refuse);
        }
      } catch (error) {
        if (!(error instanceof ImageUploadError)) throw error;
        refuse(entry.index, refusalOf(entry.path, error));
      }
    }
  } catch (error) {
    if (error instanceof ArchiveReadError) return error;
    throw error;
  } finally {
    archive.close();
  }
  return index;
}

/** metadata.jsonl (Hugging Face imagefolder): one {"file_name", "text"} object a line, file_name relative to the file's folder. */
function readMetadata(
  entry: ArchiveEntry, bytes: Buffer, captionMaxBytes: number, index: CaptionIndex, refuse: (at: number, refusal: Refusal) => void,
): void {
  const folder = path.posix.dirname(entry.path);
  const lines = decodeCaption(bytes, entry.path).split(/\r?\n/);
  for (const [number, line] of lines.entries()) {
    if (line.trim() === '') continue;
    const where = `${entry.path}:${number + 1}`;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      record = undefined;
    }
    const fields = record as { file_name?: unknown; text?: unknown } | undefined;
    if (typeof fields !== 'object' || fields === null || Array.isArray(fields) || typeof fields.file_name !== 'string' || typeof fields.text !== 'string') {
      refuse(entry.index, { entry: where, code: 'metadata-invalid', detail: `Line ${number + 1} of "${entry.path}" is not a JSON object with string fields file_name and text.` });
      continue;
    }
    const text = fields.text.trim();
    if (text === '') continue;
    if (Buffer.byteLength(text) > captionMaxBytes) {
      refuse(entry.index, { entry: where, code: 'caption-invalid', detail: `The caption on line ${number + 1} of "${entry.path}" is longer than ${captionMaxBytes} bytes (CAPTION_MAX_BYTES).` });
      continue;
    }
    const image = path.posix.normalize(folder === '.' ? fields.file_name : `${folder}/${fields.file_name}`).replace(/^\.\//, '');
    try {
      keepCaption(index, index.metadata, image.toLowerCase(), text, where);
    } catch (error) {
      if (!(error instanceof ImageUploadError)) throw error;
      refuse(entry.index, refusalOf(where, error));
    }
  }
}

/** What the second pass keeps between entries. */
interface ImportState {
  progress: ImportCheckpoint;
  captions: CaptionIndex;
}

function refuseEntry(state: ImportState, refusal: Refusal): void {
  state.progress.refused++;
  if (state.progress.refusals.length < MAX_LISTED_REFUSALS) state.progress.refusals.push(refusal);
}

/** Reads the archive into the dataset from the row's checkpoint on. Throws ImportLeaseLostError, ImportDatasetGoneError. */
export async function importArchive(context: ArchiveImportContext): Promise<ArchiveImportEnd> {
  const { db, row, owner, signal, limits, file } = context;
  const captions = await indexCaptions(context);
  if (captions instanceof ArchiveReadError) return { kind: 'unreadable', error: captions };
  if (signal.aborted) return { kind: 'stopped' };

  const state: ImportState = {
    progress: {
      bytes_read: row.bytes_read,
      entries_read: row.entries_read,
      images_stored: row.images_stored,
      duplicates: row.duplicates,
      captions_attached: row.captions_attached,
      refused: row.refused,
      caption_conflicts: row.caption_conflicts,
      refusals: [...row.refusals],
    },
    captions,
  };
  let archive;
  try {
    archive = await readArchive(file, row.format, row.filename ?? row.id, limits);
  } catch (error) {
    if (error instanceof ArchiveReadError) return { kind: 'unreadable', error };
    throw error;
  }
  const entries = archive.entries[Symbol.asyncIterator]();
  let end: ArchiveImportEnd | undefined;
  /** The next entry of the archive, or how the archive ended. */
  const nextEntry = async (): Promise<ArchiveEntry | undefined> => {
    try {
      const next = await entries.next();
      if (next.done !== true) return next.value;
      end = { kind: 'done' };
    } catch (error) {
      if (!(error instanceof ArchiveReadError)) throw error;
      end = { kind: 'unreadable', error };
    }
    return undefined;
  };
  /** The entry read ahead, or undefined when the archive broke while it was read. */
  const settle = (ahead: ReadAhead): ReadAhead | undefined => {
    if (ahead.archiveError === undefined) return ahead;
    end = { kind: 'unreadable', error: ahead.archiveError };
    return undefined;
  };
  try {
    // Entries handled before the checkpoint are passed over (a tar's data is skipped, not kept).
    let first: ArchiveEntry | undefined;
    while (first === undefined && end === undefined) {
      const entry = await nextEntry();
      if (entry !== undefined && entry.index >= state.progress.entries_read) first = entry;
    }
    let ahead = first === undefined ? undefined : settle(await readAhead(context, captions, first));
    // At least one batch: an import resumed past its last entry still writes its final checkpoint.
    do {
      await db.transaction(async (tx) => {
        const images = createImagesRepository(tx);
        const started = Date.now();
        let count = await images.lockDataset(row.tenant_id, row.dataset_id);
        if (count === null) throw new ImportDatasetGoneError(row.dataset_id);
        let handled = 0;
        while (ahead !== undefined) {
          const current = ahead;
          // The next entry is read and its image decoded while this one is stored.
          const following = signal.aborted ? undefined : await nextEntry();
          const next = following === undefined ? undefined : readAhead(context, captions, following);
          next?.catch(() => undefined); // awaited below, unless storing this one throws
          count = await storeEntry(context, state, images, current, count);
          state.progress.entries_read = current.entry.index + 1;
          ahead = next === undefined ? undefined : settle(await next);
          handled++;
          if (signal.aborted) {
            end = { kind: 'stopped' };
            break;
          }
          if (Date.now() - started >= CHECKPOINT_MS || handled >= CHECKPOINT_ENTRIES) break;
        }
        state.progress.bytes_read = end?.kind === 'done' ? row.bytes : Math.min(archive.bytesRead(), row.bytes);
        if (!(await createDatasetImportsRepository(tx).checkpoint(row.id, owner, state.progress))) throw new ImportLeaseLostError(row.id);
      });
      if (end?.kind === 'stopped') break;
    } while (end === undefined || ahead !== undefined);
  } finally {
    archive.close();
  }
  return end ?? { kind: 'stopped' };
}

/** An entry of the second pass, read ahead of the one being stored. */
interface ReadAhead {
  entry: ArchiveEntry;
  /** An image entry's bytes hashed, and the checked image (decoded on the thread pool meanwhile) or why it is refused. */
  image?: { sha256: string; checked: Promise<PreparedImage | ImageUploadError> } | ImageUploadError;
  /** The archive broke while the entry was read. */
  archiveError?: ArchiveReadError;
}

const isImageEntry = (entry: ArchiveEntry): boolean =>
  entry.kind === 'file' && !isSkippedEntry(entry.path) && !isSidecar(entry.path) && !isMetadata(entry.path);

async function readAhead(context: ArchiveImportContext, captions: CaptionIndex, entry: ArchiveEntry): Promise<ReadAhead> {
  if (!isImageEntry(entry)) return { entry };
  const { limits } = context;
  let bytes: Buffer;
  try {
    bytes = await entry.read(limits.image.maxBytes);
  } catch (error) {
    if (error instanceof ArchiveReadError) return { entry, archiveError: error };
    if (error instanceof ImageUploadError) return { entry, image: error };
    throw error;
  }
  const caption = captionOf(captions, entry).caption;
  const checked = prepareImage(bytes, entry.path, entry.path, limits.image, caption).catch((error: unknown) => {
    if (error instanceof ImageUploadError) return error;
    throw error;
  });
  checked.catch(() => undefined); // awaited when the entry is stored
  return { entry, image: { sha256: sha256Hex(bytes), checked } };
}

/** An image's caption: its sidecar's, else its metadata.jsonl line's; and whether both named one. */
function captionOf(captions: CaptionIndex, entry: ArchiveEntry): { caption: string | null; conflict: boolean } {
  const sidecar = captions.sidecars.get(pathStem(entry.path).toLowerCase());
  const metadata = captions.metadata.get(entry.path.toLowerCase());
  return { caption: sidecar ?? metadata ?? null, conflict: sidecar !== undefined && metadata !== undefined };
}

/** One entry of the second pass, inside the batch's transaction; the dataset's image count after it. */
async function storeEntry(
  context: ArchiveImportContext,
  state: ImportState,
  images: ReturnType<typeof createImagesRepository>,
  ahead: ReadAhead,
  count: number,
): Promise<number> {
  const { row, limits } = context;
  const { progress, captions } = state;
  const { entry, image } = ahead;
  if (entry.kind === 'directory' || isSkippedEntry(entry.path)) return count;
  if (entry.kind !== 'file') {
    refuseEntry(state, { entry: entry.path, code: 'archive-unsafe-path', detail: `Entry "${entry.path}" is a link or a special file; only files are read.` });
    return count;
  }
  if (image === undefined) {
    // A caption file, read by the first pass; what it refused is counted here, once, in archive order.
    const refused = captions.refusals.get(entry.index);
    if (refused !== undefined) {
      progress.refused += refused.count;
      for (const refusal of refused.listed) if (progress.refusals.length < MAX_LISTED_REFUSALS) progress.refusals.push(refusal);
    }
    return count;
  }
  try {
    if (image instanceof ImageUploadError) throw image;
    if ((await images.findBySha256s(row.tenant_id, row.dataset_id, [image.sha256])).length > 0) {
      progress.duplicates++;
      return count;
    }
    if (count >= limits.maxImagesPerDataset) {
      throw new ImageUploadError('dataset-image-limit', 409, `Dataset ${row.dataset_id} holds ${count} images, the most a dataset may hold (DATASET_MAX_IMAGES); "${entry.path}" was not stored.`, { file: entry.path });
    }
    const prepared = await image.checked;
    if (prepared instanceof ImageUploadError) throw prepared;
    await context.images.storeNew(images, row.tenant_id, row.dataset_id, prepared);
    progress.images_stored++;
    if (prepared.caption !== null) progress.captions_attached++;
    if (captionOf(captions, entry).conflict) progress.caption_conflicts++;
    return count + 1;
  } catch (error) {
    if (!(error instanceof ImageUploadError)) throw error;
    refuseEntry(state, refusalOf(entry.path, error));
    return count;
  }
}
