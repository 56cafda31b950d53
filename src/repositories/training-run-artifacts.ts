// SQL of the files a training run published (checkpoints, validation images, LoRA or model files).
import type { Queryable } from '../db/database.js';
import type { ARTIFACT_KINDS } from '../schemas/training-run-artifacts.js';

export type ArtifactKind = (typeof ARTIFACT_KINDS)[number];

/** The artifacts of a full run's model: deleting the model removes them. */
export const MODEL_ARTIFACT_KINDS: readonly ArtifactKind[] = ['model', 'model_ema', 'model_diffusers'];

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

    /** The run's files: LoRA or model files first, then by step and name. */
    async list(runId: string): Promise<TrainingRunArtifactRow[]> {
      const { rows } = await db.query<TrainingRunArtifactRow>(
        `SELECT ${COLUMNS} FROM training_run_artifacts WHERE run_id = $1
          ORDER BY kind NOT IN ('lora', 'lora_peft', 'model', 'model_ema', 'model_diffusers'), kind, step, name`,
        [runId],
      );
      return rows;
    },

    /** The run's artifacts of one kind, by name. */
    async ofKind(runId: string, kind: ArtifactKind): Promise<TrainingRunArtifactRow[]> {
      const { rows } = await db.query<TrainingRunArtifactRow>(
        `SELECT ${COLUMNS} FROM training_run_artifacts WHERE run_id = $1 AND kind = $2 ORDER BY name`,
        [runId, kind],
      );
      return rows;
    },

    /** Forgets one artifact (its file is gone: a checkpoint keep_checkpoints let go). */
    async delete(runId: string, name: string): Promise<void> {
      await db.query('DELETE FROM training_run_artifacts WHERE run_id = $1 AND name = $2', [runId, name]);
    },

    /** Forgets the run's artifacts of these kinds (a deleted model's files). */
    async deleteKinds(runId: string, kinds: readonly ArtifactKind[]): Promise<void> {
      await db.query('DELETE FROM training_run_artifacts WHERE run_id = $1 AND kind = ANY($2::text[])', [runId, [...kinds]]);
    },

    async get(runId: string, name: string): Promise<TrainingRunArtifactRow | null> {
      const { rows } = await db.query<TrainingRunArtifactRow>(`SELECT ${COLUMNS} FROM training_run_artifacts WHERE run_id = $1 AND name = $2`, [runId, name]);
      return rows[0] ?? null;
    },
  };
}

export type TrainingRunArtifactsRepository = ReturnType<typeof createTrainingRunArtifactsRepository>;
