// Image: one training photo of a dataset, stored once per dataset by content (sha256).
import { Type, type Static } from 'typebox';
import { Page, PaginationQuery, ResourceId, Timestamp } from './common.js';

export const IMAGE_ID_PREFIX = 'img';
/** Multipart field that carries the files; `file` is accepted as a synonym. */
export const UPLOAD_FIELD = 'files';
export const UPLOAD_FIELDS: readonly string[] = [UPLOAD_FIELD, 'file'];

export const ImageId = ResourceId(IMAGE_ID_PREFIX, 'Image id');

const imageProperties = {
  id: ImageId,
  dataset_id: ResourceId('ds', 'Dataset the image belongs to'),
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$', description: 'SHA-256 of the stored bytes (also the ETag of its content)' }),
  byte_size: Type.Integer({ minimum: 1, description: 'Size of the stored file in bytes' }),
  format: Type.Union([Type.Literal('jpeg'), Type.Literal('png'), Type.Literal('webp')], { description: 'Format detected from the bytes' }),
  media_type: Type.String({ description: 'Content-Type of GET /v1/images/{id}/content', examples: ['image/jpeg'] }),
  width: Type.Integer({ minimum: 1, description: 'Width as displayed (EXIF orientation applied)' }),
  height: Type.Integer({ minimum: 1, description: 'Height as displayed (EXIF orientation applied)' }),
  original_filename: Type.Union([Type.String(), Type.Null()], { description: 'Uploaded file name, or the path inside the uploaded zip' }),
  caption: Type.Union([Type.String(), Type.Null()], { description: 'Caption, e.g. from an img01.txt sidecar next to img01.jpg' }),
  caption_source: Type.Union([Type.String(), Type.Null()], {
    description:
      'Who wrote the current caption: "upload" (a sidecar .txt), "manual", "anthropic", "openai-compatible" or "template"; null without caption',
  }),
  content_url: Type.String({ description: 'Path of the image bytes', examples: ['/v1/images/img_01JD3Q5V8Z6ZK2W7M4N1T0X9PA/content'] }),
  created_at: Timestamp,
};

export const ImageSchema = Type.Object(imageProperties, { additionalProperties: false, description: 'An image of a dataset' });
export type Image = Static<typeof ImageSchema>;

export const UploadedImageSchema = Type.Object(
  {
    ...imageProperties,
    duplicate: Type.Boolean({ description: 'True when the dataset already held these exact bytes: this is the existing image, nothing new was stored' }),
  },
  { additionalProperties: false },
);
export type UploadedImage = Static<typeof UploadedImageSchema>;

export const UploadResult = Type.Object(
  { data: Type.Array(UploadedImageSchema, { description: 'One entry per uploaded image, in request order (zip entries in archive order)' }) },
  { additionalProperties: false },
);

/**
 * Documents the multipart body. It validates nothing on purpose (the body is streamed, not
 * parsed, so fastify sees null); the handler checks the parts and names a wrong one.
 */
export const UploadBody = {
  content: {
    'multipart/form-data': {
      schema: {
        type: ['object', 'null'],
        properties: {
          [UPLOAD_FIELD]: {
            type: 'array',
            items: { type: 'string', contentMediaType: 'application/octet-stream' },
            description:
              'One or more JPEG, PNG or WebP files, or .zip archives of them; a name.txt file (next to name.jpg, in the ' +
              'request or in the same zip) is that image\'s caption. Repeat the field for several files; "file" is accepted too.',
          },
        },
      },
    },
  },
};

// Ids are opaque to clients: one that is malformed is simply not found (404), not a 400.
export const ImageParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 100, description: 'Image id' }) },
  { additionalProperties: false },
);

export const DatasetImagesParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 100, description: 'Dataset id' }) },
  { additionalProperties: false },
);

export const ListImagesQuery = PaginationQuery;

export const IMAGE_CONTENT_VARIANTS = ['original', 'thumbnail'] as const;
export type ImageContentVariant = (typeof IMAGE_CONTENT_VARIANTS)[number];

export const ImageContentQuery = Type.Object(
  {
    variant: Type.Enum([...IMAGE_CONTENT_VARIANTS], {
      default: 'original',
      description:
        'original: the bytes exactly as uploaded. thumbnail: a WebP of the image as displayed (EXIF orientation ' +
        'applied, as width and height describe it) scaled to fit inside 256x256, never enlarged',
    }),
  },
  { additionalProperties: false },
);

export const ImagePage = Page(ImageSchema, 'A page of images, newest first');
