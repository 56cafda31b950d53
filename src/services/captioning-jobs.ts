// Captioning job use cases: create (checked: dataset, provider, images, mode), read, list,
// cancel. The work itself happens in src/jobs/captioning-worker.ts; this file tells the
// worker when a job was created or asked to stop, so that this process reacts at once.
import type { Captioner, CaptionerRegistry, CaptionProvider } from '../captioning/captioner.js';
import type { Database } from '../db/database.js';
import { idPattern } from '../db/ids.js';
import { fieldError, invalidInput, notFound, ProblemError } from '../errors.js';
import {
  createCaptioningJobsRepository,
  FINISHED_JOB_STATUSES,
  type ItemRow,
  type JobMode,
  type JobProgress,
  type JobRow,
} from '../repositories/captioning-jobs.js';
import { createCaptionBatchesRepository, type BatchRow } from '../repositories/caption-batches.js';
import { createCaptionsRepository } from '../repositories/captions.js';
import { CAPTIONING_JOB_ID_PREFIX, type CaptioningJob, type CreateCaptioningJobInput } from '../schemas/captioning-jobs.js';
import { decodeCursor, toPage } from './pagination.js';
import type { AddressPolicy } from '../webhooks/address-policy.js';
import { defaultEvents } from '../webhooks/event-types.js';
import { checkWebhookUrl } from './webhook-urls.js';

const JOB_ID = new RegExp(idPattern(CAPTIONING_JOB_ID_PREFIX));

/** What turns each provider on (README "Configuration"). */
const PROVIDER_SETTING: Record<CaptionProvider, string> = {
  anthropic: 'ANTHROPIC_API_KEY or ANTHROPIC_API_KEY_FILE',
  'openai-compatible': 'OPENAI_COMPAT_BASE_URL',
  template: '(always on)',
};

/** The worker's side of job changes made through the API. */
export interface JobEvents {
  created(jobId: string): void;
  cancelRequested(jobId: string): void;
}

const iso = (date: Date | null): string | null => (date === null ? null : new Date(date).toISOString());

export function toCaptioningJob(row: JobRow, progress: JobProgress, failed: readonly ItemRow[], batches: readonly BatchRow[]): CaptioningJob {
  return {
    id: row.id,
    dataset_id: row.dataset_id,
    status: row.status,
    mode: row.mode,
    provider: row.provider as CaptionProvider,
    model: row.model,
    prompt_version: row.prompt_version,
    trigger_token: row.trigger_token,
    class_word: row.class_word,
    options: {
      overwrite: row.overwrite,
      style_hint: row.style_hint,
      image_ids: row.image_ids,
      consistency_pass: row.consistency_pass,
    },
    progress: {
      total: progress.total,
      done: progress.succeeded + progress.failed + progress.skipped + progress.canceled,
      succeeded: progress.succeeded,
      failed: progress.failed,
      skipped: progress.skipped,
      canceled: progress.canceled,
      cached: progress.cached,
    },
    usage: {
      input_tokens: Number(row.input_tokens),
      output_tokens: Number(row.output_tokens),
      cost_usd: row.cost_known ? Number(row.cost_usd) : null,
    },
    errors: failed.map((item) => ({
      image_id: item.image_id,
      code: item.error_code ?? 'unknown',
      message: item.error_message ?? '',
      attempts: Number(item.attempts),
      http_status: item.http_status,
    })),
    batches: batches.map((b) => ({
      id: b.id,
      provider_batch_id: b.provider_batch_id,
      status: b.status,
      requests: b.image_ids.length,
      request_counts: { processing: b.processing, succeeded: b.succeeded, errored: b.errored, canceled: b.canceled, expired: b.expired },
      submitted_at: new Date(b.submitted_at).toISOString(),
      ended_at: iso(b.ended_at),
    })),
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    webhook: row.webhook_url === null ? null : { url: row.webhook_url, events: row.webhook_events ?? [] },
    cancel_requested: row.cancel_requested_at !== null,
    created_at: new Date(row.created_at).toISOString(),
    started_at: iso(row.started_at),
    finished_at: iso(row.finished_at),
  };
}

/**
 * The mode a job runs in: the one asked for (422 naming `mode` when the provider has no batch
 * API), else batch when the provider has one and the job has more than `batchThreshold` images.
 */
function jobMode(asked: JobMode | undefined, captioner: Captioner, images: number, batchThreshold: number): JobMode {
  if (asked === 'batch' && captioner.batches === undefined) {
    const message = `provider ${captioner.provider} has no batch API; use mode interactive (batch mode is anthropic's Message Batches API)`;
    throw new ProblemError({
      status: 422,
      type: 'batch-mode-unsupported',
      title: 'Batch mode not supported by the provider',
      detail: `Mode batch: ${message}.`,
      errors: [fieldError('body', 'mode', message)],
    });
  }
  return asked ?? (captioner.batches !== undefined && images > batchThreshold ? 'batch' : 'interactive');
}

