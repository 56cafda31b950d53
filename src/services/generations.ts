// Creating generations: checks the model and the LoRAs, resolves every input, and stores
// the generation queued; reads, lists, cancels, waits for one (Prefer: wait) and serves
// its images (PNG as stored, WebP or JPEG converted on the way out).
import { randomInt } from 'node:crypto';
import sharp from 'sharp';
import type { Database } from '../db/database.js';
import { idPattern } from '../db/ids.js';
import { fieldError, invalidInput, notFound, ProblemError, unsupportedByModel, type FieldError } from '../errors.js';
import { createDatasetsRepository } from '../repositories/datasets.js';
import { createGenerationsRepository, type GenerationImageRow, type GenerationRow, type GenerationStatus } from '../repositories/generations.js';
import {
  CreateGenerationBody,
  GENERATION_ID_PREFIX,
  GENERATION_LIMITS,
  type Generation,
  type GenerationParams,
  type SizeConditioning,
} from '../schemas/generations.js';
import { clipSkipBeyond, FAMILY_NAMES, familiesOf, NO_CLIP_SKIP_ON_SDXL, notForFamily } from '../schemas/model-families.js';
import type { BaseModel } from '../schemas/models.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { AddressPolicy } from '../webhooks/address-policy.js';
import { defaultEvents } from '../webhooks/event-types.js';
import { LorasService } from './loras.js';
import type { ModelsService } from './models.js';
import { decodeCursor, toPage } from './pagination.js';
import type { RunEventsBus } from './run-events-bus.js';
import { checkWebhookUrl } from './webhook-urls.js';

const GENERATION_ID = new RegExp(idPattern(GENERATION_ID_PREFIX));
const FINISHED = new Set<GenerationStatus>(['succeeded', 'failed', 'canceled']);
/** A waiting request also looks at the row this often: the generation may run on another replica. */
const WAIT_POLL_MS = 250;

/** Why a model of another family does not take a field marked for some families only. */
const OTHER_FAMILIES: Record<string, string> = {
  clip_skip: NO_CLIP_SKIP_ON_SDXL,
  size_conditioning: 'SD 1.x and 2.x models have no size conditioning',
};

/** What the model cannot take of the request: a field of another family, a clip skip beyond its text encoder's layers. */
function fieldsBeyondModel(model: BaseModel, request: CreateGenerationBody): FieldError[] {
  const errors: FieldError[] = [];
  for (const [name, schema] of Object.entries(CreateGenerationBody.properties)) {
    const families = familiesOf(schema);
    if (families === undefined || families.includes(model.family) || (request as Record<string, unknown>)[name] === undefined) continue;
    errors.push(fieldError('body', name, notForFamily(families, model, OTHER_FAMILIES[name] ?? '')));
  }
  const clipSkip = clipSkipBeyond(model, request.clip_skip);
  if (clipSkip !== undefined) errors.push(fieldError('body', 'clip_skip', clipSkip));
  return errors;
}

/** The metrics that compare the images with real ones: they need the evaluation's reference dataset. */
const NEEDS_REFERENCES = ['clip_i', 'fid', 'kid'] as const;

/** 400: an evaluation asking metrics that need reference images without naming a dataset. */
function evaluationConflicts(evaluation: CreateGenerationBody['evaluation']): FieldError[] {
  if (evaluation === undefined || evaluation.reference_dataset_id !== undefined) return [];
  const needing = evaluation.metrics.filter((metric) => (NEEDS_REFERENCES as readonly string[]).includes(metric));
  if (needing.length === 0) return [];
  return [fieldError('body', 'evaluation.reference_dataset_id', `${needing.join(', ')} compare${needing.length === 1 ? 's' : ''} the images ` +
    "with real ones: name the dataset whose images they are")];
}

/** Every size-conditioning field, as diffusers defaults those left out: the output size, no crop. */
function resolveSizeConditioning(given: NonNullable<CreateGenerationBody['size_conditioning']>, width: number, height: number): SizeConditioning {
  return {
    original_width: given.original_width ?? width,
    original_height: given.original_height ?? height,
    crop_top: given.crop_top ?? 0,
    crop_left: given.crop_left ?? 0,
    target_width: given.target_width ?? width,
    target_height: given.target_height ?? height,
  };
}

