// Generation: text-to-image from a base model and LoRAs, queued like training runs and
// run by a worker on the shared job queue; its images are PNGs with AUTOMATIC1111 parameters.
import { Type, type Static } from 'typebox';
import { METRIC_NAMES } from '../engine/types.js';
import { Page, PaginationQuery, ResourceId, Timestamp } from './common.js';
import { DATASET_ID_PREFIX } from './datasets.js';
import { LoraId } from './loras.js';
import { MetricName, ScoredImages } from './quality-metrics.js';
import { MAX_CLIP_SKIP, onlyFor } from './model-families.js';
import { TrainingRunId } from './training-runs.js';
import { WebhookSubscription, WebhookSubscriptionView } from './webhooks.js';

export const GENERATION_ID_PREFIX = 'gen';
export const GENERATION_STATUSES = ['queued', 'starting', 'running', 'succeeded', 'failed', 'canceled'] as const;
export const SAMPLERS = ['euler', 'euler_a', 'dpmpp_2m_karras'] as const;
export type Sampler = (typeof SAMPLERS)[number];

/** Limits of one request (a request outside them is a 400 naming the field). */
export const GENERATION_LIMITS = {
  minSide: 64,
  maxSide: 2048,
  sideMultiple: 8,
  maxSteps: 150,
  maxGuidance: 30,
  maxImages: 4,
  maxLoras: 8,
  maxLoraScale: 4,
  maxPromptLength: 4000,
  /** Seeds are 32-bit, as AUTOMATIC1111 and ComfyUI write them; image i uses seed + i. */
  maxSeed: 4_294_967_295,
  /** Largest size or crop offset SDXL's size conditioning may name. */
  maxConditioningSide: 16_384,
} as const;

export const GenerationId = ResourceId(GENERATION_ID_PREFIX, 'Generation id');
const Status = Type.Enum([...GENERATION_STATUSES], { description: 'queued; starting (loading the model); running; succeeded, failed or canceled' });

const Side = (which: string) =>
  Type.Integer({
    minimum: GENERATION_LIMITS.minSide,
    maximum: GENERATION_LIMITS.maxSide,
    multipleOf: GENERATION_LIMITS.sideMultiple,
    description: `Image ${which} in pixels, a multiple of 8; defaults to the model's default_resolution`,
  });

const ConditioningSide = (description: string, minimum = 1) =>
  Type.Integer({ minimum, maximum: GENERATION_LIMITS.maxConditioningSide, description });

/** SDXL's micro-conditioning as diffusers' pipeline takes it (original_size, crops_coords_top_left, target_size). */
const SizeConditioning = Type.Object(
  {
    original_width: Type.Optional(ConditioningSide('Width the image "originally" had; default: the output width')),
    original_height: Type.Optional(ConditioningSide('Height the image "originally" had; default: the output height')),
    crop_top: Type.Optional(ConditioningSide('Top of the crop it "was cut" from; default 0', 0)),
    crop_left: Type.Optional(ConditioningSide('Left of the crop; default 0', 0)),
    target_width: Type.Optional(ConditioningSide('Width asked for; default: the output width')),
    target_height: Type.Optional(ConditioningSide('Height asked for; default: the output height')),
  },
  {
    additionalProperties: false,
    ...onlyFor('sdxl'),
    description: "SDXL only: the size conditioning (diffusers' original_size, crops_coords_top_left, target_size); " +
      'a small original size gives blurrier, upscaled-looking images, a crop off-centre subjects',
  },
);

const ClipSkip = Type.Integer({
  minimum: 1,
  maximum: MAX_CLIP_SKIP,
  ...onlyFor('sd1', 'sd2'),
  description: "SD 1.x/2.x only (AUTOMATIC1111's Clip skip): condition on the text encoder's hidden states this many layers from " +
    "the end; 1 = the last layer (the default), 2 = the penultimate; at most the model's clip_skip_max",
});

const LoraUse = Type.Object(
  {
    lora_id: Type.Optional(LoraId),
    training_run_id: Type.Optional(TrainingRunId),
    scale: Type.Number({ minimum: -GENERATION_LIMITS.maxLoraScale, maximum: GENERATION_LIMITS.maxLoraScale, default: 1, description: 'How strongly it applies (1 = as trained)' }),
  },
  { additionalProperties: false, description: 'A LoRA by its id, or by the training run that trained it (exactly one of the two)' },
);

/** Scoring a generation's images (issue 25): for comparing base models, or LoRAs trained elsewhere. */
export const EvaluationRequest = Type.Object(
  {
    metrics: Type.Array(MetricName, { minItems: 1, maxItems: METRIC_NAMES.length, uniqueItems: true, description: 'The quality metrics to score the images with (GET /v1/quality-metrics)' }),
    reference_dataset_id: Type.Optional(ResourceId(DATASET_ID_PREFIX, "The real images clip_i, fid and kid compare with: this dataset's (needed by those three)")),
  },
  {
    additionalProperties: false,
    description: "Score the images once made, against the generation's prompt (clip_t, hps) and a dataset's images (clip_i, fid, kid). " +
      'A metric that cannot be computed (its network missing on the server, too few images: fid, kid and is need 2 or more, lpips ' +
      '2 or more) is reported in evaluation.unavailable; the generation still succeeds',
  },
);
export type EvaluationRequest = Static<typeof EvaluationRequest>;

