// SQL of a training run's events. Status events are written by a trigger on
// training_runs (migration 005); the worker appends the rest.
import type { Queryable } from '../db/database.js';

export type TrainingRunEventType = 'status' | 'progress' | 'log' | 'checkpoint' | 'validation' | 'artifact';

export interface TrainingRunEventRow {
  /** bigserial, as a string: ids outgrow 2^53 only in theory, but pg returns int8 as text. */
  id: string;
  run_id: string;
  type: TrainingRunEventType;
  data: Record<string, unknown>;
  created_at: Date;
}

const COLUMNS = 'id::text AS id, run_id, type, data, created_at';

export function createTrainingRunEventsRepository(db: Queryable) {
  return {
    /** Appends an event of a run that `owner` holds; false when it does not (its lease was taken: the new owner's run is left alone). */
    async append(runId: string, owner: string, type: Exclude<TrainingRunEventType, 'status'>, data: Record<string, unknown>): Promise<boolean> {
      const { rowCount } = await db.query(
        `INSERT INTO training_run_events (run_id, type, data)
         SELECT $1, $2, $3 FROM training_runs WHERE id = $1 AND lease_owner = $4`,
        [runId, type, JSON.stringify(data), owner],
      );
      return rowCount > 0;
    },

    /** Up to `limit` events of the run after event `afterId` (0: from the first), oldest first; only `types` when given. */
    async list(runId: string, afterId: string, limit: number, types?: readonly TrainingRunEventType[]): Promise<TrainingRunEventRow[]> {
      const { rows } = await db.query<TrainingRunEventRow>(
        `SELECT ${COLUMNS} FROM training_run_events
          WHERE run_id = $1 AND id > $2::bigint AND ($3::text[] IS NULL OR type = ANY($3::text[]))
          ORDER BY training_run_events.id LIMIT $4`,
        [runId, afterId, types === undefined ? null : [...types], limit],
      );
      return rows;
    },
  };
}

export type TrainingRunEventsRepository = ReturnType<typeof createTrainingRunEventsRepository>;
