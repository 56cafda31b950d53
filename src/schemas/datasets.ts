// Dataset: a named set of training photos of one subject, with the tokens its captions use.
import { Type, type Static } from 'typebox';
import { Page, PaginationQuery, ResourceId, Timestamp } from './common.js';

export const DATASET_ID_PREFIX = 'ds';
export const DEFAULT_TRIGGER_TOKEN = 'ohwx';

export const DatasetId = ResourceId(DATASET_ID_PREFIX, 'Dataset id');

const Name = Type.String({ minLength: 1, maxLength: 100, pattern: '\\S', description: 'Human-readable name', examples: ['Rex the dog'] });
const TriggerToken = Type.String({
  minLength: 1,
  maxLength: 32,
  pattern: '^[A-Za-z0-9_-]+$',
  description: 'Rare token that stands for the subject in captions and prompts; letters, digits, _ and - only',
  examples: [DEFAULT_TRIGGER_TOKEN],
});
const ClassWord = Type.String({
  minLength: 1,
  maxLength: 50,
  pattern: '^[A-Za-z0-9][A-Za-z0-9 _-]*$',
  description: 'What the subject is, as a plain word: person, dog, style, ...',
  examples: ['dog'],
});

export const DatasetSchema = Type.Object(
  {
    id: DatasetId,
    name: Name,
    trigger_token: TriggerToken,
    class_word: ClassWord,
    image_count: Type.Integer({ minimum: 0, description: 'Images currently in the dataset' }),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'Dataset', additionalProperties: false },
);
export type Dataset = Static<typeof DatasetSchema>;

export const DatasetRef = Type.Ref('Dataset');

export const CreateDatasetBody = Type.Object(
  {
    name: Name,
    trigger_token: Type.Optional(TriggerToken),
    class_word: ClassWord,
  },
  { additionalProperties: false },
);
export type CreateDatasetInput = Static<typeof CreateDatasetBody>;

export const UpdateDatasetBody = Type.Object(
  {
    name: Type.Optional(Name),
    trigger_token: Type.Optional(TriggerToken),
    class_word: Type.Optional(ClassWord),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateDatasetInput = Static<typeof UpdateDatasetBody>;

// Ids are opaque to clients: one that is malformed is simply not found (404), not a 400.
export const DatasetParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 100, description: 'Dataset id' }) },
  { additionalProperties: false },
);

export const ListDatasetsQuery = PaginationQuery;

export const DatasetPage = Page(DatasetRef, 'A page of datasets, newest first');
