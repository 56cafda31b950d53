// Creating training runs: checks the dataset and the model, resolves the params, and
// stores the run queued with a snapshot of the dataset's images and current captions
// (an image without one trains on the instance prompt "a photo of <trigger> <class>").
// A full fine-tuning run (params.method full) also counts against the tenant's model
// storage (TENANT_MAX_MODEL_BYTES): what its models and full runs keep, plus what the
// queued ones are expected to write. A run on several devices (params.devices) is refused
// when no live training worker has that many, and a queued run says what it waits for.
import type { Database, Queryable } from '../db/database.js';
import { fieldError, invalidInput, notFound, ProblemError, unsupportedByModel, type FieldError } from '../errors.js';
import { createCaptionsRepository } from '../repositories/captions.js';
import { createDatasetsRepository } from '../repositories/datasets.js';
import { createTenantModelsRepository } from '../repositories/tenant-models.js';
import { createTrainingRunsRepository, TRAINING_RUN_ID_PREFIX, type TrainingRunRow, type TrainingRunStatus } from '../repositories/training-runs.js';
import { createTrainingWorkersRepository, type TrainingCapacity } from '../repositories/training-workers.js';
import { idPattern } from '../db/ids.js';
import { clipSkipBeyond, FAMILY_NAMES, notForFamily, type ModelFamily } from '../schemas/model-families.js';
import type { BaseModel } from '../schemas/models.js';
import {
  methodOf,
  paramsOutsideFamily,
  paramsOutsideMethod,
  resolveTrainingParams,
  storedTrainingParams,
  type Precision,
  type ResolvedTrainingParams,
  type TrainingMethod,
  type TrainingParamsInput,
} from '../schemas/training-params.js';
import type { TrainingRun } from '../schemas/training-runs.js';
import type { RunFileStore } from '../storage/run-file-store.js';
import type { ModelsService } from './models.js';
import type { QualityMetricsService } from './quality-metrics.js';
import { artifactUrl } from './training-run-artifacts.js';
import { decodeCursor, toPage } from './pagination.js';
import type { AddressPolicy } from '../webhooks/address-policy.js';
import { defaultEvents } from '../webhooks/event-types.js';
import { checkWebhookUrl } from './webhook-urls.js';
import { dataPlanConflicts, resolutionConflict, splitHeldOut, stepsOfEpochs } from './training-data-plan.js';

const RUN_ID = new RegExp(idPattern(TRAINING_RUN_ID_PREFIX));
// The trainer's default outputName: <outputDir>/lora.safetensors (+ lora_peft.safetensors).
const LORA_FILE = 'lora.safetensors';
const LORA_PEFT_FILE = 'lora_peft.safetensors';
const FINISHED = new Set<TrainingRunStatus>(['succeeded', 'failed', 'canceled']);
const BYTES_PER_VALUE: Record<string, number> = { float32: 4, float16: 2, bfloat16: 2 };

/** Where a succeeded run's files download from: its LoRA files, or its model's (those it has, while the model exists). */
function runOutput(row: TrainingRunRow): NonNullable<TrainingRun['output']> {
  const params = row.params as { method?: TrainingMethod; save_peft?: boolean | null };
  if ((params.method ?? 'lora') === 'lora') {
    return {
      lora_url: artifactUrl(row.id, LORA_FILE),
      lora_peft_url: params.save_peft === true ? artifactUrl(row.id, LORA_PEFT_FILE) : null,
      model_id: null, model_url: null, model_ema_url: null, model_diffusers_url: null,
    };
  }
  const url = (kind: string) => {
    const name = row.model_artifacts?.[kind];
    return name === undefined ? null : artifactUrl(row.id, name);
  };
  return {
    lora_url: null,
    lora_peft_url: null,
    model_id: row.registered_model_id ?? null,
    model_url: url('model'),
    model_ema_url: url('model_ema'),
    model_diffusers_url: url('model_diffusers'),
  };
}