export function generationImageUrl(id: string, index: number): string {
  return `/v1/generations/${id}/images/${index}`;
}

export function toGeneration(row: GenerationRow, images: GenerationImageRow[]): Generation {
  return {
    id: row.id,
    model: row.model_id,
    status: row.status,
    params: row.params,
    loras: row.loras.map(({ lora_id, name, scale, sha256 }) => ({ lora_id, name, scale, sha256 })),
    progress: row.progress as Generation['progress'],
    output: row.status !== 'succeeded' ? null : images.map((image) => ({
      index: image.index,
      seed: Number(image.seed),
      width: image.width,
      height: image.height,
      content_url: generationImageUrl(row.id, image.index),
    })),
    metrics: row.metrics,
    evaluation: row.evaluation ?? null,
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    cancel_requested: row.cancel_requested_at !== null,
    webhook: row.webhook_url === null ? null : { url: row.webhook_url, events: row.webhook_events ?? [] },
    created_at: row.created_at.toISOString(),
    started_at: row.started_at?.toISOString() ?? null,
    completed_at: row.completed_at?.toISOString() ?? null,
  };
}

/** The image formats an image can be had in, by media type. */
export const IMAGE_FORMATS = {
  'image/png': 'png',
  'image/webp': 'webp',
  'image/jpeg': 'jpeg',
} as const;
export type ImageMediaType = keyof typeof IMAGE_FORMATS;

export interface GenerationsServiceOptions {
  db: Database;
  models: ModelsService;
  blobs: BlobStore;
  bus: RunEventsBus;
  webhookPolicy: AddressPolicy;
  /** Queued and running generations one tenant may have (TENANT_MAX_QUEUED_GENERATIONS). */
  tenantMaxQueued: number;
  created?: () => void;
  cancelRequested?: (id: string) => void;
}

export class GenerationsService {
  constructor(private readonly options: GenerationsServiceOptions) {}

  async create(tenantId: string, request: CreateGenerationBody): Promise<GenerationRow> {
    const { db } = this.options;
    if (request.webhook !== undefined) checkWebhookUrl(this.options.webhookPolicy, request.webhook.url, 'webhook.url');
    const { model } = await this.options.models.getNamed(tenantId, request.model);
    const beyond = fieldsBeyondModel(model, request);
    if (beyond.length > 0) {
      throw unsupportedByModel(`Model ${model.id} (${FAMILY_NAMES[model.family]}) cannot take ${beyond.map((error) => error.field).join(', ')}`, beyond);
    }
    const conflicts = evaluationConflicts(request.evaluation);
    if (conflicts.length > 0) throw invalidInput(`Invalid body: ${conflicts.map((error) => error.field).join(', ')}`, conflicts);
    const reference = request.evaluation?.reference_dataset_id;
    if (reference !== undefined && (await createDatasetsRepository(db).findById(tenantId, reference)) === null) throw notFound('Dataset', reference);
    const width = request.width ?? model.default_resolution;
    const height = request.height ?? model.default_resolution;
    const params: GenerationParams = {
      prompt: request.prompt,
      negative_prompt: request.negative_prompt,
      width,
      height,
      steps: request.steps,
      guidance_scale: request.guidance_scale,
      sampler: request.sampler,
      // Random like AUTOMATIC1111's -1; shown on the generation, so the image can be made again.
      seed: request.seed ?? randomInt(0, GENERATION_LIMITS.maxSeed - GENERATION_LIMITS.maxImages),
      num_images: request.num_images,
      ...(request.clip_skip === undefined ? {} : { clip_skip: request.clip_skip }),
      ...(request.size_conditioning === undefined ? {} : { size_conditioning: resolveSizeConditioning(request.size_conditioning, width, height) }),
      ...(request.evaluation === undefined ? {} : { evaluation: request.evaluation }),
    };
    const row = await db.transaction(async (tx) => {
      const generations = createGenerationsRepository(tx);
      const open = await generations.countOpenLocked(tenantId);
      if (open >= this.options.tenantMaxQueued) {
        throw new ProblemError({
          status: 429,
          type: 'generation-queue-full',
          title: 'Too many generations',
          detail: `This tenant has ${open} queued or running generations, the most it may have (TENANT_MAX_QUEUED_GENERATIONS); wait for one to finish`,
          headers: { 'retry-after': '5' },
        });
      }
      await this.options.models.lockForJob(tx, tenantId, request.model);
      const loras = await LorasService.resolveForGeneration(tx, tenantId, model, request.loras, (id) => this.options.models.familyOf(tenantId, id));
      return generations.insert(tenantId, {
        modelId: request.model,
        params,
        loras,
        webhook: request.webhook === undefined ? null : { url: request.webhook.url, events: request.webhook.events ?? defaultEvents('generation') },
      });
    });
    this.options.created?.();
    return row;
  }