export function createCaptioningJobsService(db: Database, captioners: CaptionerRegistry, batchThreshold: number, events: JobEvents, webhookPolicy: AddressPolicy) {
  const present = async (rows: JobRow[]): Promise<CaptioningJob[]> => {
    const jobs = createCaptioningJobsRepository(db);
    const ids = rows.map((r) => r.id);
    const progress = await jobs.progress(ids);
    const batches = await createCaptionBatchesRepository(db).forJobs(ids);
    const out: CaptioningJob[] = [];
    for (const row of rows) out.push(toCaptioningJob(row, progress.get(row.id)!, await jobs.failedItems(row.id), batches.get(row.id)!));
    return out;
  };

  return {
    /**
     * Queues a job for the dataset's images (or the ones named). Refusals: 404 unknown
     * dataset, 422 provider not configured or without the batch mode asked for, 400 an image that is not the dataset's,
     * 409 empty dataset or a job already queued or running on it.
     */
    async create(tenantId: string, datasetId: string, input: CreateCaptioningJobInput): Promise<CaptioningJob> {
      if (input.webhook !== undefined) checkWebhookUrl(webhookPolicy, input.webhook.url, 'webhook.url');
      const provider = input.provider ?? captioners.defaultProvider;
      const row = await db.transaction(async (tx) => {
        const jobs = createCaptioningJobsRepository(tx);
        const dataset = await jobs.lockDataset(tenantId, datasetId);
        if (dataset === null) throw notFound('dataset', datasetId);
        const captioner = captioners.get(provider);
        if (captioner === undefined) {
          const message = `is not configured on this server (set ${PROVIDER_SETTING[provider]}); configured: ${captioners.configured().join(', ')}`;
          throw new ProblemError({
            status: 422,
            type: 'provider-not-configured',
            title: 'Caption provider not configured',
            detail: `Provider ${provider} ${message}`,
            errors: [fieldError('body', 'provider', message)],
          });
        }
        if (Number(dataset.image_count) === 0) {
          throw new ProblemError({
            status: 409,
            type: 'dataset-empty',
            title: 'Dataset has no images',
            detail: `Dataset ${datasetId} has no images to caption; upload some first.`,
          });
        }
        const imageIds = input.image_ids ?? null;
        if (imageIds !== null) {
          const found = new Set((await createCaptionsRepository(tx).findInDataset(tenantId, datasetId, imageIds)).map((r) => r.image_id));
          const errors = imageIds.flatMap((id, i) => (found.has(id) ? [] : [fieldError('body', `image_ids.${i}`, `${id} is not an image of dataset ${datasetId}`)]));
          if (errors.length > 0) throw invalidInput(`Invalid body: ${errors.map((e) => e.field).join(', ')}`, errors);
        }
        const active = await jobs.activeForDataset(tenantId, datasetId);
        if (active !== null) {
          throw new ProblemError({
            status: 409,
            type: 'captioning-job-active',
            title: 'A captioning job is already running',
            detail: `Captioning job ${active.id} is ${active.status} on dataset ${datasetId}; wait for it or cancel it (POST /v1/captioning-jobs/${active.id}/cancel).`,
          });
        }
        const mode = jobMode(input.mode, captioner, imageIds?.length ?? Number(dataset.image_count), batchThreshold);
        return jobs.insert(tenantId, {
          datasetId,
          mode,
          provider,
          model: captioner.model,
          promptVersion: captioner.promptVersion,
          trigger: dataset.trigger_token,
          classWord: dataset.class_word,
          overwrite: input.overwrite,
          styleHint: input.style_hint?.trim() ?? null,
          imageIds,
          consistencyPass: input.consistency_pass,
          webhook: input.webhook === undefined ? null : { url: input.webhook.url, events: input.webhook.events ?? defaultEvents('captioning_job') },
        });
      });
      events.created(row.id);
      return (await present([row]))[0]!;
    },

    async get(tenantId: string, id: string): Promise<CaptioningJob> {
      const row = await createCaptioningJobsRepository(db).findById(tenantId, id);
      if (row === null) throw notFound('captioning job', id);
      return (await present([row]))[0]!;
    },

    async list(tenantId: string, datasetId: string, limit: number, cursor?: string) {
      const before = cursor === undefined ? undefined : decodeCursor(cursor, JOB_ID);
      const { rows: exists } = await db.query('SELECT 1 FROM datasets WHERE tenant_id = $1 AND id = $2', [tenantId, datasetId]);
      if (exists.length === 0) throw notFound('dataset', datasetId);
      const rows = await createCaptioningJobsRepository(db).listForDataset(tenantId, datasetId, limit + 1, before);
      const page = toPage(rows, limit, (row) => row);
      return { data: await present(page.data), next_cursor: page.next_cursor };
    },

    /**
     * Stops the job: a queued one is canceled at once, a running one within moments (its
     * captions so far are kept). 404 unknown job, 409 when it has already finished.
     */
    async cancel(tenantId: string, id: string): Promise<CaptioningJob> {
      const jobs = createCaptioningJobsRepository(db);
      const row = await db.transaction((tx) => createCaptioningJobsRepository(tx).requestCancel(tenantId, id));
      if (row === null) {
        const existing = await jobs.findById(tenantId, id);
        if (existing === null) throw notFound('captioning job', id);
        throw new ProblemError({
          status: 409,
          type: 'captioning-job-finished',
          title: 'Captioning job already finished',
          detail: `Captioning job ${id} has finished (status ${existing.status}); only a queued or running job can be canceled.`,
        });
      }
      if (!FINISHED_JOB_STATUSES.includes(row.status)) events.cancelRequested(id);
      return (await present([row]))[0]!;
    },
  };
}
export type CaptioningJobsService = ReturnType<typeof createCaptioningJobsService>;
