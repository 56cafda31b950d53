// SQL of training runs and their image snapshots. The worker's statements are scoped by
// the run's lease (lease_owner), so a worker that lost its lease to another replica can
// no longer change the run.
import type { Queryable } from '../db/database.js';
import { newId } from '../db/ids.js';
import {
  claimNextRunLike, countOpenLocked, INTERRUPTION_COUNT, finishRunLike, recordHeldJson, recordProgress, releaseRunLike, renewLease, requestCancelRunLike,
  type LeasedJobColumns, type RunLikeOutcome,
} from './lease-sql.js';

export const TRAINING_RUN_ID_PREFIX = 'tr';

export type TrainingRunStatus = 'queued' | 'starting' | 'running' | 'succeeded' | 'failed' | 'canceled';

export interface TrainingRunRow extends LeasedJobColumns {
  id: string;
  tenant_id: string;
  dataset_id: string;
  model_id: string;
  name: string | null;
  status: TrainingRunStatus;
  params: Record<string, unknown>;
  metadata: Record<string, string>;
  trigger_token: string;
  class_word: string;
  progress: Record<string, unknown> | null;
  metrics: Record<string, number> | null;
  /** The latest scored set of validation images (validation.metrics); null before one. */
  quality_metrics: Record<string, unknown> | null;
  claimed_at: Date | null;
  attempt: number;
  /** Claims of this run after its lease ran out (its process died); graceful hand-backs do not count. */
  interruptions: number;
  webhook_url: string | null;
  webhook_events: string[] | null;
  /** Full runs: what their model files are expected to take (TENANT_MAX_MODEL_BYTES); null for LoRA runs. */
  expected_model_bytes: number | null;
  /** Images in the run's snapshot (SELECTs only; 0 in the row insert() returns). */
  image_count?: number;
  /** Full runs (SELECTs only): the model it registered, while it exists. */
  registered_model_id?: string | null;
  /** Full runs (SELECTs only): the names of its model artifacts by kind (model, model_ema, model_diffusers). */
  model_artifacts?: Record<string, string> | null;
  /** Queued runs (not a column: the service sets it from training_workers): what the run waits for. */
  queue_reason?: string | null;
  created_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
}

/** One image of a run, as it was when the run was created. */
export interface TrainingRunImage {
  image_id: string;
  sha256: string;
  caption: string;
  original_filename: string | null;
  /** As displayed (after the EXIF orientation); null in snapshots taken before migration 016. */
  width: number | null;
  height: number | null;
}

/** Snapshot images inserted per statement. */
const SNAPSHOT_SLICE = 1000;

export interface NewTrainingRun {
  tenantId: string;
  datasetId: string;
  modelId: string;
  name: string | null;
  params: Record<string, unknown>;
  metadata: Record<string, string>;
  triggerToken: string;
  classWord: string;
  images: TrainingRunImage[];
  /** Per-request webhook: where the run's events go, and which. */
  webhook?: { url: string; events: string[] } | null;
  /** Full runs: what their model files are expected to take. */
  expectedModelBytes?: number | null;
}

const COLUMNS =
  'id, tenant_id, dataset_id, model_id, name, status, params, metadata, trigger_token, class_word, progress, metrics, quality_metrics, ' +
  'error_code, error_message, cancel_requested_at, lease_owner, lease_expires_at, heartbeat_at, claimed_at, attempt, ' +
  'interruptions, webhook_url, webhook_events, expected_model_bytes::float8 AS expected_model_bytes, created_at, started_at, completed_at';
/** A full run's model, while it exists, and its model artifacts' names by kind. */
const MODEL_OUTPUTS = `(SELECT m.id FROM tenant_models m WHERE m.training_run_id = training_runs.id) AS registered_model_id,
  (SELECT json_object_agg(a.kind, a.name) FROM training_run_artifacts a
    WHERE a.run_id = training_runs.id AND a.kind IN ('model', 'model_ema', 'model_diffusers')) AS model_artifacts`;
const WITH_IMAGE_COUNT = `${COLUMNS}, (SELECT count(*) FROM training_run_images i WHERE i.run_id = training_runs.id)::integer AS image_count,
  ${MODEL_OUTPUTS}`;

/** The statuses in which a worker holds a run under its lease. */
const HELD = ['starting', 'running'] as const;