/** A run as the API returns it. */
export function toTrainingRun(row: TrainingRunRow): TrainingRun {
  return {
    id: row.id,
    dataset_id: row.dataset_id,
    model: row.model_id,
    name: row.name,
    status: row.status,
    queue_reason: row.status === 'queued' ? row.queue_reason ?? null : null,
    params: storedTrainingParams(row.params) as TrainingRun['params'],
    metadata: row.metadata,
    trigger_token: row.trigger_token,
    class_word: row.class_word,
    image_count: row.image_count ?? 0,
    progress: row.progress as TrainingRun['progress'],
    metrics: row.metrics,
    quality_metrics: (row.quality_metrics ?? null) as TrainingRun['quality_metrics'],
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    output: row.status !== 'succeeded' ? null : runOutput(row),
    attempt: row.attempt,
    interruptions: row.interruptions,
    cancel_requested: row.cancel_requested_at !== null,
    webhook: row.webhook_url === null ? null : { url: row.webhook_url, events: row.webhook_events ?? [] },
    created_at: row.created_at.toISOString(),
    started_at: row.started_at?.toISOString() ?? null,
    completed_at: row.completed_at?.toISOString() ?? null,
  };
}

export interface NewTrainingRunRequest {
  dataset_id: string;
  model: string;
  name?: string;
  params?: TrainingParamsInput;
  metadata?: Record<string, string>;
  webhook?: { url: string; events?: string[] };
}

export interface TrainingRunsServiceOptions {
  /** The frozen weights' precision, by model family, when a request names none (CUDA_PRECISION or CPU_PRECISION). */
  serverPrecision: Record<ModelFamily, Precision>;
  /** Queued and running runs one tenant may have (TENANT_MAX_QUEUED_RUNS). */
  tenantMaxQueuedRuns: number;
  /** Bytes of models (and full runs' checkpoints) one tenant may keep (TENANT_MAX_MODEL_BYTES). */
  tenantMaxModelBytes: number;
  /** Which quality metrics this server has the networks of (params.validation.metrics). */
  qualityMetrics: QualityMetricsService;
  /** Where runs' files are, to remove a deleted run's. */
  files: RunFileStore;
  /** Where a per-request webhook may point (WEBHOOK_ALLOW_HTTP, WEBHOOK_ALLOWED_HOSTS). */
  webhookPolicy: AddressPolicy;
  /** A run was queued: wake the worker. */
  created?: () => void;
  /** A cancel was asked: stop the run now if it trains in this process. */
  cancelRequested?: (runId: string) => void;
}

/** Prior preservation's class prompt, when the request named none: "a photo of <class_word>", as DreamBooth's examples. */
function withClassPrompt(params: ResolvedTrainingParams, classWord: string): ResolvedTrainingParams {
  const prior = params.prior_preservation;
  if (prior === null || prior.class_prompt !== undefined) return params;
  return { ...params, prior_preservation: { ...prior, class_prompt: `a photo of ${classWord}` } };
}

export function instancePrompt(trigger: string, classWord: string): string {
  return `a photo of ${trigger} ${classWord}`;
}

/**
 * What a full run's model files will take, from the base model's parameter counts: the
 * single file (every component; none for SD 2.x), the diffusers folder's trained
 * components (when the base is a folder: the others are links), and the EMA's copy.
 */
export function expectedModelBytes(model: BaseModel, params: ResolvedTrainingParams): number {
  const bytes = BYTES_PER_VALUE[params.save_dtype] ?? 4;
  const { unet, text_encoder, text_encoder_2 = 0, total } = model.parameters;
  const singleFile = model.family === 'sd2' ? 0 : total * bytes;
  const folder = model.source_layout === 'diffusers' ? (unet + (params.train_text_encoder ? text_encoder + text_encoder_2 : 0)) * bytes : 0;
  // The EMA's own single file, or for SD 2.x its own folder.
  const ema = (params.ema_decay ?? 0) > 0 ? (model.family === 'sd2' ? folder : singleFile) : 0;
  return singleFile + folder + ema;
}

