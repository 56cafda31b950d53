// SQL of LoRA resources. Their files are blobs (BLOB_REFERENCES in ./images.ts); a deleted
// row queues its blob for release (migration 009's trigger).
import type { Queryable } from '../db/database.js';
import { newId } from '../db/ids.js';
import { LORA_ID_PREFIX } from '../schemas/loras.js';

export interface LoraRow {
  id: string;
  tenant_id: string;
  name: string;
  source: 'training_run' | 'upload';
  training_run_id: string | null;
  model_id: string;
  trigger_phrase: string | null;
  sha256: string;
  autov3: string;
  byte_size: string | number;
  layout: 'kohya-sgm' | 'kohya-diffusers' | 'peft';
  rank: number;
  alpha: number;
  modules: number;
  components: string[];
  created_at: Date;
}

export type NewLora = Omit<LoraRow, 'id' | 'tenant_id' | 'created_at'>;

const COLUMNS =
  'id, tenant_id, name, source, training_run_id, model_id, trigger_phrase, sha256, autov3, byte_size, layout, rank, alpha, modules, components, created_at';

export function createLorasRepository(db: Queryable) {
  return {
    async insert(tenantId: string, lora: NewLora): Promise<LoraRow> {
      const { rows } = await db.query<LoraRow>(
        `INSERT INTO loras (id, tenant_id, name, source, training_run_id, model_id, trigger_phrase, sha256, autov3, byte_size, layout, rank, alpha, modules, components)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         RETURNING ${COLUMNS}`,
        [newId(LORA_ID_PREFIX), tenantId, lora.name, lora.source, lora.training_run_id, lora.model_id, lora.trigger_phrase, lora.sha256, lora.autov3,
          lora.byte_size, lora.layout, lora.rank, lora.alpha, lora.modules, lora.components],
      );
      return rows[0]!;
    },

    async get(tenantId: string, id: string): Promise<LoraRow | null> {
      const { rows } = await db.query<LoraRow>(`SELECT ${COLUMNS} FROM loras WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
      return rows[0] ?? null;
    },

    /** The LoRA a run registered, locked as lockShared locks it. */
    async lockSharedByTrainingRun(tenantId: string, runId: string): Promise<LoraRow | null> {
      const { rows } = await db.query<LoraRow>(`SELECT ${COLUMNS} FROM loras WHERE tenant_id = $1 AND training_run_id = $2 FOR SHARE`, [tenantId, runId]);
      return rows[0] ?? null;
    },

    /** Up to `limit` LoRAs, newest first, older than `before` when given. */
    async list(tenantId: string, filter: { modelId?: string; source?: string }, limit: number, before?: string): Promise<LoraRow[]> {
      const { rows } = await db.query<LoraRow>(
        `SELECT ${COLUMNS} FROM loras
          WHERE tenant_id = $1 AND ($2::text IS NULL OR model_id = $2) AND ($3::text IS NULL OR source = $3)
            AND ($4::text IS NULL OR id < $4)
          ORDER BY id DESC LIMIT $5`,
        [tenantId, filter.modelId ?? null, filter.source ?? null, before ?? null, limit],
      );
      return rows;
    },

    /**
     * Locks the LoRA row for the rest of the transaction: a generation that names it and
     * a delete of it take the same lock, so a delete never slips in between a generation's
     * check and its insert.
     */
    async lockShared(tenantId: string, id: string): Promise<LoraRow | null> {
      const { rows } = await db.query<LoraRow>(`SELECT ${COLUMNS} FROM loras WHERE tenant_id = $1 AND id = $2 FOR SHARE`, [tenantId, id]);
      return rows[0] ?? null;
    },

    /** Whether a generation that has not finished names the LoRA. */
    async usedByOpenGeneration(id: string): Promise<boolean> {
      const { rows } = await db.query(
        `SELECT 1 FROM generations
          WHERE status IN ('queued', 'starting', 'running') AND loras @> jsonb_build_array(jsonb_build_object('lora_id', $1::text))
          LIMIT 1`,
        [id],
      );
      return rows.length > 0;
    },

    /** Deletes the row (its blob is queued for release); false when there was none. Call under FOR UPDATE (lockForDelete). */
    async delete(tenantId: string, id: string): Promise<boolean> {
      const { rowCount } = await db.query('DELETE FROM loras WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
      return (rowCount ?? 0) > 0;
    },

    /** Locks the row against generations being queued with it; null when the tenant has no such LoRA. */
    async lockForDelete(tenantId: string, id: string): Promise<LoraRow | null> {
      const { rows } = await db.query<LoraRow>(`SELECT ${COLUMNS} FROM loras WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, [tenantId, id]);
      return rows[0] ?? null;
    },
  };
}

export type LorasRepository = ReturnType<typeof createLorasRepository>;
