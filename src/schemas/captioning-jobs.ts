// Captioning job: a background run that captions some or all images of a dataset with one
// provider, with its status, progress, usage and per-image errors.
import { Type, type Static } from 'typebox';
import { CAPTION_PROVIDERS } from '../captioning/captioner.js';
import { Page, PaginationQuery, ResourceId, Timestamp } from './common.js';
import { WebhookSubscription, WebhookSubscriptionView } from './webhooks.js';

export const CAPTIONING_JOB_ID_PREFIX = 'cj';
export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'canceled'] as const;
export const JOB_MODES = ['interactive', 'batch'] as const;
export const BATCH_STATUSES = ['in_progress', 'canceling', 'ended', 'collected', 'abandoned'] as const;
/** Most images one job may name (a dataset holds fewer). */
export const MAX_JOB_IMAGE_IDS = 1000;
export const MAX_STYLE_HINT_CHARS = 300;

const Provider = Type.Enum([...CAPTION_PROVIDERS], {
  description: 'Who writes the captions: anthropic (Claude), openai-compatible (a vision model behind an OpenAI-compatible API) or template (a fixed sentence from the trigger and class word, free and offline)',
});

const Mode = Type.Enum([...JOB_MODES], {
  description: 'interactive: one request per image, answered in seconds; batch: the provider\'s batch API (anthropic\'s Message Batches), half the price, answered within 24 hours',
});

export const CreateCaptioningJobBody = Type.Object(
  {
    provider: Type.Optional(Provider),
    mode: Type.Optional(Type.Enum([...JOB_MODES], {
      description: 'How the requests are sent. Default: batch when the provider has a batch API (anthropic) and the job has more than CAPTION_BATCH_THRESHOLD images, else interactive. batch with a provider that has none is refused (422 naming mode).',
    })),
    overwrite: Type.Boolean({
      default: false,
      description: 'Also replace captions a person wrote (source manual or upload); otherwise those images are skipped. Earlier captions always stay in the history.',
    }),
    style_hint: Type.Optional(Type.String({
      minLength: 1,
      maxLength: MAX_STYLE_HINT_CHARS,
      pattern: '\\S',
      description: 'Extra instruction for the captioner, e.g. "mention the lighting"',
      examples: ['short, comma-separated tags'],
    })),
    image_ids: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
      minItems: 1,
      maxItems: MAX_JOB_IMAGE_IDS,
      uniqueItems: true,
      description: 'Caption only these images of the dataset (e.g. to retry the ones that failed); all of them when omitted',
    })),
    consistency_pass: Type.Boolean({
      default: false,
      description: 'After every image is captioned, send all captions of the set in one more request that rewrites them with one vocabulary and structure',
    }),
    webhook: Type.Optional(WebhookSubscription('captioning_job')),
  },
  { additionalProperties: false },
);
export type CreateCaptioningJobInput = Static<typeof CreateCaptioningJobBody>;

const Count = (description: string) => Type.Integer({ minimum: 0, description });