/** 422: params of the other training method, each named with why. */
function paramsBeyondMethod(method: TrainingMethod, params: TrainingParamsInput): ProblemError | undefined {
  const outside = paramsOutsideMethod(params, method);
  if (outside.length === 0) return undefined;
  return new ProblemError({
    status: 422,
    type: 'unsupported-by-method',
    title: 'Not a param of the training method',
    detail: `A ${method} run cannot take ${outside.map(({ param }) => `params.${param}`).join(', ')}`,
    errors: outside.map(({ param, methods, why }) =>
      fieldError('body', `params.${param}`, `is for method ${methods.join(' and ')} only, and this run's method is ${method}: ${why}`)),
  });
}

/** 400: params of a full run that contradict each other (as resolved: the server's precision included). */
function fullParamConflicts(params: ResolvedTrainingParams): FieldError[] {
  const errors: FieldError[] = [];
  if (params.full_bf16 === true && params.mixed_precision !== 'bf16') {
    errors.push(fieldError('body', 'params.full_bf16', `needs mixed_precision bf16; this run's is ${params.mixed_precision}` +
      ' (on a CPU server the default is no: float32)'));
  }
  if (params.validation_weights === 'ema' && !((params.ema_decay ?? 0) > 0)) {
    errors.push(fieldError('body', 'params.validation_weights', 'is ema but ema_decay is 0: there is no EMA to validate with'));
  }
  return errors;
}

/** 400: devices that do not split the batch, or a ZeRO stage on one device. */
function deviceConflicts(params: ResolvedTrainingParams): FieldError[] {
  const errors: FieldError[] = [];
  if (params.batch_size % params.devices !== 0) {
    errors.push(fieldError('body', 'params.devices', `must divide batch_size (${params.batch_size}): each of the ${params.devices} devices ` +
      `takes batch_size / devices images of every batch; use a batch_size that is a multiple of ${params.devices}`));
  }
  if (params.zero_stage !== 0 && params.devices === 1) {
    errors.push(fieldError('body', 'params.zero_stage', `must be 0 on one device: ZeRO shards the optimizer state over several devices, and this run has devices 1`));
  }
  return errors;
}

/** Images FID, KID and the Inception Score need at the least: below it their estimates mean nothing (the service's floor). */
export const MIN_DISTRIBUTION_IMAGES = 10;
const NEEDS_PROMPTS = ['clip_t', 'hps'] as const;
const DISTRIBUTION_METRICS = ['fid', 'kid', 'is'] as const;

/** 400: quality metrics the run's validation images cannot give (no prompts, too few final images). */
function metricConflicts(params: ResolvedTrainingParams): FieldError[] {
  const { metrics, prompts, final_images: finalImages } = params.validation;
  const errors: FieldError[] = [];
  if (metrics.length > 0 && prompts.length === 0) {
    const named = metrics.filter((metric) => (NEEDS_PROMPTS as readonly string[]).includes(metric));
    errors.push(fieldError('body', 'params.validation.metrics', named.length > 0
      ? `${named.join(' and ')} ${named.length === 1 ? 'scores' : 'score'} images against their prompts, and validation.prompts is empty: give prompts`
      : 'the metrics score the images sampled from validation.prompts, and it is empty: give prompts'));
  }
  const distribution = metrics.filter((metric) => (DISTRIBUTION_METRICS as readonly string[]).includes(metric));
  const finalSet = finalImages * prompts.length;
  if (distribution.length > 0 && finalSet < MIN_DISTRIBUTION_IMAGES) {
    errors.push(fieldError('body', 'params.validation.final_images', `${distribution.join(', ')} ${distribution.length === 1 ? 'needs' : 'need'} ` +
      `at least ${MIN_DISTRIBUTION_IMAGES} final images (final_images x prompts), and this run has ${finalImages} x ${prompts.length} = ${finalSet}: ` +
      `fewer give meaningless estimates; use final_images ${Math.ceil(MIN_DISTRIBUTION_IMAGES / Math.max(1, prompts.length))} or more`));
  }
  if (metrics.includes('lpips') && finalImages < 2) {
    errors.push(fieldError('body', 'params.validation.final_images', `lpips compares pairs of final images of one prompt: it needs final_images 2 or more, and this run has ${finalImages}`));
  }
  if (finalImages > 0 && prompts.length === 0 && metrics.length === 0) {
    errors.push(fieldError('body', 'params.validation.final_images', 'samples final_images per validation prompt, and validation.prompts is empty: give prompts'));
  }
  return errors;
}

