// SQL of training_workers (migrations/012): each training worker's devices and how many are
// free, written on every poll; live workers are those seen within a window.
import type { Queryable } from '../db/database.js';
import { leaseInterval } from './lease-sql.js';

/** What the live training workers have, together. */
export interface TrainingCapacity {
  /** Live workers. */
  workers: number;
  /** Devices of the largest live worker (0 when none is live): the most one run may ask. */
  largest: number;
  /** The most free devices one live worker has now. */
  mostFree: number;
}

export function createTrainingWorkersRepository(db: Queryable) {
  return {
    /** The worker `owner` is alive with `devices`, `free` of them with room for a run. */
    async seen(owner: string, devices: number, free: number): Promise<void> {
      await db.query(
        `INSERT INTO training_workers (owner, devices, free_devices, last_seen_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (owner) DO UPDATE SET devices = $2, free_devices = $3, last_seen_at = now()`,
        [owner, devices, free],
      );
    },

    /** The worker stopped: it takes no more runs. */
    async gone(owner: string): Promise<void> {
      await db.query('DELETE FROM training_workers WHERE owner = $1', [owner]);
    },

    /** The workers seen within `liveMs`, together. */
    async capacity(liveMs: number): Promise<TrainingCapacity> {
      const { rows } = await db.query<TrainingCapacity>(
        `SELECT count(*)::integer AS workers, coalesce(max(devices), 0)::integer AS largest,
                coalesce(max(free_devices), 0)::integer AS "mostFree"
           FROM training_workers WHERE last_seen_at > now() - ${leaseInterval(1)}`,
        [liveMs],
      );
      return rows[0]!;
    },
  };
}

export type TrainingWorkersRepository = ReturnType<typeof createTrainingWorkersRepository>;
