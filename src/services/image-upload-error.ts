/**
 * Why an uploaded file (or the request carrying it) was refused. Routes turn this
 * into an RFC 9457 problem document; `kind` becomes the last segment of its `type`.
 */
export type ImageUploadErrorKind =
  | 'empty-file'
  | 'file-too-large'
  | 'unsupported-media-type'
  | 'corrupt-image'
  | 'image-too-many-pixels'
  | 'image-too-small'
  | 'archive-invalid'
  | 'archive-unsafe-path'
  | 'archive-nested'
  | 'archive-too-large'
  | 'archive-too-many-entries'
  | 'archive-empty'
  | 'caption-invalid'
  | 'too-many-files'
  | 'dataset-image-limit'
  | 'unknown-field'
  | 'no-files'
  | 'not-multipart';

const TITLES: Record<ImageUploadErrorKind, string> = {
  'empty-file': 'Empty file',
  'file-too-large': 'File too large',
  'unsupported-media-type': 'Unsupported media type',
  'corrupt-image': 'Corrupt image',
  'image-too-many-pixels': 'Image has too many pixels',
  'image-too-small': 'Image too small',
  'archive-invalid': 'Invalid archive',
  'archive-unsafe-path': 'Unsafe path in archive',
  'archive-nested': 'Nested archive',
  'archive-too-large': 'Archive too large when inflated',
  'archive-too-many-entries': 'Too many entries in archive',
  'archive-empty': 'Archive holds no images',
  'caption-invalid': 'Invalid caption file',
  'too-many-files': 'Too many files',
  'dataset-image-limit': 'Dataset image limit reached',
  'unknown-field': 'Unknown multipart field',
  'no-files': 'No files',
  'not-multipart': 'Expected multipart/form-data'
};

export class ImageUploadError extends Error {
  readonly kind: ImageUploadErrorKind;
  readonly status: number;
  readonly title: string;
  /** The multipart field, file name or archive entry at fault, when there is one. */
  readonly file: string | undefined;
  /** The request field at fault (`files`, or the unexpected field's name). */
  readonly field: string | undefined;

  constructor(kind: ImageUploadErrorKind, status: number, detail: string, where: { file?: string; field?: string } = {}) {
    super(detail);
    this.name = 'ImageUploadError';
    this.kind = kind;
    this.status = status;
    this.title = TITLES[kind];
    this.file = where.file;
    this.field = where.field;
  }
}