  async get(tenantId: string, id: string): Promise<GenerationRow> {
    const row = await createGenerationsRepository(this.options.db).get(tenantId, id);
    if (row === null) throw notFound('Generation', id);
    return row;
  }

  /** The generation as the API shows it. */
  async view(row: GenerationRow): Promise<Generation> {
    const images = await createGenerationsRepository(this.options.db).images([row.id]);
    return toGeneration(row, images.get(row.id) ?? []);
  }

  async list(tenantId: string, filter: { status?: GenerationStatus; lora_id?: string }, limit: number, cursor?: string) {
    const before = cursor === undefined ? undefined : decodeCursor(cursor, GENERATION_ID);
    const repository = createGenerationsRepository(this.options.db);
    const rows = await repository.list(
      tenantId,
      { ...(filter.status === undefined ? {} : { status: filter.status }), ...(filter.lora_id === undefined ? {} : { loraId: filter.lora_id }) },
      limit + 1,
      before,
    );
    const images = await repository.images(rows.map((row) => row.id));
    return toPage(rows, limit, (row) => toGeneration(row, images.get(row.id) ?? []));
  }

  async cancel(tenantId: string, id: string): Promise<GenerationRow> {
    const before = await this.get(tenantId, id);
    if (FINISHED.has(before.status)) {
      throw new ProblemError({ status: 409, type: 'generation-finished', title: 'Generation has finished', detail: `Generation ${id} is ${before.status}` });
    }
    const row = (await createGenerationsRepository(this.options.db).requestCancel(tenantId, id)) ?? before;
    if (!FINISHED.has(row.status)) this.options.cancelRequested?.(id);
    else this.options.bus.notify(id);
    return row;
  }

  /** The generation once it has finished, or as it is after `ms` (or when `signal` aborts: the client left). */
  async waitFinished(tenantId: string, id: string, ms: number, signal: AbortSignal): Promise<GenerationRow> {
    const deadline = Date.now() + ms;
    for (;;) {
      const row = await this.get(tenantId, id);
      const left = deadline - Date.now();
      if (FINISHED.has(row.status) || left <= 0 || signal.aborted) return row;
      await this.options.bus.wait(id, WAIT_POLL_MS, signal, left);
    }
  }

  /** Image `index` of a succeeded generation, as PNG (stored, with its parameters chunk) or converted. */
  async image(tenantId: string, id: string, index: number, mediaType: ImageMediaType): Promise<{ image: GenerationImageRow; bytes: Buffer }> {
    const image = await createGenerationsRepository(this.options.db).image(tenantId, id, index);
    if (image === null) {
      await this.get(tenantId, id); // 404 for the generation itself first
      throw notFound(`Image ${index} of generation`, id);
    }
    const png = await this.options.blobs.get(image.sha256);
    if (png === null) throw new Error(`image ${index} of generation ${id} is missing from storage`);
    if (mediaType === 'image/png') return { image, bytes: png };
    // Converted on the way out: lossless WebP keeps every pixel; JPEG at the quality people download at.
    const converted = mediaType === 'image/webp'
      ? await sharp(png).webp({ lossless: true }).toBuffer()
      : await sharp(png).jpeg({ quality: 92 }).toBuffer();
    return { image, bytes: converted };
  }
}