export const CreateGenerationBody = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 255, description: 'A base model id from GET /v1/models: the server\'s, or one of yours (mdl_...)', examples: ['sdxl-tiny-demo'] }),
    prompt: Type.String({ minLength: 1, maxLength: GENERATION_LIMITS.maxPromptLength }),
    negative_prompt: Type.String({
      maxLength: GENERATION_LIMITS.maxPromptLength,
      default: '',
      description: "Empty: zeros for SDXL (diffusers' force_zeros_for_empty_prompt), the encoded empty prompt for SD 1.x/2.x (as their pipelines do)",
    }),
    width: Type.Optional(Side('width')),
    height: Type.Optional(Side('height')),
    steps: Type.Integer({ minimum: 1, maximum: GENERATION_LIMITS.maxSteps, default: 30 }),
    guidance_scale: Type.Number({ minimum: 0, maximum: GENERATION_LIMITS.maxGuidance, default: 5, description: 'Classifier-free guidance; 1 or less turns it off' }),
    sampler: Type.Enum([...SAMPLERS], { default: 'euler', description: 'euler (Euler, as diffusers samples SDXL), euler_a (Euler ancestral) or dpmpp_2m_karras (DPM++ 2M Karras)' }),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: GENERATION_LIMITS.maxSeed, description: 'Image i uses seed + i; random when left out (the generation shows it)' })),
    num_images: Type.Integer({ minimum: 1, maximum: GENERATION_LIMITS.maxImages, default: 1 }),
    clip_skip: Type.Optional(ClipSkip),
    size_conditioning: Type.Optional(SizeConditioning),
    loras: Type.Array(LoraUse, { maxItems: GENERATION_LIMITS.maxLoras, default: [], description: 'Applied unmerged, each with its own scale; LoRAs of the same base model' }),
    evaluation: Type.Optional(EvaluationRequest),
    webhook: Type.Optional(WebhookSubscription('generation')),
  },
  { additionalProperties: false },
);
export type CreateGenerationBody = Static<typeof CreateGenerationBody>;

const ResolvedSizeConditioning = Type.Object(
  {
    original_width: Type.Integer(),
    original_height: Type.Integer(),
    crop_top: Type.Integer(),
    crop_left: Type.Integer(),
    target_width: Type.Integer(),
    target_height: Type.Integer(),
  },
  { additionalProperties: false, description: 'When the request gave it (SDXL), every field resolved' },
);
export type SizeConditioning = Static<typeof ResolvedSizeConditioning>;

/** The inputs as resolved when the generation was queued. */
export const GenerationParams = Type.Object(
  {
    prompt: Type.String(),
    negative_prompt: Type.String(),
    width: Type.Integer(),
    height: Type.Integer(),
    steps: Type.Integer(),
    guidance_scale: Type.Number(),
    sampler: Type.Enum([...SAMPLERS]),
    seed: Type.Integer(),
    num_images: Type.Integer(),
    clip_skip: Type.Optional(Type.Integer({ description: 'When the request gave one (SD 1.x/2.x)' })),
    size_conditioning: Type.Optional(ResolvedSizeConditioning),
    evaluation: Type.Optional(EvaluationRequest),
  },
  { additionalProperties: false },
);
export type GenerationParams = Static<typeof GenerationParams>;

export const GenerationLoraView = Type.Object(
  {
    lora_id: Type.String(),
    name: Type.String(),
    scale: Type.Number(),
    sha256: Type.String(),
  },
  { additionalProperties: false },
);

export const GenerationImage = Type.Object(
  {
    index: Type.Integer({ minimum: 0 }),
    seed: Type.Integer({ minimum: 0 }),
    width: Type.Integer(),
    height: Type.Integer(),
    content_url: Type.String({ description: 'PNG with an AUTOMATIC1111 "parameters" text chunk; image/webp or image/jpeg by Accept' }),
  },
  { additionalProperties: false },
);

export const GenerationSchema = Type.Object(
  {
    id: GenerationId,
    model: Type.String(),
    status: Status,
    params: GenerationParams,
    loras: Type.Array(GenerationLoraView),
    progress: Type.Union([
      Type.Object(
        {
          phase: Type.String({ description: 'loading, denoising, decoding, encoding' }),
          step: Type.Integer({ minimum: 0 }),
          total_steps: Type.Integer({ minimum: 0 }),
          percent: Type.Number({ minimum: 0, maximum: 100 }),
        },
        { additionalProperties: false },
      ),
      Type.Null(),
    ]),
    output: Type.Union([Type.Array(GenerationImage), Type.Null()], { description: 'When succeeded: the images, seed, seed+1, ...' }),
    metrics: Type.Union([Type.Record(Type.String(), Type.Number()), Type.Null()], {
      description: 'When finished: queue_seconds, load_seconds (0 when the model was resident), generate_seconds, encode_seconds',
    }),
    evaluation: Type.Union([ScoredImages, Type.Null()], {
      description: 'When the request asked for one (params.evaluation) and the images are made: the quality metrics of the images; null otherwise',
    }),
    error: Type.Union([Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false }), Type.Null()]),
    cancel_requested: Type.Boolean(),
    webhook: WebhookSubscriptionView,
    created_at: Timestamp,
    started_at: Type.Union([Timestamp, Type.Null()]),
    completed_at: Type.Union([Timestamp, Type.Null()]),
  },
  { $id: 'Generation', additionalProperties: false },
);
export type Generation = Static<typeof GenerationSchema>;
export const GenerationRef = Type.Ref('Generation');

export const GenerationParamsPath = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 100, description: 'Generation id' }) },
  { additionalProperties: false },
);
export const GenerationImageParams = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 100, description: 'Generation id' }),
    index: Type.Integer({ minimum: 0, maximum: GENERATION_LIMITS.maxImages - 1, description: 'Image index, 0 first' }),
  },
  { additionalProperties: false },
);

export const ListGenerationsQuery = Type.Object(
  {
    ...PaginationQuery.properties,
    status: Type.Optional(Status),
    lora_id: Type.Optional(LoraId),
  },
  { additionalProperties: false },
);
export const GenerationPage = Page(GenerationRef, 'A page of generations, newest first');
