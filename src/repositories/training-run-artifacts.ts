// SQL of the files a training run published (checkpoints, validation images, LoRA files).
import type { Queryable } from '../db/database.js';

export type ArtifactKind = 'lora' | 'lora_peft' | 'checkpoint' | 'validation_image';

export interface TrainingRunArtifactRow {
  run_id: string;
  name: string;
  kind: ArtifactKind;
  byte_size: number;
  sha256: string;
  step: number;
  created_at: Date;
}

const COLUMNS = 'run_id, name, kind, byte_size::float8 AS byte_size, sha256, step, created_at';

export function createTrainingRunArtifactsRepository(db: Queryable) {
  return {
    /** Records a published file; a file written again (a resumed run rewrites its checkpoint) replaces the row. */
    async record(artifact: Omit<TrainingRunArtifactRow, 'created_at'>): Promise<void> {
      await db.query(
        `INSERT INTO training_run_artifacts (run_id, name, kind, byte_size, sha256, step) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (run_id, name) DO UPDATE SET kind = excluded.kind, byte_size = excluded.byte_size,
           sha256 = excluded.sha256, step = excluded.step, created_at = now()`,
        [artifact.run_id, artifact.name, artifact.kind, artifact.byte_size, artifact.sha256, artifact.step],
      );
    },

    /** The run's files: LoRA files first, then by step and name. */
    async list(runId: string): Promise<TrainingRunArtifactRow[]> {
      const { rows } = await db.query<TrainingRunArtifactRow>(
        `SELECT ${COLUMNS} FROM training_run_artifacts WHERE run_id = $1
          ORDER BY kind NOT IN ('lora', 'lora_peft'), kind, step, name`,
        [runId],
      );
      return rows;
    },

    async get(runId: string, name: string): Promise<TrainingRunArtifactRow | null> {
      const { rows } = await db.query<TrainingRunArtifactRow>(`SELECT ${COLUMNS} FROM training_run_artifacts WHERE run_id = $1 AND name = $2`, [runId, name]);
      return rows[0] ?? null;
    },
  };
}

export type TrainingRunArtifactsRepository = ReturnType<typeof createTrainingRunArtifactsRepository>;
