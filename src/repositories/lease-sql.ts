// SQL every leased job table shares (captioning_jobs, training_runs, generations, ...):
// each has lease_owner, lease_expires_at, heartbeat_at and cancel_requested_at columns,
// and a set of statuses in which a worker holds the job. Training runs and generations
// also share their statuses (queued, starting, running, succeeded, failed, canceled) and
// claimed_at, attempt, started_at, progress, metrics and completed_at: the statements
// below marked "run-like" serve both.
import type { Queryable, SqlParam } from '../db/database.js';

/** The columns of a leased job row, and why it failed when it did. */
export interface LeasedJobColumns {
  error_code: string | null;
  error_message: string | null;
  cancel_requested_at: Date | null;
  lease_owner: string | null;
  lease_expires_at: Date | null;
  heartbeat_at: Date | null;
}

/** `$n` milliseconds as an interval, for `now() + ...`. */
export const leaseInterval = (param: number): string => `($${param}::integer * interval '1 millisecond')`;

/**
 * Extends `owner`'s lease on job `id` of `table` (a constant name, never input); whether a
 * cancel was asked, or null when the lease was lost (another worker holds it, or the job ended).
 */
export async function renewLease(
  db: Queryable,
  table: string,
  heldStatuses: readonly string[],
  id: string,
  owner: string,
  leaseMs: number,
): Promise<{ cancelRequested: boolean } | null> {
  const { rows } = await db.query<{ cancel_requested: boolean }>(
    `UPDATE ${table} SET lease_expires_at = now() + ${leaseInterval(3)}, heartbeat_at = now()
      WHERE id = $1 AND lease_owner = $2 AND status = ANY($4::text[])
      RETURNING cancel_requested_at IS NOT NULL AS cancel_requested`,
    [id, owner, leaseMs, [...heldStatuses]],
  );
  return rows[0] ? { cancelRequested: rows[0].cancel_requested } : null;
}

/**
 * Takes the oldest job of a job-like `table` that is queued, or running under an expired
 * lease (its worker died), for `owner` until the lease ends, returning `columns`. SKIP
 * LOCKED lets replicas claim side by side.
 */
export async function claimNextJobLike<Row>(db: Queryable, table: string, columns: string, owner: string, leaseMs: number): Promise<Row | null> {
  const { rows } = await db.query(
    `UPDATE ${table}
        SET status = 'running', lease_owner = $1, lease_expires_at = now() + ${leaseInterval(2)}, heartbeat_at = now(),
            claims = claims + 1, started_at = coalesce(started_at, now())
      WHERE id = (SELECT id FROM ${table}
                   WHERE status = 'queued' OR (status = 'running' AND lease_expires_at < now())
                   ORDER BY created_at, id LIMIT 1
                   FOR UPDATE SKIP LOCKED)
      RETURNING ${columns}`,
    [owner, leaseMs],
  );
  return (rows[0] as Row | undefined) ?? null;
}

/**
 * Ends a job of `table` held by `owner` in status 'running' (a job-like table: captioning
 * jobs, dataset imports), stamping `endedColumn` (a constant name); false when the lease was lost.
 */
