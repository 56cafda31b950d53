// SQL for the batches a captioning job in batch mode submitted to its provider, and the moves
// of the job's items that batches cause (running while a batch carries them, queued again for
// a new batch). A batch row is written in the same transaction that marks its items running,
// so a worker that takes the job over sees exactly which items are on the way.
import type { Queryable } from '../db/database.js';
import { newId } from '../db/ids.js';
import type { BatchCounts, BatchState } from '../captioning/captioner.js';

export type BatchRowStatus = 'in_progress' | 'canceling' | 'ended' | 'collected' | 'abandoned';

export interface BatchRow extends BatchCounts {
  id: string;
  job_id: string;
  provider_batch_id: string;
  status: BatchRowStatus;
  image_ids: string[];
  submitted_at: Date;
  ended_at: Date | null;
}

/** An item a batch's result is awaited for. */
export interface WaitingItem {
  /** Requests made for it so far (batches it was sent in). */
  attempts: number;
  sha256: string;
}

/** Statuses of a batch whose results are still to be written. */
const OPEN = "('in_progress', 'canceling', 'ended')";
/** Item i ($1 its job) is carried by no batch newer than $3 (it was sent again since). */
const NOT_IN_LATER_BATCH = 'NOT EXISTS (SELECT 1 FROM caption_batches b WHERE b.job_id = i.job_id AND b.id > $3 AND i.image_id = ANY(b.image_ids))';
const COLUMNS = 'id, job_id, provider_batch_id, status, image_ids, processing, succeeded, errored, canceled, expired, submitted_at, ended_at';

export function createCaptionBatchesRepository(db: Queryable) {
  return {
    /** Records a submitted batch and marks its items running, one more attempt each. Run in a transaction. */
    async insert(jobId: string, state: BatchState, imageIds: readonly string[]): Promise<BatchRow> {
      const { rows } = await db.query<BatchRow>(
        `INSERT INTO caption_batches (id, job_id, provider_batch_id, status, image_ids, processing, succeeded, errored, canceled, expired)
         VALUES ($1, $2, $3, $4, $5::text[], $6, $7, $8, $9, $10) RETURNING ${COLUMNS}`,
        [newId('cb'), jobId, state.providerBatchId, state.status, imageIds, state.counts.processing, state.counts.succeeded,
          state.counts.errored, state.counts.canceled, state.counts.expired],
      );
      await db.query(
        `UPDATE captioning_job_items SET status = 'running', runs = runs + 1, attempts = attempts + 1, updated_at = now()
          WHERE job_id = $1 AND image_id = ANY($2::text[]) AND status = 'queued'`,
        [jobId, imageIds],
      );
      return rows[0]!;
    },

    /** The job's batches whose results are still to be written, oldest first. */
    async open(jobId: string): Promise<BatchRow[]> {
      const { rows } = await db.query<BatchRow>(`SELECT ${COLUMNS} FROM caption_batches WHERE job_id = $1 AND status IN ${OPEN} ORDER BY id`, [jobId]);
      return rows;
    },

    /** Every batch of each of `jobIds`, oldest first. */
    async forJobs(jobIds: readonly string[]): Promise<Map<string, BatchRow[]>> {
      const out = new Map<string, BatchRow[]>(jobIds.map((id) => [id, []]));
      if (jobIds.length === 0) return out;
      const { rows } = await db.query<BatchRow>(`SELECT ${COLUMNS} FROM caption_batches WHERE job_id = ANY($1::text[]) ORDER BY id`, [jobIds]);
      for (const row of rows) out.get(row.job_id)!.push(row);
      return out;
    },

    /** What the provider said at the last look; the end time is kept from the first look that saw it ended. */
    async updateState(id: string, state: BatchState): Promise<void> {
      await db.query(
        `UPDATE caption_batches SET status = $2, processing = $3, succeeded = $4, errored = $5, canceled = $6, expired = $7,
                ended_at = CASE WHEN $2 = 'ended' THEN coalesce(ended_at, now()) ELSE ended_at END
          WHERE id = $1 AND status IN ${OPEN}`,
        [id, state.status, state.counts.processing, state.counts.succeeded, state.counts.errored, state.counts.canceled, state.counts.expired],
      );
    },

    /**
     * The batch's items still waiting for its answer, with the requests made for each so far and
     * the image's hash: running, and carried by no later batch (a result read twice after a
     * restart must not count twice).
     */
    async waitingItems(jobId: string, batch: BatchRow): Promise<Map<string, WaitingItem>> {
      const { rows } = await db.query<{ image_id: string; attempts: number; sha256: string }>(
        `SELECT i.image_id, i.attempts, img.sha256 FROM captioning_job_items i
           JOIN images img ON img.tenant_id = i.tenant_id AND img.id = i.image_id
          WHERE i.job_id = $1 AND i.image_id = ANY($2::text[]) AND i.status = 'running'
            AND ${NOT_IN_LATER_BATCH}`,
        [jobId, batch.image_ids, batch.id],
      );
      return new Map(rows.map((r) => [r.image_id, { attempts: Number(r.attempts), sha256: r.sha256 }]));
    },

    /** Puts an item back in the queue for the next batch (its error was transient). */
    async requeueItem(jobId: string, imageId: string): Promise<void> {
      await db.query("UPDATE captioning_job_items SET status = 'queued', updated_at = now() WHERE job_id = $1 AND image_id = $2 AND status = 'running'", [jobId, imageId]);
    },

    /** Every result of the batch is written: it is closed, and any item its results did not mention goes back to the queue. Run in a transaction. */
    async markCollected(jobId: string, batch: BatchRow): Promise<void> {
      await db.query("UPDATE caption_batches SET status = 'collected', ended_at = coalesce(ended_at, now()) WHERE id = $1", [batch.id]);
      await db.query(
        `UPDATE captioning_job_items i SET status = 'queued', updated_at = now()
          WHERE i.job_id = $1 AND i.image_id = ANY($2::text[]) AND i.status = 'running'
            AND ${NOT_IN_LATER_BATCH}`,
        [jobId, batch.image_ids, batch.id],
      );
    },

    /** The job stopped (canceled or failed): its open batches are given up, their results not collected. */
    async abandonOpen(jobId: string): Promise<void> {
      await db.query(`UPDATE caption_batches SET status = 'abandoned', ended_at = coalesce(ended_at, now()) WHERE job_id = $1 AND status IN ${OPEN}`, [jobId]);
    },
  };
}
export type CaptionBatchesRepository = ReturnType<typeof createCaptionBatchesRepository>;
