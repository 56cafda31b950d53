// Training run: a LoRA (or, method full, the whole model) trained on a dataset's snapshot,
// queued in Postgres and run by a worker.
import { Type, type Static } from 'typebox';
import { Page, PaginationQuery, ResourceId, Timestamp } from './common.js';
import { DatasetId } from './datasets.js';
import { RunQualityMetrics } from './quality-metrics.js';
import { resolvedParamSchema, TRAINING_PARAMS, TrainingParams } from './training-params.js';
import { WebhookSubscription, WebhookSubscriptionView } from './webhooks.js';

export const TRAINING_RUN_STATUSES = ['queued', 'starting', 'running', 'succeeded', 'failed', 'canceled'] as const;

export const TrainingRunId = ResourceId('tr', 'Training run id');
const Status = Type.Enum([...TRAINING_RUN_STATUSES], {
  description: 'queued; starting (claimed: loading the model, decoding, caching); running; succeeded, failed or canceled',
});
const Metadata = Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 1000 }), {
  maxProperties: 32,
  description: 'Your own key-value pairs, kept with the run and returned as given',
});
const nullableNumber = (description: string) => Type.Union([Type.Number(), Type.Null()], { description });

export const CreateTrainingRunBody = Type.Object(
  {
    dataset_id: DatasetId,
    model: Type.String({
      minLength: 1, maxLength: 255, description: 'A base model id from GET /v1/models: the server\'s, or one of yours (a full run\'s mdl_...)',
      examples: ['sdxl-tiny-demo'],
    }),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Human-readable name' })),
    params: Type.Optional(TrainingParams),
    metadata: Type.Optional(Metadata),
    webhook: Type.Optional(WebhookSubscription('training_run')),
  },
  { additionalProperties: false },
);
export type CreateTrainingRunBody = Static<typeof CreateTrainingRunBody>;

/** Every param as the run resolved it (null: a param the model's family does not have). */
const ResolvedParams = Type.Object(
  Object.fromEntries(Object.entries(TRAINING_PARAMS).map(([name, spec]) => [name, resolvedParamSchema(spec.schema)])),
  { additionalProperties: false, description: 'Every training parameter, as resolved when the run was created' },
);