export const CaptioningJobSchema = Type.Object(
  {
    id: ResourceId(CAPTIONING_JOB_ID_PREFIX, 'Captioning job id'),
    dataset_id: ResourceId('ds', 'Dataset the job captions'),
    status: Type.Enum([...JOB_STATUSES], {
      description: 'queued -> running -> succeeded (every image captioned or skipped) | failed (some image failed, or the job could not run; the other images keep their new captions) | canceled',
    }),
    mode: Mode,
    provider: Provider,
    model: Type.String({ description: 'Model that writes the captions ("template" for the template provider)' }),
    prompt_version: Type.String({ description: 'Version of the provider\'s prompt' }),
    trigger_token: Type.String({ description: 'The dataset\'s trigger token when the job was created' }),
    class_word: Type.String({ description: 'The dataset\'s class word when the job was created' }),
    options: Type.Object(
      {
        overwrite: Type.Boolean(),
        style_hint: Type.Union([Type.String(), Type.Null()]),
        image_ids: Type.Union([Type.Array(Type.String()), Type.Null()], { description: 'The images named; null for the whole dataset' }),
        consistency_pass: Type.Boolean(),
      },
      { additionalProperties: false, description: 'The options the job was created with' },
    ),
    progress: Type.Object(
      {
        total: Count('Images in the job'),
        done: Count('Images finished: succeeded, failed, skipped or canceled'),
        succeeded: Count('Images given a caption'),
        failed: Count('Images whose caption request failed (see errors)'),
        skipped: Count('Images kept as they were: a person wrote their caption and overwrite was false'),
        canceled: Count('Images not captioned because the job was canceled'),
        cached: Count('Succeeded images answered from the cache, with no request'),
      },
      { additionalProperties: false },
    ),
    usage: Type.Object(
      {
        input_tokens: Count('Input tokens of every request the job made'),
        output_tokens: Count('Output tokens of every request the job made'),
        cost_usd: Type.Union([Type.Number({ minimum: 0 }), Type.Null()], {
          description: 'Estimated cost of those requests in US dollars; null when the model\'s price is unknown',
        }),
      },
      { additionalProperties: false, description: 'What the job spent; answers from the cache cost nothing' },
    ),
    errors: Type.Array(
      Type.Object(
        {
          image_id: Type.String(),
          code: Type.String({ description: 'rate_limited, overloaded, server_error, timeout, invalid_output, bad_request, auth, network, expired, image_missing, ...' }),
          message: Type.String(),
          attempts: Type.Integer({ minimum: 0, description: 'Requests made for the image, retries included (in batch mode: the batches it was sent in)' }),
          http_status: Type.Union([Type.Integer(), Type.Null()], { description: 'HTTP status of the provider\'s last answer, when there was one' }),
        },
        { additionalProperties: false },
      ),
      { description: 'One entry per failed image; retry them alone with a new job naming their image_ids' },
    ),
    batches: Type.Array(
      Type.Object(
        {
          id: ResourceId('cb', 'Caption batch id'),
          provider_batch_id: Type.String({ description: 'The provider\'s id of the batch (msgbatch_...)' }),
          status: Type.Enum([...BATCH_STATUSES], {
            description: 'in_progress | canceling | ended (as the provider said at the last look), collected (ended and every result written), abandoned (canceled with its job)',
          }),
          requests: Count('Requests (images) the batch carries'),
          request_counts: Type.Object(
            {
              processing: Count('Requests not answered yet'),
              succeeded: Count('Requests answered'),
              errored: Count('Requests that failed (retried in a new batch while the retry budget lasts)'),
              canceled: Count('Requests canceled before they ran'),
              expired: Count('Requests the provider did not get to within 24 hours'),
            },
            { additionalProperties: false, description: 'As the provider counted them at the last look' },
          ),
          submitted_at: Timestamp,
          ended_at: Type.Union([Timestamp, Type.Null()]),
        },
        { additionalProperties: false },
      ),
      { description: 'Batch mode: every batch the job submitted, oldest first (empty in interactive mode)' },
    ),
    error: Type.Union(
      [Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false }), Type.Null()],
      { description: 'Why the job as a whole failed; null otherwise' },
    ),
    webhook: WebhookSubscriptionView,
    cancel_requested: Type.Boolean({ description: 'True once cancel was asked; a running job then stops within moments' }),
    created_at: Timestamp,
    started_at: Type.Union([Timestamp, Type.Null()]),
    finished_at: Type.Union([Timestamp, Type.Null()]),
  },
  { $id: 'CaptioningJob', additionalProperties: false, description: 'A background run that captions a dataset\'s images' },
);
export type CaptioningJob = Static<typeof CaptioningJobSchema>;
export const CaptioningJobRef = Type.Ref('CaptioningJob');

export const CaptioningJobParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 100, description: 'Captioning job id' }) },
  { additionalProperties: false },
);

export const ListCaptioningJobsQuery = PaginationQuery;
export const CaptioningJobPage = Page(CaptioningJobRef, 'A page of a dataset\'s captioning jobs, newest first');
