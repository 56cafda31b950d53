// SQL for /metrics: how much waits in each job queue and since when, and training runs by
// status. Database-wide figures, the same on every replica that reports them.
import type { Queryable } from '../db/database.js';

export type JobKind = 'captioning' | 'training' | 'generation' | 'webhook';

export interface QueueStats {
  kind: JobKind;
  /** Jobs waiting to be claimed. */
  depth: number;
  /** Seconds the oldest of them has waited (0 when none waits). */
  oldestWaitSeconds: number;
}

export function createQueueStatsRepository(db: Queryable) {
  return {
    async queues(): Promise<QueueStats[]> {
      // A webhook message waits from when it is due (a retry is not late before its time).
      const { rows } = await db.query<{ kind: JobKind; depth: number; oldest: number | null }>(
        `SELECT 'captioning' AS kind, count(*)::int AS depth, extract(epoch FROM now() - min(created_at))::float8 AS oldest
           FROM captioning_jobs WHERE status = 'queued'
         UNION ALL
         SELECT 'training', count(*)::int, extract(epoch FROM now() - min(created_at))::float8
           FROM training_runs WHERE status = 'queued'
         UNION ALL
         SELECT 'generation', count(*)::int, extract(epoch FROM now() - min(created_at))::float8
           FROM generations WHERE status = 'queued'
         UNION ALL
         SELECT 'webhook', count(*)::int, extract(epoch FROM now() - min(next_attempt_at))::float8
           FROM webhook_messages WHERE status = 'pending' AND next_attempt_at <= now()`,
      );
      return rows.map((row) => ({ kind: row.kind, depth: row.depth, oldestWaitSeconds: Math.max(0, row.oldest ?? 0) }));
    },

    /** Training runs by status (every status present, zeros included). */
    async trainingRunsByStatus(): Promise<Record<string, number>> {
      const { rows } = await db.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM training_runs GROUP BY status');
      return Object.fromEntries(rows.map((row) => [row.status, row.n]));
    },
  };
}