/** A training worker seen within this long is live (it writes its row on every poll, DEFAULT_POLL_MS 2 s): its devices count. */
export const TRAINING_WORKER_LIVE_MS = 10_000;

const devicesNamed = (count: number) => `${count} ${count === 1 ? 'device' : 'devices'}`;

/** Why a queued run asking `devices` is not claimed yet, from what the live training workers have. */
export function queueReason(devices: number, capacity: TrainingCapacity): string {
  if (capacity.workers === 0) return 'waiting for a training worker: none is running';
  if (capacity.largest < devices) return `waiting for a worker with ${devicesNamed(devices)} (the largest running worker has ${capacity.largest})`;
  if (capacity.mostFree < devices) return `waiting for ${devices} free ${devices === 1 ? 'device' : 'devices'} (the workers' devices are training other runs)`;
  return 'waiting for a worker to claim it (a worker has the devices free; runs ahead of it go first)';
}

const GiB = 1024 ** 3;
const inGiB = (bytes: number) => `${(bytes / GiB).toFixed(bytes < GiB ? 3 : 1)} GiB (${bytes} bytes)`;

/** What the model cannot take of the request's params: a param of another family, a resolution or clip skip beyond the model's. */
function paramsBeyondModel(model: BaseModel, params: TrainingParamsInput): FieldError[] {
  const errors = paramsOutsideFamily(params, model.family).map(({ param, families, why }) =>
    fieldError('body', `params.${param}`, notForFamily(families, model, why)));
  if (params.resolution !== undefined && params.resolution > model.default_resolution) {
    errors.push(fieldError('body', 'params.resolution', `must be at most ${model.default_resolution}, the model's default_resolution`));
  }
  const clipSkip = clipSkipBeyond(model, params.clip_skip);
  if (clipSkip !== undefined) errors.push(fieldError('body', 'params.clip_skip', clipSkip));
  return errors;
}

export class TrainingRunsService {
  readonly #deletedListeners: Array<() => Promise<void>> = [];

  constructor(
    private readonly db: Database,
    private readonly models: ModelsService,
    private readonly options: TrainingRunsServiceOptions,
  ) {}

