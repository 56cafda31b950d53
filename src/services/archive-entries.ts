// The entries of a stored archive (zip, tar or tar.gz), one at a time, whatever its format:
// a zip through yauzl from the file (its central directory, then one entry inflated at a
// time, with the zip-bomb checks of zip-extraction.ts), a tar through the streaming
// TarReader (gunzipped on the way for tar.gz). Nothing holds more than one entry's data.
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type yauzl from 'yauzl';
import { TarReader, type TarEntryKind } from '../storage/tar-reader.js';
import { ImageUploadError } from './image-upload-error.js';
import { checkZipEntryData, checkZipEntryName, nextEntry, openZipFile, readEntry } from './zip-extraction.js';

export const ARCHIVE_FORMATS = ['zip', 'tar', 'tar.gz'] as const;
export type ArchiveFormat = typeof ARCHIVE_FORMATS[number];

export interface ArchiveEntry {
  /** Position in the archive, from 0, counting every entry (folders too): the same on every read. */
  index: number;
  /** Path inside the archive, with `/` separators. */
  path: string;
  kind: TarEntryKind;
  /**
   * The entry's bytes. Throws ImageUploadError (this entry only) when they pass `limit`
   * (counted while inflating, whatever the headers claim) or cannot be read.
   */
  read(limit: number): Promise<Buffer>;
}

export interface ArchiveLimits {
  /** Most entries a zip's directory may list. */
  maxEntries: number;
  /** Highest inflated/compressed ratio of a zip entry past 1 MiB. */
  maxCompressionRatio: number;
}

/** The archive as a whole cannot be read on (not the format it claims, damaged, truncated). */
export class ArchiveReadError extends Error {
  override name = 'ArchiveReadError';
  readonly code: 'archive-invalid' | 'archive-too-many-entries';

  constructor(code: ArchiveReadError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

export interface ArchiveReading {
  entries: AsyncIterable<ArchiveEntry>;
  /** Bytes of the stored archive read so far (compressed bytes for tar.gz). */
  bytesRead(): number;
  close(): void;
}

/** Reads the archive stored in `file`; `name` is how messages call it. */
export async function readArchive(file: string, format: ArchiveFormat, name: string, limits: ArchiveLimits): Promise<ArchiveReading> {
  return format === 'zip' ? readZip(file, name, limits) : readTar(file, format === 'tar.gz', name);
}

async function readZip(file: string, name: string, limits: ArchiveLimits): Promise<ArchiveReading> {
  let zip: yauzl.ZipFile;
  try {
    zip = await openZipFile(file, name);
  } catch (error) {
    throw new ArchiveReadError('archive-invalid', error instanceof Error ? error.message : String(error));
  }
  if (zip.entryCount > limits.maxEntries) {
    zip.close();
    throw new ArchiveReadError('archive-too-many-entries', `The zip lists ${zip.entryCount} entries; the limit is ${limits.maxEntries}.`);
  }
  let position = 0;
  async function* entries(): AsyncGenerator<ArchiveEntry> {
    for (let index = 0; ; index++) {
      let entry: yauzl.Entry | null;
      try {
        entry = await nextEntry(zip, name);
      } catch (error) {
        throw new ArchiveReadError('archive-invalid', error instanceof Error ? error.message : String(error));
      }
      if (entry === null) return;
      const found = entry;
      position = Math.max(position, found.relativeOffsetOfLocalHeader + found.compressedSize);
      const path = found.fileName;
      yield {
        index,
        path,
        kind: path.endsWith('/') ? 'directory' : 'file',
        async read(limit) {
          checkZipEntryName(found, name);
          checkZipEntryData(found, name);
          return readEntry(zip, found, {
            archiveName: name,
            path,
            entryLimit: limit,
            budget: { remaining: Number.MAX_SAFE_INTEGER },
            limits: { maxEntries: limits.maxEntries, maxTotalBytes: Number.MAX_SAFE_INTEGER, maxEntryBytes: limit, maxCaptionBytes: limit, maxCompressionRatio: limits.maxCompressionRatio },
          });
        },
      };
    }
  }
  return { entries: entries(), bytesRead: () => position, close: () => zip.close() };
}

function readTar(file: string, gzipped: boolean, name: string): ArchiveReading {
  const stored = createReadStream(file);
  let source: NodeJS.ReadableStream = stored;
  if (gzipped) {
    const gunzip = createGunzip();
    // An error of either stream destroys the other, and the reader's next read throws it.
    source = pipeline(stored, gunzip, () => {});
  }
  const tar = new TarReader(source as AsyncIterable<Buffer>);
  const failed = (error: unknown): ArchiveReadError => new ArchiveReadError(
    'archive-invalid',
    `${gzipped ? 'The tar.gz' : 'The tar'} archive could not be read on: ${error instanceof Error ? error.message : String(error)}`,
  );
  async function* entries(): AsyncGenerator<ArchiveEntry> {
    for (let index = 0; ; index++) {
      let header;
      try {
        header = await tar.next();
      } catch (error) {
        throw failed(error);
      }
      if (header === null) return;
      const { path, kind, size } = header;
      yield {
        index,
        path,
        kind,
        async read(limit) {
          // A tar entry's size is exact: the data is that long, so the header alone can refuse it.
          if (size > limit) {
            throw new ImageUploadError('file-too-large', 413, `Entry "${path}" of "${name}" is ${size} bytes; the limit for one file is ${limit} bytes.`, { file: `${name}/${path}` });
          }
          try {
            return await tar.read(size);
          } catch (error) {
            throw failed(error);
          }
        },
      };
    }
  }
  return { entries: entries(), bytesRead: () => stored.bytesRead, close: () => stored.destroy() };
}
