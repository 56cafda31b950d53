// SQL for captioning jobs and their per-image items. API reads are scoped by tenant_id;
// the worker's statements are scoped by the job's lease (lease_owner), so a worker that
// lost its lease to another replica can no longer change the job.
import type { Queryable } from '../db/database.js';
import { newId } from '../db/ids.js';
import { claimNextJobLike, finishJobLike, releaseJobLike, renewLease, type LeasedJobColumns } from './lease-sql.js';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';
export type JobMode = 'interactive' | 'batch';
export type ItemStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'skipped' | 'canceled';
export const FINISHED_JOB_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];

export interface JobRow extends LeasedJobColumns {
  id: string;
  tenant_id: string;
  dataset_id: string;
  status: JobStatus;
  mode: JobMode;
  provider: string;
  model: string;
  prompt_version: string;
  trigger_token: string;
  class_word: string;
  overwrite: boolean;
  style_hint: string | null;
  image_ids: string[] | null;
  consistency_pass: boolean;
  input_tokens: number;
  output_tokens: number;
  cost_usd: number;
  cost_known: boolean;
  claims: number;
  webhook_url: string | null;
  webhook_events: string[] | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
}

export interface JobProgress {
  total: number;
  queued: number;
  running: number;
  succeeded: number;
  failed: number;
  skipped: number;
  canceled: number;
  cached: number;
}

export interface ItemRow {
  job_id: string;
  image_id: string;
  status: ItemStatus;
  runs: number;
  attempts: number;
  cached: boolean;
  error_code: string | null;
  error_message: string | null;
  http_status: number | null;
  caption_id: string | null;
  updated_at: Date;
}

export interface NewJob {
  datasetId: string;
  mode: JobMode;
  provider: string;
  model: string;
  promptVersion: string;
  trigger: string;
  classWord: string;
  overwrite: boolean;
  styleHint: string | null;
  imageIds: string[] | null;
  consistencyPass: boolean;
  /** Per-request webhook: where the job's events go, and which. */
  webhook?: { url: string; events: string[] } | null;
}

export interface ItemOutcome {
  status: Exclude<ItemStatus, 'queued' | 'running'>;
  cached?: boolean;
  captionId?: string | null;
  error?: { code: string; message: string; attempts: number; httpStatus: number | null };
}

const COLUMNS =
  'id, tenant_id, dataset_id, status, mode, provider, model, prompt_version, trigger_token, class_word, overwrite, style_hint, image_ids, ' +
  'consistency_pass, input_tokens, output_tokens, cost_usd, cost_known, error_code, error_message, cancel_requested_at, ' +
  'lease_owner, lease_expires_at, heartbeat_at, claims, webhook_url, webhook_events, created_at, started_at, finished_at';
const ITEM_COLUMNS = 'job_id, image_id, status, runs, attempts, cached, error_code, error_message, http_status, caption_id, updated_at';

