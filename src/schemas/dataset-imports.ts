// Dataset import: one archive (zip, tar or tar.gz) of many images uploaded in one request,
// read in the background into its dataset, with its progress and the entries it refused.
import { Type, type Static } from 'typebox';
import { ARCHIVE_FORMATS } from '../services/archive-entries.js';
import { Page, PaginationQuery, ResourceId, Timestamp } from './common.js';

export const DATASET_IMPORT_ID_PREFIX = 'imp';
export const IMPORT_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;
/** Refusals kept on an import; `progress.refused` counts them all. */
export const MAX_LISTED_REFUSALS = 1000;
/** The raw body's media types (besides multipart/form-data). */
export const ARCHIVE_MEDIA_TYPES = ['application/zip', 'application/x-tar', 'application/gzip', 'application/octet-stream'] as const;

const Count = (description: string) => Type.Integer({ minimum: 0, description });

export const DatasetImportSchema = Type.Object(
  {
    id: ResourceId(DATASET_IMPORT_ID_PREFIX, 'Dataset import id'),
    object: Type.Literal('dataset_import'),
    dataset_id: ResourceId('ds', 'Dataset the images go to'),
    status: Type.Enum([...IMPORT_STATUSES], {
      description: 'queued -> running -> succeeded (every entry read; refused ones are listed) | failed (the archive could not be read on; images stored so far stay) | canceled (images stored so far stay)',
    }),
    filename: Type.Union([Type.String(), Type.Null()], { description: 'The archive\'s name: the multipart part\'s filename or ?filename=' }),
    format: Type.Enum([...ARCHIVE_FORMATS], { description: 'Sniffed from the stored bytes, never from the name' }),
    bytes: Count('Size of the stored archive'),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$', description: 'SHA-256 of the archive, hashed while it arrived' }),
    progress: Type.Object(
      {
        bytes_read: Count('Bytes of the archive read so far: draw a bar against `bytes`'),
        entries_read: Count('Entries of the archive handled (folders and caption files too)'),
        images_stored: Count('New images stored in the dataset'),
        duplicates: Count('Images the dataset already held (same SHA-256), skipped'),
        captions_attached: Count('Stored images given a caption from a sidecar or metadata.jsonl'),
        refused: Count('Entries refused (see refusals)'),
      },
      { additionalProperties: false, description: 'Counts as of the last checkpoint (about once a second while running)' },
    ),
    refusals: Type.Array(
      Type.Object(
        {
          entry: Type.String({ description: 'The entry\'s path in the archive (metadata.jsonl:LINE for a line of a metadata file)' }),
          code: Type.String({ description: 'unsupported-media-type, corrupt-image, file-too-large, image-too-many-pixels, image-too-small, dataset-image-limit, caption-invalid, metadata-invalid, archive-unsafe-path, ...' }),
          detail: Type.String(),
        },
        { additionalProperties: false },
      ),
      { description: `The first ${MAX_LISTED_REFUSALS} refused entries, in archive order` },
    ),
    refusals_truncated: Type.Boolean({ description: `True when more than ${MAX_LISTED_REFUSALS} entries were refused` }),
    caption_conflicts: Count('Stored images with both a sidecar and a metadata.jsonl caption (the sidecar won)'),
    error: Type.Union(
      [Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false }), Type.Null()],
      { description: 'Why the import as a whole failed (an unreadable archive, ...); null otherwise' },
    ),
    created_at: Timestamp,
    started_at: Type.Union([Timestamp, Type.Null()]),
    completed_at: Type.Union([Timestamp, Type.Null()]),
  },
  { $id: 'DatasetImport', additionalProperties: false, description: 'An archive of images being read into a dataset' },
);
export type DatasetImport = Static<typeof DatasetImportSchema>;
export const DatasetImportRef = Type.Ref('DatasetImport');

export const DatasetImportParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 100, description: 'Dataset import id' }) },
  { additionalProperties: false },
);

export const CreateDatasetImportQuery = Type.Object(
  { filename: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'The archive\'s name, for a raw body (a multipart part names itself)' })) },
  { additionalProperties: false },
);

export const ListDatasetImportsQuery = PaginationQuery;
export const DatasetImportPage = Page(DatasetImportRef, 'A page of a dataset\'s imports, newest first');
