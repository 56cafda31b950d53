// The body of a webhook message, as Standard Webhooks shapes it: {type, timestamp, data},
// where `data` is the resource as its GET returns it at the moment of the event. The
// trigger that queued the message stored the resource's row then (`snapshot`); it is
// rendered here by the same functions the routes use.
import type { Queryable } from '../db/database.js';
import { createCaptionBatchesRepository } from '../repositories/caption-batches.js';
import { createCaptioningJobsRepository, type JobRow } from '../repositories/captioning-jobs.js';
import type { DatasetImportRow } from '../repositories/dataset-imports.js';
import { createGenerationsRepository, type GenerationRow } from '../repositories/generations.js';
import type { TrainingRunEventRow } from '../repositories/training-run-events.js';
import { createTrainingRunsRepository, type TrainingRunRow } from '../repositories/training-runs.js';
import type { WebhookMessageRow } from '../repositories/webhook-messages.js';
import { toCaptioningJob } from '../services/captioning-jobs.js';
import { toDatasetImport } from '../services/dataset-imports.js';
import { toGeneration } from '../services/generations.js';
import { toEvent } from '../services/training-run-events.js';
import { toTrainingRun } from '../services/training-runs.js';

/** A row as to_jsonb wrote it, with its timestamp columns as Dates again. */
function revive<Row>(snapshot: Record<string, unknown>, dates: readonly string[]): Row {
  const row: Record<string, unknown> = { ...snapshot };
  for (const column of dates) if (typeof row[column] === 'string') row[column] = new Date(row[column]);
  return row as Row;
}

async function renderData(db: Queryable, message: WebhookMessageRow): Promise<unknown> {
  const { snapshot } = message;
  if (message.event_type === 'training_run.validation') {
    // The snapshot is the validation event; the run is named by it.
    const event = revive<TrainingRunEventRow>(snapshot, ['created_at']);
    return { run_id: message.resource_id, ...toEvent({ ...event, id: String(event.id) }) };
  }
  switch (message.resource_type) {
    case 'training_run': {
      const row = revive<TrainingRunRow>(snapshot, ['created_at', 'started_at', 'completed_at', 'cancel_requested_at', 'claimed_at', 'lease_expires_at', 'heartbeat_at']);
      // A run's image snapshot never changes once it is made; a full run's model is registered, and its
      // files published, by the time its success is (in the transaction that marks it succeeded).
      return toTrainingRun({ ...row, ...(await createTrainingRunsRepository(db).shownWith(message.resource_id)) });
    }
    case 'captioning_job': {
      // Its items are final once the job is (every captioning event is a terminal one).
      // Snapshots taken before jobs had a mode were interactive ones.
      const row = revive<JobRow>({ mode: 'interactive', ...snapshot }, ['created_at', 'started_at', 'finished_at', 'cancel_requested_at']);
      const jobs = createCaptioningJobsRepository(db);
      const progress = (await jobs.progress([row.id])).get(row.id)!;
      const batches = (await createCaptionBatchesRepository(db).forJobs([row.id])).get(row.id)!;
      return toCaptioningJob(row, progress, await jobs.failedItems(row.id), batches);
    }
    case 'generation': {
      // Its images are stored before the status that queues the event.
      const row = revive<GenerationRow>(snapshot, ['created_at', 'started_at', 'completed_at', 'cancel_requested_at', 'claimed_at', 'lease_expires_at', 'heartbeat_at']);
      const images = await createGenerationsRepository(db).images([row.id]);
      return toGeneration(row, images.get(row.id) ?? []);
    }
    case 'dataset_import':
      // Its counts are final once it has ended (every import event is a terminal one).
      return toDatasetImport(revive<DatasetImportRow>(snapshot, ['created_at', 'started_at', 'completed_at', 'cancel_requested_at', 'lease_expires_at', 'heartbeat_at']));
    default:
      return snapshot; // ping: the snapshot is the data
  }
}

/** The JSON body of the message's attempts. */
export async function renderPayload(db: Queryable, message: WebhookMessageRow): Promise<string> {
  const data = await renderData(db, message);
  return JSON.stringify({ type: message.event_type, timestamp: message.created_at.toISOString(), data });
}