export function createTrainingRunsRepository(db: Queryable) {
  return {
    /** Stores a queued run and its image snapshot (call it on a transaction, so both land or neither). */
    async insert(run: NewTrainingRun): Promise<TrainingRunRow> {
      const id = newId(TRAINING_RUN_ID_PREFIX);
      const { rows } = await db.query<TrainingRunRow>(
        `INSERT INTO training_runs (id, tenant_id, dataset_id, model_id, name, params, metadata, trigger_token, class_word, webhook_url, webhook_events,
           expected_model_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         RETURNING ${COLUMNS}`,
        [id, run.tenantId, run.datasetId, run.modelId, run.name, JSON.stringify(run.params), JSON.stringify(run.metadata), run.triggerToken, run.classWord,
          run.webhook?.url ?? null, run.webhook?.events ?? null, run.expectedModelBytes ?? null],
      );
      // In slices of arrays: one statement per SNAPSHOT_SLICE images, not one per image.
      for (let first = 0; first < run.images.length; first += SNAPSHOT_SLICE) {
        const slice = run.images.slice(first, first + SNAPSHOT_SLICE);
        await db.query(
          `INSERT INTO training_run_images (run_id, position, image_id, sha256, caption, original_filename, width, height)
           SELECT $1, * FROM unnest($2::integer[], $3::text[], $4::text[], $5::text[], $6::text[], $7::integer[], $8::integer[])`,
          [id, slice.map((_, k) => first + k), slice.map((image) => image.image_id), slice.map((image) => image.sha256),
            slice.map((image) => image.caption), slice.map((image) => image.original_filename),
            slice.map((image) => image.width), slice.map((image) => image.height)],
        );
      }
      return rows[0]!;
    },

    async get(tenantId: string, id: string): Promise<TrainingRunRow | null> {
      const { rows } = await db.query<TrainingRunRow>(`SELECT ${WITH_IMAGE_COUNT} FROM training_runs WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
      return rows[0] ?? null;
    },

    /** Up to `limit` runs, newest first, older than `before` when given, of one dataset and status when given. */
    async list(tenantId: string, filter: { datasetId?: string; status?: TrainingRunStatus }, limit: number, before?: string): Promise<TrainingRunRow[]> {
      const { rows } = await db.query<TrainingRunRow>(
        `SELECT ${WITH_IMAGE_COUNT} FROM training_runs
          WHERE tenant_id = $1 AND ($2::text IS NULL OR dataset_id = $2) AND ($3::text IS NULL OR status = $3)
            AND ($4::text IS NULL OR id < $4)
          ORDER BY id DESC LIMIT $5`,
        [tenantId, filter.datasetId ?? null, filter.status ?? null, before ?? null, limit],
      );
      return rows;
    },

    /**
     * Asks a run to stop: a queued one is canceled at once; a claimed one is marked, and its
     * worker stops it at its next step. The run as it now is (finished runs unchanged), or null.
     */
    async requestCancel(tenantId: string, id: string): Promise<TrainingRunRow | null> {
      await requestCancelRunLike(db, 'training_runs', tenantId, id);
      return this.get(tenantId, id);
    },

    /** Just the run's status (cheap enough to poll); null when the tenant has no such run. */
    async statusOf(tenantId: string, id: string): Promise<TrainingRunStatus | null> {
      const { rows } = await db.query<{ status: TrainingRunStatus }>('SELECT status FROM training_runs WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
      return rows[0]?.status ?? null;
    },

    /** The tenant's queued and running runs, under a per-tenant lock held to the end of the transaction (so a limit check and an insert cannot interleave). */
    countOpenLocked(tenantId: string): Promise<number> {
      return countOpenLocked(db, 'training_runs', tenantId);
    },

    /** Deletes a finished run (its events, artifacts rows and image snapshot cascade); false when none was deleted. */
    async deleteFinished(tenantId: string, id: string): Promise<boolean> {
      const { rowCount } = await db.query(
        "DELETE FROM training_runs WHERE tenant_id = $1 AND id = $2 AND status IN ('succeeded', 'failed', 'canceled')",
        [tenantId, id],
      );
      return (rowCount ?? 0) > 0;
    },

    /** What a run's row lacks to be shown: its image count and a full run's model outputs (a webhook renders a snapshot of the row). */
    async shownWith(runId: string): Promise<Pick<TrainingRunRow, 'image_count' | 'registered_model_id' | 'model_artifacts'>> {
      const { rows } = await db.query<Pick<TrainingRunRow, 'image_count' | 'registered_model_id' | 'model_artifacts'>>(
        `SELECT (SELECT count(*) FROM training_run_images i WHERE i.run_id = $1)::integer AS image_count,
                ${MODEL_OUTPUTS.replaceAll('training_runs.id', '$1')}`,
        [runId],
      );
      return rows[0]!;
    },

    /** The run's images in training order. */
    async images(runId: string): Promise<TrainingRunImage[]> {
      const { rows } = await db.query<TrainingRunImage>(
        'SELECT image_id, sha256, caption, original_filename, width, height FROM training_run_images WHERE run_id = $1 ORDER BY position',
        [runId],
      );
      return rows;
    },

    // ---------------------------------------------------------------- worker side

    /**
     * Takes the next due run that asks at most `freeDevices` devices (params.devices; 1 for runs
     * stored before it), fair between tenants (lease-sql.ts); a claim after an expired lease
     * counts an interruption.
     */
    claimNext(owner: string, leaseMs: number, freeDevices: number): Promise<TrainingRunRow | null> {
      return claimNextRunLike<TrainingRunRow>(db, 'training_runs', COLUMNS, owner, leaseMs, INTERRUPTION_COUNT, {
        sql: "coalesce((j.params->>'devices')::integer, 1) <= $3::integer",
        value: freeDevices,
      });
    },

    /** Extends the lease; whether a cancel was asked, or null when the lease was lost. */
    heartbeat(runId: string, owner: string, leaseMs: number): Promise<{ cancelRequested: boolean } | null> {
      return renewLease(db, 'training_runs', HELD, runId, owner, leaseMs);
    },

    /** Records progress (and the move from starting to running); false when the lease was lost. */
    progress(runId: string, owner: string, progress: Record<string, unknown>, status: 'starting' | 'running'): Promise<boolean> {
      return recordProgress(db, 'training_runs', runId, owner, progress, status);
    },

    /** Records the run's latest scored set of validation images; false when the lease was lost. */
    qualityMetrics(runId: string, owner: string, scored: Record<string, unknown>): Promise<boolean> {
      return recordHeldJson(db, 'training_runs', 'quality_metrics', runId, owner, scored);
    },

    /** Gives the run back to the queue (this process is shutting down); false when the lease was lost. */
    release(runId: string, owner: string): Promise<boolean> {
      return releaseRunLike(db, 'training_runs', runId, owner);
    },

    /** Ends the run; false when the lease was lost. */
    finish(runId: string, owner: string, status: 'succeeded' | 'failed' | 'canceled', outcome: RunLikeOutcome = {}): Promise<boolean> {
      return finishRunLike(db, 'training_runs', runId, owner, status, outcome);
    },
  };
}

export type TrainingRunsRepository = ReturnType<typeof createTrainingRunsRepository>;