  async create(tenantId: string, request: NewTrainingRunRequest): Promise<TrainingRunRow> {
    if (request.webhook !== undefined) checkWebhookUrl(this.options.webhookPolicy, request.webhook.url, 'webhook.url');
    const dataset = await createDatasetsRepository(this.db).findById(tenantId, request.dataset_id);
    if (dataset === null) throw notFound('Dataset', request.dataset_id);
    // One lookup, not a listing: only this model's weight headers are read.
    const { model } = await this.models.getNamed(tenantId, request.model);
    const input = request.params ?? {};
    const method = methodOf(input);
    const otherMethod = paramsBeyondMethod(method, input);
    if (otherMethod !== undefined) throw otherMethod;
    const beyond = paramsBeyondModel(model, input);
    if (beyond.length > 0) {
      throw unsupportedByModel(
        `Model ${model.id} (${FAMILY_NAMES[model.family]}, made for ${model.default_resolution}px images) cannot take ${beyond.map((error) => error.field).join(', ')}`,
        beyond,
      );
    }
    const resolved = withClassPrompt(
      resolveTrainingParams(input, {
        family: model.family,
        mixed_precision: this.options.serverPrecision[model.family],
        resolution: model.default_resolution,
      }),
      dataset.class_word,
    );
    const images = await createCaptionsRepository(this.db).allForDataset(tenantId, dataset.id);
    const conflicts = [
      ...fullParamConflicts(resolved), ...deviceConflicts(resolved), ...metricConflicts(resolved),
      ...(images.length === 0 ? [] : dataPlanConflicts(resolved, input.max_steps !== undefined, images.length)),
    ];
    // max_epochs becomes the steps it takes over the images trained on (the held-out ones excluded).
    let maxSteps = resolved.max_steps;
    const training = splitHeldOut(images, resolved.validation_split).training;
    const unresolvable = conflicts.length === 0 ? resolutionConflict(resolved, training) : undefined;
    if (unresolvable !== undefined) conflicts.push(unresolvable);
    if (conflicts.length === 0 && resolved.max_epochs !== null && images.length > 0) {
      const steps = stepsOfEpochs(resolved, resolved.max_epochs, training);
      if (typeof steps === 'number') maxSteps = steps;
      else conflicts.push(steps);
    }
    if (conflicts.length > 0) throw invalidInput(`Invalid params: ${conflicts.map((error) => error.field).join(', ')}`, conflicts);
    const params = { ...resolved, max_steps: maxSteps };
    await this.#checkDevicesAvailable(params.devices);
    this.options.qualityMetrics.checkAvailable(params.validation.metrics, 'params.validation.metrics');
    const expected = method === 'full' ? expectedModelBytes(model, params) : null;
    if (images.length === 0) {
      throw new ProblemError({ status: 409, type: 'dataset-empty', title: 'Dataset is empty', detail: `Dataset ${dataset.id} has no images to train on` });
    }
    const run = await this.db.transaction(async (tx) => {
      const runs = createTrainingRunsRepository(tx);
      if (!(await createDatasetsRepository(tx).lockShared(tenantId, dataset.id))) throw notFound('Dataset', dataset.id); // deleted meanwhile
      const open = await runs.countOpenLocked(tenantId);
      if (open >= this.options.tenantMaxQueuedRuns) {
        throw new ProblemError({
          status: 429,
          type: 'training-queue-full',
          title: 'Too many training runs',
          detail: `This tenant has ${open} queued or running training runs, the most it may have (TENANT_MAX_QUEUED_RUNS); ` +
            'wait for one to finish or cancel one',
          headers: { 'retry-after': '60' },
        });
      }
      await this.models.lockForJob(tx, tenantId, request.model);
      if (expected !== null) await this.#checkModelStorage(tx, tenantId, expected);
      return runs.insert({
        tenantId,
        datasetId: dataset.id,
        modelId: request.model,
        name: request.name ?? null,
        params,
        expectedModelBytes: expected,
        metadata: request.metadata ?? {},
        triggerToken: dataset.trigger_token,
        classWord: dataset.class_word,
        webhook: request.webhook === undefined ? null : { url: request.webhook.url, events: request.webhook.events ?? defaultEvents('training_run') },
        images: images.map((image) => ({
          image_id: image.image_id,
          sha256: image.sha256,
          caption: image.caption_row?.caption ?? instancePrompt(dataset.trigger_token, dataset.class_word),
          original_filename: image.original_filename,
          width: image.width,
          height: image.height,
        })),
      });
    });
    this.options.created?.();
    return (await this.get(tenantId, run.id)) as TrainingRunRow;
  }

  async get(tenantId: string, id: string): Promise<TrainingRunRow> {
    const run = await createTrainingRunsRepository(this.db).get(tenantId, id);
    if (run === null) throw notFound('Training run', id);
    return (await this.#withQueueReasons([run]))[0]!;
  }

  /** Queued runs get what they wait for (one reading of the workers for all of them). */
  async #withQueueReasons(rows: TrainingRunRow[]): Promise<TrainingRunRow[]> {
    if (!rows.some((row) => row.status === 'queued')) return rows;
    const capacity = await createTrainingWorkersRepository(this.db).capacity(TRAINING_WORKER_LIVE_MS);
    return rows.map((row) => (row.status === 'queued' ? { ...row, queue_reason: queueReason(storedTrainingParams(row.params).devices, capacity) } : row));
  }

