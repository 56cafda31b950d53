// Creating training runs: checks the dataset and the model, resolves the params, and
// stores the run queued with a snapshot of the dataset's images and current captions
// (an image without one trains on the instance prompt "a photo of <trigger> <class>").
import type { Database } from '../db/database.js';
import { fieldError, notFound, ProblemError } from '../errors.js';
import { createCaptionsRepository } from '../repositories/captions.js';
import { createDatasetsRepository } from '../repositories/datasets.js';
import { createTrainingRunsRepository, TRAINING_RUN_ID_PREFIX, type TrainingRunRow, type TrainingRunStatus } from '../repositories/training-runs.js';
import { idPattern } from '../db/ids.js';
import { resolveTrainingParams, type TrainingParamsInput } from '../schemas/training-params.js';
import type { TrainingRun } from '../schemas/training-runs.js';
import type { ModelsService } from './models.js';
import { decodeCursor, toPage } from './pagination.js';

const RUN_ID = new RegExp(idPattern(TRAINING_RUN_ID_PREFIX));
const FINISHED = new Set<TrainingRunStatus>(['succeeded', 'failed', 'canceled']);

/** A run as the API returns it. */
export function toTrainingRun(row: TrainingRunRow): TrainingRun {
  return {
    id: row.id,
    dataset_id: row.dataset_id,
    model: row.model_id,
    name: row.name,
    status: row.status,
    params: row.params as TrainingRun['params'],
    metadata: row.metadata,
    trigger_token: row.trigger_token,
    class_word: row.class_word,
    image_count: row.image_count ?? 0,
    progress: row.progress as TrainingRun['progress'],
    metrics: row.metrics,
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    attempt: row.attempt,
    cancel_requested: row.cancel_requested_at !== null,
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
}

export interface TrainingRunsServiceOptions {
  /** The frozen weights' precision when a request names none: bf16 on CUDA, no on the CPU. */
  serverPrecision: 'bf16' | 'fp16' | 'no';
  /** A run was queued: wake the worker. */
  created?: () => void;
  /** A cancel was asked: stop the run now if it trains in this process. */
  cancelRequested?: (runId: string) => void;
}

export function instancePrompt(trigger: string, classWord: string): string {
  return `a photo of ${trigger} ${classWord}`;
}

export class TrainingRunsService {
  constructor(
    private readonly db: Database,
    private readonly models: ModelsService,
    private readonly options: TrainingRunsServiceOptions,
  ) {}

  async create(tenantId: string, request: NewTrainingRunRequest): Promise<TrainingRunRow> {
    const dataset = await createDatasetsRepository(this.db).findById(tenantId, request.dataset_id);
    if (dataset === null) throw notFound('Dataset', request.dataset_id);
    // One lookup, not a listing: only this model's weight headers are read.
    await this.models.get(request.model).catch((error: unknown) => {
      if (!(error instanceof ProblemError) || error.status !== 404) throw error;
      throw new ProblemError({
        status: 422,
        type: 'model-not-found',
        title: 'Unknown model',
        detail: `No base model ${request.model} on this server; GET /v1/models lists them`,
        errors: [fieldError('body', 'model', 'is not a model of this server (GET /v1/models lists them)')],
      });
    });
    const images = await createCaptionsRepository(this.db).allForDataset(tenantId, dataset.id);
    if (images.length === 0) {
      throw new ProblemError({ status: 409, type: 'dataset-empty', title: 'Dataset is empty', detail: `Dataset ${dataset.id} has no images to train on` });
    }
    const run = await this.db.transaction((tx) =>
      createTrainingRunsRepository(tx).insert({
        tenantId,
        datasetId: dataset.id,
        modelId: request.model,
        name: request.name ?? null,
        params: resolveTrainingParams(request.params ?? {}, this.options.serverPrecision),
        metadata: request.metadata ?? {},
        triggerToken: dataset.trigger_token,
        classWord: dataset.class_word,
        images: images.map((image) => ({
          image_id: image.image_id,
          sha256: image.sha256,
          caption: image.caption_row?.caption ?? instancePrompt(dataset.trigger_token, dataset.class_word),
          original_filename: image.original_filename,
        })),
      }),
    );
    this.options.created?.();
    return (await this.get(tenantId, run.id)) as TrainingRunRow;
  }

  async get(tenantId: string, id: string): Promise<TrainingRunRow> {
    const run = await createTrainingRunsRepository(this.db).get(tenantId, id);
    if (run === null) throw notFound('Training run', id);
    return run;
  }

  async list(tenantId: string, filter: { dataset_id?: string; status?: TrainingRunStatus }, limit: number, cursor?: string) {
    const before = cursor === undefined ? undefined : decodeCursor(cursor, RUN_ID);
    const rows = await createTrainingRunsRepository(this.db).list(
      tenantId,
      { ...(filter.dataset_id === undefined ? {} : { datasetId: filter.dataset_id }), ...(filter.status === undefined ? {} : { status: filter.status }) },
      limit + 1,
      before,
    );
    return toPage(rows, limit, toTrainingRun);
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
