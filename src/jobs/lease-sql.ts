// SQL every leased job table shares (captioning_jobs, training_runs, ...): each has
// lease_owner, lease_expires_at, heartbeat_at and cancel_requested_at columns, and a set
// of statuses in which a worker holds the job.
import type { Queryable } from '../db/database.js';

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
