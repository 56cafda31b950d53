// Caption: one version of an image's training caption, with where it came from (a sidecar,
// a person, or a provider with its model, prompt version, tokens and estimated cost).
import { Type, type Static } from 'typebox';
import { Page, PaginationQuery, ResourceId, Timestamp } from './common.js';

export const CAPTION_ID_PREFIX = 'cap';
export const CAPTION_SOURCES = ['upload', 'manual', 'anthropic', 'openai-compatible', 'template'] as const;
/** Most captions one bulk update may set. */
export const MAX_BULK_CAPTIONS = 1000;

const NullableString = (description: string) => Type.Union([Type.String(), Type.Null()], { description });

export const CaptionSchema = Type.Object(
  {
    id: ResourceId(CAPTION_ID_PREFIX, 'Caption version id'),
    image_id: ResourceId('img', 'Image the caption describes'),
    dataset_id: ResourceId('ds', 'Dataset of the image'),
    caption: Type.String({ description: 'The caption text, as written to the name.txt sidecar on export' }),
    source: Type.Enum([...CAPTION_SOURCES], {
      description: 'upload: a name.txt sidecar sent with the image; manual: written through the API; otherwise the provider that wrote it',
    }),
    model: NullableString('Model that wrote it; null for upload and manual captions'),
    prompt_version: NullableString('Version of the provider\'s prompt; null for upload and manual captions'),
    usage: Type.Union(
      [
        Type.Object(
          {
            input_tokens: Type.Integer({ minimum: 0 }),
            output_tokens: Type.Integer({ minimum: 0 }),
          },
          { additionalProperties: false },
        ),
        Type.Null(),
      ],
      { description: 'Tokens of the provider request that produced this caption (retries included); null for upload and manual captions and for consistency-pass rewrites (that request\'s tokens count on its job)' },
    ),
    cost_usd: Type.Union([Type.Number({ minimum: 0 }), Type.Null()], {
      description: 'Estimated cost of that request in US dollars; null when unknown or not a provider caption',
    }),
    cached: Type.Boolean({ description: 'True when a job reused an earlier answer for the same bytes, provider, model, prompt and tokens: no request was made, usage and cost are the original request\'s' }),
    normalized: Type.Boolean({ description: 'True when a job\'s consistency pass rewrote the caption' }),
    job_id: Type.Union([ResourceId('cj', 'Captioning job'), Type.Null()], { description: 'The captioning job that wrote it; null otherwise' }),
    current: Type.Boolean({ description: 'True for the image\'s current caption; false for its earlier versions' }),
    created_at: Timestamp,
  },
  { $id: 'Caption', additionalProperties: false, description: 'One version of an image\'s caption' },
);
export type Caption = Static<typeof CaptionSchema>;
export const CaptionRef = Type.Ref('Caption');

export const ImageCaptionSchema = Type.Object(
  {
    image_id: ResourceId('img', 'Image id'),
    original_filename: Type.Union([Type.String(), Type.Null()], { description: 'Uploaded file name of the image' }),
    current: Type.Union([CaptionRef, Type.Null()], { description: 'The image\'s current caption; null when it has none' }),
  },
  { $id: 'ImageCaption', additionalProperties: false, description: 'An image and its current caption' },
);
export type ImageCaption = Static<typeof ImageCaptionSchema>;
export const ImageCaptionRef = Type.Ref('ImageCaption');

/** Length is checked against CAPTION_MAX_CHARS by the handler (the limit is configuration). */
const CaptionText = Type.String({
  minLength: 1,
  pattern: '\\S',
  description: 'Caption text; surrounding blanks are trimmed; at most CAPTION_MAX_CHARS characters',
  examples: ['a photo of sks dog sitting on a beach at sunset'],
});

export const SetCaptionBody = Type.Object({ caption: CaptionText }, { additionalProperties: false });
export type SetCaptionInput = Static<typeof SetCaptionBody>;

export const BulkCaptionsBody = Type.Object(
  {
    captions: Type.Array(
      Type.Object(
        { image_id: Type.String({ minLength: 1, maxLength: 100, description: 'An image of this dataset' }), caption: CaptionText },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: MAX_BULK_CAPTIONS, description: 'New manual captions; all are stored or none' },
    ),
  },
  { additionalProperties: false },
);
export type BulkCaptionsInput = Static<typeof BulkCaptionsBody>;

export const BulkCaptionsResult = Type.Object(
  { data: Type.Array(ImageCaptionRef, { description: 'The updated images, in request order' }) },
  { additionalProperties: false },
);

export const ListCaptionsQuery = PaginationQuery;
export const CaptionHistoryQuery = PaginationQuery;

export const ImageCaptionPage = Page(ImageCaptionRef, 'A page of a dataset\'s images with their current captions, newest image first');
export const CaptionHistoryPage = Page(CaptionRef, 'A page of an image\'s caption versions, newest first');

export const ExportCaptionsQuery = Type.Object(
  {
    include_images: Type.Boolean({
      default: false,
      description: 'Also put each image in the zip next to its name.txt (a folder kohya-style trainers read as is)',
    }),
  },
  { additionalProperties: false },
);

export const ExportResponse = {
  description: 'A zip of kohya-style sidecars: name.txt for each captioned image, named after the image\'s uploaded file',
  content: { 'application/zip': { schema: { type: 'string', contentMediaType: 'application/zip' } } },
};