export function createCaptioningJobsRepository(db: Queryable) {
  return {
    // ---------------------------------------------------------------- API side

    /** Locks the dataset row until the transaction ends (job creations on one dataset queue here); its tokens and image count, or null. */
    async lockDataset(tenantId: string, datasetId: string): Promise<{ trigger_token: string; class_word: string; image_count: number } | null> {
      const { rows } = await db.query<{ trigger_token: string; class_word: string; image_count: number }>(
        'SELECT trigger_token, class_word, image_count FROM datasets WHERE tenant_id = $1 AND id = $2 FOR UPDATE',
        [tenantId, datasetId],
      );
      return rows[0] ?? null;
    },

    /** The dataset's queued or running job, if any. */
    async activeForDataset(tenantId: string, datasetId: string): Promise<JobRow | null> {
      const { rows } = await db.query<JobRow>(
        `SELECT ${COLUMNS} FROM captioning_jobs WHERE tenant_id = $1 AND dataset_id = $2 AND status IN ('queued', 'running')`,
        [tenantId, datasetId],
      );
      return rows[0] ?? null;
    },

    /** Inserts the job and one queued item per image (all of the dataset's when job.imageIds is null). */
    async insert(tenantId: string, job: NewJob): Promise<JobRow> {
      const { rows } = await db.query<JobRow>(
        `INSERT INTO captioning_jobs (id, tenant_id, dataset_id, provider, model, prompt_version, trigger_token, class_word,
                                      overwrite, style_hint, image_ids, consistency_pass, webhook_url, webhook_events, mode)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text[], $12, $13, $14, $15) RETURNING ${COLUMNS}`,
        [
          newId('cj'), tenantId, job.datasetId, job.provider, job.model, job.promptVersion, job.trigger, job.classWord,
          job.overwrite, job.styleHint, job.imageIds, job.consistencyPass, job.webhook?.url ?? null, job.webhook?.events ?? null, job.mode,
        ],
      );
      const row = rows[0]!;
      await db.query(
        `INSERT INTO captioning_job_items (job_id, tenant_id, image_id)
         SELECT $1, tenant_id, id FROM images
          WHERE tenant_id = $2 AND dataset_id = $3 AND ($4::text[] IS NULL OR id = ANY($4::text[]))`,
        [row.id, tenantId, job.datasetId, job.imageIds],
      );
      return row;
    },

    async findById(tenantId: string, id: string): Promise<JobRow | null> {
      const { rows } = await db.query<JobRow>(`SELECT ${COLUMNS} FROM captioning_jobs WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
      return rows[0] ?? null;
    },

    /** Up to `limit` jobs of the dataset, newest first, older than the id `before` when given. */
    async listForDataset(tenantId: string, datasetId: string, limit: number, before?: string): Promise<JobRow[]> {
      const { rows } = before === undefined
        ? await db.query<JobRow>(
          `SELECT ${COLUMNS} FROM captioning_jobs WHERE tenant_id = $1 AND dataset_id = $2 ORDER BY id DESC LIMIT $3`,
          [tenantId, datasetId, limit],
        )
        : await db.query<JobRow>(
          `SELECT ${COLUMNS} FROM captioning_jobs WHERE tenant_id = $1 AND dataset_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4`,
          [tenantId, datasetId, before, limit],
        );
      return rows;
    },

    /** Item counts by status, for each of `jobIds`. */
    async progress(jobIds: readonly string[]): Promise<Map<string, JobProgress>> {
      const out = new Map<string, JobProgress>();
      for (const id of jobIds) out.set(id, { total: 0, queued: 0, running: 0, succeeded: 0, failed: 0, skipped: 0, canceled: 0, cached: 0 });
      if (jobIds.length === 0) return out;
      const { rows } = await db.query<{ job_id: string; status: ItemStatus; n: number; cached: number }>(
        `SELECT job_id, status, count(*)::int AS n, count(*) FILTER (WHERE cached)::int AS cached
           FROM captioning_job_items WHERE job_id = ANY($1::text[]) GROUP BY job_id, status`,
        [jobIds],
      );
      for (const row of rows) {
        const progress = out.get(row.job_id)!;
        progress[row.status] += row.n;
        progress.total += row.n;
        progress.cached += row.cached;
      }
      return out;
    },

    /** The job's failed items, in image order. */
    async failedItems(jobId: string): Promise<ItemRow[]> {
      const { rows } = await db.query<ItemRow>(
        `SELECT ${ITEM_COLUMNS} FROM captioning_job_items WHERE job_id = $1 AND status = 'failed' ORDER BY image_id`,
        [jobId],
      );
      return rows;
    },

    /**
     * Asks the job to stop. A queued job is canceled at once (with its items); a running
     * one is marked and its worker stops it, and so is a queued one with batches in flight
     * (given back by a stopping worker): the worker that claims it next cancels them at the
     * provider. Null when the tenant has no such job.
     */
    async requestCancel(tenantId: string, id: string): Promise<JobRow | null> {
      const { rows } = await db.query<JobRow>(
        `WITH settle AS (
           SELECT status = 'queued' AND NOT EXISTS (
                    SELECT 1 FROM caption_batches b WHERE b.job_id = $2 AND b.status IN ('in_progress', 'canceling', 'ended')) AS at_once
             FROM captioning_jobs WHERE tenant_id = $1 AND id = $2)
         UPDATE captioning_jobs
            SET cancel_requested_at = coalesce(cancel_requested_at, now()),
                status = CASE WHEN (SELECT at_once FROM settle) THEN 'canceled' ELSE status END,
                finished_at = CASE WHEN (SELECT at_once FROM settle) THEN now() ELSE finished_at END
          WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'running')
          RETURNING ${COLUMNS}`,
        [tenantId, id],
      );
      const row = rows[0];
      if (row?.status === 'canceled') {
        await db.query("UPDATE captioning_job_items SET status = 'canceled', updated_at = now() WHERE job_id = $1 AND status = 'queued'", [id]);
      }
      return row ?? null;
    },

    // ---------------------------------------------------------------- worker side

    /**
     * Takes the oldest job that is queued, or running under an expired lease (its worker
     * died), for `owner` until the lease ends. SKIP LOCKED lets replicas claim side by side.
     */
    claimNext(owner: string, leaseMs: number): Promise<JobRow | null> {
      return claimNextJobLike<JobRow>(db, 'captioning_jobs', COLUMNS, owner, leaseMs);
    },

    /** Extends the lease; whether cancel was asked, or null when the lease was lost (or the job deleted). */
    heartbeat(jobId: string, owner: string, leaseMs: number): Promise<{ cancelRequested: boolean } | null> {
      return renewLease(db, 'captioning_jobs', ['running'], jobId, owner, leaseMs);
    },

    /** Whether `owner` still holds the job's lease. */
    async holdsLease(jobId: string, owner: string): Promise<boolean> {
      const { rows } = await db.query("SELECT 1 FROM captioning_jobs WHERE id = $1 AND lease_owner = $2 AND status = 'running'", [jobId, owner]);
      return rows.length > 0;
    },

    /**
     * Items a dead or stopped worker left running go back to the queue, except those a batch
     * still carries: their answers are on the way, and sending them again would pay twice.
     */
    async requeueRunningItems(jobId: string): Promise<void> {
      await db.query(
        `UPDATE captioning_job_items i SET status = 'queued', updated_at = now()
          WHERE i.job_id = $1 AND i.status = 'running'
            AND NOT EXISTS (SELECT 1 FROM caption_batches b
                             WHERE b.job_id = i.job_id AND b.status IN ('in_progress', 'canceling', 'ended') AND i.image_id = ANY(b.image_ids))`,
        [jobId],
      );
    },

    /** Image ids of the job's queued items, in image order. */
    async queuedItems(jobId: string): Promise<string[]> {
      const { rows } = await db.query<{ image_id: string }>(
        "SELECT image_id FROM captioning_job_items WHERE job_id = $1 AND status = 'queued' ORDER BY image_id",
        [jobId],
      );
      return rows.map((r) => r.image_id);
    },

    /** Marks the item running; false when it is not queued any more (its image was deleted, or the lease was lost). */
    async startItem(jobId: string, owner: string, imageId: string): Promise<boolean> {
      const { rowCount } = await db.query(
        `UPDATE captioning_job_items i SET status = 'running', runs = runs + 1, updated_at = now()
           FROM captioning_jobs j
          WHERE i.job_id = $1 AND i.image_id = $3 AND i.status = 'queued'
            AND j.id = i.job_id AND j.lease_owner = $2 AND j.status = 'running'`,
        [jobId, owner, imageId],
      );
      return rowCount > 0;
    },

    /** Records how the item ended; false when the item is gone (its image was deleted) or the lease was lost. */
    async finishItem(jobId: string, owner: string, imageId: string, outcome: ItemOutcome): Promise<boolean> {
      const { rowCount } = await db.query(
        `UPDATE captioning_job_items i
            SET status = $4, cached = $5, caption_id = $6, error_code = $7, error_message = $8,
                attempts = $9, http_status = $10, updated_at = now()
           FROM captioning_jobs j
          WHERE i.job_id = $1 AND i.image_id = $3 AND j.id = i.job_id AND j.lease_owner = $2 AND j.status = 'running'`,
        [
          jobId, owner, imageId, outcome.status, outcome.cached ?? false, outcome.captionId ?? null,
          outcome.error?.code ?? null, outcome.error?.message ?? null, outcome.error?.attempts ?? 0, outcome.error?.httpStatus ?? null,
        ],
      );
      return rowCount > 0;
    },

    /** Adds a request's tokens and cost (null: unknown price) to the job. */
    async addUsage(jobId: string, inputTokens: number, outputTokens: number, costUsd: number | null): Promise<void> {
      await db.query(
        `UPDATE captioning_jobs SET input_tokens = input_tokens + $2, output_tokens = output_tokens + $3,
                cost_usd = cost_usd + $4, cost_known = cost_known AND $5
          WHERE id = $1`,
        [jobId, inputTokens, outputTokens, costUsd ?? 0, costUsd !== null],
      );
    },

    /** Cancels every item not yet finished. */
    async cancelOpenItems(jobId: string): Promise<void> {
      await db.query(
        "UPDATE captioning_job_items SET status = 'canceled', updated_at = now() WHERE job_id = $1 AND status IN ('queued', 'running')",
        [jobId],
      );
    },

    /** Fails every queued item with the same error (the job stopped before trying them). */
    async failQueuedItems(jobId: string, code: string, message: string): Promise<void> {
      await db.query(
        "UPDATE captioning_job_items SET status = 'failed', error_code = $2, error_message = $3, updated_at = now() WHERE job_id = $1 AND status = 'queued'",
        [jobId, code, message],
      );
    },

    /** Ends the job with `status`; false when the lease was lost. */
    finish(jobId: string, owner: string, status: Extract<JobStatus, 'succeeded' | 'failed' | 'canceled'>, error?: { code: string; message: string }): Promise<boolean> {
      return finishJobLike(db, 'captioning_jobs', 'finished_at', jobId, owner, status, error);
    },

    /** Gives the job back to the queue (this process is stopping); any worker may take it at once. */
    release(jobId: string, owner: string): Promise<void> {
      return releaseJobLike(db, 'captioning_jobs', jobId, owner);
    },
  };
}
export type CaptioningJobsRepository = ReturnType<typeof createCaptioningJobsRepository>;
