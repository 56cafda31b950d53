// SQL of the maintenance sweep: its lease (one row, claimed by one replica when due) and the
// purges, each removing at most `limit` rows per statement so that no lock is held for long.
import type { Queryable } from '../db/database.js';
import { leaseInterval } from './lease-sql.js';

const SWEEP_ID = 'retention';
const FINISHED_RUN = "('succeeded', 'failed', 'canceled')";
/** `$n` days as an interval. */
const days = (param: number): string => `($${param}::integer * interval '1 day')`;

export interface SweepClaim {
  id: string;
}

/** A checkpoint artifact of a finished run that is not among its newest. */
export interface SurplusCheckpoint {
  run_id: string;
  name: string;
}

/** Deletes up to `limit` rows of `table` (a constant name, never input) that ended (completed_at) more than `olderThanDays` ago, oldest first. */
async function deleteEnded(db: Queryable, table: 'webhook_messages' | 'generations', olderThanDays: number, limit: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM ${table} WHERE id IN (
       SELECT id FROM ${table} WHERE completed_at IS NOT NULL AND completed_at < now() - ${days(1)} ORDER BY completed_at LIMIT $2)`,
    [olderThanDays, limit],
  );
  return rowCount;
}

export function createMaintenanceRepository(db: Queryable) {
  return {
    /** Takes the sweep for `owner` when it is due and no live lease holds it; null otherwise. */
    async claim(owner: string, leaseMs: number): Promise<SweepClaim | null> {
      const { rows } = await db.query<SweepClaim>(
        `UPDATE maintenance_sweeps
            SET lease_owner = $1, lease_expires_at = now() + ${leaseInterval(2)}, heartbeat_at = now(), started_at = now()
          WHERE id = (SELECT id FROM maintenance_sweeps
                       WHERE id = $3 AND next_run_at <= now() AND (lease_owner IS NULL OR lease_expires_at < now())
                       FOR UPDATE SKIP LOCKED)
          RETURNING id`,
        [owner, leaseMs, SWEEP_ID],
      );
      return rows[0] ?? null;
    },

    /** Extends the lease; null when it was lost. A sweep is never canceled. */
    async heartbeat(id: string, owner: string, leaseMs: number): Promise<{ cancelRequested: boolean } | null> {
      const { rowCount } = await db.query(
        `UPDATE maintenance_sweeps SET lease_expires_at = now() + ${leaseInterval(3)}, heartbeat_at = now()
          WHERE id = $1 AND lease_owner = $2`,
        [id, owner, leaseMs],
      );
      return rowCount > 0 ? { cancelRequested: false } : null;
    },

    /** Ends the sweep: what it removed, and when the next is due. */
    async finish(id: string, owner: string, nextInMs: number, removed: Record<string, number>): Promise<void> {
      await db.query(
        `UPDATE maintenance_sweeps
            SET lease_owner = NULL, lease_expires_at = NULL, finished_at = now(), next_run_at = now() + ${leaseInterval(3)}, last_removed = $4
          WHERE id = $1 AND lease_owner = $2`,
        [id, owner, nextInMs, JSON.stringify(removed)],
      );
    },

    /** Gives the sweep back unfinished (the process is stopping): still due, for any replica. */
    async release(id: string, owner: string): Promise<void> {
      await db.query('UPDATE maintenance_sweeps SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2', [id, owner]);
    },

    /** The sweep's state: when the next is due, and what the last removed. */
    async state(): Promise<{ next_run_at: Date; finished_at: Date | null; last_removed: Record<string, number> | null }> {
      const { rows } = await db.query<{ next_run_at: Date; finished_at: Date | null; last_removed: Record<string, number> | null }>(
        'SELECT next_run_at, finished_at, last_removed FROM maintenance_sweeps WHERE id = $1', [SWEEP_ID]);
      return rows[0]!;
    },

    /** Webhook messages that ended more than `olderThanDays` ago, with their attempts; how many. */
    deleteWebhookMessages(olderThanDays: number, limit: number): Promise<number> {
      return deleteEnded(db, 'webhook_messages', olderThanDays, limit);
    },

    /** Idempotency-Key records claimed more than `olderThanMs` ago: answered or abandoned, no retry can use them any more; how many. */
    async deleteIdempotencyKeys(olderThanMs: number, limit: number): Promise<number> {
      const { rowCount } = await db.query(
        `DELETE FROM idempotency_keys WHERE (tenant_id, key) IN (
           SELECT tenant_id, key FROM idempotency_keys WHERE created_at < now() - ${leaseInterval(1)} ORDER BY created_at LIMIT $2)`,
        [olderThanMs, limit],
      );
      return rowCount;
    },

    /** Generations that ended more than `olderThanDays` ago (their images' blobs are queued for release); how many. */
    deleteGenerations(olderThanDays: number, limit: number): Promise<number> {
      return deleteEnded(db, 'generations', olderThanDays, limit);
    },

    /** Checkpoint artifacts of finished runs beyond each run's `keep` newest. */
    async surplusCheckpoints(keep: number, limit: number): Promise<SurplusCheckpoint[]> {
      const { rows } = await db.query<SurplusCheckpoint>(
        `SELECT run_id, name FROM (
           SELECT a.run_id, a.name, row_number() OVER (PARTITION BY a.run_id ORDER BY a.step DESC, a.name DESC) AS newest
             FROM training_run_artifacts a JOIN training_runs r ON r.id = a.run_id
            WHERE a.kind = 'checkpoint' AND r.status IN ${FINISHED_RUN}) ranked
          WHERE newest > $1 LIMIT $2`,
        [keep, limit],
      );
      return rows;
    },

    /** Forgets one checkpoint artifact (its files are gone). */
    async deleteArtifact(runId: string, name: string): Promise<void> {
      await db.query('DELETE FROM training_run_artifacts WHERE run_id = $1 AND name = $2', [runId, name]);
    },
  };
}

export type MaintenanceRepository = ReturnType<typeof createMaintenanceRepository>;