export const TrainingRunSchema = Type.Object(
  {
    id: TrainingRunId,
    dataset_id: DatasetId,
    model: Type.String({ description: 'The base model id' }),
    name: Type.Union([Type.String(), Type.Null()]),
    status: Status,
    queue_reason: Type.Union([Type.String(), Type.Null()], {
      description: 'While queued: what the run waits for (a worker with params.devices devices, that many free ones, its turn); null otherwise',
    }),
    params: ResolvedParams,
    metadata: Metadata,
    trigger_token: Type.String({ description: "The dataset's trigger token when the run was created" }),
    class_word: Type.String(),
    image_count: Type.Integer({ minimum: 1, description: 'Images in the snapshot the run trains on' }),
    progress: Type.Union([
      Type.Object(
        {
          phase: Type.String({ description: 'loading, decoding, caching, skipping (images below params.min_resolution), training, validating, saving' }),
          step: Type.Integer({ minimum: 0 }),
          total_steps: Type.Integer({ minimum: 0 }),
          epoch: Type.Optional(nullableNumber('The epoch (pass over the training images, 1-based) the last step was in; null before training')),
          epochs: Type.Optional(nullableNumber('The epochs the run spans: params.max_epochs, or ceil(max_steps x gradient_accumulation / batches per epoch)')),
          percent: Type.Number({ minimum: 0, maximum: 100 }),
          loss: nullableNumber('Loss of the last step'),
          loss_avg: nullableNumber('Mean loss of the last 50 steps'),
          lr: nullableNumber('Learning rate of the last step'),
          images_per_s: nullableNumber('Training throughput'),
          eta_seconds: nullableNumber('Estimated seconds to the end of training'),
          loss_instance: nullableNumber('Prior preservation: loss on the dataset\'s images in the last step (null without it)'),
          loss_prior: nullableNumber('Prior preservation: loss on the class images in the last step, before loss_weight'),
          device: Type.Union([Type.String(), Type.Null()], { description: 'The device the run trains on (cpu, cuda, cuda:N): whose memory the next two fields count' }),
          memory_bytes: nullableNumber("Memory the training holds now: on CUDA the allocator's bytes in use, on the CPU the process's resident set"),
          peak_memory_bytes: nullableNumber('The most memory the training has held on its device so far: what the run needs there'),
          devices: Type.Optional(Type.Integer({ minimum: 1, description: 'Devices the run trains on (params.devices); with several, device is the first (rank 0), whose memory is counted' })),
          allreduce_ms: Type.Optional(nullableNumber("With several devices: milliseconds the last step spent summing the ranks' gradients (null when the trainer does not say)")),
        },
        { additionalProperties: false },
      ),
      Type.Null(),
    ], { description: 'Written at most about once a second while the run trains; null before' }),
    metrics: Type.Union([Type.Record(Type.String(), Type.Number()), Type.Null()], {
      description: 'When finished: steps, epochs, held_out_images (params.validation_split), cache_latents_encoded and cache_latents_reused (latents the run encoded, and found ' +
        'encoded by an earlier run on the same images and model; an image and its mirrored copy count two), cache_prompts_encoded and cache_prompts_reused, ' +
        'devices, final_loss, mean_loss, validation losses, peak_memory_bytes (the most memory the run held on ' +
        'its device, progress.device), with several devices world_size and allreduce_ms_mean (the mean all-reduce time of a step), ...',
    }),
    quality_metrics: Type.Union([RunQualityMetrics, Type.Null()], {
      description: 'The latest scored set of validation images (params.validation.metrics): at each validation clip_t, clip_i and hps of ' +
        "that step's images; after a completed run with validation.final_images, the final set with every metric. metrics then " +
        'also has each final value as final_<key>. Null before the first, and on runs that ask no metric',
    }),
    error: Type.Union([Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false }), Type.Null()], {
      description: 'When failed: training_failed (the trainer stopped with an error; see message and /logs), disk_full (the ' +
        "server's storage had no room for a checkpoint or the LoRA; the file was removed, earlier checkpoints are whole) or attempts_exhausted",
    }),
    output: Type.Union([
      Type.Object(
        {
          lora_url: Type.Union([Type.String(), Type.Null()], { description: "lora runs: the LoRA in kohya's layout (ComfyUI, AUTOMATIC1111, sd-scripts)" }),
          lora_peft_url: Type.Union([Type.String(), Type.Null()], { description: 'lora runs: the LoRA in the peft/diffusers layout, when save_peft' }),
          model_id: Type.Union([Type.String(), Type.Null()], {
            description: 'full runs: the model the run registered (GET /v1/models/{id}); null once deleted',
          }),
          model_url: Type.Union([Type.String(), Type.Null()], { description: "full runs: the model in its family's official single file (not for SD 2.x)" }),
          model_ema_url: Type.Union([Type.String(), Type.Null()], {
            description: 'full runs with ema_decay: the EMA weights, as a single file (as model_url), or for SD 2.x as a diffusers folder\'s tar',
          }),
          model_diffusers_url: Type.Union([Type.String(), Type.Null()], { description: 'full runs on a diffusers folder: that folder as a tar' }),
        },
        { additionalProperties: false },
      ),
      Type.Null(),
    ], { description: 'When succeeded: where its LoRA or model files download from (GET /artifacts lists every file)' }),
    attempt: Type.Integer({ minimum: 0, description: 'Times a worker has claimed the run; above 1 it resumed from a checkpoint' }),
    interruptions: Type.Integer({
      minimum: 0,
      description: 'Times the process training the run died (claimed again after its lease ran out); at TRAINING_MAX_ATTEMPTS the run fails. Graceful hand-backs do not count',
    }),
    cancel_requested: Type.Boolean(),
    webhook: WebhookSubscriptionView,
    created_at: Timestamp,
    started_at: Type.Union([Timestamp, Type.Null()]),
    completed_at: Type.Union([Timestamp, Type.Null()]),
  },
  { $id: 'TrainingRun', additionalProperties: false },
);
export type TrainingRun = Static<typeof TrainingRunSchema>;
export const TrainingRunRef = Type.Ref('TrainingRun');

// A plain string, as every resource's path id: one that is not an id at all is a 404, like another tenant's.
export const TrainingRunParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 100, description: 'Training run id' }) },
  { additionalProperties: false },
);

export const ListTrainingRunsQuery = Type.Object(
  {
    ...PaginationQuery.properties,
    dataset_id: Type.Optional(DatasetId),
    status: Type.Optional(Status),
  },
  { additionalProperties: false },
);
export const TrainingRunPage = Page(TrainingRunRef, 'A page of training runs, newest first');
