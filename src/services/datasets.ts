// Dataset use cases: what routes call. Maps rows to the API shape, turns "absent" into 404.
import { idPattern } from '../db/ids.js';
import { notFound, ProblemError } from '../errors.js';
import type { DatasetRow, DatasetsRepository } from '../repositories/datasets.js';
import {
  DATASET_ID_PREFIX,
  DEFAULT_TRIGGER_TOKEN,
  type CreateDatasetInput,
  type Dataset,
  type UpdateDatasetInput,
} from '../schemas/datasets.js';
import { decodeCursor, toPage } from './pagination.js';

const DATASET_ID = new RegExp(idPattern(DATASET_ID_PREFIX));

/** Called after a dataset row is deleted (e.g. to remove its image files). */
export type DatasetDeletedListener = (tenantId: string, datasetId: string) => Promise<void>;

export function toDataset(row: DatasetRow): Dataset {
  return {
    id: row.id,
    name: row.name,
    trigger_token: row.trigger_token,
    class_word: row.class_word,
    image_count: Number(row.image_count),
    created_at: new Date(row.created_at).toISOString(),
    updated_at: new Date(row.updated_at).toISOString(),
  };
}

export function createDatasetsService(datasets: DatasetsRepository) {
  const deletedListeners: DatasetDeletedListener[] = [];

  return {
    async create(tenantId: string, input: CreateDatasetInput): Promise<Dataset> {
      const row = await datasets.insert(tenantId, {
        name: input.name,
        trigger_token: input.trigger_token ?? DEFAULT_TRIGGER_TOKEN,
        class_word: input.class_word,
      });
      return toDataset(row);
    },

    /** The dataset, or a 404 ProblemError when this tenant has none with that id. */
    async get(tenantId: string, id: string): Promise<Dataset> {
      const row = await datasets.findById(tenantId, id);
      if (!row) throw notFound('dataset', id);
      return toDataset(row);
    },

    async list(tenantId: string, limit: number, cursor?: string) {
      const before = cursor === undefined ? undefined : decodeCursor(cursor, DATASET_ID);
      // One extra row tells whether another page follows.
      const rows = await datasets.listNewestFirst(tenantId, limit + 1, before);
      return toPage(rows, limit, toDataset);
    },

    async update(tenantId: string, id: string, changes: UpdateDatasetInput): Promise<Dataset> {
      const row = await datasets.update(tenantId, id, changes);
      if (!row) throw notFound('dataset', id);
      return toDataset(row);
    },

    /** 409 while a training run is queued or running on it (finished runs keep their own snapshot). */
    async delete(tenantId: string, id: string): Promise<void> {
      const outcome = await datasets.delete(tenantId, id);
      if (outcome === 'not-found') throw notFound('dataset', id);
      if (outcome === 'in-use') {
        throw new ProblemError({
          status: 409,
          type: 'dataset-in-use',
          title: 'Dataset is in use',
          detail: `Dataset ${id} has a queued or running training run; cancel it or wait until it finishes`,
        });
      }
      for (const listener of deletedListeners) await listener(tenantId, id);
    },

    /** Lets another resource clean up after a dataset is deleted (its rows cascade in SQL). */
    onDeleted(listener: DatasetDeletedListener): void {
      deletedListeners.push(listener);
    },
  };
}
export type DatasetsService = ReturnType<typeof createDatasetsService>;
