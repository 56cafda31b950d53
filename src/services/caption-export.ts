// Export of a dataset's captions as kohya-style sidecars: for each captioned image a
// name.txt named after the image's uploaded file (rex/img01.jpg -> img01.txt), optionally
// with the image itself as name.jpg beside it, streamed as a stored zip.
import { notFound, ProblemError } from '../errors.js';
import { createCaptionsRepository, type ImageCaptionRow } from '../repositories/captions.js';
import type { Database } from '../db/database.js';
import type { BlobStore } from '../storage/blob-store.js';
import { storedZip, ZIP_MAX_BYTES, type ZipEntry } from './zip-writer.js';

const EXTENSIONS = { jpeg: 'jpg', png: 'png', webp: 'webp' } as const;
const MAX_STEM_CHARS = 100;
/** Room for the zip's headers and directory, per entry, when checking the size up front. */
const ZIP_OVERHEAD_PER_ENTRY = 30 + 46 + 2 * MAX_STEM_CHARS * 4 + 16;

export interface ExportPlanEntry {
  imageId: string;
  /** File name without extension, unique in the archive (case-insensitively). */
  stem: string;
  image: ImageCaptionRow;
}

/** `rex/IMG 01.JPG` -> `IMG 01`; characters other than letters, digits, space, . _ - become _. */
export function fileStem(originalFilename: string | null, fallback: string): string {
  const base = (originalFilename ?? '').split('/').pop() ?? '';
  const dot = base.lastIndexOf('.');
  const stem = (dot > 0 ? base.slice(0, dot) : base)
    .replace(/[^\p{L}\p{N} ._-]/gu, '_')
    .replace(/^[. ]+|[. ]+$/g, '');
  return stem === '' ? fallback : [...stem].slice(0, MAX_STEM_CHARS).join('');
}

/** One name per image, oldest image first; a repeated name gets _2, _3, ... */
export function planExport(images: readonly ImageCaptionRow[]): ExportPlanEntry[] {
  const taken = new Set<string>();
  return images.map((image) => {
    const base = fileStem(image.original_filename, image.image_id);
    let stem = base;
    for (let n = 2; taken.has(stem.toLowerCase()); n++) stem = `${base}_${n}`;
    taken.add(stem.toLowerCase());
    return { imageId: image.image_id, stem, image };
  });
}

/** kohya reads the first line of a sidecar: a caption is written as one line. */
export function sidecarText(caption: string): string {
  return caption.replace(/\s+/g, ' ').trim();
}

export function createCaptionExport(db: Database, blobs: BlobStore) {
  return {
    /**
     * The archive of the dataset's captions (and images when asked), as a byte stream.
     * 404 for an unknown dataset; 422 when the images would make the zip exceed 4 GiB.
     */
    async export(tenantId: string, datasetId: string, includeImages: boolean): Promise<AsyncGenerator<Buffer>> {
      const { rows } = await db.query('SELECT 1 FROM datasets WHERE tenant_id = $1 AND id = $2', [tenantId, datasetId]);
      if (rows.length === 0) throw notFound('dataset', datasetId);
      const plan = planExport(await createCaptionsRepository(db).allForDataset(tenantId, datasetId));
      if (includeImages) {
        const bytes = plan.reduce((sum, e) => sum + e.image.byte_size + 2 * ZIP_OVERHEAD_PER_ENTRY, 0);
        if (bytes > ZIP_MAX_BYTES) {
          throw new ProblemError({
            status: 422,
            type: 'export-too-large',
            title: 'Export too large',
            detail: `The images of dataset ${datasetId} make a zip over 4 GiB; export the captions alone (include_images=false).`,
          });
        }
      }
      async function* entries(): AsyncGenerator<ZipEntry> {
        for (const { stem, image } of plan) {
          if (includeImages) {
            const data = await blobs.get(image.sha256);
            if (data === null) throw new Error(`blob ${image.sha256} of image ${image.image_id} is missing`);
            yield { name: `${stem}.${EXTENSIONS[image.format]}`, data };
          }
          const caption = image.caption_row;
          if (caption !== null) yield { name: `${stem}.txt`, data: Buffer.from(sidecarText(caption.caption), 'utf8'), modified: caption.created_at };
        }
      }
      return storedZip(entries());
    },
  };
}
export type CaptionExport = ReturnType<typeof createCaptionExport>;
