// SQL of tenants' own models (migration 011): registered by succeeded full fine-tuning
// runs, whose folders keep their files. Also what a tenant's model storage adds up to
// (TENANT_MAX_MODEL_BYTES) and which jobs still use a model.
import type { Queryable } from '../db/database.js';
import { newId } from '../db/ids.js';
import type { ModelSummary } from '../engine/index.js';
import type { ModelFamily } from '../schemas/model-families.js';
import { TENANT_MODEL_ID_PREFIX } from '../schemas/models.js';

export interface TenantModelRow {
  id: string;
  tenant_id: string;
  training_run_id: string;
  base_model_id: string;
  name: string | null;
  family: ModelFamily;
  /** In the run's folder: the diffusers folder ("model") or the single file ("model.safetensors"). */
  load_name: string;
  config_dir: string | null;
  summary: ModelSummary;
  stored_bytes: number;
  created_at: Date;
}

export type NewTenantModel = Omit<TenantModelRow, 'id' | 'tenant_id' | 'created_at'>;

/** A job that has not ended and names the model. */
export interface OpenJobUsingModel {
  kind: 'training_run' | 'generation';
  id: string;
}

const COLUMNS =
  'id, tenant_id, training_run_id, base_model_id, name, family, load_name, config_dir, summary, stored_bytes::float8 AS stored_bytes, created_at';

export function createTenantModelsRepository(db: Queryable) {
  return {
    async insert(tenantId: string, model: NewTenantModel): Promise<TenantModelRow> {
      const { rows } = await db.query<TenantModelRow>(
        `INSERT INTO tenant_models (id, tenant_id, training_run_id, base_model_id, name, family, load_name, config_dir, summary, stored_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ${COLUMNS}`,
        [newId(TENANT_MODEL_ID_PREFIX), tenantId, model.training_run_id, model.base_model_id, model.name, model.family, model.load_name,
          model.config_dir, JSON.stringify(model.summary), model.stored_bytes],
      );
      return rows[0]!;
    },

    async get(tenantId: string, id: string): Promise<TenantModelRow | null> {
      const { rows } = await db.query<TenantModelRow>(`SELECT ${COLUMNS} FROM tenant_models WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
      return rows[0] ?? null;
    },

    /** The model a run registered, if it still exists. */
    async byTrainingRun(runId: string): Promise<TenantModelRow | null> {
      const { rows } = await db.query<TenantModelRow>(`SELECT ${COLUMNS} FROM tenant_models WHERE training_run_id = $1`, [runId]);
      return rows[0] ?? null;
    },

    /** The tenant's models, newest first. */
    async list(tenantId: string): Promise<TenantModelRow[]> {
      const { rows } = await db.query<TenantModelRow>(`SELECT ${COLUMNS} FROM tenant_models WHERE tenant_id = $1 ORDER BY id DESC`, [tenantId]);
      return rows;
    },

    /** The model, locked against deletion until the transaction ends (a run or generation being queued on it). */
    async lockShared(tenantId: string, id: string): Promise<TenantModelRow | null> {
      const { rows } = await db.query<TenantModelRow>(`SELECT ${COLUMNS} FROM tenant_models WHERE tenant_id = $1 AND id = $2 FOR SHARE`, [tenantId, id]);
      return rows[0] ?? null;
    },

    /** The model, locked for deletion (waits for transactions queuing jobs on it). */
    async lockForDelete(tenantId: string, id: string): Promise<TenantModelRow | null> {
      const { rows } = await db.query<TenantModelRow>(`SELECT ${COLUMNS} FROM tenant_models WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, [tenantId, id]);
      return rows[0] ?? null;
    },

    /** Training runs and generations that have not ended and name the model (its base, or what they sample from). */
    async openJobsUsing(id: string): Promise<OpenJobUsingModel[]> {
      const { rows } = await db.query<OpenJobUsingModel>(
        `SELECT 'training_run' AS kind, id FROM training_runs WHERE model_id = $1 AND status IN ('queued', 'starting', 'running')
         UNION ALL
         SELECT 'generation' AS kind, id FROM generations WHERE model_id = $1 AND status IN ('queued', 'starting', 'running')
         ORDER BY id`,
        [id],
      );
      return rows;
    },

    async delete(tenantId: string, id: string): Promise<boolean> {
      const { rowCount } = await db.query('DELETE FROM tenant_models WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
      return (rowCount ?? 0) > 0;
    },

    /**
     * The model bytes a tenant holds and has asked for (TENANT_MAX_MODEL_BYTES): its models'
     * files, the checkpoints its full runs keep (every trained weight and the optimizer's
     * state), and what its queued and running full runs are expected to write.
     */
    async usage(tenantId: string): Promise<{ stored: number; checkpoints: number; expected: number }> {
      const { rows } = await db.query<{ stored: number; checkpoints: number; expected: number }>(
        `SELECT
           (SELECT coalesce(sum(stored_bytes), 0) FROM tenant_models WHERE tenant_id = $1)::float8 AS stored,
           (SELECT coalesce(sum(a.byte_size), 0) FROM training_run_artifacts a JOIN training_runs r ON r.id = a.run_id
             WHERE r.tenant_id = $1 AND a.kind = 'checkpoint' AND r.params->>'method' = 'full')::float8 AS checkpoints,
           (SELECT coalesce(sum(expected_model_bytes), 0) FROM training_runs
             WHERE tenant_id = $1 AND status IN ('queued', 'starting', 'running'))::float8 AS expected`,
        [tenantId],
      );
      return rows[0]!;
    },
  };
}

export type TenantModelsRepository = ReturnType<typeof createTenantModelsRepository>;