  /**
   * 422 when live training workers exist and none has `devices` devices. With none live (an
   * API-only deployment whose workers are down) the run is queued: a worker may come.
   */
  async #checkDevicesAvailable(devices: number): Promise<void> {
    if (devices === 1) return;
    const capacity = await createTrainingWorkersRepository(this.db).capacity(TRAINING_WORKER_LIVE_MS);
    if (capacity.workers === 0 || capacity.largest >= devices) return;
    throw new ProblemError({
      status: 422,
      type: 'devices-unavailable',
      title: 'Not enough devices on any worker',
      detail: `This run asks ${devicesNamed(devices)} but the largest running training worker has ${capacity.largest} ` +
        '(its TRAIN_DEVICES); ask at most that many, or run a worker with more',
      errors: [fieldError('body', 'params.devices', `must be at most ${capacity.largest}, the devices of the largest running training worker`)],
    });
  }

  async list(tenantId: string, filter: { dataset_id?: string; status?: TrainingRunStatus }, limit: number, cursor?: string) {
    const before = cursor === undefined ? undefined : decodeCursor(cursor, RUN_ID);
    const rows = await createTrainingRunsRepository(this.db).list(
      tenantId,
      { ...(filter.dataset_id === undefined ? {} : { datasetId: filter.dataset_id }), ...(filter.status === undefined ? {} : { status: filter.status }) },
      limit + 1,
      before,
    );
    return toPage(await this.#withQueueReasons(rows), limit, toTrainingRun);
  }

  /**
   * 429 when the tenant's model storage, with what this run is expected to write, passes
   * TENANT_MAX_MODEL_BYTES (checked under the tenant's queue lock, so two runs queued at once
   * both count).
   */
  async #checkModelStorage(tx: Queryable, tenantId: string, expected: number): Promise<void> {
    const usage = await createTenantModelsRepository(tx).usage(tenantId);
    const held = usage.stored + usage.checkpoints + usage.expected;
    const cap = this.options.tenantMaxModelBytes;
    if (held + expected <= cap) return;
    throw new ProblemError({
      status: 429,
      type: 'model-storage-full',
      title: 'Model storage full',
      detail: `This tenant's models and full runs hold ${inGiB(usage.stored + usage.checkpoints)}` +
        (usage.expected > 0 ? `, its queued full runs are expected to write ${inGiB(usage.expected)}` : '') +
        `, and this run would write about ${inGiB(expected)}: more than TENANT_MAX_MODEL_BYTES, ${inGiB(cap)}. ` +
        'Delete models you no longer need (DELETE /v1/models/{id}) and finished full runs (DELETE /v1/training-runs/{id}: their ' +
        'checkpoints), or save in float16 (params.save_dtype)',
      errors: [fieldError('body', 'params.method', `a full run would pass this tenant's TENANT_MAX_MODEL_BYTES (${inGiB(cap)})`)],
    });
  }

  /** Deletes a finished run with its files, events and artifacts; 409 while it is queued or running, or while the model it trained exists. */
  async delete(tenantId: string, id: string): Promise<void> {
    const run = await this.get(tenantId, id);
    const model = await createTenantModelsRepository(this.db).byTrainingRun(id);
    if (model !== null) {
      throw new ProblemError({
        status: 409,
        type: 'training-run-has-model',
        title: 'Training run holds a model',
        detail: `Training run ${id} trained model ${model.id}, whose files are the run's; delete the model first (DELETE /v1/models/${model.id})`,
      });
    }
    if (!FINISHED.has(run.status) || !(await createTrainingRunsRepository(this.db).deleteFinished(tenantId, id))) {
      throw new ProblemError({
        status: 409,
        type: 'training-run-not-finished',
        title: 'Training run has not finished',
        detail: `Training run ${id} is ${run.status}; cancel it first`,
      });
    }
    // After the row: a crash in between leaves files without a run, never a run without its files.
    await this.options.files.deleteRun(id);
    for (const listener of this.#deletedListeners) await listener();
  }

  /** Lets the images side give back the blobs only the deleted run's snapshot still held. */
  onDeleted(listener: () => Promise<void>): void {
    this.#deletedListeners.push(listener);
  }

  /** Cancels a queued run at once; a running one stops at its next step with a checkpoint. 409 once finished. */
  async cancel(tenantId: string, id: string): Promise<TrainingRunRow> {
    const before = await this.get(tenantId, id);
    if (FINISHED.has(before.status)) {
      throw new ProblemError({ status: 409, type: 'training-run-finished', title: 'Training run has finished', detail: `Training run ${id} is ${before.status}` });
    }
    const run = (await createTrainingRunsRepository(this.db).requestCancel(tenantId, id)) ?? before;
    if (!FINISHED.has(run.status)) this.options.cancelRequested?.(id);
    return run;
  }
}
