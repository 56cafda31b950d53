// Creating training runs: checks the dataset and the model, resolves the params, and
// stores the run queued with a snapshot of the dataset's images and current captions
// (an image without one trains on the instance prompt "a photo of <trigger> <class>").
import type { Database } from '../db/database.js';
import { fieldError, notFound, ProblemError } from '../errors.js';
import { createCaptionsRepository } from '../repositories/captions.js';
import { createDatasetsRepository } from '../repositories/datasets.js';
import { createTrainingRunsRepository, type TrainingRunRow } from '../repositories/training-runs.js';
import { resolveTrainingParams, type TrainingParamsInput } from '../schemas/training-params.js';
import type { ModelsService } from './models.js';

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
    const models = await this.models.list();
    if (!models.some((resolved) => resolved.model.id === request.model)) {
      throw new ProblemError({
        status: 422,
        type: 'model-not-found',
        title: 'Unknown model',
        detail: `No base model ${request.model} on this server; GET /v1/models lists them`,
        errors: [fieldError('body', 'model', `must be one of: ${models.map((resolved) => resolved.model.id).join(', ')}`)],
      });
    }
    const images = await createCaptionsRepository(this.db).allForDataset(tenantId, dataset.id);
    if (images.length === 0) {
      throw new ProblemError({ status: 409, type: 'dataset-empty', title: 'Dataset is empty', detail: `Dataset ${dataset.id} has no images to train on` });
    }
    const run = await this.db.transaction((tx) =>
      createTrainingRunsRepository(tx).insert(tx, {
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
    return run;
  }
}