export async function finishJobLike(
  db: Queryable, table: string, endedColumn: 'finished_at' | 'completed_at', id: string, owner: string,
  status: 'succeeded' | 'failed' | 'canceled', error?: { code: string; message: string },
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE ${table} SET status = $3, error_code = $4, error_message = $5, ${endedColumn} = now(),
            lease_owner = NULL, lease_expires_at = NULL
      WHERE id = $1 AND lease_owner = $2 AND status = 'running'`,
    [id, owner, status, error?.code ?? null, error?.message ?? null],
  );
  return rowCount > 0;
}

/**
 * Asks a job-like job of the tenant to stop: a queued one is canceled at once (stamping
 * `endedColumn`), a running one is marked for its worker. The row as `columns`, or null
 * when the tenant has no such unfinished job.
 */
export async function requestCancelJobLike<Row>(
  db: Queryable, table: string, endedColumn: 'finished_at' | 'completed_at', columns: string, tenantId: string, id: string,
): Promise<Row | null> {
  const { rows } = await db.query(
    `UPDATE ${table}
        SET cancel_requested_at = coalesce(cancel_requested_at, now()),
            status = CASE WHEN status = 'queued' THEN 'canceled' ELSE status END,
            ${endedColumn} = CASE WHEN status = 'queued' THEN now() ELSE ${endedColumn} END
      WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'running')
      RETURNING ${columns}`,
    [tenantId, id],
  );
  return (rows[0] as Row | undefined) ?? null;
}

/** Gives a job-like job back to the queue (its process is stopping); any worker may take it at once. */
export async function releaseJobLike(db: Queryable, table: string, id: string, owner: string): Promise<void> {
  await db.query(
    `UPDATE ${table} SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL
      WHERE id = $1 AND lease_owner = $2 AND status = 'running'`,
    [id, owner],
  );
}

/** claimNextRunLike's `alsoSet` for tables that count interruptions: a claim of a job that was not queued follows a dead process. */
export const INTERRUPTION_COUNT = ", interruptions = interruptions + (status <> 'queued')::integer";

/** The statuses in which a worker holds a run-like job under its lease. */
const RUN_HELD = "('starting', 'running')";

/** A condition a claimed job `j` must meet, on one parameter `$3` (e.g. the devices it asks fit the free ones). */
export interface ClaimCondition {
  sql: string;
  value: SqlParam;
}

/**
 * Takes a run-like job of `table` that is queued, or claimed under an expired lease (its
 * worker died), for `owner` until the lease ends, returning `columns`. Fair between
 * tenants: the tenant whose jobs were claimed longest ago (or never) goes first, so one
 * tenant's long queue does not hold back another's first job; within a tenant, oldest
 * first. SKIP LOCKED lets replicas claim side by side. `alsoSet` adds assignments; only a
 * job meeting `fits` is taken (the first in that order that does: a later job that fits
 * goes before an earlier one that does not).
 */
export async function claimNextRunLike<Row>(
  db: Queryable, table: string, columns: string, owner: string, leaseMs: number, alsoSet = '', fits?: ClaimCondition,
): Promise<Row | null> {
  const { rows } = await db.query(
    `UPDATE ${table}
        SET status = 'starting', lease_owner = $1, lease_expires_at = now() + ${leaseInterval(2)}, heartbeat_at = now(),
            claimed_at = clock_timestamp(), attempt = attempt + 1, started_at = coalesce(started_at, now())${alsoSet}
      WHERE id = (SELECT j.id FROM ${table} j
                   WHERE (j.status = 'queued' OR (j.status IN ${RUN_HELD} AND j.lease_expires_at < now()))${fits === undefined ? '' : ` AND ${fits.sql}`}
                   ORDER BY (SELECT max(o.claimed_at) FROM ${table} o WHERE o.tenant_id = j.tenant_id) NULLS FIRST,
                            j.created_at, j.id
                   LIMIT 1
                   FOR UPDATE SKIP LOCKED)
      RETURNING ${columns}`,
    fits === undefined ? [owner, leaseMs] : [owner, leaseMs, fits.value],
  );
  return (rows[0] as Row | undefined) ?? null;
}

/** Records a run-like job's progress (and the move from starting to running); false when the lease was lost. */
export async function recordProgress(
  db: Queryable, table: string, id: string, owner: string, progress: Record<string, unknown>, status: 'starting' | 'running',
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE ${table} SET progress = $3, status = $4 WHERE id = $1 AND lease_owner = $2 AND status IN ${RUN_HELD}`,
    [id, owner, JSON.stringify(progress), status],
  );
  return (rowCount ?? 0) > 0;
}

/** Writes one jsonb column of a job this worker holds (a scored set of images); false when the lease was lost. */
export async function recordHeldJson(
  db: Queryable, table: string, column: 'quality_metrics' | 'evaluation', id: string, owner: string, value: Record<string, unknown>,
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE ${table} SET ${column} = $3 WHERE id = $1 AND lease_owner = $2 AND status IN ${RUN_HELD}`,
    [id, owner, JSON.stringify(value)],
  );
  return (rowCount ?? 0) > 0;
}

/** Gives a run-like job back to the queue (its process is shutting down); false when the lease was lost. */
export async function releaseRunLike(db: Queryable, table: string, id: string, owner: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE ${table} SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL
      WHERE id = $1 AND lease_owner = $2 AND status IN ${RUN_HELD}`,
    [id, owner],
  );
  return (rowCount ?? 0) > 0;
}

/** How a run-like job ended: an error when it failed, its metrics when it has them. */
export interface RunLikeOutcome {
  error?: { code: string; message: string };
  metrics?: Record<string, number>;
}

/** Ends a run-like job; false when the lease was lost. */
export async function finishRunLike(
  db: Queryable, table: string, id: string, owner: string, status: 'succeeded' | 'failed' | 'canceled', outcome: RunLikeOutcome = {},
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE ${table}
        SET status = $3, error_code = $4, error_message = $5, metrics = coalesce($6, metrics), completed_at = now(),
            lease_owner = NULL, lease_expires_at = NULL
      WHERE id = $1 AND lease_owner = $2 AND status IN ${RUN_HELD}`,
    [id, owner, status, outcome.error?.code ?? null, outcome.error?.message ?? null, outcome.metrics ? JSON.stringify(outcome.metrics) : null],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Asks a run-like job to stop: a queued one is canceled at once; a claimed one is marked,
 * and its worker stops it at its next step.
 */
export async function requestCancelRunLike(db: Queryable, table: string, tenantId: string, id: string): Promise<void> {
  await db.query(
    `UPDATE ${table}
        SET cancel_requested_at = coalesce(cancel_requested_at, now()),
            status = CASE WHEN status = 'queued' THEN 'canceled' ELSE status END,
            completed_at = CASE WHEN status = 'queued' THEN now() ELSE completed_at END
      WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'starting', 'running')`,
    [tenantId, id],
  );
}

/** The tenant's queued and running run-like jobs, under a per-tenant lock held to the end of the transaction. */
export async function countOpenLocked(db: Queryable, table: string, tenantId: string): Promise<number> {
  await db.query(`SELECT pg_advisory_xact_lock(hashtextextended('${table}:' || $1, 0))`, [tenantId]);
  const { rows } = await db.query<{ count: number }>(
    `SELECT count(*)::integer AS count FROM ${table} WHERE tenant_id = $1 AND status IN ('queued', 'starting', 'running')`,
    [tenantId],
  );
  return rows[0]!.count;
}
